"""Benchmark: colourised heatmap overlays, featviz batched vs per-image OpenCV loop.

64 heatmaps 7x7 are normalised, resized to 224x224, coloured with JET and blended over
64 RGB uint8 images (alpha 0.4). Compared, in one run:

* ``featviz.overlay`` on the whole batch (numpy in/out, tensor in/out, OpenCV's JET table
  and matplotlib's "jet"; a float (N, 3, H, W) tensor in [0, 1], which is first
  converted to channel-last float32 in [0, 255]);
* the per-image OpenCV loop most scripts use: ``cv2.resize`` + ``cv2.applyColorMap`` +
  ``cv2.cvtColor`` + ``cv2.addWeighted``;
* the pure-Python bilinear loop from blog posts (on a few maps, extrapolated to 64).

Each time is the best of several interleaved repeats. ``--threads 1`` (default) pins torch
and OpenCV to one thread each: on a shared machine that is the fair comparison; pass
``--threads 0`` to keep the libraries' defaults.

Run: ``python benchmarks/overlay.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

import featviz


def opencv_loop(images: np.ndarray, heats: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty_like(images)
    h, w = images.shape[1:3]
    for i in range(len(images)):
        cam = heats[i]
        cam = (cam - cam.min()) / max(float(cam.max() - cam.min()), 1e-12)
        cam = cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR)
        colour = cv2.applyColorMap(np.uint8(255 * cam), cv2.COLORMAP_JET)
        colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
        out[i] = cv2.addWeighted(images[i], 1 - alpha, colour, alpha, 0)
    return out


def python_bilinear(src: list[list[float]], out_h: int, out_w: int) -> list[list[float]]:
    """The nested-loop bilinear resize of many blog posts (half-pixel centres)."""
    in_h, in_w = len(src), len(src[0])
    sy, sx = in_h / out_h, in_w / out_w
    out = []
    for i in range(out_h):
        y = max((i + 0.5) * sy - 0.5, 0.0)
        y0 = min(math.floor(y), in_h - 1)
        y1 = min(y0 + 1, in_h - 1)
        dy = y - y0
        row = []
        for j in range(out_w):
            x = max((j + 0.5) * sx - 0.5, 0.0)
            x0 = min(math.floor(x), in_w - 1)
            x1 = min(x0 + 1, in_w - 1)
            dx = x - x0
            top = src[y0][x0] * (1 - dx) + src[y0][x1] * dx
            bottom = src[y1][x0] * (1 - dx) + src[y1][x1] * dx
            row.append(top * (1 - dy) + bottom * dy)
        out.append(row)
    return out


def python_loop(images: np.ndarray, heats: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty_like(images)
    h, w = images.shape[1:3]
    for i in range(len(images)):
        cam = heats[i]
        cam = (cam - cam.min()) / max(float(cam.max() - cam.min()), 1e-12)
        big = np.asarray(python_bilinear(cam.tolist(), h, w), dtype=np.float32)
        colour = cv2.applyColorMap(np.uint8(255 * big), cv2.COLORMAP_JET)[..., ::-1]
        out[i] = cv2.addWeighted(images[i], 1 - alpha, np.ascontiguousarray(colour), alpha, 0)
    return out


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up (tables, allocator, OpenCV init)
        fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 1 Python map")
    parser.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    parser.add_argument("--size", type=int, default=224, help="image side (default 224)")
    parser.add_argument("--threads", type=int, default=1, help="threads, 0 = defaults")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    repeats = 5 if args.quick else 15
    py_maps = 1 if args.quick else 3
    alpha = 0.4
    n, size = args.n, args.size

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    heats = rng.random((n, 7, 7), dtype=np.float32)
    images_t = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, 3, H, W) view
    heats_t = torch.from_numpy(heats)
    images_f = images_t.float().div_(255.0).contiguous()  # (N, 3, H, W) float

    fns: dict[str, Callable[[], object]] = {
        "featviz.overlay, numpy in/out, cmap='cv2:jet'": lambda: featviz.overlay(
            images, heats, alpha=alpha, cmap="cv2:jet"
        ),
        "featviz.overlay, tensor in/out, cmap='cv2:jet'": lambda: featviz.overlay(
            images_t, heats_t, alpha=alpha, cmap="cv2:jet"
        ),
        "featviz.overlay, numpy in/out, cmap='jet' (matplotlib)": lambda: featviz.overlay(
            images, heats, alpha=alpha, cmap="jet"
        ),
        "featviz.overlay, float tensor (N, 3, H, W) in [0, 1], cmap='cv2:jet'": lambda: (
            featviz.overlay(images_f, heats_t, alpha=alpha, cmap="cv2:jet")
        ),
        "OpenCV per-image loop (resize + applyColorMap + addWeighted)": lambda: opencv_loop(
            images, heats, alpha
        ),
    }
    times = best_times(fns, repeats)
    start = time.perf_counter()
    py_out = python_loop(images[:py_maps], heats[:py_maps], alpha)
    py_time = (time.perf_counter() - start) / py_maps * n
    name_py = f"pure-Python bilinear loop ({py_maps} maps, extrapolated to {n})"
    times[name_py] = py_time

    ours = featviz.overlay(images, heats, alpha=alpha, cmap="cv2:jet")
    ref = opencv_loop(images, heats, alpha)
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    py_diff = np.abs(py_out.astype(np.int16) - ref[:py_maps].astype(np.int16))

    cv_name = next(k for k in times if k.startswith("OpenCV"))
    cv_time = times[cv_name]
    threads = f"{torch.get_num_threads()} torch / {cv2.getNumThreads()} OpenCV"
    print(
        f"overlay benchmark: {n} heatmaps 7x7 -> {size}x{size}, alpha {alpha}; "
        f"threads: {threads}; torch {torch.__version__}, OpenCV {cv2.__version__}, "
        f"{platform.machine()}; best of {repeats}"
    )
    print()
    print(f"| method | ms for {n} | ms per image | speed-up vs OpenCV loop |")
    print("| --- | ---: | ---: | ---: |")
    for name, t in times.items():
        print(f"| {name} | {t * 1e3:.1f} | {t * 1e3 / n:.3f} | {cv_time / t:.2f}x |")
    print()
    uint8 = [t for k, t in times.items() if k.startswith("featviz") and "float" not in k]
    floats = next(t for k, t in times.items() if "float" in k)
    print(
        f"featviz batched, uint8 images (slowest of the 3 variants) vs OpenCV loop: "
        f"{cv_time / max(uint8):.2f}x faster (target >= 2x); float images: "
        f"{cv_time / floats:.2f}x; pure-Python loop vs featviz: "
        f"{py_time / max(uint8):.0f}x slower."
    )
    print(
        f"agreement with the OpenCV loop: max |diff| = {int(diff.max())} levels, "
        f"{(diff == 0).mean():.4%} of values identical; pure-Python loop max |diff| = "
        f"{int(py_diff.max())}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
