"""Arrays <-> images: `to_image`, `save_image`, `load_image`, `unstandardize`.

`to_image` is the replacement for the removed ``scipy.misc.toimage``: with ``cmin`` /
``cmax`` it applies SciPy's old ``bytescale`` formula exactly. `load_image` reads any
image file into a normalised (1, 3, H, W) tensor plus the original RGB pixels, with the
EXIF orientation applied. Every file is written atomically and never over an existing
file unless ``overwrite=True``.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featviz._images import bomb_error, check_pair, image_layout, mean_std, pil_to_float, size2
from featviz._io import atomic_path
from featviz._ops import resize, user_stacklevel

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "denormalize",
    "load_image",
    "save_image",
    "to_image",
    "unstandardize",
]

#: Per-channel RGB mean of ImageNet, used by torchvision's pretrained models.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Per-channel RGB standard deviation of ImageNet.
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_MODES_2D = ("L", "RGB", "RGBA", "F")
_MODES_3D = ("RGB", "RGBA", "L")


# -- arrays -> images -------------------------------------------------------------------
def _bytescale(data: np.ndarray, cmin: float | None, cmax: float | None) -> np.ndarray:
    """SciPy's ``bytescale`` (high=255, low=0) without its uint8 early return."""
    for name, v in (("cmin", cmin), ("cmax", cmax)):
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
        ):
            raise ValueError(
                f"The {name!r} parameter of to_image must be a finite number or None. "
                f"Got {v!r} instead."
            )
    x = data.astype(np.float64)
    finite = np.isfinite(x)
    ok = bool(finite.all())
    if not ok:  # the one rule: ignored for the minimum and maximum, then 0
        warnings.warn(
            f"featviz: {int((~finite).sum())} non-finite value(s) (NaN or inf) in the image "
            "were ignored for its minimum and maximum and set to 0.",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )
        x = np.where(finite, x, 0.0)
    values = x if ok else x[finite]
    lo = (float(values.min()) if values.size else 0.0) if cmin is None else float(cmin)
    hi = (float(values.max()) if values.size else 0.0) if cmax is None else float(cmax)
    scale = hi - lo
    if scale < 0:
        raise ValueError(
            f"The 'cmax' parameter of to_image must be >= cmin. Got cmin={lo!r}, cmax={hi!r}."
        )
    if scale == 0:
        scale = 1.0
    byte = (x - lo) * (255.0 / scale)
    out = (byte.clip(0, 255) + 0.5).astype(np.uint8)
    if not ok:
        out[~finite] = 0
    return out


def _to_array(array: Any) -> np.ndarray:
    """One image, channel-last, any dtype (`featviz._images.image_layout`'s rule)."""
    if isinstance(array, torch.Tensor):
        t = array.detach()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        a, numpy = t.cpu().numpy(), False
    elif isinstance(array, np.ndarray):
        a, numpy = array, True
    else:
        raise TypeError(
            "The 'array' parameter of to_image must be a numpy array or a torch.Tensor. "
            f"Got {type(array).__name__} instead."
        )
    if a.ndim == 3 and a.size:
        code = image_layout(
            a.shape, numpy=numpy, func="to_image", param="array", value=array, single=True
        )
        if code == "CHW":
            a = a.transpose(1, 2, 0)
    return a


