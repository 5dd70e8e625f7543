"""``featviz cam``: write class activation map overlays for image files."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featviz._errors import CLIError

_BUILTIN_SIZE = 64
#: library parameter -> the option that sets it, for messages (see `featviz._errors.cli_wording`)
OPTIONS = {
    "layers": "--layer",
    "layer": "--layer",
    "method": "--method",
    "target": "--target",
    "size": "--size",
    "alpha": "--alpha",
    "device": "--device",
    "overwrite": "--overwrite",
    "aug_smooth": "--aug-smooth",
    "eigen_smooth": "--eigen-smooth",
}


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
        "--standardize",
        "--normalize",  # the old name, kept for one release
        dest="standardize",
        choices=("auto", "imagenet", "none"),
        default="auto",
        help="input standardisation: ImageNet mean/std or none (old name --normalize); "
        "auto = none for the built-in "
        "model, imagenet otherwise",
    )
    p.add_argument(
        "--aug-smooth",
        action="store_true",
        help="average the maps of six flipped/rescaled views (six times slower)",
    )
    p.add_argument(
        "--eigen-smooth",
        action="store_true",
        help="keep the first principal component of the weighted activations",
    )
    p.add_argument("--alpha", type=float, default=0.4, help="heatmap weight in the overlay")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    # the flag's old name, kept working (hidden) so scripts written for it still run
    p.add_argument("--force", dest="overwrite", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run, options=OPTIONS)


# -- checks and loading ------------------------------------------------------------
def _device(value: str | None) -> torch.device:
    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError) as exc:
        raise CLIError(
            f"The --device value {value!r} is not a torch device; use cpu, cuda or cuda:N."
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(
            f"The --device value {value!r} needs a CUDA GPU, but torch finds none "
            "(torch.cuda.is_available() is False); use --device cpu."
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise CLIError(
            f"The --device value {value!r} names a GPU that does not exist; this machine "
            f"has {torch.cuda.device_count()}, cuda:0 to cuda:{torch.cuda.device_count() - 1}."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"The --device value {value!r} is not available here; use --device cpu.")
    return device


def _size(value: list[int] | None, builtin: bool) -> tuple[int, int]:
    if value is None:
        return (_BUILTIN_SIZE, _BUILTIN_SIZE) if builtin else (224, 224)
    if len(value) not in (1, 2) or any(v < 1 for v in value):
        raise CLIError(
            f"The --size value must be one or two ints in the range [1, inf). Got {value} instead."
        )
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _out_folder(value: str, *, create: bool) -> Path:
    out = Path(value)
    if out.exists() and not out.is_dir():
        raise CLIError(f"The --out value {value!r} is a file; pass a folder (created if missing).")
    if not create:
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(
            f"The --out folder {value!r} cannot be created ({exc.strerror or exc}); pass a "
            "folder you can write to."
        ) from exc
    return out


def _load_model(spec: str | None, device: torch.device) -> tuple[nn.Module, bool]:
    """The model and whether it is a TorchScript archive."""
    if spec is None:
        from featviz.models import pretrained_tiny_cnn

        return pretrained_tiny_cnn(progress=True).to(device), False
    path = Path(spec)
    if path.is_file():
        try:
            with warnings.catch_warnings():
                # the user chose a TorchScript file: torch's deprecation notice is noise here
                warnings.filterwarnings("ignore", r".*torch\.jit\.load", FutureWarning)
                return torch.jit.load(str(path), map_location=device).eval(), True
        except Exception as exc:
            raise CLIError(
                f"The --model file {spec!r} is not a TorchScript archive that torch.jit.load "
                f"can read ({_first_line(exc)}); pass a file written by torch.jit.save, or "
                "MODULE:FACTORY for a model saved another way."
            ) from exc
    if ":" not in spec:
        raise FileNotFoundError(
            f"The --model value {spec!r} is neither a file nor MODULE:FACTORY "
            "(e.g. torchvision.models:resnet18)."
        )
    mod_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except Exception as exc:
        raise CLIError(
            f"The --model module {mod_name!r} cannot be imported ({_first_line(exc)}); check "
            "MODULE:FACTORY and that the module is on PYTHONPATH."
        ) from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise CLIError(f"The --model module {mod_name!r} has no attribute {attr!r}.")
    try:
        model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    except Exception as exc:
        raise CLIError(
            f"The --model factory {spec!r} failed when called with no arguments "
            f"({type(exc).__name__}: {_first_line(exc)})."
        ) from exc
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"The --model factory {spec!r} must return a torch.nn.Module. "
            f"Got {type(model).__name__} instead."
        )
    return model.to(device).eval(), False


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _target(value: str | None, model: nn.Module) -> int | None:
    if value is None:
        return None
    if value.isascii() and value.isdigit():
        return int(value)
    classes = list(getattr(model, "classes", []) or [])
    if value in classes:
        return classes.index(value)
    known = f"one of {classes}" if classes else "an int >= 0 (the model has no .classes)"
    raise CLIError(f"The --target value {value!r} is not a class index; pass {known}.")


def _destinations(paths: list[Path], out: Path, suffix: str, overwrite: bool) -> list[Path]:
    """One output file per IMAGE, all checked before anything is computed or written.

    Raises:
        CLIError: Two IMAGEs would write the same file (same name in different folders),
            or a file exists and ``overwrite`` is False.
    """
    dests = [out / f"{p.stem}_{suffix}.png" for p in paths]
    first: dict[Path, Path] = {}
    for p, d in zip(paths, dests, strict=True):
        if d in first and first[d].resolve() != p.resolve():
            raise CLIError(
                f"The IMAGEs {str(first[d])!r} and {str(p)!r} would both be written to "
                f"{str(d)!r}; run them with different --out folders or rename one."
            )
        first.setdefault(d, p)
    existing = [str(d) for d in dict.fromkeys(dests) if d.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise CLIError(
            f"The output file {existing[0]!r}{more} exists; pass --overwrite to replace it."
        )
    return list(dict.fromkeys(dests))


def _load(path: Path, size: tuple[int, int], mean: Any, std: Any) -> tuple[torch.Tensor, Any]:
    """`load_image`, with PIL's decompression-bomb warning and error as one CLI error."""
    from PIL import Image

    from featviz.imageio import load_image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return load_image(path, size=size, mean=mean, std=std)
    except (ValueError, Image.DecompressionBombWarning) as exc:
        bomb = (Image.DecompressionBombError, Image.DecompressionBombWarning)
        if not isinstance(exc, bomb) and not isinstance(exc.__cause__, bomb):
            raise
        raise CLIError(
            f"The IMAGE {str(path)!r} is too large to open safely ({_first_line(exc)}); "
            "shrink it first."
        ) from exc


