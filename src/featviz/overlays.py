"""The overlay engine: colour maps as lookup tables, heatmaps blended over images.

* `colorize` turns [0, 1] maps into RGB uint8 with a matplotlib colour map (or OpenCV's
  own tables, ``cmap="cv2:jet"``), as a lookup table indexed on the device;
* `overlay` blends colourised heatmaps over images of any form `featviz._images`
  ingests (on the CPU, OpenCV's kernels colour and blend a whole chunk of the batch at
  a time);
* `plot_overlays` draws rows of input | heatmap | overlay.

Example:
    >>> maps = featviz.sum_channels(cap.activations["features.13"])  # doctest: +SKIP
    >>> pictures = featviz.overlay(images, maps)  # (N, H, W, 3) uint8 tensor
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from featviz._images import as_tensor, display_mean_std, heatmap_batch, image_batch, rgb_float
from featviz._ops import finite_or_zero, minmax, resize
from featviz._validation import renamed

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

__all__ = ["colorize", "overlay", "plot_overlays"]


# -- colour maps ------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _named_lut(name: str) -> tuple[np.ndarray, bool]:
    """``(lut, opencv)``: uint8 (N + 3, 3) rows 0..N-1, under, over, bad; or cv2 (256, 3)."""
    if name.startswith("cv2:"):
        import cv2

        attr = "COLORMAP_" + name[4:].upper()
        if not hasattr(cv2, attr):
            raise ValueError(
                f"The 'cmap' parameter names an unknown OpenCV colour map {name!r} (no cv2.{attr})."
            )
        ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
        bgr = cv2.applyColorMap(ramp, getattr(cv2, attr))
        lut = np.ascontiguousarray(bgr[:, 0, ::-1])
        lut.setflags(write=False)
        return lut, True
    import matplotlib

    try:
        cm = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(
            f"The 'cmap' parameter must name a matplotlib colour map or 'cv2:<name>'. "
            f"Got {name!r} instead."
        ) from None
    lut = _cmap_lut(cm)
    lut.setflags(write=False)
    return lut, False


def _cmap_lut(cm: Colormap) -> np.ndarray:
    rows = cm(np.arange(cm.N), bytes=True)[:, :3]
    extra = cm(np.array([-1.0, 2.0, np.nan]), bytes=True)[:, :3]
    return np.concatenate([rows, extra]).astype(np.uint8)


def _lut(cmap: str | Colormap) -> tuple[np.ndarray, bool]:
    if isinstance(cmap, str):
        return _named_lut(cmap)
    from matplotlib.colors import Colormap

    if isinstance(cmap, Colormap):
        return _cmap_lut(cmap), False
    raise TypeError(
        "The 'cmap' parameter must be a colour map name or a matplotlib Colormap. "
        f"Got {type(cmap).__name__} instead."
    )


def _colorize(t: torch.Tensor, cmap: str | Colormap) -> torch.Tensor:
    """Map values to RGB uint8 (..., 3) on ``t``'s device (matplotlib's indexing rules)."""
    table, opencv = _lut(cmap)
    lut = torch.tensor(table, device=t.device)
    if opencv:
        if t.is_floating_point():
            v = torch.nan_to_num(t * 255, nan=0.0, posinf=255.0, neginf=0.0)
        else:
            v = t
        idx = v.clamp(0, 255).long()  # like np.uint8(255 * x) for x in [0, 1]
        return lut[idx]
    n = lut.shape[0] - 3
    if t.is_floating_point():
        xa = t * n
        xa = torch.where(xa == n, torch.full_like(xa, n - 1), xa)
        bad = torch.isnan(xa)
        under, over = xa < 0, xa >= n
        idx = torch.nan_to_num(xa, nan=0.0).clamp(0, n - 1).long()
    else:
        xa = t.long()
        bad = torch.zeros_like(xa, dtype=torch.bool)
        under, over = xa < 0, xa >= n
        idx = xa.clamp(0, n - 1)
    idx = torch.where(under, n, idx)
    idx = torch.where(over, n + 1, idx)
    idx = torch.where(bad, n + 2, idx)
    return lut[idx]


@renamed(map="heatmaps")
def colorize(heatmaps: Any, cmap: str | Colormap = "jet") -> Any:
    """Colour maps with values in [0, 1] as RGB uint8, by table lookup on the device.

    With a matplotlib colour map the result equals ``cmap(heatmaps, bytes=True)[..., :3]``
    exactly (same bin edges ``floor(x * N)``, same under/over/bad colours; integer input
    indexes the table directly, as in matplotlib). With ``cmap="cv2:jet"`` (or any
    ``"cv2:<name>"`` of ``cv2.COLORMAP_<NAME>``) the table is OpenCV's own, built once
    with ``cv2.applyColorMap`` and converted BGR -> RGB, and values are indexed as
    ``np.uint8(255 * x)``: the colours of ``cv2.applyColorMap(np.uint8(255 * x), ...)``
    in old figures, reproduced exactly. OpenCV's JET is not matplotlib's ``"jet"``
    (its ramps differ by up to about 30 levels per channel).

    Args:
        heatmaps: Values, any shape, usually (H, W) or (N, H, W); tensor or array.
        cmap: A matplotlib colour map name or object, or ``"cv2:<name>"``.

    Returns:
        uint8 of shape ``heatmaps.shape + (3,)``: a tensor on ``heatmaps``'s device for tensor
        input, a numpy array for array input.

    Raises:
        TypeError: ``heatmaps`` is neither a tensor nor an array, or ``cmap`` is of a wrong type.
        ValueError: ``cmap`` names no known colour map.
    """
    t, was_numpy = as_tensor(heatmaps, func="colorize", param="heatmaps")
    out = _colorize(t, cmap)
    return out.cpu().numpy() if was_numpy else out


# -- images and heatmaps in ---------------------------------------------------------------
def _to_rgb255(
    nhwc: torch.Tensor, mean_std: tuple[torch.Tensor, torch.Tensor] | None
) -> torch.Tensor:
    """(n, H, W, C) uint8 or float -> a new float32 (n, H, W, 3) in [0, 255]."""
    return rgb_float(nhwc, mean_std, scale=255.0)


class _Prepared(NamedTuple):
    images: torch.Tensor  # (N, H, W, C) uint8 or float view of the input
    heat: torch.Tensor  # (N, h, w) float32, NaN -> 0, normalised if asked
    mean_std: tuple[torch.Tensor, torch.Tensor] | None
    batched: bool
    tensor_input: bool


def _device(images: Any, heatmaps: Any) -> torch.device | None:
    """Where the work runs: the images' device, else the heatmaps' (else the CPU)."""
    first = images[0] if isinstance(images, (list, tuple)) and images else images
    for x in (first, heatmaps):
        if isinstance(x, torch.Tensor):
            return x.device
    return None


def _prepare(
    images: Any,
    heatmaps: Any,
    alpha: float,
    mean: Any,
    std: Any,
    normalize: bool,
    func: str = "overlay",
) -> _Prepared:
    """Validate and broadcast the inputs of `overlay` and `plot_overlays` (no big copies)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(
            f"The 'alpha' parameter of {func} must be a float in the range [0, 1]. "
            f"Got {alpha!r} instead."
        )
    device = _device(images, heatmaps)
    img, img_batched, tensor_input = image_batch(images, func=func, device=device)
    mean_std = display_mean_std(img, mean, std, func=func)
    heat, heat_batched = heatmap_batch(heatmaps, func=func, device=img.device)
    heat = minmax(heat, what="heatmap") if normalize else finite_or_zero(heat, what="heatmap")
    ni, nh = img.shape[0], heat.shape[0]
    if ni != nh:
        if ni != 1 and nh != 1:
            raise ValueError(
                f"The 'images' and 'heatmaps' parameters of {func} hold {ni} and {nh} "
                "items; give as many heatmaps as images (or one of either)."
            )
        n = max(ni, nh)
        img = img.expand(n, -1, -1, -1)
        heat = heat.expand(n, -1, -1)
    return _Prepared(img, heat, mean_std, img_batched or heat_batched, tensor_input)