def to_image(
    array: Any,
    *,
    cmin: float | None = None,
    cmax: float | None = None,
    mode: str | None = None,
) -> Image.Image:
    """Make a PIL image from an array, scaling values to 0..255.

    Values become bytes with SciPy's old ``bytescale`` formula (what
    ``scipy.misc.toimage(arr, cmin=, cmax=)`` did)::

        byte = uint8(clip((x - cmin) * 255 / (cmax - cmin), 0, 255) + 0.5)

    with ``cmin``/``cmax`` defaulting to the array's min and max (so min -> black,
    max -> white; a constant array becomes black; a range of 0 counts as 1). The
    exceptions: uint8 arrays without ``cmin``/``cmax`` are taken as they are (as SciPy
    did), and bool arrays map False -> 0, True -> 255. Other integer types and float16/
    32/64 are scaled. All channels share one min and max. NaN and inf take no part in
    the min and max and become 0 (black), with a `RuntimeWarning` (the rule of every
    featviz function that scales maps).

    Args:
        array: (H, W) -> mode ``"L"``; (H, W, 1) -> ``"L"``; (H, W, 3) -> ``"RGB"``;
            (H, W, 4) -> ``"RGBA"``. Tensors (any device, any dtype incl. bfloat16)
            are accepted too; a 3-D tensor whose first axis has length 1, 3 or 4 is
            read as channel-first (C, H, W), else as (H, W, C). A channel-first numpy
            array is refused with the fix (numpy images are channel-last).
        cmin: Value that becomes 0 (lower values are clipped).
        cmax: Value that becomes 255 (higher values are clipped).
        mode: Force a PIL mode: ``"L"``, ``"RGB"``, ``"RGBA"``, or ``"F"`` (2-D only:
            float32 values kept as they are, no scaling).

    Returns:
        A new PIL image (its pixels do not share memory with ``array``).

    Raises:
        TypeError: ``array`` is not an array/tensor, or has a complex or object dtype.
        ValueError: Bad shape, empty array, ``cmax < cmin``, a non-finite ``cmin`` or
            ``cmax``, or an unknown ``mode``.
    """
    from PIL import Image

    a = _to_array(array)
    if a.dtype.kind not in "biuf":
        raise TypeError(
            "The 'array' parameter of to_image must hold bool, integer or float values. "
            f"Got dtype {a.dtype} instead."
        )
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.size == 0 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ValueError(
            "The 'array' parameter of to_image must have shape (H, W), (H, W, 3) or "
            f"(H, W, 4) and not be empty. Got shape {a.shape} instead."
        )
    allowed = _MODES_2D if a.ndim == 2 else _MODES_3D
    if mode is not None and mode not in allowed:
        raise ValueError(
            f"The 'mode' parameter of to_image must be one of {list(allowed)} for an "
            f"array of shape {a.shape}. Got {mode!r} instead."
        )
    if mode == "F":
        return Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    if a.dtype == np.bool_:
        data = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype == np.uint8 and cmin is None and cmax is None:
        data = a.copy()
    else:
        data = _bytescale(a, cmin, cmax)
    img = Image.fromarray(np.ascontiguousarray(data))
    if mode is not None and img.mode != mode:
        img = img.convert(mode)
    return img


def save_image(
    array_or_image: Any,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    cmin: float | None = None,
    cmax: float | None = None,
    **kw: Any,
) -> Path:
    """Write an array, tensor or PIL image to an image file, atomically.

    Arrays and tensors go through `to_image` (with ``cmin``/``cmax``). The format comes
    from the file's suffix. The file appears complete or not at all; an existing file is
    never replaced unless ``overwrite=True``.

    Args:
        array_or_image: A PIL image, or anything `to_image` accepts.
        path: Destination file; its folder must exist.
        overwrite: Replace an existing file.
        cmin: Passed to `to_image` for arrays.
        cmax: Passed to `to_image` for arrays.
        **kw: Passed to ``PIL.Image.Image.save`` (e.g. ``quality=90`` for JPEG).

    Returns:
        ``path`` as a `Path`.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (the file is left
            untouched).
        IsADirectoryError, FileNotFoundError: ``path`` is a folder / its folder is missing.
        ValueError: The suffix names no format PIL can write, or the image's mode cannot
            be stored in that format (e.g. RGBA as JPEG).
    """
    from PIL import Image

    img = (
        array_or_image
        if isinstance(array_or_image, Image.Image)
        else to_image(array_or_image, cmin=cmin, cmax=cmax)
    )
    p = Path(path)
    ext = p.suffix.lower()
    Image.init()
    if ext not in Image.registered_extensions():
        raise ValueError(
            f"The 'path' parameter of save_image must end in an image suffix such as "
            f"'.png' or '.jpg'. Got {str(p)!r}."
        )
    fmt = Image.registered_extensions()[ext]
    with atomic_path(p, overwrite=overwrite) as tmp:
        try:
            img.save(tmp, format=fmt, **kw)
        except (OSError, KeyError) as exc:
            raise ValueError(
                f"save_image cannot write a {img.mode} image as {fmt} to {str(p)!r}: {exc}"
            ) from exc
    return p


