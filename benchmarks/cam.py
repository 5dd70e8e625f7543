"""Benchmark featviz CAMs against the autograd floor, pytorch-grad-cam and torchcam.

Grad-CAM: torchvision models with ``weights=None``, batch 8, 224x224, arg-max targets,
maps upsampled to 224x224, for each of ``--arch`` (default all three):

- ``resnet50``, layer ``layer4`` (named);
- ``vit_b_16`` and ``convnext_tiny`` with featviz's auto layer and reshape
  (``layers=None``); the layer and reshape it picks (``CAM.layers_``,
  ``CAM.reshapes_``: ``encoder.layers.encoder_layer_11.ln_1`` with the class token
  dropped and the 14x14 token grid, and ``features.7.2``) are then given to the floor
  and the anchors.

Rows per model:

- floor: one forward with autograd + ``torch.autograd.grad`` of the target scores w.r.t.
  the layer's output (what any Grad-CAM must do at least);
- featviz ``grad_cam`` (a reused `featviz.CAM` object, maps normalised at 224x224); for
  the auto-layer models also the same call with the layer named, which shows what
  finding the layer costs;
- pytorch-grad-cam 1.5.7 ``GradCAM`` (numpy maps at 224x224), with the usual ViT
  ``reshape_transform`` for token layers;
- torchcam ``GradCAM`` + ``F.interpolate`` to 224x224 (with the same
  ``reshape_transform`` where the installed torchcam takes one, else the row is left
  out).

Score-CAM: featviz (masked batches sized from memory, its default) vs featviz with the
old fixed batch (16 per pass on the CPU, 64 elsewhere), pytorch-grad-cam ``ScoreCAM``
and the floor (the N * C masked forward passes alone, masks built beforehand), timed
round-robin. ``--no-gradcam`` runs the Score-CAM rows only. On a CPU the default
is smaller (``resnet18``, 1 image, 112x112: 512 masked forward passes per image instead
of 2048): choose with ``--scorecam-arch/--scorecam-batch/--scorecam-size``. For the map
comparison pytorch-grad-cam's mask upsampling (``UpsamplingBilinear2d``, i.e.
``align_corners=True``) is switched to ``align_corners=False`` (featviz's convention,
also torchcam's and the original Score-CAM code's) during its run.

Install the anchors into the venv for the benchmark only:
``pip install grad-cam==1.5.7 torchcam==0.5.0``.

Usage: ``python benchmarks/cam.py [--quick] [--arch vit_b_16,convnext_tiny] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
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


#: Grad-CAM models (torchvision constructors, weights=None) -> featviz's ``layers``
#: (None: featviz's auto layer and reshape, which the floor and the anchors then use)
ARCHS: dict[str, str | None] = {"resnet50": "layer4", "vit_b_16": None, "convnext_tiny": None}


def vit_grid(tokens: torch.Tensor) -> torch.Tensor:
    """ViT tokens (N, 1 + s*s, C) -> (N, C, s, s): pytorch-grad-cam's tutorial reshape."""
    n, t, c = tokens.shape
    s = math.isqrt(t - 1)
    return tokens[:, 1:, :].reshape(n, s, s, c).permute(0, 3, 1, 2)


