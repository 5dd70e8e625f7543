"""Benchmark featviz.project against scikit-learn's t-SNE, and PCA memory on a memory map.

1. t-SNE: Gaussian clusters, 10 classes, N = 20,000, D = 512 (and N = 50,000 for featviz):
   featviz's default ``project(X)`` (PCA to 50 dims, then openTSNE's FFT t-SNE when
   installed, else sklearn Barnes-Hut) against ``sklearn.manifold.TSNE(init="pca",
   learning_rate="auto")`` on the raw features. Wall time (ratio sklearn / featviz),
   10-NN accuracy (leave-one-out, in the 2-D embedding) and trustworthiness (2,000-point
   subsample) of each. sklearn at N = 50,000 runs only with ``--sklearn-50k``; otherwise
   its time is estimated from the 20k run by N log N scaling (and marked so).
2. PCA-2 of N = 20,000 x D = 25,088 float32 (~2 GB) read from an ``np.load(mmap_mode="r")``
   store, in a fresh subprocess per row: featviz's default (streamed PCA), featviz with
   ``engine="sklearn"`` (the store copied into memory, then scikit-learn's PCA) and the
   anchor, scikit-learn's ``PCA(2, svd_solver="randomized")`` on the loaded array: seconds,
   ratio anchor / row, peak RSS (VmHWM) against the data size.
3. ``--million``: 1,000,000 x 512 float32 clustered data (10 classes) written to a memory
   map in a temporary folder. PCA-2 as in 2 (featviz streamed against scikit-learn's
   randomized PCA on the loaded array), then t-SNE with ``fit_sample``: at N = 100,000 a
   full openTSNE fit (the anchor) against a fit on a seeded 5,000-row sample with the
   rest placed (the 1:20 ratio of the default 50,000 of 1,000,000), trustworthiness of
   both on the same 2,000-row subsample; then the default ``project`` of all 1,000,000
   rows (fit on 50,000, 950,000 placed): seconds and its quality figures, including
   ``trustworthiness_placed`` on a held-out sample of 2,000 placed rows.
4. ``--tensorboard``: the same 1,000,000 x 512 data exported with ``featviz.to_tensorboard``
   (TensorBoard's projector keeps ``MAX_POINTS`` = 100,000 points): rows kept and
   dropped, files written and their size, seconds.

Usage: python benchmarks/projection.py [--quick] [--sklearn-50k] [--sizes N ...] [--tmp DIR]
       [--million] [--tensorboard] [--skip-tsne] [--skip-pca]
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
import json, sys, time
import numpy as np
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
import featviz.projection as P
import pandas, sklearn.decomposition, sklearn.manifold, sklearn.neighbors, tqdm.auto  # baseline
mm = np.load(sys.argv[1], mmap_mode="r")
mode = sys.argv[2]
before = status("VmRSS:")
t = time.perf_counter()
if mode == "sklearn":
    x = np.load(sys.argv[1])
    pca = sklearn.decomposition.PCA(2, svd_solver="randomized", random_state=0)
    pca.fit_transform(x)
    engine, evr = "sklearn PCA(randomized) on np.load", pca.explained_variance_ratio_
else:
    proj = P.project(mm, method="pca", progress=False, score=False,
                     engine="sklearn" if mode == "featviz-sklearn" else "auto")
    engine, evr = proj.engine, proj.explained_variance_ratio
secs = time.perf_counter() - t
print(json.dumps({
    "seconds": secs, "engine": engine, "peak": status("VmHWM:"), "before": before,
    "evr": [float(v) for v in evr], "nbytes": int(mm.nbytes),
}))
"""