def _linear_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """(n_out, n_in) weights of 1-D linear interpolation, ``align_corners=False``.

    Built by interpolating the identity, so the weights are torch's own; bilinear
    resizing is separable: ``resize(X) = A_h @ X @ A_w.T``.
    """
    eye = torch.eye(n_in, dtype=torch.float32, device=device)[None]
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T


def _enlarge_matrices(
    hw_in: tuple[int, int], hw_out: tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A_h (H, h), A_w (w, W))`` with ``A_h @ X @ A_w`` the bilinear resize of (h, w) X."""
    a_h = _linear_matrix(hw_in[0], hw_out[0], device)
    a_w = _linear_matrix(hw_in[1], hw_out[1], device).T.contiguous()
    return a_h, a_w


def _heat_to(heat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(n, h, w) -> new float32 (n, H, W) in [0, 1], bilinear (antialiased when shrinking).

    Enlarging uses two small matrix products (the same weights as ``F.interpolate``,
    equal to within 1e-6, and several times faster for 7x7 -> 224x224 on the CPU).
    """
    h, w = int(heat.shape[-2]), int(heat.shape[-1])
    if (h, w) == size:
        return heat.clone().clamp_(0.0, 1.0)
    if h > size[0] or w > size[1]:
        return resize(heat, size, antialias=True).clamp_(0.0, 1.0)
    a_h, a_w = _enlarge_matrices((h, w), size, heat.device)
    return torch.matmul(torch.matmul(a_h, heat), a_w).clamp_(0.0, 1.0)