def run(args: argparse.Namespace) -> int:
    """Write one overlay per image; returns 0. Errors are raised for `featviz.cli.main`."""
    from featviz.cam import CAM
    from featviz.featuremaps import overlay
    from featviz.hooks import hookable
    from featviz.imageio import IMAGENET_MEAN, IMAGENET_STD, save_image

    builtin = args.model is None
    size = _size(args.size, builtin)
    if not 0.0 <= args.alpha <= 1.0:
        raise CLIError(
            f"The --alpha value must be a float in the range [0, 1]. Got {args.alpha} instead."
        )
    device = _device(args.device)
    norm = args.standardize if args.standardize != "auto" else ("none" if builtin else "imagenet")
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if norm == "imagenet" else (None, None)
    paths = list(dict.fromkeys(Path(p) for p in args.images))
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"The IMAGE {str(p)!r} does not exist or is not a file.")
    out = _out_folder(args.out, create=False)
    model, scripted = _load_model(args.model, device)
    if scripted:
        model = hookable(model, [args.layer] if args.layer else None)
    target = _target(args.target, model)
    cam = CAM(
        model,
        args.layer,
        method=args.method,
        progress=False,
        aug_smooth=args.aug_smooth,
        eigen_smooth=args.eigen_smooth,
    )
    smooth = ("-aug" if args.aug_smooth else "") + ("-eigen" if args.eigen_smooth else "")
    dests = _destinations(paths, out, f"{cam.method}{smooth}", args.overwrite)
    out = _out_folder(args.out, create=True)  # only once the model and options are fine
    for p, dest in zip(paths, dests, strict=True):
        x, original = _load(p, size, mean, std)
        try:
            heat = cam(x.to(device), target)[0]
        except RuntimeError as exc:  # torch: the model cannot take this input
            raise CLIError(
                f"the model failed on IMAGE {str(p)!r} resized to --size {size[0]} {size[1]} "
                f"({_first_line(exc)}); check --size and --model."
            ) from exc
        save_image(overlay(original, heat.cpu(), alpha=args.alpha), dest, overwrite=args.overwrite)
        sys.stdout.write(f"{dest}\n")
    return 0
