"""The model zoo: Grad-CAM with no layer and no reshape on torchvision and timm classifiers.

For each model (random weights, batch 2, the smallest input it allows, CPU by default):
`featviz.CAM` with ``layers=None`` is timed, and its maps are compared with

- Grad-CAM computed here by hand on an in-place-free copy of the model (every ``inplace``
  flag off), on the layer and with the reshape the auto layer reported
  (``cam.layers_``, ``cam.reshapes_``): the reference that must match;
- pytorch-grad-cam's ``GradCAM`` on the same layer module with the same reshape (its
  numpy maps at input size), when it is installed: informative only, it differs where a
  layer's output is changed in place afterwards (it pairs post-ReLU activations with
  pre-ReLU gradients, DenseNet's ``features.norm5``) and on near-zero raw maps (its
  ``1e-7`` in the min-max scaling).

Columns: model, layer chosen, reshape, input size, time of one featviz call (s), the
smallest per-image maximum of the raw (un-normalised) reference map, max |featviz -
reference| and max |featviz - pytorch-grad-cam| on the [0, 1] maps. A model that fails
gets a row with its error, and the run goes on.

Usage: ``python benchmarks/zoo.py [--quick] [--device cuda] [--only NAME ...]
[--skip NAME ...] [--no-torchvision] [--no-timm] [--out FILE [--resume]]``. timm models
are named ``timm:NAME``. ``--quick`` runs 10 torchvision and 2 timm models. With
``--out`` the markdown table is rewritten (atomically) after every model; ``--resume``
keeps the rows already in that file and runs only the missing models, so a long run can
be done in pieces.
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.metadata
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featviz.cam import CAM, NearZeroMapWarning
from featviz.hooks import capture

QUICK = [
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "mobilenet_v3_small",
    "regnet_x_400mf",
    "resnet18",
    "swin_t",
    "vgg11",
    "vit_b_16",
]
#: timm models: name -> (input side, whether the side is passed as ``img_size``).
TIMM: dict[str, tuple[int, bool]] = {
    "vit_tiny_patch16_224": (64, True),
    "deit_tiny_patch16_224": (64, True),
    "deit_tiny_distilled_patch16_224": (64, True),
    "deit3_small_patch16_224": (64, True),
    "beit_base_patch16_224": (64, True),
    "eva02_tiny_patch14_224": (56, True),
    "cait_xxs24_224": (64, True),
    "xcit_nano_12_p16_224": (64, False),
    "vit_small_patch14_reg4_dinov2": (56, True),
    "vit_base_patch16_siglip_224": (64, True),
    "flexivit_small": (64, True),
    "pit_ti_224": (64, True),
    "swin_tiny_patch4_window7_224": (64, True),
    "swinv2_tiny_window8_256": (64, True),
    "swinv2_cr_tiny_ns_224": (64, True),
    "volo_d1_224": (64, True),
    "coat_lite_tiny": (64, True),
    "coat_tiny": (64, True),
    "levit_128s": (128, True),
    "efficientformer_l1": (224, False),
    "efficientformerv2_s0": (64, True),
    "maxvit_pico_rw_256": (64, True),
    "coatnet_pico_rw_224": (64, True),
    "mvitv2_tiny": (64, False),
    "pvt_v2_b0": (64, False),
    "tiny_vit_5m_224": (64, False),
    "gcvit_xxtiny": (64, True),
    "nest_tiny": (64, True),
    "davit_tiny": (64, False),
    "hiera_tiny_224": (64, True),
    "crossvit_tiny_240": (240, False),
    "mixer_s16_224": (64, True),
    "resmlp_12_224": (64, True),
    "gmlp_ti16_224": (64, True),
    "sequencer2d_s": (64, False),
    "convmixer_768_32": (64, False),
    "poolformer_s12": (64, False),
    "convnext_atto": (64, False),
    "convnextv2_atto": (64, False),
    "inception_next_tiny": (64, False),
    "focalnet_tiny_srf": (64, False),
    "efficientnet_b0": (64, False),
    "tf_efficientnetv2_b0": (64, False),
    "mobilenetv3_small_050": (64, False),
    "mobilenetv4_conv_small": (64, False),
    "ghostnet_100": (64, False),
    "mobilevit_xxs": (64, False),
    "fastvit_t8": (64, False),
    "edgenext_xx_small": (64, False),
    "efficientvit_b0": (64, False),
    "resnet18": (64, False),
    "resnext26ts": (64, False),
    "resnest14d": (64, False),
    "regnety_002": (64, False),
    "nfnet_l0": (64, False),
    "repvgg_a0": (64, False),
    "densenet121": (64, False),
    "dla34": (64, False),
    "hrnet_w18_small": (64, False),
    "cspresnet50": (64, False),
    "xception41": (64, False),
    "inception_v3": (107, False),
}
#: torchvision input sides where 64x64 is too small, or not a multiple of the patch size
#: (Inception-v3: 107 is the smallest side whose last blocks are 2x2, not 1x1).
SIZES = {"inception_v3": 107, "maxvit_t": 224, "vit_h_14": 56}
HEADER = [
    "model",
    "layer chosen",
    "reshape",
    "input",
    "time (s)",
    "raw max",
    "max diff vs reference",
    "max diff vs pytorch-grad-cam",
]


def _torchvision(name: str) -> tuple[nn.Module, int]:
    import torchvision

    size = SIZES.get(name, 64)
    kwargs: dict[str, Any] = {"weights": None}
    if name.startswith("vit_"):
        kwargs["image_size"] = size
    if name in ("googlenet", "inception_v3"):
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = False
    return torchvision.models.get_model(name, **kwargs), size


def _timm(name: str) -> tuple[nn.Module, int]:
    import timm

    size, pass_size = TIMM[name.removeprefix("timm:")]
    kwargs: dict[str, Any] = {"img_size": size} if pass_size else {}
    return timm.create_model(name.removeprefix("timm:"), pretrained=False, **kwargs), size


def _no_zero_weights(model: nn.Module) -> None:
    """Give all-zero weight matrices random values (N(0, 0.02)).

    Zero-initialised heads (torchvision's ViT) would make every gradient, and so every
    map, zero: a comparison that cannot fail.
    """
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2 and not p.any():
                p.normal_(0, 0.02)


def _raw(act: torch.Tensor, grad: torch.Tensor, reshape: Any) -> torch.Tensor:
    """The Grad-CAM map before normalisation (N, 1, h, w): ReLU of the weighted channels."""
    if reshape is not None:
        act, grad = reshape(act), reshape(grad)
    return (grad.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True).clamp_min(0)


def _reference(
    model: nn.Module, x: torch.Tensor, layer: str, reshape: Any, tries: int = 10
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """Grad-CAM by hand on an in-place-free copy.

    Each image's target is its arg-max class, or when that map is all zero (every
    weighted sum negative, frequent with random weights) the next best-scoring class
    among the ``tries`` best whose map is not, so that the comparison can fail.

    Returns:
        The targets (N,), the [0, 1] maps (N, H, W), the smallest per-image maximum
        of the raw maps, and the raw maps at input size (N, H, W).
    """
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if hasattr(m, "inplace"):
            setattr(m, "inplace", False)  # noqa: B010 (a module attribute mypy cannot see)
    with capture(model, layer, detach=False) as cap:
        logits = model(x)
    act = cap.activations[layer]
    ranked = logits.detach().argsort(1, descending=True)[:, :tries]
    rows = torch.arange(len(x))
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for k in range(ranked.shape[1]):
        (g,) = torch.autograd.grad(logits[rows, ranked[:, k]].sum(), act, retain_graph=True)
        raw_k = _raw(act.detach(), g, reshape)
        if k == 0:
            target, raw = ranked[:, 0].clone(), raw_k
        take = (raw_k.flatten(1).amax(1) > 0) & ~done
        target[take], raw[take] = ranked[take, k], raw_k[take]
        done |= take
        if done.all():
            break
    up = nn.functional.interpolate(raw.float(), x.shape[-2:], mode="bilinear", align_corners=False)
    up = up[:, 0]
    lo = up.amin((1, 2), keepdim=True)
    span = up.amax((1, 2), keepdim=True) - lo
    maps = torch.where(span > 0, (up - lo) / span.clamp_min(1e-30), torch.zeros_like(up))
    return target, maps, float(raw.flatten(1).amax(1).min()), up


def _grad_cam_package(
    model: nn.Module, x: torch.Tensor, layer: str, reshape: Any, target: torch.Tensor
) -> torch.Tensor:
    """pytorch-grad-cam's GradCAM maps (N, H, W) on the same module, reshape and targets."""
    from pytorch_grad_cam import GradCAM  # type: ignore[import-untyped]
    from pytorch_grad_cam.utils.model_targets import (  # type: ignore[import-untyped]
        ClassifierOutputTarget,
    )

    targets = [ClassifierOutputTarget(int(t)) for t in target]
    try:
        with GradCAM(model, [model.get_submodule(layer)], reshape_transform=reshape) as method:
            maps = method(input_tensor=x, targets=targets)
    finally:
        model.zero_grad(set_to_none=True)
    return torch.from_numpy(maps).to(x.device)


