"""THE ingestion of featviz: images, heatmaps and labels to one internal form each.

A private module that every featviz module may import; each rule is written here once,
with one error wording ("The 'images' parameter of overlay must be ... Got <type, shape,
dtype> instead. <what to do>"):

* `image_batch`: any image form (PIL, a list of images, numpy channel-last, tensors
  channel-first; grey, RGB or RGBA; uint8 or any float dtype) -> an `ImageBatch` whose
  ``nhwc`` is an (N, H, W, C) view, copied only when it must be;
* `display_mean_std` and `rgb_float`: that batch -> new float32 RGB for display, with
  ``mean``/``std`` given together (never for uint8 images) and a warning for floats
  that look like 0..255;
* `heatmap_batch`: (H, W), (N, H, W) or (N, 1, H, W) maps, numpy or tensor, any numeric
  dtype -> float32 (N, h, w);
* `label_array` and `label_names`: labels (ints, strings, integral floats, bools) ->
  one (N,) array, and their display strings;
* `as_tensor`: an array or tensor -> a tensor (numpy wrapped without a copy when
  possible), for functions that keep the caller's shape and kind.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from featviz._errors import describe, param_error

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "CHANNELS",
    "HeatmapBatch",
    "ImageBatch",
    "as_tensor",
    "bomb_error",
    "check_finite_rows",
    "check_pair",
    "display_mean_std",
    "heatmap_batch",
    "image_batch",
    "image_layout",
    "label_array",
    "label_names",
    "mean_std",
    "model_batch",
    "number_array",
    "pil_to_float",
    "pil_to_rgb",
    "prediction_array",
    "rgb_float",
    "size2",
]

#: Channel counts an image may have: grey, RGB, RGBA.
CHANNELS = (1, 3, 4)


def pil_to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Any PIL image -> uint8 RGB (H, W, 3); transparency composited onto ``background``."""
    return np.clip(np.rint(pil_to_float(img, background) * 255.0), 0, 255).astype(np.uint8)


def pil_to_float(
    img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)
) -> np.ndarray:
    """Any PIL image -> float32 RGB (H, W, 3) in [0, 1], at full bit depth."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img).astype(np.float32)
        # 16-bit files: 0..65535; 32-bit "I" holding 8-bit data stays 0..255
        top = 255.0 if mode == "I" and a.size and a.max() <= 255 else 65535.0
        g = np.clip(a / top, 0.0, 1.0)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "F":
        g = np.asarray(img, dtype=np.float32)
        if g.size and g.max() > 1:  # float data stored as 0..255
            g = g / 255.0
        return np.repeat(np.clip(g, 0.0, 1.0)[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        a = rgba[..., 3:]
        bg = np.asarray(background, dtype=np.float32) / 255.0
        return (rgba[..., :3] * a + bg * (1.0 - a)).astype(np.float32)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def size2(size: Any, param: str, func: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or min(size) < 1
    ):
        raise ValueError(
            f"The {param!r} parameter of {func} must be an int >= 1 or a pair "
            f"(height, width) of ints >= 1. Got {size!r} instead."
        )
    return int(size[0]), int(size[1])


def mean_std(
    mean: Any, std: Any, channels: int, device: torch.device, func: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std as float32 (C', 1, 1) tensors, C' in {1, ``channels``}.

    One rule for every function that takes ``mean``/``std``: 1 or ``channels`` finite
    values each, and no std equal to 0 (dividing by it is undefined, and multiplying by
    it erases the image).

    Raises:
        ValueError: A wrong count, a non-finite value or a zero std; the message names
            ``func``.
    """
    try:
        m = torch.as_tensor(mean, dtype=torch.float32, device=device).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float32, device=device).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"The 'mean' and 'std' parameters of {func} must be numbers or sequences of "
            f"numbers. Got mean={mean!r}, std={std!r}."
        ) from exc
    if (
        m.numel() not in (1, channels)
        or s.numel() not in (1, channels)
        or not bool(torch.isfinite(m).all() and torch.isfinite(s).all())
        or bool((s == 0).any())
    ):
        raise ValueError(
            f"The 'mean' and 'std' parameters of {func} must have 1 or {channels} finite "
            f"values each (one per channel), with std != 0. Got mean={mean!r}, std={std!r}."
        )
    return m.reshape(-1, 1, 1), s.reshape(-1, 1, 1)