def _fast_indices(heat01: torch.Tensor, n: int, opencv: bool, out: torch.Tensor) -> torch.Tensor:
    """Table rows (int32, into ``out``) for values in [0, 1]: the rows `_colorize` picks."""
    if opencv:  # np.uint8(255 * x)
        heat01.mul_(255.0)
    else:  # matplotlib: floor(x * N), with x == 1 -> N - 1
        heat01.mul_(float(n)).clamp_(max=float(n - 1))
    return out.copy_(heat01.reshape(-1))  # float -> int truncates (values are >= 0)


def _blend(p: _Prepared, alpha: float, cmap: str | Colormap) -> torch.Tensor:
    """The overlays, uint8 (N, H, W, 3): ``floor((1 - alpha) * image + alpha * colour + 0.5)``.

    On the CPU, OpenCV's kernels colour and blend (`_blend_cpu`, 2-3x faster there);
    on other devices, and for tables of over 256 colours or heatmaps larger than their
    images, torch does (`_blend_torch`). For uint8 images both give the same numbers
    when no resizing is needed, and agree within 1 level otherwise.
    """
    table, opencv = _colour_rows(cmap)
    img = p.images
    if (
        img.device.type == "cpu"
        and len(table) <= 256
        and p.heat.shape[-2] <= img.shape[1]
        and p.heat.shape[-1] <= img.shape[2]
    ):
        return _blend_cpu(p, alpha, table, opencv)
    return _blend_torch(p, alpha, table, opencv)


def _colour_rows(cmap: str | Colormap) -> tuple[np.ndarray, bool]:
    """``(rows, opencv)``: the uint8 (N, 3) colours a value in [0, 1] can pick.

    That is `_lut` without matplotlib's under/over/bad rows, which clipped values never
    reach.
    """
    table, opencv = _lut(cmap)
    return (table if opencv else table[:-3]), opencv