def _row(name: str, make: Callable[[str], tuple[nn.Module, int]], device: str) -> list[str]:
    """One table row; an error becomes a row too."""
    try:
        torch.manual_seed(0)
        model, size = make(name)
        _no_zero_weights(model)
        model = model.to(device).eval()
        x = torch.rand(2, 3, size, size, device=device)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            cam = CAM(model, progress=False)
            start = time.perf_counter()
            maps = cam(x)
            elapsed = time.perf_counter() - start
            noise = any(issubclass(w.category, NearZeroMapWarning) for w in record)
            assert cam.layers_ is not None
            layer, reshape = cam.layers_[0], cam.reshapes_[0]
            target, ref, raw_max, ref_raw = _reference(model, x, layer, reshape)
            with torch.no_grad():
                argmax = model(x).argmax(1)
            if not torch.equal(target, argmax):  # an arg-max map was all zero
                maps = cam(x, target=target.tolist())
            diff = float((maps - ref).abs().max())
            note = ""
            if noise and diff > 1e-4:  # featviz warned: the [0, 1] maps show rounding
                raw = CAM(model, layer, normalize=False, progress=False)(x, target.tolist())
                rel = float((raw - ref_raw).abs().max() / ref_raw.abs().max().clamp_min(1e-30))
                note = f" (noise-level map, warned; raw maps equal to {rel:.0e} relative)"
            try:
                other_maps = _grad_cam_package(model, x, layer, reshape, target)
                other = f"{float((maps - other_maps).abs().max()):.1e}"
            except ImportError:
                other = "not installed"
            except Exception as exc:
                other = f"{type(exc).__name__}: {str(exc)[:60]}"
        ok = bool(torch.isfinite(maps).all()) and 0 <= float(maps.min()) <= float(maps.max()) <= 1
        shown = repr(reshape) if reshape is not None else "-"
        return [
            name,
            f"`{layer}`",
            shown,
            f"{size}x{size}",
            f"{elapsed:.2f}",
            f"{raw_max:.1e}",
            f"{diff:.1e}" + note + ("" if ok else " (maps not finite in [0, 1])"),
            other,
        ]
    except Exception as exc:  # a row per model, whatever happens
        message = " ".join(str(exc).split())[:120].replace("|", "/")
        return [name, "error", f"{type(exc).__name__}: {message}", "-", "-", "-", "-", "-"]
    finally:
        gc.collect()


