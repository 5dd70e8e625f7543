"""Benchmark featviz.project against scikit-learn's t-SNE, and PCA memory on a memory map.

1. t-SNE: Gaussian clusters, 10 classes, N = 20,000, D = 512 (and N = 50,000 for featviz):
   featviz's default ``project(X)`` (PCA to 50 dims, then openTSNE's FFT t-SNE when
   installed, else sklearn Barnes-Hut) against ``sklearn.manifold.TSNE(init="pca",
   learning_rate="auto")`` on the raw features. Wall time (ratio sklearn / featviz),
   10-NN accuracy (leave-one-out, in the 2-D embedding) and trustworthiness (2,000-point
   subsample) of each. sklearn at N = 50,000 runs only with ``--sklearn-50k``; otherwise
   its time is estimated from the 20k run by N log N scaling (and marked so).
2. PCA of N = 50,000 x D = 25,088 float32 (~5 GB) read from an ``np.load(mmap_mode="r")``
   store, in a fresh subprocess per setting: peak RSS (VmHWM) against the data size, with
   the default memory budget and with a budget of min(1 GiB, data size / 8), which
   forces IncrementalPCA in chunks.

Usage: python benchmarks/projection.py [--quick] [--sklearn-50k] [--sizes N ...] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def clusters(n: int, d: int, c: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian classes whose centres are close enough that kNN is not trivial."""
    rng = np.random.default_rng(seed)
    # centre spread 0.2 at D = 512 (scaled as D^-1/4 for other D): raw 10-NN accuracy
    # well below 1, so the embeddings' accuracies can differ
    centres = rng.normal(size=(c, d)).astype(np.float32) * np.float32(0.2 * (512 / d) ** 0.25)
    y = rng.integers(0, c, n)
    x = centres[y] + rng.standard_normal((n, d), dtype=np.float32)
    return x, y