def _blend_torch(
    p: _Prepared, alpha: float, table: np.ndarray, opencv: bool, chunk_pixels: int = 1 << 17
) -> torch.Tensor:
    """`_blend` on torch, any device and image dtype; ``table`` from `_colour_rows`.

    On the CPU, a few images at a time (about ``chunk_pixels`` pixels), reusing the same
    buffers so the work stays in cache; on other devices the whole batch at once.
    """
    img = p.images
    n_img, h, w = int(img.shape[0]), int(img.shape[1]), int(img.shape[2])
    hh, hw = int(p.heat.shape[-2]), int(p.heat.shape[-1])
    dev = img.device
    rows = int(table.shape[0])
    # colours premultiplied by alpha, plus 0.5 so that the final cast rounds
    lut = torch.tensor(table, dtype=torch.float32, device=dev).mul_(alpha).add_(0.5)
    out = torch.empty((n_img, h, w, 3), dtype=torch.uint8, device=dev)
    step = min(max(1, chunk_pixels // (h * w)) if dev.type == "cpu" else n_img, n_img)
    enlarge = hh <= h and hw <= w
    if enlarge:  # bilinear as two matrix products (identity when the sizes match)
        a_h, a_w = _enlarge_matrices((hh, hw), (h, w), dev)
    heat_buf = torch.empty((step, h, w), dtype=torch.float32, device=dev)
    colour_buf = torch.empty((step * h * w, 3), dtype=torch.float32, device=dev)
    # float -> int32 -> uint8 is several times faster than float -> uint8 on the CPU
    int_buf = torch.empty((step, h, w, 3), dtype=torch.int32, device=dev)
    idx_buf = torch.empty(step * h * w, dtype=torch.int32, device=dev)
    direct = img.dtype == torch.uint8 and img.shape[-1] == 3
    for s in range(0, n_img, step):
        e = min(s + step, n_img)
        m = (e - s) * h * w
        heat = heat_buf[: e - s]
        if enlarge:
            torch.matmul(torch.matmul(a_h, p.heat[s:e]), a_w, out=heat)
        else:
            heat.copy_(resize(p.heat[s:e], (h, w), antialias=True))
        idx = _fast_indices(heat.clamp_(0.0, 1.0), rows, opencv, idx_buf[:m])
        colour = torch.index_select(lut, 0, idx, out=colour_buf[:m]).view(e - s, h, w, 3)
        rgb = img[s:e] if direct else _to_rgb255(img[s:e], p.mean_std)
        colour.add_(rgb, alpha=1.0 - alpha)
        # values in [0.5, 255.5]: truncation rounds half up
        out[s:e].copy_(int_buf[: e - s].copy_(colour))
    return out


#: Added before rounding in `_blend_cpu`: OpenCV rounds halves to even, featviz up.
_HALF_UP = 2.0**-12


def _blend_cpu(
    p: _Prepared, alpha: float, table: np.ndarray, opencv: bool, chunk_pixels: int = 1 << 18
) -> torch.Tensor:
    """`_blend` on the CPU, with OpenCV's SIMD kernels doing the per-pixel work.

    ``table`` is `_colour_rows`'s, at most 256 rows.

    The batch is processed as one tall image (``k * H`` rows) per chunk of ``k`` images:
    torch resizes the heatmaps (two matrix products) and computes the table rows,
    ``cv2.applyColorMap`` with a 256-row RGB table colours them and ``cv2.addWeighted``
    blends them with the image (RGB uint8 as it is; anything else as float32 RGB in
    [0, 255] from `_to_rgb255`); no per-image loop. ``addWeighted`` rounds halves to
    even, so ``_HALF_UP`` (2**-12: far above float32 noise at 255, and for uint8 images
    below the gap between a half and any other fraction the blend of two integers with
    a weight of a few decimals can take) makes it round halves up like the torch path.
    """
    import cv2

    img = p.images
    n_img, h, w = int(img.shape[0]), int(img.shape[1]), int(img.shape[2])
    hh, hw = int(p.heat.shape[-2]), int(p.heat.shape[-1])
    rows = int(table.shape[0])
    lut = np.zeros((256, 1, 3), dtype=np.uint8)
    lut[:rows, 0] = table
    a_h, a_w = _enlarge_matrices((hh, hw), (h, w), img.device)
    # scale the small maps, not the big ones: x * 255 (OpenCV) or x * N (matplotlib)
    scale = 255.0 if opencv else float(rows)
    heat = p.heat.clamp(0.0, 1.0).mul_(scale)
    step = min(max(1, chunk_pixels // (h * w)), n_img)
    out = torch.empty((n_img, h, w, 3), dtype=torch.uint8)
    out_np = out.numpy()
    big = torch.empty((step, h, w), dtype=torch.float32)
    idx32 = torch.empty((step, h, w), dtype=torch.int32)
    idx8 = torch.empty((step, h, w), dtype=torch.uint8)
    colour = np.empty((step * h, w, 3), dtype=np.uint8)
    direct = img.dtype == torch.uint8 and img.shape[-1] == 3
    images = img.numpy() if direct else None
    for s in range(0, n_img, step):
        e = min(s + step, n_img)
        k = e - s
        torch.matmul(torch.matmul(a_h, heat[s:e]), a_w, out=big[:k])
        big[:k].clamp_(0.0, float(rows - 1))  # x == 1 -> the last row, as matplotlib
        idx8[:k].copy_(idx32[:k].copy_(big[:k]))  # truncates; via int32 (faster)
        col = cv2.applyColorMap(idx8[:k].numpy().reshape(k * h, w), lut, dst=colour[: k * h])
        if images is not None:
            src = np.ascontiguousarray(images[s:e]).reshape(k * h, w, 3)
        else:  # float32, as the torch path blends it
            src = np.ascontiguousarray(_to_rgb255(img[s:e], p.mean_std).numpy())
            src = src.reshape(k * h, w, 3)
        dst = out_np[s:e].reshape(k * h, w, 3)
        res = cv2.addWeighted(src, 1.0 - alpha, col, alpha, _HALF_UP, dst=dst, dtype=cv2.CV_8U)
        if res is not dst:  # OpenCV allocated instead of writing in place
            dst[...] = res
    return out


@renamed(image="images", heatmap="heatmaps")
def overlay(
    images: Any,
    heatmaps: Any,
    *,
    alpha: float = 0.4,
    cmap: str | Colormap = "jet",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize: bool = True,
) -> Any:
    """Blend colourised heatmaps over images: ``(1 - alpha) * image + alpha * colour``.

    Each heatmap is min-max normalised (per image, at its own resolution), resized to
    its image with bilinear interpolation (`upsample`), coloured with `colorize`, and
    blended, rounding halves up. The work is batched on the images' device, in chunks
    that stay in cache on the CPU; no per-image Python loop. On the CPU, OpenCV's SIMD
    kernels do the colouring and blending (the same numbers as torch, 2-3x faster
    there for uint8 images); on other devices everything runs on torch.

    Accepted images:

    * PIL images of any mode (converted to RGB; alpha composited onto white);
    * a list or tuple of single images of one size (PIL images, arrays, tensors);
    * numpy arrays, channel-last: (H, W), (H, W, C), (N, H, W) grayscale batches,
      (N, H, W, C) (channel-first arrays are refused with the fix);
    * tensors, channel-first: (H, W), (C, H, W), (N, C, H, W), (N, H, W) grey;

    with C in (1, 3, 4) (grayscale is repeated to RGB, alpha composited onto white),
    holding uint8 values 0..255 or floats of any dtype (bfloat16 and float16 too) in
    [0, 1] (clipped; a maximum above 1.5 warns), or standardised floats when ``mean``
    and ``std`` are given together (then ``x * std + mean`` is displayed). These are
    the rules of every featviz function that takes images (`featviz._images`).

    Heatmaps are (h, w), (N, h, w) or (N, 1, h, w), tensor or array, any size. One image
    with N heatmaps gives N overlays of that image, and the other way round.

    Args:
        images: Image(s), see above.
        heatmaps: Heatmap(s), see above.
        alpha: Weight of the colour, in [0, 1].
        cmap: Colour map for `colorize` (``"cv2:jet"`` for OpenCV's JET).
        mean: Per-channel mean the image tensor was normalised with.
        std: Per-channel standard deviation the image tensor was normalised with.
        normalize: Min-max normalise each heatmap; ``False`` takes values as they are,
            clipped to [0, 1].

    Returns:
        RGB uint8 (H, W, 3), or (N, H, W, 3) when the image or the heatmap was a batch:
        a tensor on the image's device for tensor images, a numpy array for PIL and numpy
        images.

    Raises:
        TypeError: Unsupported image or heatmap type or dtype.
        ValueError: Bad shapes, batch sizes that do not match, ``alpha`` out of range,
            ``mean`` without ``std``.
    """
    p = _prepare(images, heatmaps, alpha, mean, std, normalize)
    blended = _blend(p, alpha, cmap)
    out = blended if p.batched else blended[0]
    return out if p.tensor_input else out.cpu().numpy()


def plot_overlays(
    images: Any,
    heatmaps: Any,
    *,
    titles: Sequence[str] | None = None,
    alpha: float = 0.4,
    cmap: str | Colormap = "jet",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize: bool = True,
    colorbar: bool = False,
    fig: Figure | None = None,
) -> Figure:
    """Draw rows of input | heatmap | overlay, one row per image.

    The heatmap column shows the heatmap resized to the image and scaled to [0, 1]
    (``imshow`` with ``vmin=0, vmax=1``), the overlay column the result of `overlay`.

    Args:
        images: Image(s), any kind `overlay` accepts.
        heatmaps: Heatmap(s), any kind `overlay` accepts.
        titles: One label per row (drawn left of the row), as many as rows.
        alpha: Weight of the colour in the overlay.
        cmap: Colour map of the heatmap and overlay columns. ``"cv2:<name>"`` colours
            the overlay with OpenCV's table and the heatmap column with matplotlib's
            map of the same name when there is one (else ``"jet"``).
        mean: Per-channel mean the images were normalised with (see `overlay`).
        std: Per-channel standard deviation the images were normalised with.
        normalize: Min-max normalise each heatmap (see `overlay`).
        colorbar: Add one colour bar shared by the heatmap column.
        fig: Figure to draw into (cleared first); a new one by default.

    Returns:
        The figure, with 3 Axes per row (plus one for the colour bar).

    Raises:
        ValueError: ``titles`` does not have one entry per row, or see `overlay`.
    """
    p = _prepare(images, heatmaps, alpha, mean, std, normalize, "plot_overlays")
    ov = _blend(p, alpha, cmap).cpu().numpy()
    n, h, w = (int(v) for v in p.images.shape[:3])
    # a new tensor (grey is repeated, never an expanded view), so rounding in place is safe
    rgb = _to_rgb255(p.images, p.mean_std).add_(0.5).floor_().to(torch.uint8).cpu().numpy()
    hm = _heat_to(p.heat, (h, w)).cpu().numpy()
    if titles is not None:
        titles = list(titles)
        if len(titles) != n:
            raise ValueError(
                f"The 'titles' parameter of plot_overlays must have one entry per row ({n}). "
                f"Got {len(titles)} instead."
            )
    mpl_cmap: Any = cmap
    if isinstance(cmap, str) and cmap.startswith("cv2:"):
        import matplotlib

        mpl_cmap = cmap[4:] if cmap[4:] in matplotlib.colormaps else "jet"
    if fig is None:
        from featviz._figures import new_figure

        # panels keep the image's aspect, but an extreme one (a 4000x2 strip) must not
        # make a figure of hundreds of megapixels: the row height is capped
        row = 2.5 * min(max(h / w, 1 / 8), 8)
        fig = new_figure((7.5, n * row + 0.5 + 0.25 * n), layout="constrained")
    else:
        fig.clear()
    axes = fig.subplots(n, 3, squeeze=False)
    last = None
    for i in range(n):
        a0, a1, a2 = axes[i]
        a0.imshow(rgb[i])
        last = a1.imshow(hm[i], cmap=mpl_cmap, vmin=0.0, vmax=1.0)
        a2.imshow(ov[i])
        for ax in (a0, a1, a2):
            ax.set_xticks([])
            ax.set_yticks([])
        if titles is not None:
            a0.set_ylabel(str(titles[i]))
    for ax, name in zip(axes[0], ("input", "heatmap", "overlay"), strict=True):
        ax.set_title(name)
    if colorbar and last is not None:
        fig.colorbar(last, ax=list(axes.ravel()), shrink=0.6, label="heatmap")
    return fig
