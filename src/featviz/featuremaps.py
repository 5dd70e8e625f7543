"""Feature-map maths: channel sums, normalisation, upsampling, and the channel grid.

Everything runs batched on the device the tensors live on:

* `sum_channels` reduces (N, C, H, W) feature maps to (N, H, W) maps;
* `normalize` rescales maps to [0, 1] (min-max per image);
* `upsample` resizes maps with ``torch.nn.functional.interpolate`` (bilinear with
  ``align_corners=False``: the same numbers as OpenCV's ``INTER_LINEAR``);
* `plot_feature_grid` draws one panel per channel.

Colouring and blending over images (`colorize`, `overlay`, `plot_overlays`) live in
`featviz.overlays`; they stay importable from here.

Example:
    >>> with featviz.capture(model, "features.13") as cap:  # doctest: +SKIP
    ...     model(images)
    >>> maps = featviz.sum_channels(cap.activations["features.13"])  # (N, H, W)
    >>> pictures = featviz.overlay(images, maps)  # (N, H, W, 3) uint8 tensor
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from featviz._images import as_tensor, size2
from featviz._ops import minmax, resize, user_stacklevel
from featviz._validation import renamed

# the overlay engine's public names, importable from here as before the split
from featviz.overlays import colorize as colorize
from featviz.overlays import overlay as overlay
from featviz.overlays import plot_overlays as plot_overlays

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

__all__ = ["normalize", "plot_feature_grid", "sum_channels", "upsample"]

logger = logging.getLogger(__name__)

_REDUCE = ("sum", "mean", "max", "abs-sum")
_MODES = ("bilinear", "bicubic", "nearest", "nearest-exact", "area")


# -- conversions ------------------------------------------------------------------------
def _back(t: torch.Tensor, was_numpy: bool) -> Any:
    return t.cpu().numpy() if was_numpy else t


def _float(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_floating_point() else t.float()


# -- reductions and scaling -------------------------------------------------------------
@renamed(fmap="activations")
def sum_channels(activations: Any, reduce: str = "sum") -> Any:
    """Reduce feature maps over their channels.

    Args:
        activations: Feature maps (C, H, W) or (N, C, H, W), a tensor (any device) or an array.
        reduce: ``"sum"``, ``"mean"``, ``"max"`` (channel-wise maximum) or ``"abs-sum"``
            (sum of absolute values).

    Returns:
        (H, W) or (N, H, W), of the same kind (tensor on the same device, or array) as
        ``activations``. Integer and bool inputs give float32; float inputs keep their dtype.

    Raises:
        TypeError: ``activations`` is neither a tensor nor an array.
        ValueError: ``activations`` is not 3-D or 4-D, or ``reduce`` is unknown.
    """
    t, was_numpy = as_tensor(activations, func="sum_channels", param="activations")
    if t.ndim not in (3, 4):
        raise ValueError(
            "The 'activations' parameter of sum_channels must have shape (C, H, W) or "
            f"(N, C, H, W). Got shape {tuple(t.shape)} instead."
        )
    if reduce not in _REDUCE:
        raise ValueError(
            f"The 'reduce' parameter of sum_channels must be one of {list(_REDUCE)}. "
            f"Got {reduce!r} instead."
        )
    t = _float(t)
    dim = t.ndim - 3
    if reduce == "sum":
        out = t.sum(dim)
    elif reduce == "mean":
        out = t.mean(dim)
    elif reduce == "max":
        out = t.amax(dim)
    else:
        out = t.abs().sum(dim)
    return _back(out, was_numpy)


@renamed(map="heatmaps")
def normalize(heatmaps: Any, *, per_image: bool = True, eps: float | None = None) -> Any:
    """Min-max scale maps to [0, 1]: ``(x - min) / (max - min)``.

    The rule of every featviz function that scales maps: a constant map (its range at
    most 1e-5 of its magnitude, at any scale and in float16) becomes all zeros, never
    NaN; NaN and inf values do not count towards the minimum and maximum and become 0,
    with a `RuntimeWarning`.

    Args:
        heatmaps: (H, W), (N, H, W) or (N, C, H, W), a tensor or an array.
        per_image: With a batch (3-D or 4-D input), take min and max over each item of
            the first axis separately; ``False`` uses one min and max for everything.
            2-D input is always one image.
        eps: Deprecated and ignored (constant maps follow the rule above); passing it
            emits a `FutureWarning`.

    Returns:
        Floats in [0, 1], same shape and kind as ``heatmaps`` (float32 for integer input,
        else the input's float dtype).

    Raises:
        TypeError: ``heatmaps`` is neither a tensor nor an array.
        ValueError: ``heatmaps`` has fewer than 2 dimensions or is empty.
    """
    if eps is not None:
        warnings.warn(
            "The 'eps' parameter of normalize is deprecated and ignored: constant maps "
            "always become zeros. Remove the argument.",
            FutureWarning,
            stacklevel=user_stacklevel(),
        )
    t, was_numpy = as_tensor(heatmaps, func="normalize", param="heatmaps")
    if t.ndim < 2 or t.numel() == 0:
        raise ValueError(
            "The 'heatmaps' parameter of normalize must be a non-empty array with at least 2 "
            f"dimensions (H, W). Got shape {tuple(t.shape)} instead."
        )
    return _back(minmax(t, per_item=per_image and t.ndim > 2), was_numpy)


@renamed(map="heatmaps")
def upsample(
    heatmaps: Any,
    size: int | Sequence[int],
    mode: str = "bilinear",
    *,
    antialias: bool = False,
) -> Any:
    """Resize maps to ``size`` with ``torch.nn.functional.interpolate``.

    ``mode="bilinear"`` uses ``align_corners=False`` (pixel centres at ``i + 0.5``) and
    clamps at the border, which is exactly OpenCV's ``cv2.resize(..., INTER_LINEAR)``
    for float input when enlarging. When shrinking, neither filters by default (both
    sample 2x2 neighbours); ``antialias=True`` averages over the whole footprint like
    PIL's and torchvision's antialiased resize, and then no longer equals OpenCV.

    Args:
        heatmaps: (H, W), (N, H, W) or (N, C, H, W), a tensor (any device) or an array.
        size: Output ``(height, width)``, or one int for a square.
        mode: ``"bilinear"``, ``"bicubic"``, ``"nearest"``, ``"nearest-exact"`` or
            ``"area"``.
        antialias: Low-pass filter when shrinking (bilinear and bicubic only).

    Returns:
        Same rank and kind as ``heatmaps`` with the last two axes of length ``size``;
        float32 for integer input, else the input's float dtype.

    Raises:
        TypeError: ``heatmaps`` is neither a tensor nor an array.
        ValueError: Bad shape, size or mode.
    """
    t, was_numpy = as_tensor(heatmaps, func="upsample", param="heatmaps")
    if t.ndim not in (2, 3, 4):
        raise ValueError(
            "The 'heatmaps' parameter of upsample must have shape (H, W), (N, H, W) or "
            f"(N, C, H, W). Got shape {tuple(t.shape)} instead."
        )
    if mode not in _MODES:
        raise ValueError(
            f"The 'mode' parameter of upsample must be one of {list(_MODES)}. Got {mode!r} instead."
        )
    hw = size2(size, "size", "upsample")
    out = resize(_float(t), hw, mode, antialias=antialias)
    if out is t or out.data_ptr() == t.data_ptr():
        out = out.clone()  # same size: never hand back the caller's memory
    return _back(out, was_numpy)


# -- plots ------------------------------------------------------------------------------
def _grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    if ncols is None:
        ncols = max(1, math.ceil(math.sqrt(n)))
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(
            f"The 'ncols' parameter of plot_feature_grid must be an int in the range "
            f"[1, inf). Got {ncols!r} instead."
        )
    ncols = min(ncols, n)
    return math.ceil(n / ncols), ncols


@renamed(fmap="activations")
def plot_feature_grid(
    activations: Any,
    *,
    max_channels: int = 64,
    ncols: int | None = None,
    cmap: str | Colormap = "viridis",
    sum_panel: bool = True,
    fig: Figure | None = None,
) -> Figure:
    """Draw one panel per channel of a feature map, plus the channel-sum panel.

    Each panel shows its channel with its own colour scale (``imshow`` of the raw
    values); the last panel shows ``sum_channels(activations)`` over all channels.

    Args:
        activations: (C, H, W) or (1, C, H, W), a tensor or an array.
        max_channels: Draw the first ``max_channels`` channels (the title says when
            channels were left out).
        ncols: Columns of the grid; default about the square root of the panel count.
        cmap: matplotlib colour map for the panels.
        sum_panel: Add the channel-sum panel.
        fig: Figure to draw into (cleared first); a new one by default.

    Returns:
        The figure, with one Axes per panel.

    Raises:
        ValueError: ``activations`` is not (C, H, W) or (1, C, H, W), or ``max_channels`` < 1.
    """
    t, _ = as_tensor(activations, func="plot_feature_grid", param="activations")
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3:
        raise ValueError(
            "The 'activations' parameter of plot_feature_grid must have shape (C, H, W) or "
            f"(1, C, H, W); select one image of a batch. Got shape {tuple(t.shape)} instead."
        )
    if isinstance(max_channels, bool) or not isinstance(max_channels, int) or max_channels < 1:
        raise ValueError(
            "The 'max_channels' parameter of plot_feature_grid must be an int in the "
            f"range [1, inf). Got {max_channels!r} instead."
        )
    c = int(t.shape[0])
    shown = min(c, max_channels)
    maps = _float(t[:shown]).cpu().float().numpy()
    total = _float(t).sum(0).cpu().float().numpy() if sum_panel else None
    n = shown + (1 if sum_panel else 0)
    nrows, ncols = _grid_shape(n, ncols)
    if fig is None:
        from featviz._figures import new_figure

        fig = new_figure((1.6 * ncols, 1.6 * nrows + 0.4), layout="constrained")
    else:
        fig.clear()
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            fig.delaxes(ax)
            continue
        if i < shown:
            ax.imshow(maps[i], cmap=cmap)
            ax.set_title(f"ch {i}", fontsize=8)
        else:
            ax.imshow(total, cmap=cmap)
            ax.set_title("sum", fontsize=8, fontweight="bold")
        ax.set_xticks([])
        ax.set_yticks([])
    note = f"{shown} of {c} channels" if shown < c else f"{c} channels"
    if shown < c:
        logger.info("plot_feature_grid: drawing %d of %d channels", shown, c)
    fig.suptitle(f"Feature map {tuple(t.shape)}: {note}", fontsize=10)
    return fig
