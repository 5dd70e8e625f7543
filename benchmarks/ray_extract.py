"""What does `extract_ray` cost against `extract` on one process? Measured in one run.

The same 2,048 images (3 x 64 x 64, fixed seed) and the same CNN (fixed seed) go through
``extract`` (one process, 1 torch thread, into a ``.npy`` store) and ``extract_ray`` with
1 worker and with ``--workers`` workers (1 CPU and 1 torch thread each), on a local Ray
started once before the timings (its start-up is not counted; each run's actor start-up
is). Prints wall seconds and the ratio to ``extract``, and checks the rows are equal.

Run: ``python benchmarks/ray_extract.py [--images 2048] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def model_fn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(128, 10),
    )  # fmt: skip


def dataset(n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 3, 64, 64, generator=g), torch.arange(n) % 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from featviz.extraction import extract
    from featviz.extraction_ray import extract_ray

    torch.set_num_threads(1)
    ds, layers, bs = dataset(args.images), ["3", "6"], args.batch_size
    tmp = Path(tempfile.mkdtemp(prefix="fvraybench"))
    ray.init(num_cpus=max(2, args.workers), include_dashboard=False, log_to_driver=False)
    try:
        t = time.perf_counter()
        ref = extract(model_fn(), DataLoader(ds, batch_size=bs), layers, pool="mean",
                      store=tmp / "one", progress=False)  # fmt: skip
        base = time.perf_counter() - t
        print(f"{args.images} images, batch {bs}; extract on one process: {base:.2f} s")
        for workers in sorted({1, args.workers}):
            t = time.perf_counter()
            fs = extract_ray(model_fn, ds, layers, store=tmp / f"ray{workers}", batch_size=bs,
                             pool="mean", concurrency=workers)  # fmt: skip
            secs = time.perf_counter() - t
            equal = all(
                np.array_equal(fs.layers[k], ref.layers[k]) for k in fs.layers
            ) and np.array_equal(fs.outputs, ref.outputs)
            print(
                f"extract_ray, {workers} worker(s): {secs:.2f} s = {secs / base:.2f} x extract "
                f"(speed-up {base / secs:.2f}); rows equal: {equal}",
                flush=True,
            )
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