def scores(emb: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    from sklearn.manifold import trustworthiness

    from featviz.projection import _knn_accuracy

    idx = np.sort(np.random.default_rng(0).choice(len(x), min(2000, len(x)), replace=False))
    trust = trustworthiness(x[idx], emb[idx], n_neighbors=5)
    return _knn_accuracy(emb, y, 10, None), float(trust)


def run_featviz(x: np.ndarray) -> tuple[float, np.ndarray, str]:
    from featviz.projection import project

    t = time.perf_counter()
    proj = project(x, progress=False, score=False)
    return time.perf_counter() - t, proj.embedding, proj.engine


def run_sklearn(x: np.ndarray) -> tuple[float, np.ndarray]:
    from sklearn.manifold import TSNE

    t = time.perf_counter()
    emb = TSNE(init="pca", learning_rate="auto", random_state=0).fit_transform(x)
    return time.perf_counter() - t, emb


def warm_up() -> None:
    """Import and run every code path once on tiny data, so no timing includes imports."""
    x, _ = clusters(1200, 64)
    run_featviz(x)
    run_sklearn(x[:200])


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def tsne_table(sizes: list[int], d: int, sklearn_big: bool) -> list[str]:
    warm_up()
    rows = [
        "| N | D | engine | seconds | sklearn / featviz | 10-NN acc. | trustworthiness |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    sk_ref: tuple[int, float] | None = None
    for i, n in enumerate(sizes):
        x, y = clusters(n, d)
        fv_s, fv_emb, engine = run_featviz(x)
        fv_acc, fv_tr = scores(fv_emb, y, x)
        print(f"  featviz N={n}: {fv_s:.1f} s ({engine}), {load()}", flush=True)
        if i == 0 or sklearn_big:
            sk_s, sk_emb = run_sklearn(x)
            sk_acc, sk_tr = scores(sk_emb, y, x)
            print(f"  sklearn N={n}: {sk_s:.1f} s, {load()}", flush=True)
            if sk_ref is None:
                sk_ref = (n, sk_s)
            sk_cells = [f"{sk_s:.1f}", f"{sk_acc:.3f}", f"{sk_tr:.3f}"]
            ratio = f"{sk_s / fv_s:.1f}x"
        else:
            assert sk_ref is not None
            n0, s0 = sk_ref
            est = s0 * (n * math.log(n)) / (n0 * math.log(n0))
            sk_cells = [f"~{est:.0f} (estimated)", "not run", "not run"]
            ratio = f"~{est / fv_s:.1f}x (est.)"
        rows.append(
            f"| {n:,} | {d} | featviz default ({engine}, PCA-50 first) | {fv_s:.1f} | {ratio} "
            f"| {fv_acc:.3f} | {fv_tr:.3f} |"
        )
        rows.append(
            f"| {n:,} | {d} | sklearn TSNE(init='pca', learning_rate='auto'), raw | "
            f"{sk_cells[0]} | 1.0x | {sk_cells[1]} | {sk_cells[2]} |"
        )
    return rows


_CHILD = r"""
import json, resource, sys, time
import numpy as np
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
import featviz.projection as P
import pandas, sklearn.decomposition, sklearn.manifold, sklearn.neighbors, tqdm.auto  # baseline
mm = np.load(sys.argv[1], mmap_mode="r")
budget = None if sys.argv[2] == "default" else int(sys.argv[2])
before = status("VmRSS:")
t = time.perf_counter()
proj = P.project(mm, method="pca", progress=False, max_memory=budget)
secs = time.perf_counter() - t
print(json.dumps({
    "seconds": secs, "engine": proj.engine, "peak": status("VmHWM:"), "before": before,
    "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "evr": [float(v) for v in proj.explained_variance_ratio], "nbytes": int(mm.nbytes),
    "trust": proj.quality.get("trustworthiness"),
    "budget": budget or int(P.DEFAULT_MEMORY_FRACTION * P._available_memory()),
}))
"""


def make_store(path: Path, n: int, d: int, seed: int = 0) -> None:
    """Write an (n, d) float32 .npy of low-rank structure plus noise, in row chunks."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((8, d), dtype=np.float32) * np.float32(3.0)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    step = max(1, (128 * 2**20) // (d * 4))
    for start in range(0, n, step):
        stop = min(n, start + step)
        coef = rng.standard_normal((stop - start, 8), dtype=np.float32)
        out[start:stop] = coef @ basis + rng.standard_normal((stop - start, d), dtype=np.float32)
    out.flush()
    del out


def pca_table(n: int, d: int, tmp: Path) -> list[str]:
    path = tmp / "features.npy"
    t = time.perf_counter()
    make_store(path, n, d)
    print(f"  wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s")
    rows = [
        "| N x D | data size | memory budget | engine | seconds | peak RSS (VmHWM) | "
        "RSS before | peak / data size | (peak - before) / data size |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    small = min(2**30, n * d * 4 // 8)
    for budget in ("default", str(small)):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), budget],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            print(out.stderr[-3000:])
            raise SystemExit(f"PCA child failed ({budget})")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        gb = 1e9
        label = (
            f"default ({r['budget'] / gb:.1f} GB)"
            if budget == "default"
            else f"max_memory={r['budget'] / gb:.2f} GB"
        )
        print(
            f"  {label}: {r['seconds']:.1f} s, peak {r['peak'] / gb:.2f} GB, "
            f"EVR {r['evr']}, {load()}"
        )
        rows.append(
            f"| {n:,} x {d:,} float32 | {r['nbytes'] / gb:.2f} GB | {label} | {r['engine']} | "
            f"{r['seconds']:.1f} | {r['peak'] / gb:.2f} GB | {r['before'] / gb:.2f} GB | "
            f"{r['peak'] / r['nbytes']:.2f}x | {(r['peak'] - r['before']) / r['nbytes']:.2f}x |"
        )
    path.unlink()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="much smaller sizes")
    ap.add_argument("--sklearn-50k", action="store_true", help="also run sklearn at N=50,000")
    ap.add_argument("--tmp", default=None, help="folder for the memory-mapped store")
    ap.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="t-SNE sizes (sklearn runs on the first)"
    )
    ap.add_argument("--skip-tsne", action="store_true")
    ap.add_argument("--skip-pca", action="store_true")
    args = ap.parse_args(argv)

    import sklearn

    try:
        import openTSNE

        otsne = openTSNE.__version__
    except ImportError:
        otsne = "not installed"
    print(
        f"# featviz projection benchmark ({'quick' if args.quick else 'full'}); "
        f"{os.cpu_count()} CPUs, sklearn {sklearn.__version__}, openTSNE {otsne}\n",
        flush=True,
    )
    if not args.skip_tsne:
        sizes, d = ([2000, 5000], 128) if args.quick else ([20000, 50000], 512)
        sizes = args.sizes or sizes
        print("t-SNE:", flush=True)
        table = tsne_table(sizes, d, args.sklearn_50k)
        print("\n" + "\n".join(table) + "\n", flush=True)
    if not args.skip_pca:
        n, d = (5000, 4096) if args.quick else (50000, 25088)
        tmp = Path(tempfile.mkdtemp(prefix="featviz-bench-", dir=args.tmp))
        try:
            print("PCA from a memory map:", flush=True)
            table = pca_table(n, d, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print("\n" + "\n".join(table) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