def bomb_error(path: Any, exc: BaseException) -> ValueError:
    """The one error for an image over PIL's decompression-bomb limit, naming the file.

    Args:
        path: The image file.
        exc: PIL's ``DecompressionBombError`` (or the warning turned into an error).

    Returns:
        A ValueError to raise ``from exc``.
    """
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ValueError(
        f"Refusing to read {str(path)!r}: it is too large to open safely ({detail}). If you "
        "trust the file, raise PIL.Image.MAX_IMAGE_PIXELS first."
    )


# -- the one error wording -------------------------------------------------------------------
# -- arrays and tensors ------------------------------------------------------------------------
def as_tensor(x: Any, *, func: str, param: str) -> tuple[torch.Tensor, bool]:
    """An array or tensor as a detached tensor, and whether it was a numpy array.

    numpy arrays are wrapped without a copy when they are contiguous, native-endian and
    of a dtype torch holds (bool becomes uint8, uint16/uint32 become int64); read-only
    arrays are wrapped too (featviz never writes to its inputs).

    Raises:
        TypeError: ``x`` is neither, or holds no numbers (complex, object, strings).
    """
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise param_error(TypeError, param, func, "real numbers", describe(x))
        return x.detach(), False
    if not isinstance(x, np.ndarray):
        raise param_error(
            TypeError, param, func, "a torch.Tensor or numpy.ndarray", type(x).__name__
        )
    if x.dtype.kind not in "biuf":
        raise param_error(
            TypeError, param, func, "a numeric (bool, int or float) array", describe(x)
        )
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)
    elif x.dtype.kind == "u" and x.dtype.itemsize > 1:
        x = x.astype(np.int64)
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    x = np.ascontiguousarray(x)
    with warnings.catch_warnings():  # read-only input: never written to here
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(x), True


# -- images ------------------------------------------------------------------------------------
_NUMPY_FORMS = "(H, W), (H, W, C), (N, H, W) or (N, H, W, C) with C in (1, 3, 4)"
_TENSOR_FORMS = "(H, W), (C, H, W) or (N, C, H, W) with C in (1, 3, 4)"
_MISSING_FIX = "Drop those rows, or leave the labels out."
_IMAGE_DTYPES = "uint8 (0..255) or float ([0, 1]) images"
_DTYPE_FIX = "Convert with .astype(np.uint8) / .to(torch.uint8), or to float in [0, 1]."


class ImageBatch(NamedTuple):
    """Images in the one internal form.

    Attributes:
        nhwc: (N, H, W, C) uint8 or float tensor, C in (1, 3, 4): a view of the input
            when it could be (numpy arrays and tensors), on the requested device.
        batched: The input was a batch (N, ...) or a list, not one image.
        tensor_input: The input was a tensor (or a list of tensors), so results go back
            as tensors.
    """

    nhwc: torch.Tensor
    batched: bool
    tensor_input: bool