def _versions() -> str:
    found = []
    for package in ("torch", "torchvision", "timm", "transformers", "grad-cam"):
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package} not installed")
    return ", ".join(found)


def _summary(rows: list[list[str]]) -> list[str]:
    """Counts: rows, matches (<= 1e-4 on maps that are not all zero), errors, worst diffs."""
    done = [r for r in rows if r[1] != "error"]
    zero = [r[0] for r in done if float(r[5]) == 0]
    compared = [r for r in done if float(r[5]) > 0]
    diffs = [float(r[6].split()[0]) for r in compared]
    match = sum(d <= 1e-4 and "(" not in r[6] for d, r in zip(diffs, compared, strict=True))
    noise = [r[0] for r in compared if "noise-level" in r[6]]
    others = [float(r[7]) for r in compared if r[7][:1].isdigit()]
    worst = max(zip(diffs, (r[0] for r in compared), strict=True), default=(0.0, "-"))
    return [
        f"{len(rows)} models: {match} equal to the reference (max diff <= 1e-4), "
        f"{len(compared) - match - len(noise)} different, "
        f"{len(noise)} noise-level maps that featviz warns about and whose raw maps equal the "
        f"reference ({', '.join(noise) or '-'}), {len(rows) - len(done)} errors, "
        f"{len(zero)} with all-zero maps (not compared: {', '.join(zero) or '-'}). "
        f"Largest diff vs reference: {worst[0]:.1e} ({worst[1]}); "
        f"{sum(d > 1e-4 for d in others)} of {len(others)} differ from pytorch-grad-cam by more "
        "than 1e-4."
    ]


