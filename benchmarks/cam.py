"""Benchmark featviz CAMs against the autograd floor, pytorch-grad-cam and torchcam.

Grad-CAM: torchvision ``resnet50(weights=None)``, batch 8, 224x224, layer ``layer4``,
arg-max targets, maps upsampled to 224x224. Rows:

- floor: one forward with autograd + ``torch.autograd.grad`` of the target scores w.r.t.
  the layer4 output (what any Grad-CAM must do at least);
- featviz ``grad_cam`` (reused `featviz.CAM` object, maps normalised at 224x224);
- pytorch-grad-cam 1.5.7 ``GradCAM`` (numpy maps at 224x224);
- torchcam 0.5 ``GradCAM`` + ``F.interpolate`` to 224x224.

Score-CAM: featviz vs pytorch-grad-cam ``ScoreCAM`` and the floor (the N * C masked
forward passes alone, masks built beforehand), timed round-robin. On a CPU the default
is smaller (``resnet18``, 1 image, 112x112: 512 masked forward passes per image instead
of 2048): choose with ``--scorecam-arch/--scorecam-batch/--scorecam-size``. For the map
comparison pytorch-grad-cam's mask upsampling (``UpsamplingBilinear2d``, i.e.
``align_corners=True``) is switched to ``align_corners=False`` (featviz's convention,
also torchcam's and the original Score-CAM code's) during its run.

Install the anchors into the venv for the benchmark only:
``pip install grad-cam==1.5.7 torchcam==0.5.0``.

Usage: ``python benchmarks/cam.py [--quick] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(
    fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1
) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls after ``warmup`` calls, and the last result."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def timeit_interleaved(
    fns: list[Callable[[], Any]], device: torch.device, repeats: int
) -> list[tuple[float, Any]]:
    """Like `timeit` for several functions, run round-robin (one warm-up round)."""
    times: list[list[float]] = [[] for _ in fns]
    outs: list[Any] = [None] * len(fns)
    for r in range(repeats + 1):
        for i, fn in enumerate(fns):
            _sync(device)
            start = time.perf_counter()
            outs[i] = fn()
            _sync(device)
            if r:
                times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), o) for t, o in zip(times, outs, strict=True)]


@contextlib.contextmanager
def pgc_align_corners_false() -> Iterator[None]:
    """Make pytorch-grad-cam's ScoreCAM upsample masks with align_corners=False."""
    import pytorch_grad_cam.score_cam as sc

    class Up(torch.nn.Module):
        def __init__(self, size: Any) -> None:
            super().__init__()
            self.size = size

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=self.size, mode="bilinear", align_corners=False)

    original = sc.torch.nn.UpsamplingBilinear2d
    sc.torch.nn.UpsamplingBilinear2d = Up
    try:
        yield
    finally:
        sc.torch.nn.UpsamplingBilinear2d = original


def grad_cam_rows(args: argparse.Namespace, device: torch.device) -> list[tuple[str, float, str]]:
    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from torchcam.methods import GradCAM as TcGradCAM
    from torchvision.models import resnet50

    import featviz

    torch.manual_seed(0)
    model = resnet50(weights=None).to(device).eval()
    n, size = args.batch, args.size
    x = torch.rand(n, 3, size, size, device=device)

    def floor() -> torch.Tensor:
        store: dict[str, torch.Tensor] = {}
        h = model.layer4.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        try:
            logits = model(x)
        finally:
            h.remove()
        scores = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        (g,) = torch.autograd.grad(scores, store["a"])
        return g

    cam = featviz.CAM(model, "layer4", method="gradcam")

    def ours() -> torch.Tensor:
        return cam(x)

    def pgc_run() -> np.ndarray:
        # hooks attached only for its own calls (pytorch-grad-cam hooks at construction)
        with PgcGradCAM(model=model, target_layers=[model.layer4]) as pgc:
            return pgc(input_tensor=x, targets=None)

    def torchcam_run() -> torch.Tensor:
        with TcGradCAM(model, "layer4") as extractor:
            logits = model(x)
            (c,) = extractor(class_idx=logits.argmax(1).tolist(), scores=logits)
        return F.interpolate(c[:, None], size=(size, size), mode="bilinear", align_corners=False)

    # interleaved repetitions: every method sees the same machine load
    (t_floor, _), (t_ours, maps), (t_pgc, ref), (t_tc, tc) = timeit_interleaved(
        [floor, ours, pgc_run, torchcam_run], device, args.repeats
    )
    model.zero_grad(set_to_none=True)  # pytorch-grad-cam and torchcam call .backward()
    maps = maps.cpu().numpy()
    tc = tc[:, 0].detach().cpu().numpy()
    rows: list[tuple[str, float, str]] = []
    d_pgc = float(np.abs(maps - ref).max())
    d_tc = float(np.abs(maps - tc).max())
    rows.append(("Grad-CAM: floor (forward + autograd.grad)", t_floor, "-"))
    rows.append(("Grad-CAM: featviz", t_ours, "-"))
    rows.append(("Grad-CAM: pytorch-grad-cam 1.5.7", t_pgc, f"{d_pgc:.1e}"))
    rows.append(("Grad-CAM: torchcam 0.5.0 + interpolate", t_tc, f"{d_tc:.1e} (*)"))
    return rows