def image_layout(
    shape: tuple[int, ...], *, numpy: bool, func: str, param: str, value: Any, single: bool = False
) -> str:
    """An image array's layout: ``"HW"``, ``"HWC"``, ``"CHW"``, ``"NHW"``, ``"NHWC"``, ``"NCHW"``.

    The one rule: numpy arrays are channel-last, tensors channel-first; a 3-D array
    that is neither an image with 1, 3 or 4 channels nor refused as the wrong channel
    order is a batch of grey images (N, H, W). With ``single`` (one image wanted), a 3-D
    tensor whose last axis is 1, 3 or 4 and first is not is read as (H, W, C).

    Raises:
        ValueError: Channels in the wrong place for the kind (with the fix), or a
            shape that is no image.
    """
    nd, first, last = len(shape), shape[0] if shape else 0, shape[-1] if shape else 0
    second = shape[1] if nd > 1 else 0
    if nd == 2:
        return "HW"
    if numpy:
        if nd == 3 and last in CHANNELS:
            return "HWC"
        if nd == 4 and last in CHANNELS:
            return "NHWC"
        if (nd == 3 and first in CHANNELS) or (nd == 4 and second in CHANNELS):
            order = "(1, 2, 0)" if nd == 3 else "(0, 2, 3, 1)"
            raise param_error(
                ValueError,
                param,
                func,
                f"a channel-last array {_NUMPY_FORMS}",
                describe(value),
                f"numpy images are channel-last: use images.transpose{order} (a batch of "
                "grey images is (N, H, W) or (N, H, W, 1)).",
            )
        if nd == 3 and not single:
            return "NHW"
        raise param_error(
            ValueError, param, func, f"a channel-last array {_NUMPY_FORMS}", describe(value)
        )
    if nd == 3 and first in CHANNELS:
        return "CHW"
    if nd == 3 and single and last in CHANNELS:
        return "HWC"
    if nd == 4 and second in CHANNELS:
        return "NCHW"
    if nd in (3, 4) and last in CHANNELS:
        order = "(2, 0, 1)" if nd == 3 else "(0, 3, 1, 2)"
        raise param_error(
            ValueError,
            param,
            func,
            f"a channel-first tensor {_TENSOR_FORMS}",
            describe(value),
            f"Tensors are channel-first: use images.permute{order}.",
        )
    if nd == 3 and not single:
        return "NHW"
    raise param_error(
        ValueError, param, func, f"a channel-first tensor {_TENSOR_FORMS}", describe(value)
    )


_TO_NHWC = {
    "HW": lambda t: t[None, :, :, None],
    "HWC": lambda t: t[None],
    "CHW": lambda t: t.permute(1, 2, 0)[None],
    "NHW": lambda t: t[..., None],
    "NHWC": lambda t: t,
    "NCHW": lambda t: t.permute(0, 2, 3, 1),
}


def _one_image(x: Any, func: str, param: str, batch: bool) -> tuple[torch.Tensor, bool]:
    """One image or one batch (not a list) -> ``(nhwc view, batched)``."""
    from PIL import Image

    if isinstance(x, Image.Image):
        return torch.from_numpy(pil_to_rgb(x))[None], False
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        expected = "a PIL image, a list of images, a numpy array or a torch.Tensor"
        raise param_error(TypeError, param, func, expected, type(x).__name__)
    if isinstance(x, np.ndarray) and x.dtype == np.bool_:
        raise param_error(TypeError, param, func, _IMAGE_DTYPES, describe(x), _DTYPE_FIX)
    t, was_numpy = as_tensor(x, func=func, param=param)
    if batch and t.ndim == 3:
        code = "NHW"  # a batch is wanted: 3-D is (N, H, W) grey images
    else:
        code = image_layout(tuple(t.shape), numpy=was_numpy, func=func, param=param, value=x)
    return _TO_NHWC[code](t), code.startswith("N")


def _stack(items: Sequence[Any], func: str, param: str) -> torch.Tensor:
    """A list of single images -> one (N, H, W, C) tensor (a copy)."""
    if not items:
        raise param_error(ValueError, param, func, "a non-empty list of images", describe(items))
    views = []
    for i, item in enumerate(items):
        if isinstance(item, (list, tuple)):
            raise param_error(
                TypeError,
                param,
                func,
                "a list of PIL images, arrays or tensors",
                f"item {i} of type {type(item).__name__}",
            )
        t, batched = _one_image(item, func, f"{param}[{i}]", batch=False)
        if batched:
            raise param_error(
                ValueError,
                param,
                func,
                "a list of single images (or one batch, not a list)",
                f"item {i}: {describe(item)}",
            )
        views.append(t)
    ref = views[0]
    for i, t in enumerate(views[1:], 1):
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise param_error(
                ValueError,
                param,
                func,
                "a list of images of one size, channel count and dtype",
                f"item 0 as (H, W, C) {tuple(ref.shape[1:])} {ref.dtype} but item {i} as "
                f"{tuple(t.shape[1:])} {t.dtype}",
                "Resize or convert them first, or pass one batch array.",
            )
    dev = ref.device
    return torch.cat([t.to(dev) for t in views])