def _table(rows: list[list[str]], header: str) -> str:
    lines = [
        header,
        "",
        "| " + " | ".join(HEADER) + " |",
        "| " + " | ".join("---" for _ in HEADER) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        *_summary(rows),
    ]
    return "\n".join(lines)


def _read_rows(path: str) -> dict[str, list[str]]:
    """The rows of a table this script wrote (for --resume), by model name."""
    if not Path(path).exists():
        return {}
    rows = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == len(HEADER) and cells[0] not in ("model", "---"):
            rows[cells[0]] = cells
    return rows


def _write(path: str, text: str) -> None:
    from featviz._io import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def _all_names(quick: bool) -> list[str]:
    """Every model of a run, in table order: torchvision's, then timm's (``timm:NAME``)."""
    import torchvision

    names = QUICK if quick else torchvision.models.list_models(module=torchvision.models)
    return [*names, *(f"timm:{n}" for n in (list(TIMM)[:2] if quick else TIMM))]


def _names(args: argparse.Namespace) -> list[str]:
    """The models this run computes: ``--only``, ``--skip``, ``--no-*`` applied."""
    names = _all_names(args.quick)
    if args.no_torchvision:
        names = [n for n in names if n.startswith("timm:")]
    if args.no_timm:
        names = [n for n in names if not n.startswith("timm:")]
    if args.only:
        names = [n for n in names if n in args.only]
    return [n for n in names if n not in (args.skip or [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 torchvision + 2 timm models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="+", help="run only these models (timm:NAME for timm)")
    parser.add_argument("--skip", nargs="+", help="leave these models out")
    parser.add_argument("--no-torchvision", action="store_true")
    parser.add_argument("--no-timm", action="store_true")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --out")
    args = parser.parse_args()
    names = _names(args)
    order = {n: i for i, n in enumerate(_all_names(args.quick))}
    done = _read_rows(args.out) if args.out and args.resume else {}
    header = f"{_versions()}; device {args.device}, batch 2, random weights."
    print(header, flush=True)
    for name in names:
        if name in done:
            continue
        make = _timm if name.startswith("timm:") else _torchvision
        done[name] = _row(name, make, args.device)
        print("| " + " | ".join(done[name]) + " |", flush=True)
        if args.out:  # after every model, so that an interrupted run keeps its rows
            rows = sorted(done.values(), key=lambda r: order.get(r[0], len(order)))
            _write(args.out, _table(rows, header))
    rows = sorted(done.values(), key=lambda r: order.get(r[0], len(order)))
    print("\n" + _table(rows, header))


if __name__ == "__main__":
    main()
