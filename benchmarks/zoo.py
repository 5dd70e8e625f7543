"""The model zoo: Grad-CAM with no layer and no reshape on every torchvision classifier.

For each model (random weights, batch 2, small input, CPU by default): `featviz.CAM`
with ``layers=None`` is timed, and its maps are compared with Grad-CAM computed here
by hand on an in-place-free copy of the model (every ``inplace`` flag off), on the layer
and with the reshape the auto layer reported (``cam.layers_``, ``cam.reshapes_``).
timm models are added when timm is installed (``pretrained=False``). Columns: model,
layer chosen, reshape, time of one call (s), max |featviz - reference|.

Usage: ``python benchmarks/zoo.py [--quick] [--device cuda] [--timm N] [--out FILE]``;
``--quick`` runs 10 models. The table is printed (markdown) and, with ``--out``,
written to that file.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from featviz.cam import CAM
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
TIMM = [
    "vit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224",
    "vit_small_patch16_224.dino",
    "swin_tiny_patch4_window7_224",
    "convnext_atto",
    "efficientnet_b0",
    "resnet18",
    "cait_xxs24_224",
    "beit_base_patch16_224",
    "eva02_tiny_patch14_224",
]
#: Input sizes where 64x64 is too small, or not a multiple of the patch size.
SIZES = {"inception_v3": 96, "maxvit_t": 224, "vit_h_14": 56}


def _size(name: str) -> int:
    return SIZES.get(name, 64)


def _torchvision(name: str) -> tuple[nn.Module, int]:
    import torchvision

    size = _size(name)
    kwargs: dict[str, Any] = {"weights": None}
    if name.startswith("vit_"):
        kwargs["image_size"] = size
    if name in ("googlenet", "inception_v3"):
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = False
    return torchvision.models.get_model(name, **kwargs), size


def _timm(name: str) -> tuple[nn.Module, int]:
    import timm

    model = timm.create_model(name, pretrained=False)
    size = int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    return model, size


def _reference(model: nn.Module, x: torch.Tensor, layer: str, reshape: Any) -> torch.Tensor:
    """Grad-CAM by hand on an in-place-free copy (arg-max targets)."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    with capture(model, layer, detach=False) as cap:
        logits = model(x)
    act = cap.activations[layer]
    target = logits.detach().argmax(1)
    (g,) = torch.autograd.grad(logits[torch.arange(len(x)), target].sum(), act)
    a, g = act.detach(), g
    if reshape is not None:
        a, g = reshape(a), reshape(g)
    raw = (g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True).clamp_min(0)
    up = nn.functional.interpolate(raw.float(), x.shape[-2:], mode="bilinear", align_corners=False)
    up = up[:, 0]
    lo = up.amin((1, 2), keepdim=True)
    span = up.amax((1, 2), keepdim=True) - lo
    return torch.where(span > 0, (up - lo) / span.clamp_min(1e-30), torch.zeros_like(up))


def _row(name: str, make: Callable[[str], tuple[nn.Module, int]], device: str) -> list[str]:
    try:
        torch.manual_seed(0)
        model, size = make(name)
        model = model.to(device).eval()
        x = torch.rand(2, 3, size, size, device=device)
        cam = CAM(model, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            maps = cam(x)
            elapsed = time.perf_counter() - start
        assert cam.layers_ is not None
        layer, reshape = cam.layers_[0], cam.reshapes_[0]
        diff = float((maps - _reference(model, x, layer, reshape)).abs().max())
        ok = bool(torch.isfinite(maps).all()) and 0 <= float(maps.min()) <= float(maps.max()) <= 1
        shown = repr(reshape) if reshape is not None else "-"
        return [name, f"`{layer}`", shown, f"{elapsed:.2f}", f"{diff:.1e}" + ("" if ok else " (!)")]
    except Exception as exc:  # a row per model, whatever happens
        return [name, "error", f"{type(exc).__name__}: {str(exc)[:80]}", "-", "-"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 torchvision models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timm", type=int, default=None, help="how many timm models")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    args = parser.parse_args()
    import torchvision

    names = QUICK if args.quick else torchvision.models.list_models(module=torchvision.models)
    rows = [_row(n, _torchvision, args.device) for n in names]
    try:
        import timm

        version = f"timm {timm.__version__}"
        count = args.timm if args.timm is not None else (2 if args.quick else len(TIMM))
        rows += [_row(n, _timm, args.device) for n in TIMM[:count]]
        rows = [r if i < len(names) else [f"timm: {r[0]}", *r[1:]] for i, r in enumerate(rows)]
    except ImportError:
        version = "timm not installed"
    header = ["model", "layer chosen", "reshape", "time (s)", "max diff vs reference"]
    lines = [
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, {version}; "
        f"device {args.device}, batch 2, random weights.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        from featviz._io import atomic_path

        with atomic_path(args.out, overwrite=True) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