def image_batch(
    images: Any,
    *,
    func: str,
    param: str = "images",
    device: torch.device | None = None,
    n: int | None = None,
) -> ImageBatch:
    """Any accepted image form -> an `ImageBatch` (N, H, W, C) on ``device``.

    Accepted: a PIL image (any mode; made RGB, transparency composited onto white); a
    list or tuple of single images of one size (PIL images, arrays, tensors); numpy
    arrays, channel-last: (H, W), (H, W, C), (N, H, W), (N, H, W, C); tensors,
    channel-first: (H, W), (C, H, W), (N, C, H, W) (and (N, H, W) grey batches);
    C in (1, 3, 4); uint8 (0..255) or any float dtype (float16, bfloat16, float32,
    float64: [0, 1], or standardised values with ``mean``/``std``).

    Args:
        images: The images.
        func: The public function, for error messages.
        param: Its parameter name.
        device: Move the batch there (default: where it is; the CPU for PIL and numpy).
        n: The batch size the caller needs; then a 3-D array or tensor is always a
            batch of grey images (N, H, W), and N must equal ``n``.

    Returns:
        `ImageBatch`; nothing is copied for arrays and tensors already on ``device``
        (except numpy arrays that are not contiguous), lists are stacked.

    Raises:
        TypeError: Not an image type, or a dtype other than uint8 and float.
        ValueError: A shape that is no image, channels in the wrong place, an empty
            batch, list items that differ, or a batch size other than ``n``.
    """
    if isinstance(images, (list, tuple)):
        nhwc = _stack(images, func, param)
        batched, tensor_input = True, all(isinstance(i, torch.Tensor) for i in images)
    else:
        nhwc, batched = _one_image(images, func, param, batch=n is not None)
        tensor_input = isinstance(images, torch.Tensor)
    if nhwc.dtype != torch.uint8 and not nhwc.is_floating_point():
        raise param_error(TypeError, param, func, _IMAGE_DTYPES, describe(images), _DTYPE_FIX)
    if min(nhwc.shape[:3]) == 0:
        raise param_error(ValueError, param, func, "non-empty images", describe(images))
    if n is not None and nhwc.shape[0] != n:
        raise param_error(
            ValueError, param, func, f"a batch of N={n} images, one per item", describe(images)
        )
    if device is not None:
        nhwc = nhwc.to(device)
    return ImageBatch(nhwc, batched, tensor_input)


def check_pair(mean: Any, std: Any, *, func: str) -> None:
    """The one rule for ``mean`` and ``std``: both or neither.

    Raises:
        ValueError: Only one of them was given.
    """
    if (mean is None) != (std is None):
        raise ValueError(
            f"The 'mean' and 'std' parameters of {func} must be given together. "
            f"Got mean={mean!r}, std={std!r} instead."
        )


