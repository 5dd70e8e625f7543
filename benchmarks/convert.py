"""Benchmark: convert RGBA PNGs (512x512, textured) to JPEG; files/s and ratios in one run.

Rows:
  naive PIL loop    ``Image.open(p).convert("RGB").save(q, quality=95)`` (the anchor; it
                    drops alpha, so transparent pixels show whatever colour hides under them)
  featviz, 1 worker ``convert_images(..., workers=1)`` (serial; alpha composited on white)
  featviz, 2 threads ``convert_images(..., workers=2)`` (the thread pool featviz uses)
  process pool, 2   ``convert_image`` mapped over a 2-process pool (the alternative we
                    measured before choosing threads)

Usage: python benchmarks/convert.py [--quick] [--n N] [--size S] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from featviz.convert import convert_image, convert_images


def make_pngs(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """n RGBA PNGs with smooth colour texture, fine noise and a diagonal alpha ramp."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    ramp = np.clip((xx + yy) * 200 - 80, 0, 255).astype(np.uint8)
    paths = []
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), np.int16)
        noise = rng.integers(-20, 21, (size, size, 3), dtype=np.int16)
        rgb = np.clip(smooth + noise, 0, 255).astype(np.uint8)
        rgba = np.dstack([rgb, ramp])
        p = folder / f"img_{i:04d}.png"
        Image.fromarray(rgba, "RGBA").save(p, compress_level=1)
        paths.append(p)
    return paths


def naive(paths: list[Path], out: Path) -> None:
    for p in paths:
        Image.open(p).convert("RGB").save(out / f"{p.stem}.jpg", quality=95)


def _one(args: tuple[Path, Path]) -> Path:
    return convert_image(args[0], "jpg", dst=args[1], quality=95)


def process_pool(paths: list[Path], out: Path, workers: int) -> None:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_one, [(p, out / f"{p.stem}.jpg") for p in paths], chunksize=8))


def timed(fn, out: Path) -> float:  # type: ignore[no-untyped-def]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    start = time.perf_counter()
    fn(out)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 files instead of 500")
    ap.add_argument("--n", type=int, default=None, help="number of files")
    ap.add_argument("--size", type=int, default=512, help="image side")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs; best is kept")
    args = ap.parse_args(argv)
    n = args.n or (100 if args.quick else 500)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "src"
        src.mkdir()
        t0 = time.perf_counter()
        paths = make_pngs(src, n, args.size)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"generated {n} RGBA PNGs {args.size}x{args.size} ({mb:.0f} MB) in "
            f"{time.perf_counter() - t0:.1f} s; CPUs: {os.cpu_count()}"
        )

        def fv(workers: int):  # type: ignore[no-untyped-def]
            def run(out: Path) -> None:
                rep = convert_images(paths, "jpg", out_dir=out, workers=workers, progress=False)
                assert rep.ok and len(rep.converted) == n, rep.summary()

            return run

        rows = [
            ("naive PIL loop (drops alpha)", 1, lambda out: naive(paths, out)),
            ("featviz convert_images", 1, fv(1)),
            ("featviz convert_images (threads)", 2, fv(2)),
            ("convert_image on a process pool", 2, lambda out: process_pool(paths, out, 2)),
        ]
        times = [float("inf")] * len(rows)
        for _ in range(args.repeat):  # interleaved, best of: other load hits all rows alike
            for i, (_, _, fn) in enumerate(rows):
                times[i] = min(times[i], timed(fn, root / f"out{i}"))

        # correctness of the corner pixel (alpha 0): featviz white, naive shows hidden colour
        with (
            Image.open(root / "out0" / "img_0000.jpg") as a,
            Image.open(root / "out1" / "img_0000.jpg") as b,
        ):
            naive_px, fv_px = a.getpixel((0, 0)), b.getpixel((0, 0))

    base = n / times[0]
    print()
    print(
        f"Converting {n} RGBA PNGs ({args.size}x{args.size}) to JPEG (quality 95), "
        f"best of {args.repeat}"
    )
    print()
    print("| method | workers | seconds | files/s | vs naive |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (name, workers, _), t in zip(rows, times, strict=True):
        print(f"| {name} | {workers} | {t:.2f} | {n / t:.1f} | {n / t / base:.2f}x |")
    print()
    print(f"transparent corner pixel: naive {naive_px}, featviz {fv_px} (background white)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
