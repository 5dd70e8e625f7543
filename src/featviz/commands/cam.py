"""``featviz cam``: write class activation map overlays for image files."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

_BUILTIN_SIZE = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cam`` sub-command."""
    from featviz.cam import METHODS

    p = subparsers.add_parser(
        "cam",
        help="write class activation map overlays (Grad-CAM and family) for images",
        description="Compute a class activation map for each IMAGE and write the heatmap "
        "blended over the image into OUT as <name>_<method>.png, at the image's own "
        "resolution. Without --model, the built-in TinyCNN trained on Shapes is used "
        "(64x64 inputs, no normalisation).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument(
        "--model",
        default=None,
        help="MODULE:FACTORY (a callable returning an nn.Module, called with no arguments) "
        "or a TorchScript file; default: the built-in pretrained TinyCNN",
    )
    p.add_argument(
        "--layer",
        default=None,
        help="layer name (dotted, as in model.named_modules()); default: the last layer "
        "with a spatial output",
    )
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument(
        "--method", default="gradcam", help=f"one of {', '.join(METHODS)} (default: %(default)s)"
    )
    p.add_argument(
        "--target",
        default=None,
        help="class index (or class name when the model has .classes); default: each "
        "image's top class",
    )
    p.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=None,
        metavar="PX",
        help="model input size: one int (square) or H W; default 64 for the built-in "
        "model, 224 otherwise",
    )
    p.add_argument(
        "--normalize",
        choices=("auto", "imagenet", "none"),
        default="auto",
        help="input normalisation: ImageNet mean/std or none; auto = none for the built-in "
        "model, imagenet otherwise",
    )
    p.add_argument("--alpha", type=float, default=0.4, help="heatmap weight in the overlay")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=run)


# -- models ---------------------------------------------------------------------------
class _Leaf(nn.Module):
    """Python wrapper of a TorchScript submodule, so that hooks can be attached to it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class _Chain(nn.Module):
    """Runs its children in order (flattening before a Linear), like a Sequential."""

    def __init__(self, children: OrderedDict[str, nn.Module]) -> None:
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for child in self.children():
            inner = child.inner if isinstance(child, _Leaf) else child
            if getattr(inner, "original_name", "") == "Linear" and x.ndim > 2:
                x = x.flatten(1)
            x = child(x)
        return x


def _unroll(module: nn.Module, path: list[str] | None) -> nn.Module:
    """Rebuild a scripted module as a chain of its children along ``path`` (None: all)."""
    children = list(module.named_children())
    if not children or path == []:
        return _Leaf(module)
    return _Chain(
        OrderedDict(
            (name, _unroll(child, None if path is None else (path[1:] if name == path[0] else [])))
            for name, child in children
        )
    )


def _hookable(scripted: nn.Module, layer: str | None, sample: torch.Tensor) -> nn.Module:
    """A hookable stand-in for a TorchScript model, checked to compute the same outputs."""
    wrapper = _unroll(scripted, layer.split(".") if layer else None)
    with torch.no_grad():
        try:
            same = torch.allclose(wrapper(sample), scripted(sample), rtol=1e-4, atol=1e-5)
        except Exception:  # a forward that is not a chain of its children
            same = False
    if not same:
        what = f"layer {layer!r}" if layer else "its layers"
        raise ValueError(
            "TorchScript modules cannot carry hooks, and this model's forward is not a plain "
            f"chain of its submodules down to {what}; pass --model MODULE:FACTORY instead."
        )
    return wrapper


def _load_model(spec: str | None, device: torch.device) -> tuple[nn.Module, bool]:
    """The model and whether it is a TorchScript archive."""
    if spec is None:
        from featviz.models import pretrained_tiny_cnn

        return pretrained_tiny_cnn(progress=True).to(device), False
    path = Path(spec)
    if path.is_file():
        return torch.jit.load(str(path), map_location=device).eval(), True
    if ":" not in spec:
        raise FileNotFoundError(f"The --model value {spec!r} is neither a file nor MODULE:FACTORY.")
    mod_name, _, attr = spec.partition(":")
    module = importlib.import_module(mod_name)
    factory = getattr(module, attr, None)
    if factory is None:
        raise ValueError(f"The --model module {mod_name!r} has no attribute {attr!r}.")
    model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"The --model factory {spec!r} must return a torch.nn.Module. "
            f"Got {type(model).__name__} instead."
        )
    return model.to(device).eval(), False


def _target(value: str | None, model: nn.Module) -> int | None:
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    classes = list(getattr(model, "classes", []) or [])
    if value in classes:
        return classes.index(value)
    raise ValueError(f"The --target value {value!r} is not a class index or one of {classes}.")


def run(args: argparse.Namespace) -> int:
    """Write one overlay per image; returns 0 on success, 1 on a user error."""
    try:
        return _run(args)
    except (FileNotFoundError, FileExistsError, IsADirectoryError, ValueError, TypeError) as exc:
        sys.stderr.write(f"featviz cam: {exc}\n")
        return 1


def _run(args: argparse.Namespace) -> int:
    from featviz.cam import CAM
    from featviz.featuremaps import overlay
    from featviz.imageio import IMAGENET_MEAN, IMAGENET_STD, load_image, save_image

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    builtin = args.model is None
    if args.size is None:
        size: tuple[int, int] = (_BUILTIN_SIZE, _BUILTIN_SIZE) if builtin else (224, 224)
    elif len(args.size) == 1:
        size = (args.size[0], args.size[0])
    elif len(args.size) == 2:
        size = (args.size[0], args.size[1])
    else:
        raise ValueError(f"--size takes one or two ints. Got {args.size}.")
    norm = args.normalize if args.normalize != "auto" else ("none" if builtin else "imagenet")
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if norm == "imagenet" else (None, None)
    paths = [Path(p) for p in args.images]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"The IMAGE {str(p)!r} does not exist or is not a file.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, scripted = _load_model(args.model, device)
    target = _target(args.target, model)
    cam: CAM | None = None
    for p in paths:
        x, original = load_image(p, size=size, mean=mean, std=std)
        x = x.to(device)
        if cam is None:
            if scripted:
                model = _hookable(model, args.layer, x)
            cam = CAM(model, args.layer, method=args.method, progress=False)
        heat = cam(x, target)[0]
        dest = out / f"{p.stem}_{cam.method}.png"
        save_image(overlay(original, heat.cpu(), alpha=args.alpha), dest, overwrite=args.force)
        sys.stdout.write(f"{dest}\n")
    return 0