def display_mean_std(
    nhwc: torch.Tensor, mean: Any, std: Any, *, func: str, param: str = "images"
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Check ``mean``/``std`` for displaying ``nhwc``; ``(mean (C',), std (C',))`` or None.

    The one rule: both or neither; only for float images (uint8 images are pixels
    already); 1 or C values each (`mean_std`). Float images without them must be in
    [0, 1]: a maximum above 1.5 (images in 0..255 stored as floats) warns, since they
    are clipped to white. The maximum is read on an even grid of at most about 16,384
    pixels per batch (`_sample`), not on every pixel: images stored as 0..255 are above
    1.5 almost everywhere, and a full pass would cost as much as the overlay's own.

    Raises:
        ValueError: A lone ``mean`` or ``std``, either with uint8 images, or bad values.
    """
    check_pair(mean, std, func=func)
    if mean is None:
        top = float(_sample(nhwc).amax()) if nhwc.is_floating_point() and nhwc.numel() else 0.0
        if top > 1.5:
            warnings.warn(
                f"The {param!r} parameter of {func} holds floats up to "
                f"{top:g}; float images are read as [0, 1] and clipped. "
                "Divide them by 255, pass uint8, or give the 'mean' and 'std' they were "
                "standardised with.",
                UserWarning,
                stacklevel=_stacklevel(),
            )
        return None
    if nhwc.dtype == torch.uint8:
        raise ValueError(
            f"The 'mean' and 'std' parameters of {func} apply to standardised float "
            f"images. Got uint8 images instead; leave mean and std out."
        )
    m, s = mean_std(mean, std, int(nhwc.shape[-1]), nhwc.device, func)
    return m.reshape(-1), s.reshape(-1)


def _sample(nhwc: torch.Tensor, pixels: int = 16384) -> torch.Tensor:
    """A strided view of (n, H, W, C) images: an even grid of about ``pixels`` pixels."""
    n, h, w = nhwc.shape[:3]
    step = max(1, int((n * h * w / pixels) ** 0.5))
    return nhwc[:, ::step, ::step]


def _stacklevel() -> int:
    from featviz._ops import user_stacklevel

    return user_stacklevel()


def rgb_float(
    nhwc: torch.Tensor,
    ms: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    scale: float = 1.0,
    channels_first: bool = False,
) -> torch.Tensor:
    """(n, H, W, C) uint8 or float images -> new float32 RGB in [0, ``scale``].

    uint8 is read as 0..255, floats as [0, 1] (or ``x * std + mean`` with ``ms`` from
    `display_mean_std`), clipped; grey is repeated to RGB and alpha composited onto
    white. The result never shares memory with ``nhwc`` (no broadcast views), so it
    may be written in place.

    Args:
        nhwc: Images, e.g. ``image_batch(...).nhwc`` or a slice of it.
        ms: ``(mean (C',), std (C',))`` float32 tensors, or None.
        scale: 1.0 for [0, 1], 255.0 for [0, 255].
        channels_first: Return (n, 3, H, W) (a channels-last strided view of a new
            tensor) instead of (n, H, W, 3).

    Returns:
        float32 (n, H, W, 3) or (n, 3, H, W), on ``nhwc``'s device.
    """
    x = nhwc.to(dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)
    if nhwc.is_floating_point():
        if ms is not None:
            x.mul_(ms[1].to(x.device)).add_(ms[0].to(x.device))
        x.clamp_(0.0, 1.0)
        if scale != 1.0:
            x.mul_(scale)
    elif scale != 255.0:
        x.div_(255.0 / scale)
    c = x.shape[-1]
    if c == 4:
        a = x[..., 3:] / scale
        x = x[..., :3].mul(a).add_((1.0 - a).mul_(scale))
    elif c == 1:
        x = x.repeat(1, 1, 1, 3)
    return x.permute(0, 3, 1, 2) if channels_first else x


# -- heatmaps ----------------------------------------------------------------------------------
class HeatmapBatch(NamedTuple):
    """Heatmaps in the one internal form.

    Attributes:
        maps: float32 (N, h, w) tensor (a view of float32 input when it could be).
        batched: The input was a batch (N, h, w) or (N, 1, h, w), not one map.
    """

    maps: torch.Tensor
    batched: bool


def heatmap_batch(
    heatmaps: Any,
    *,
    func: str,
    param: str = "heatmaps",
    device: torch.device | None = None,
    n: int | None = None,
    key: str | None = None,
) -> HeatmapBatch:
    """(H, W), (N, H, W) or (N, 1, H, W) maps, numpy or tensor -> float32 (N, h, w).

    Any numeric dtype is accepted (bool and int as numbers; float16, bfloat16 and
    float64 become float32). Values are not changed (no scaling, NaN kept).

    Args:
        heatmaps: The maps.
        func: The public function, for error messages.
        param: Its parameter name.
        device: Move the maps there (default: where they are; the CPU for numpy).
        n: The number of maps the caller needs (then one (H, W) map counts as 1).
        key: The name of the map set inside a mapping parameter, for error messages.

    Raises:
        TypeError: Not an array or tensor, or not numeric.
        ValueError: Another shape, no values, or a count other than ``n``.
    """
    t, _ = as_tensor(heatmaps, func=func, param=param)
    where = "" if key is None else f" for {key!r}"
    forms = "maps of shape (H, W), (N, H, W) or (N, 1, H, W)"
    if n is not None:
        forms = f"(N, h, w) maps with N={n} (one per image)"
    if t.ndim == 4 and t.shape[1] == 1:
        t, batched = t[:, 0], True
    elif t.ndim in (2, 3):
        batched = t.ndim == 3
        t = t if batched else t[None]
    else:
        raise param_error(ValueError, param, func, forms, f"{describe(heatmaps)}{where}")
    if t.numel() == 0:
        raise param_error(
            ValueError, param, func, f"non-empty {forms}", f"{describe(heatmaps)}{where}"
        )
    if n is not None and t.shape[0] != n:
        raise param_error(ValueError, param, func, forms, f"{describe(heatmaps)}{where}")
    return HeatmapBatch(t.to(device=device, dtype=torch.float32), batched)


# -- model inputs ----------------------------------------------------------------------------
def model_batch(
    images: Any, *, func: str, param: str = "images", single: bool = False
) -> torch.Tensor:
    """Images as a model takes them: a non-empty float tensor (N, C, H, W), any C.

    Not display images (see `image_batch`): these go into the model as they are, so
    they must already be a float tensor in the model's layout; nothing is copied or
    detached.

    Args:
        images: The tensor.
        func: The public function, for error messages.
        param: Its parameter name.
        single: Accept one image (C, H, W) too, returned as (1, C, H, W).

    Raises:
        TypeError: Not a tensor.
        ValueError: Another rank, an empty batch, or not floating point.
    """
    shape = "(N, C, H, W)" + (" or (C, H, W)" if single else "")
    if not isinstance(images, torch.Tensor):
        fix = (
            "Read files with featviz.load_image, or convert arrays with "
            "torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255."
        )
        raise param_error(
            TypeError,
            param,
            func,
            f"a float tensor {shape}, as the model takes it",
            describe(images),
            fix,
        )
    t = images[None] if single and images.ndim == 3 else images
    if t.ndim != 4 or t.shape[0] == 0 or not t.is_floating_point():
        raise param_error(
            ValueError, param, func, f"a non-empty float tensor {shape}", describe(images)
        )
    return t


# -- numbers: points, features, logits, confidences -----------------------------------------
def number_array(values: Any, *, func: str, param: str) -> np.ndarray:
    """Numbers (not images or labels) as a numpy array: points, features, logits.

    Tensors are detached and moved to the CPU (float16/bfloat16 become float32); lists
    and tuples go through ``np.asarray``.

    Raises:
        TypeError: Not an array, tensor or sequence of numbers.
    """
    if isinstance(values, (list, tuple)):
        values = np.asarray(values)
    t, _ = as_tensor(values, func=func, param=param)
    return (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).cpu().numpy()


def check_finite_rows(arr: np.ndarray, *, func: str, param: str) -> None:
    """Refuse rows holding NaN or inf (no place in a plot, no argmax, no confidence).

    Args:
        arr: (N, ...) numbers.
        func: The public function, for error messages.
        param: Its parameter name.

    Raises:
        ValueError: Some rows are not finite; the message names how many and the first.
    """
    bad = np.flatnonzero(~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1))
    if bad.size:
        raise param_error(
            ValueError,
            param,
            func,
            "finite (no NaN or inf)",
            f"{bad.size} row(s) with NaN or inf (rows {bad[:5].tolist()})",
            "Drop or impute them first.",
        )


def prediction_array(
    predictions: Any, n: int, *, func: str, param: str = "predictions"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted classes (N,) and, for (N, C) float logits, the top class's probability.

    Args:
        predictions: (N,) class indices or names, or (N, C) float logits (argmax taken).
        n: The number of samples.
        func: The public function, for error messages.
        param: Its parameter name.

    Returns:
        ``(classes, confidence)``: classes by the one label rule (`label_array`), and the
        softmax probability of the top class (float64 (N,)) for logits, else None.

    Raises:
        ValueError: Logits with NaN or inf rows, or another shape.
    """
    if np.ndim(predictions) == 2:
        arr = number_array(predictions, func=func, param=param)
        if arr.shape[0] == n and np.issubdtype(arr.dtype, np.floating):
            check_finite_rows(arr, func=func, param=param)
            logits = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
            conf, top = torch.softmax(logits, dim=1).max(dim=1)
            return top.numpy(), conf.numpy()
        raise param_error(
            ValueError,
            param,
            func,
            f"(N,) classes or (N, C) float logits with N={n}",
            describe(predictions),
        )
    return label_array(predictions, n, func=func, param=param), None


# -- labels ------------------------------------------------------------------------------------
def label_array(labels: Any, n: int, *, func: str, param: str = "labels") -> np.ndarray:
    """(N,) labels of one kind: int64 (ints, and floats that are integers), bool, float64 or str.

    The one rule for class labels: a tensor, array, list or tuple of ints, strings,
    bools or floats, one per item; floats that are all integers become int64, so the
    label ``0.0`` is the class ``0`` everywhere. Missing labels (None, NaN) are refused.

    Raises:
        TypeError: Not a tensor, array, list or tuple.
        ValueError: Not 1-D of length ``n``, missing labels, or a mix of kinds.
    """
    if isinstance(labels, torch.Tensor):
        t = labels.detach().cpu()
        arr = (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy()
    elif isinstance(labels, np.ndarray):
        arr = labels
    elif isinstance(labels, (list, tuple)):
        if all(np.ndim(v) == 0 for v in labels):
            arr = np.empty(len(labels), dtype=object)  # no coercion: ["a", 1] is a mix
            arr[:] = list(labels)
        else:  # nested: refused as not 1-D below
            arr = np.asarray(labels, dtype=object)
    else:
        expected = "a tensor, numpy array, list or tuple of labels"
        raise param_error(TypeError, param, func, expected, type(labels).__name__)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise param_error(
            ValueError, param, func, f"a 1-D sequence of N={n} labels, one per item", describe(arr)
        )
    if arr.dtype == object:
        arr = _object_labels(arr, func, param)
    if arr.dtype.kind == "f":
        missing = np.flatnonzero(np.isnan(arr))
        if missing.size:
            raise param_error(
                ValueError,
                param,
                func,
                "a label for every item",
                f"{missing.size} missing (NaN) at rows {missing[:5].tolist()}",
                _MISSING_FIX,
            )
        if np.isfinite(arr).all() and (arr == np.round(arr)).all():
            return arr.astype(np.int64)
        return arr.astype(np.float64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind in "bU":
        return arr
    if arr.dtype.kind == "S":
        return arr.astype(str)
    raise param_error(TypeError, param, func, "ints, strings, bools or floats", describe(arr))


def _object_labels(arr: np.ndarray, func: str, param: str) -> np.ndarray:
    values = arr.tolist()
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and v != v)]
    if missing:
        raise param_error(
            ValueError,
            param,
            func,
            "a label for every item",
            f"{len(missing)} missing (None or NaN) at rows {missing[:5]}",
            _MISSING_FIX,
        )
    if all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=str)
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.asarray(values, dtype=bool)
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, str) for v in values):
        return np.asarray(values, dtype=np.float64)
    kinds = sorted({type(v).__name__ for v in values})
    raise param_error(
        ValueError,
        param,
        func,
        "labels of one kind (all numbers or all strings)",
        f"a mix of {kinds}",
        "Convert them, e.g. with labels.astype(str).",
    )


def label_names(
    labels: np.ndarray, class_names: Sequence[str] | None, *, func: str, param: str = "labels"
) -> list[str]:
    """Display strings of `label_array` labels: int classes through ``class_names``.

    Raises:
        ValueError: An int label outside ``class_names``.
    """
    if class_names is not None and labels.dtype.kind in "iu":
        k = len(class_names)
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise param_error(
                ValueError,
                param,
                func,
                f"class indices in [0, {k - 1}] (class_names has {k} entries)",
                f"values in [{labels.min()}, {labels.max()}]",
            )
        table = np.asarray([str(c) for c in class_names], dtype=object)
        return list(table[labels])
    return [str(v) for v in labels.tolist()]