# -- files -> tensors -------------------------------------------------------------------
def load_image(
    path: str | os.PathLike[str],
    *,
    size: int | tuple[int, int] | None = (224, 224),
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> tuple[torch.Tensor, np.ndarray]:
    """Read an image file as a model input and as displayable RGB pixels.

    The EXIF orientation tag is applied first (``PIL.ImageOps.exif_transpose``), so
    both results are upright as a viewer shows them. Grayscale is repeated to RGB;
    transparency (RGBA, LA, palette with a transparent colour) is composited onto
    white, as a viewer on a white page shows it; 16-bit grayscale ("I;16", "I") is
    read at full precision for the tensor (``x / 65535``) and rounded to 8 bits for
    the array. Resizing is bilinear with antialiasing (``torch.nn.functional.interpolate``
    with ``antialias=True``, close to PIL's and torchvision's ``Resize``); the aspect
    ratio is not kept.

    Args:
        path: Image file (any format PIL reads).
        size: ``(height, width)`` of the tensor, one int for a square, or ``None`` to
            keep the file's size.
        mean: Per-channel mean subtracted, or ``None`` for no normalisation.
        std: Per-channel standard deviation divided by (with ``mean``).

    Returns:
        ``(tensor, original)``: float32 (1, 3, H, W), ``(x - mean) / std`` with x in
        [0, 1]; and uint8 (H0, W0, 3), the upright RGB pixels at the file's size.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        IsADirectoryError: ``path`` is a folder.
        ValueError: The file is not a readable image, or ``size``/``mean``/``std`` are bad.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"The 'path' parameter of load_image names no file: {str(p)!r}.")
    if p.is_dir():
        raise IsADirectoryError(
            f"The 'path' parameter of load_image names a folder, not an image file: {str(p)!r}."
        )
    check_pair(mean, std, func="load_image")
    hw = None
    if size is not None:
        hw = size2(size, "size", "load_image")
    try:
        with Image.open(p) as im:
            im.load()
            upright = ImageOps.exif_transpose(im)
            rgb01 = pil_to_float(upright)
    except Image.DecompressionBombError as exc:
        raise bomb_error(p, exc) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
            f"The 'path' parameter of load_image names a file that is not a readable "
            f"image: {str(p)!r} ({exc})."
        ) from exc
    original = np.clip(np.rint(rgb01 * 255.0), 0, 255).astype(np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(rgb01.transpose(2, 0, 1)))[None]
    if hw is not None and tuple(x.shape[-2:]) != hw:
        x = resize(x, hw, antialias=True).clamp(0.0, 1.0)
    if mean is not None and std is not None:
        m, s = mean_std(mean, std, 3, x.device, "load_image")
        x = (x - m) / s
    return x.contiguous(), original


def unstandardize(
    tensor: Any,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Any:
    """Undo ``(x - mean) / std`` for display: ``clamp(x * std + mean, 0, 1)``.

    Args:
        tensor: Normalised images (3, H, W) or (N, 3, H, W), a tensor (any device) or
            a numpy array (channel-first too).
        mean: Per-channel mean the images were normalised with.
        std: Per-channel standard deviation the images were normalised with.

    Returns:
        Same shape and kind (a tensor on the same device, or an array), values in [0, 1];
        float32 unless the input was float64. The input is not modified.

    Raises:
        TypeError: ``tensor`` is not a tensor or an array.
        ValueError: The shape is not (3, H, W) or (N, 3, H, W) (1 channel also works
            with a single mean and std), or bad ``mean``/``std``.
    """
    was_numpy = isinstance(tensor, np.ndarray)
    if was_numpy:
        t = torch.from_numpy(np.asarray(tensor))
    elif isinstance(tensor, torch.Tensor):
        t = tensor.detach()
    else:
        raise TypeError(
            "The 'tensor' parameter of unstandardize must be a torch.Tensor or numpy array. "
            f"Got {type(tensor).__name__} instead."
        )
    if t.ndim not in (3, 4):
        raise ValueError(
            "The 'tensor' parameter of unstandardize must have shape (3, H, W) or "
            f"(N, 3, H, W). Got shape {tuple(t.shape)} instead."
        )
    if t.dtype != torch.float64:
        t = t.float()
    m, s = mean_std(mean, std, 3, t.device, "unstandardize")
    c = t.shape[-3]
    if m.shape[0] not in (1, c):
        raise ValueError(
            f"The 'tensor' parameter of unstandardize has {c} channels but mean/std have "
            f"{m.shape[0]} values."
        )
    out = (t * s.to(t.dtype) + m.to(t.dtype)).clamp(0.0, 1.0)
    return out.cpu().numpy() if was_numpy else out


def denormalize(
    tensor: Any,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Any:
    """Deprecated name of `unstandardize` (it undoes ``mean``/``std``, not `normalize`).

    Emits a `FutureWarning`; see `unstandardize` for arguments, shapes and errors.
    """
    warnings.warn(
        "featviz.denormalize is renamed featviz.unstandardize (it undoes mean/std "
        "standardisation; featviz.normalize is min-max scaling); the old name will be "
        "removed in the next release.",
        FutureWarning,
        stacklevel=user_stacklevel(),
    )
    return unstandardize(tensor, mean, std)