def score_cam_rows(args: argparse.Namespace, device: torch.device) -> list[tuple[str, float, str]]:
    import torchvision.models as tvm
    from pytorch_grad_cam import ScoreCAM as PgcScoreCAM

    import featviz

    torch.manual_seed(0)
    model = getattr(tvm, args.scorecam_arch)(weights=None).to(device).eval()
    n, size = args.scorecam_batch, args.scorecam_size
    x = torch.rand(n, 3, size, size, device=device)
    cam = featviz.CAM(model, "layer4", method="scorecam", batch_size=args.scorecam_chunk)
    cam.progress = False
    # the floor: only the N * C masked forward passes (masks built beforehand, no hooks,
    # pytorch-grad-cam's 16 per pass), which every Score-CAM implementation must run
    with torch.no_grad(), featviz.capture(model, "layer4") as cap:
        model(x)
    acts = cap.activations["layer4"]
    up = F.interpolate(acts, size=(size, size), mode="bilinear", align_corners=False)
    lo, hi = up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)
    masks = ((up - lo) / (hi - lo + 1e-8)).flatten(0, 1)  # (N * C, H, W)
    images = x.repeat_interleave(acts.shape[1], 0)  # (N * C, 3, H, W)
    floor_chunk = args.scorecam_chunk or 16

    def floor() -> None:
        with torch.no_grad():
            for i in range(0, len(masks), floor_chunk):
                model(images[i : i + floor_chunk] * masks[i : i + floor_chunk, None])

    reps = 2 if device.type == "cpu" else 3
    with pgc_align_corners_false(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with PgcScoreCAM(model=model, target_layers=[model.layer4]) as pgc:
            import tqdm

            # silence its per-image progress bars
            original = tqdm.tqdm
            tqdm.tqdm = lambda it, *a, **k: it  # type: ignore[assignment]
            try:
                (t_floor, _), (t_ours, maps), (t_pgc, ref) = timeit_interleaved(
                    [floor, lambda: cam(x), lambda: pgc(input_tensor=x, targets=None)],
                    device,
                    reps,
                )
            finally:
                tqdm.tqdm = original
    d = float(np.abs(maps.cpu().numpy() - ref).max())
    what = f"{args.scorecam_arch} x{n} @{size}"
    return [
        (f"Score-CAM: floor ({len(masks)} masked forwards, {floor_chunk} per pass)", t_floor, "-"),
        (f"Score-CAM: featviz ({what})", t_ours, "-"),
        (f"Score-CAM: pytorch-grad-cam ({what})", t_pgc, f"{d:.1e}"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="batch 2, fewer repeats")
    p.add_argument("--batch", type=int, default=None, help="Grad-CAM batch (default 8)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--scorecam-arch", default=None, help="resnet50 on CUDA, resnet18 on CPU")
    p.add_argument("--scorecam-batch", type=int, default=None, help="8 on CUDA, 1 on CPU")
    p.add_argument("--scorecam-size", type=int, default=None, help="224 on CUDA, 112 on CPU")
    p.add_argument(
        "--scorecam-chunk", type=int, default=None, help="featviz batch_size (default: its own)"
    )
    p.add_argument("--no-scorecam", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.batch = args.batch or (2 if args.quick else 8)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.scorecam_arch = args.scorecam_arch or ("resnet50" if cuda else "resnet18")
    args.scorecam_batch = args.scorecam_batch or (8 if cuda and not args.quick else 1)
    args.scorecam_size = args.scorecam_size or (224 if cuda else (64 if args.quick else 112))
    torch.backends.cudnn.benchmark = False
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"Grad-CAM: resnet50 batch={args.batch} {args.size}x{args.size} layer4, "
        f"median of {args.repeats}"
    )
    rows = grad_cam_rows(args, device)
    if not args.no_scorecam:
        if not cuda:
            print(
                f"Score-CAM on CPU: reduced setting {args.scorecam_arch}, batch "
                f"{args.scorecam_batch}, {args.scorecam_size}x{args.scorecam_size} "
                "(resnet50 x8 @224 means 16384 forward passes)"
            )
        rows += score_cam_rows(args, device)
    floors = {"Grad-CAM": rows[0][1]}
    ours = {"Grad-CAM": rows[1][1]}
    if not args.no_scorecam:
        floors["Score-CAM"] = rows[4][1]
        ours["Score-CAM"] = rows[5][1]
    print()
    print("| method | time (ms) | vs floor | featviz speed-up | max abs diff vs featviz |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, t, diff in rows:
        family = name.split(":")[0]
        speed = f"{t / ours[family]:.2f}x"
        print(f"| {name} | {t * 1e3:.1f} | {t / floors[family]:.2f}x | {speed} | {diff} |")
    print()
    print(
        "(*) torchcam normalises at the layer's 7x7 resolution before upsampling, "
        "featviz after it (as pytorch-grad-cam), so the maps differ by design."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