def _child(path: Path, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        print(out.stderr[-3000:])
        raise SystemExit(f"PCA child failed ({mode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


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


_LABELS = {
    "featviz": "featviz default",
    "featviz-sklearn": "featviz engine='sklearn'",
    "sklearn": "sklearn (anchor)",
}


def pca_rows(path: Path, modes: tuple[str, ...]) -> list[str]:
    """PCA-2 of the store at ``path``, one fresh process per mode; ratios against sklearn."""
    rows = [
        "| N x D | data size | run | engine | seconds | sklearn / row | peak RSS (VmHWM) | "
        "peak - data size | EVR |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    mm = np.load(path, mmap_mode="r")
    n, d = mm.shape
    del mm
    results = {}
    for mode in ("sklearn", *modes):  # the anchor first: it pulls the file into the cache
        results[mode] = r = _child(path, mode)
        print(f"  {_LABELS[mode]}: {r['seconds']:.1f} s, peak {r['peak'] / 1e9:.2f} GB, {load()}")
    anchor = results["sklearn"]["seconds"]
    for mode, r in results.items():
        gb = 1e9
        evr = ", ".join(f"{v:.4f}" for v in r["evr"])
        rows.append(
            f"| {n:,} x {d:,} float32 | {r['nbytes'] / gb:.2f} GB | {_LABELS[mode]} | "
            f"{r['engine']} | {r['seconds']:.1f} | {anchor / r['seconds']:.1f}x | "
            f"{r['peak'] / gb:.2f} GB | {(r['peak'] - r['nbytes']) / gb:+.2f} GB | {evr} |"
        )
    return rows


def pca_table(n: int, d: int, tmp: Path) -> list[str]:
    path = tmp / "features.npy"
    t = time.perf_counter()
    make_store(path, n, d)
    print(f"  wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s")
    rows = pca_rows(path, ("featviz", "featviz-sklearn"))
    path.unlink()
    return rows


def make_clustered(path: Path, n: int, d: int, c: int = 10, seed: int = 0) -> np.ndarray:
    """Write `clusters`-like (n, d) float32 data to a .npy in chunks; return the labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)).astype(np.float32) * np.float32(0.2 * (512 / d) ** 0.25)
    y = rng.integers(0, c, n)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    step = max(1, (128 * 2**20) // (d * 4))
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[start:stop] = centres[y[start:stop]] + rng.standard_normal(
            (stop - start, d), dtype=np.float32
        )
    out.flush()
    del out
    np.save(path.with_suffix(".labels.npy"), y)
    return y


def _tsne(x: np.ndarray, y: np.ndarray, fit_sample: int | str | None) -> tuple[float, object]:
    from featviz.projection import project

    proj = project(x, labels=y, fit_sample=fit_sample, progress=False)
    return proj.seconds, proj  # reading, PCA step, fit and placing (scoring excluded)


FIT_SAMPLE_MIN_N = 200_000  # featviz.projection._methods.FIT_SAMPLE_MIN_N (project's default)


def million_table(tmp: Path, n: int, d: int, small: int, small_fit: int) -> list[str]:
    """PCA-2 and t-SNE (fit_sample) of n x d clustered data in a memory map."""
    path = tmp / "million.npy"
    t = time.perf_counter()
    y = make_clustered(path, n, d)
    print(f"  wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s")
    rows = [*pca_rows(path, ("featviz",)), ""]
    mm = np.load(path, mmap_mode="r")
    rows += [
        "| N | run | seconds | anchor / row | fitted | placed | "
        "trustworthiness (same 2,000 rows) | quality (project's own) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    xs, ys = np.asarray(mm[:small]), y[:small]
    warm_up()
    full_s, full = _tsne(xs, ys, None)
    print(f"  t-SNE N={small:,} full fit: {full_s:.0f} s, {load()}", flush=True)
    part_s, part = _tsne(xs, ys, small_fit)
    print(f"  t-SNE N={small:,} fit on {small_fit:,}: {part_s:.0f} s, {load()}", flush=True)
    for label, secs, proj in (("full fit (anchor)", full_s, full), ("fit_sample", part_s, part)):
        _, trust = scores(proj.embedding, ys, xs)
        rows.append(_tsne_row(small, label, secs, full_s, trust, proj))
    del xs
    big_s, big = _tsne(mm, y, "auto" if n > FIT_SAMPLE_MIN_N else n // 20)
    print(f"  t-SNE N={n:,} default: {big_s:.0f} s, {load()}", flush=True)
    rows.append(_tsne_row(n, "default (fit_sample='auto')", big_s, full_s, None, big))
    del mm
    return rows


def _tsne_row(n: int, label: str, secs: float, anchor: float, trust, proj) -> str:
    q = proj.quality
    own = ", ".join(
        f"{k}={q[k]:.3f}"
        for k in ("trustworthiness", "trustworthiness_placed", "knn_accuracy")
        if isinstance(q.get(k), float)
    )
    own += f" (n_scored={q.get('n_scored')}, n_scored_placed={q.get('n_scored_placed', '-')})"
    cell = "-" if trust is None else f"{trust:.3f}"
    return (
        f"| {n:,} | {label} | {secs:.0f} | {anchor / secs:.2f}x | {proj.params['n_fitted']:,} | "
        f"{proj.params['n_placed']:,} | {cell} | {own} |"
    )


def tensorboard_table(tmp: Path, n: int, d: int) -> list[str]:
    """featviz.to_tensorboard of n x d data: rows kept, dropped, files and their size."""
    import warnings

    import featviz

    path = tmp / "million.npy"
    if not path.exists():
        make_clustered(path, n, d)
    mm = np.load(path, mmap_mode="r")
    y = np.load(path.with_suffix(".labels.npy"))
    logdir = tmp / "tb"
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = featviz.to_tensorboard(logdir, features=mm, labels=y)
    secs = time.perf_counter() - t
    files = sorted(p for p in logdir.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    kept = out.rows.size
    print(f"  to_tensorboard: {secs:.0f} s, {kept:,} rows kept, {size / 1e6:.0f} MB, {load()}")
    for w in caught:
        print(f"  warning: {w.message}")
    biggest = max(files, key=lambda p: p.stat().st_size)
    return [
        "| N x D | rows kept | rows dropped | files | total size | largest file | seconds |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
        f"| {n:,} x {d} float32 ({mm.nbytes / 1e9:.2f} GB) | {kept:,} | {n - kept:,} | "
        f"{len(files)} | {size / 1e6:.0f} MB | {biggest.name} ({biggest.stat().st_size / 1e6:.0f} "
        f"MB) | {secs:.0f} |",
    ]


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
    ap.add_argument("--million", action="store_true", help="1M x 512: PCA-2 and t-SNE")
    ap.add_argument("--tensorboard", action="store_true", help="to_tensorboard of 1M x 512")
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
        n, d = (5000, 4096) if args.quick else (20000, 25088)
        tmp = Path(tempfile.mkdtemp(prefix="featviz-bench-", dir=args.tmp))
        try:
            print("PCA from a memory map:", flush=True)
            table = pca_table(n, d, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print("\n" + "\n".join(table) + "\n", flush=True)
    if args.million or args.tensorboard:
        n, d, small, fit = (
            (20_000, 64, 5_000, 500) if args.quick else (1_000_000, 512, 100_000, 5_000)
        )
        tmp = Path(tempfile.mkdtemp(prefix="featviz-bench-", dir=args.tmp))
        try:
            if args.million:
                print(f"{n:,} x {d}:", flush=True)
                table = million_table(tmp, n, d, small, fit)
                print("\n" + "\n".join(table) + "\n", flush=True)
            if args.tensorboard:
                print("TensorBoard projector export:", flush=True)
                table = tensorboard_table(tmp, n, d)
                print("\n" + "\n".join(table) + "\n", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