def chosen_layer(
    model: torch.nn.Module, layers: str | None, x: torch.Tensor
) -> tuple[str, Callable[[torch.Tensor], torch.Tensor] | None, str]:
    """featviz's layer for ``layers`` and the reshape the anchors get for it.

    Returns the layer key, `vit_grid` or None (the layer gives (N, C, h, w) already)
    and featviz's description of its reshape. The map comparison with pytorch-grad-cam
    then checks that `vit_grid` reads the tokens as featviz does.
    """
    import featviz

    cam = featviz.CAM(model, layers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the auto layer's "no layer given" warning
        cam(x[:1])
    model.zero_grad(set_to_none=True)
    (key,), (reshape,) = cam.layers_, cam.reshapes_
    if reshape is None:
        return key, None, "none"
    if not repr(reshape).startswith("tokens[:, 1:] ->"):
        raise SystemExit(f"featviz reads {key!r} as {reshape!r}; the benchmark has no such reshape")
    return key, vit_grid, repr(reshape)


def torchcam_reshapes() -> bool:
    """Whether the installed torchcam takes a ``reshape_transform`` (token layers)."""
    import inspect

    from torchcam.methods.core import _CAM

    return "reshape_transform" in inspect.signature(_CAM.__init__).parameters


def grad_cam_rows(
    arch: str, args: argparse.Namespace, device: torch.device
) -> list[tuple[str, float, str]]:
    import torchcam
    import torchvision.models as tvm
    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from torchcam.methods import GradCAM as TcGradCAM

    import featviz

    torch.manual_seed(0)
    model = getattr(tvm, arch)(weights=None).to(device).eval()
    if arch == "vit_b_16":
        # torchvision zero-initialises ViT's head: every logit and gradient would be 0
        # and every map constant (all zeros), which compares nothing; this seed gives
        # maps with positive and negative parts before the ReLU
        head = model.heads.head.weight
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            head.copy_(0.02 * torch.randn(head.shape, generator=g).to(head.device))
    n, size = args.batch, args.size
    x = torch.rand(n, 3, size, size, device=device)
    layers = ARCHS[arch]
    key, reshape, how = chosen_layer(model, layers, x)
    layer = model.get_submodule(key)
    print(f"{arch}: featviz layers={layers!r} -> {key!r}, reshape {how}")

    def floor() -> torch.Tensor:
        store: dict[str, torch.Tensor] = {}
        h = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        try:
            logits = model(x)
        finally:
            h.remove()
        scores = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        (g,) = torch.autograd.grad(scores, store["a"])
        return g

    cam = featviz.CAM(model, layers, method="gradcam")
    cam_key = featviz.CAM(model, key, method="gradcam")

    def ours() -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the auto layer's "no layer given" warning
            return cam(x)

    def pgc_run() -> np.ndarray:
        # hooks attached only for its own calls (pytorch-grad-cam hooks at construction)
        with PgcGradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as pgc:
            return pgc(input_tensor=x, targets=None)

    tc_kwargs = {} if reshape is None else {"reshape_transform": reshape}

    def torchcam_run() -> torch.Tensor:
        with TcGradCAM(model, key, **tc_kwargs) as extractor:
            logits = model(x)
            (c,) = extractor(class_idx=logits.argmax(1).tolist(), scores=logits)
        return F.interpolate(c[:, None], size=(size, size), mode="bilinear", align_corners=False)

    # (row name, function, its maps as numpy for the comparison, or None)
    runs: list[tuple[str, Callable[[], Any], Callable[[Any], np.ndarray] | None]] = [
        ("floor (forward + autograd.grad)", floor, None),
        (f"featviz (layers={layers!r})", ours, None),
    ]
    if layers is None:  # the same call with the layer named: what the auto layer costs
        runs.append((f"featviz (layers={key!r})", lambda: cam_key(x), lambda m: m.cpu().numpy()))
    runs.append(("pytorch-grad-cam 1.5.7", pgc_run, lambda m: m))
    if reshape is None or torchcam_reshapes():
        tc_name = f"torchcam {torchcam.__version__} + interpolate"
        runs.append((tc_name, torchcam_run, lambda m: m[:, 0].detach().cpu().numpy()))
    else:
        print(f"{arch}: torchcam {torchcam.__version__} takes no reshape_transform; row omitted")
    # interleaved repetitions: every method sees the same machine load
    results = timeit_interleaved([fn for _, fn, _ in runs], device, args.repeats)
    model.zero_grad(set_to_none=True)  # pytorch-grad-cam calls .backward()
    maps = results[1][1].cpu().numpy()
    rows: list[tuple[str, float, str]] = []
    for (name, _, as_numpy), (t, out) in zip(runs, results, strict=True):
        diff = "-" if as_numpy is None else f"{float(np.abs(maps - as_numpy(out)).max()):.1e}"
        if name.startswith("torchcam"):
            diff += " (*)"
        rows.append((f"Grad-CAM {arch}: {name}", t, diff))
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
    # the rule before featviz sized the batches from memory: 16 per pass on the CPU
    old = featviz.CAM(
        model, "layer4", method="scorecam", batch_size=16 if device.type == "cpu" else 64
    )
    old.progress = False
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
                (t_floor, _), (t_ours, maps), (t_old, _), (t_pgc, ref) = timeit_interleaved(
                    [
                        floor,
                        lambda: cam(x),
                        lambda: old(x),
                        lambda: pgc(input_tensor=x, targets=None),
                    ],
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
        (f"Score-CAM: featviz, fixed {old.batch_size} per pass (the old rule)", t_old, "-"),
        (f"Score-CAM: pytorch-grad-cam ({what})", t_pgc, f"{d:.1e}"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="batch 2, fewer repeats")
    p.add_argument(
        "--arch",
        default=",".join(ARCHS),
        help=f"Grad-CAM models, comma-separated, of {list(ARCHS)} (default: all)",
    )
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
    p.add_argument("--no-gradcam", action="store_true", help="Score-CAM rows only")
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 is steadier on a busy CPU)"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    if not archs or any(a not in ARCHS for a in archs):
        p.error(f"--arch must name models of {list(ARCHS)}. Got {args.arch!r} instead.")
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
        f"Grad-CAM: {', '.join(archs)}, batch={args.batch} {args.size}x{args.size}, "
        f"median of {args.repeats}"
    )
    rows: list[tuple[str, float, str]] = []
    for arch in [] if args.no_gradcam else archs:
        rows += grad_cam_rows(arch, args, device)
    if not args.no_scorecam:
        if not cuda:
            print(
                f"Score-CAM on CPU: reduced setting {args.scorecam_arch}, batch "
                f"{args.scorecam_batch}, {args.scorecam_size}x{args.scorecam_size} "
                "(resnet50 x8 @224 means 16384 forward passes)"
            )
        rows += score_cam_rows(args, device)
    # each family's first row is its floor, its second featviz
    by_family: dict[str, list[float]] = {}
    for name, t, _ in rows:
        by_family.setdefault(name.split(":")[0], []).append(t)
    floors = {family: times[0] for family, times in by_family.items()}
    ours = {family: times[1] for family, times in by_family.items()}
    print()
    print("| method | time (ms) | vs floor | featviz speed-up | max abs diff vs featviz |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, t, diff in rows:
        family = name.split(":")[0]
        speed = f"{t / ours[family]:.2f}x"
        print(f"| {name} | {t * 1e3:.1f} | {t / floors[family]:.2f}x | {speed} | {diff} |")
    print()
    print(
        "(*) torchcam normalises at the layer's resolution (7x7, 14x14) before upsampling, "
        "featviz after it (as pytorch-grad-cam), so the maps differ by design."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
