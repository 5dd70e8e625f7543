r"""Localisation metrics against ground truth: the pointing game and energy in the box.

Boxes are ``(x0, y0, x1, y1)`` with exclusive ends, as `featviz.datasets.Shapes` gives
them, or boolean masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featviz import _ops
from featviz._validation import check_choice, renamed
from featviz.metrics._common import Aggregate
from featviz.metrics._inputs import _as_maps

__all__ = ["energy_in_box", "pointing_game"]


#: The one mask rule of the metrics: a float (or int) mask marks the object where it is at
#: least this; a bool mask is taken as it is. A soft mask (0.9 in, 0.01 out) thus keeps its
#: object instead of counting every pixel as object.
MASK_THRESHOLD = 0.5


def _regions(
    maps: torch.Tensor, boxes: Any, masks: Any, func: str
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Validated (boxes (N, 4) int64, masks (N, H, W) bool); exactly one is not None."""
    if (boxes is None) == (masks is None):
        raise ValueError(f"{func} needs exactly one of the 'boxes' and 'masks' parameters.")
    n, h, w = maps.shape
    if boxes is not None:
        b = torch.as_tensor(np.asarray(boxes) if not isinstance(boxes, torch.Tensor) else boxes)
        if b.ndim != 2 or b.shape[1] != 4 or b.dtype.is_floating_point or b.dtype == torch.bool:
            raise ValueError(
                f"The 'boxes' parameter of {func} must be ints of shape (N, 4) as "
                f"(x0, y0, x1, y1). Got dtype {b.dtype} and shape {tuple(b.shape)} instead."
            )
        if b.shape[0] != n:
            raise ValueError(
                f"The 'boxes' parameter of {func} must hold one box per map: {n} maps but "
                f"{b.shape[0]} boxes."
            )
        _check_boxes_cover_pixels(b.long(), h, w, func)
        return b.long().to(maps.device), None
    m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks)
    if tuple(m.shape) != (n, h, w):
        raise ValueError(
            f"The 'masks' parameter of {func} must have the maps' shape {(n, h, w)}. "
            f"Got shape {tuple(m.shape)} instead."
        )
    m = m.to(maps.device)
    return None, m if m.dtype == torch.bool else m >= MASK_THRESHOLD


def _check_boxes_cover_pixels(b: torch.Tensor, h: int, w: int, func: str) -> None:
    """Refuse boxes that hold no pixel of the (h, w) map: empty, or off the map."""
    x0, y0 = b[:, 0].clamp(0, w), b[:, 1].clamp(0, h)
    x1, y1 = b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)
    bad = torch.nonzero((x1 <= x0) | (y1 <= y0)).flatten()
    if bad.numel():
        raise ValueError(
            f"The 'boxes' parameter of {func} must give every map a box holding at least one "
            f"of its {h}x{w} pixels (x0 < x1, y0 < y1, exclusive ends). Got "
            f"{bad.numel()} empty or off-map box(es), e.g. row {int(bad[0])}: "
            f"{b[bad[0]].tolist()}; a score there would be a silent miss or 0."
        )


def _box_masks(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    ys = torch.arange(h, device=boxes.device)
    xs = torch.arange(w, device=boxes.device)
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    iny = (ys[None] >= y0[:, None]) & (ys[None] < y1[:, None])
    inx = (xs[None] >= x0[:, None]) & (xs[None] < x1[:, None])
    return iny[:, :, None] & inx[:, None, :]


@renamed(saliency="heatmaps", reduction="aggregate", reduce="aggregate")
def pointing_game(
    heatmaps: Any,
    boxes: Any = None,
    masks: Any = None,
    *,
    tolerance: float = 0,
    aggregate: Aggregate = "mean",
) -> float | torch.Tensor:
    r"""Pointing game (Zhang et al. 2016): does each map's maximum hit the object?

    The point is the map's maximum $p_i = \arg\max_{(y, x)} L_i(y, x)$ (the first in
    row-major order on ties). It is a hit when its Euclidean distance to the object
    region $R_i$ (a box with exclusive ends, or a mask) is at most ``tolerance`` pixels
    (the original paper uses 15). A constant map (for example all zeros) points nowhere
    and counts as a miss. NaN and inf take no part in the maximum (a `RuntimeWarning`
    says how many there were); a map with no finite value is a miss.
    Accuracy $= \frac{1}{N}\sum_i \mathbb{1}[d(p_i, R_i) \le \tau]$.

    Args:
        heatmaps: (N, H, W) tensor or array, in the boxes' / masks' pixel grid.
        boxes: (N, 4) ints ``(x0, y0, x1, y1)``, ``x1``/``y1`` exclusive (as
            `featviz.datasets.Shapes.boxes`).
        masks: (N, H, W) object masks, instead of ``boxes``: bools as they are, numbers
            at least `MASK_THRESHOLD` (0.5) are object (a soft mask keeps its object).
        tolerance: Distance in pixels, >= 0.
        aggregate: ``"mean"``: the hit rate as a float in [0, 1]; ``"none"``: a bool
            tensor (N,) of hits.

    Returns:
        A float, or a bool tensor (N,) with ``aggregate="none"``.

    Raises:
        ValueError: No maps (N = 0), neither or both of ``boxes`` and ``masks``, or
            shapes that do not match the maps.
    """
    check_choice(aggregate, "aggregate", "pointing_game", ("mean", "none"))
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float, np.integer, np.floating))
        or not float(tolerance) >= 0
    ):
        raise ValueError(
            "The 'tolerance' parameter of pointing_game must be a number >= 0 (pixels). "
            f"Got {tolerance!r} instead."
        )
    raw = _as_maps(heatmaps, func="pointing_game", clean=False)
    maps = _ops.finite_or_zero(raw, what="heatmaps")  # warns about NaN/inf
    b, m = _regions(maps, boxes, masks, "pointing_game")
    n, h, w = maps.shape
    # the one rule for NaN/inf: they take no part in the maximum (nor the minimum)
    finite = torch.isfinite(raw).flatten(1)
    flat = maps.flatten(1)
    inf = float("inf")
    idx = torch.where(finite, flat, -inf).argmax(1)
    py, px = idx // w, idx % w
    top = torch.where(finite, flat, -inf).amax(1)
    constant = (top == torch.where(finite, flat, inf).amin(1)) | ~finite.any(1)
    if b is not None:
        dx = torch.clamp(torch.maximum(b[:, 0] - px, px - (b[:, 2] - 1)), min=0)
        dy = torch.clamp(torch.maximum(b[:, 1] - py, py - (b[:, 3] - 1)), min=0)
        empty = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        d2 = torch.where(empty, torch.full_like(dx, -1), dx * dx + dy * dy).float()
        hit = (d2 >= 0) & (d2 <= float(tolerance) ** 2)
    else:
        assert m is not None
        if tolerance == 0:
            hit = m[torch.arange(n, device=m.device), py, px]
        else:
            ys = torch.arange(h, device=m.device)[None, :, None]
            xs = torch.arange(w, device=m.device)[None, None, :]
            d2 = (ys - py[:, None, None]) ** 2 + (xs - px[:, None, None]) ** 2
            d2 = torch.where(m, d2, torch.full_like(d2, h * h + w * w + 1))
            reach = d2.flatten(1).amin(1)
            hit = m.flatten(1).any(1) & (reach.float() <= float(tolerance) ** 2)
    hit = hit & ~constant
    return hit if aggregate == "none" else float(hit.float().mean())


@renamed(saliency="heatmaps", reduction="aggregate", reduce="aggregate")
def energy_in_box(
    heatmaps: Any,
    boxes: Any = None,
    masks: Any = None,
    *,
    aggregate: Aggregate = "mean",
) -> float | torch.Tensor:
    r"""Energy-based pointing game (Wang et al. 2020): the map's mass inside the object.

    $$
    E_i = \frac{\sum_{(y, x) \in R_i} \max(L_i(y, x), 0)}{\sum_{(y, x)} \max(L_i(y, x), 0)},
    $$

    with $R_i$ the box (exclusive ends) or mask; an all-zero map gives $E_i = 0$.

    Args:
        heatmaps: (N, H, W) tensor or array, in the boxes' / masks' pixel grid.
        boxes: (N, 4) ints ``(x0, y0, x1, y1)``, ``x1``/``y1`` exclusive.
        masks: (N, H, W) object masks, instead of ``boxes``: bools as they are, numbers
            at least `MASK_THRESHOLD` (0.5) are object (a soft mask keeps its object).
        aggregate: ``"mean"``: the mean over images as a float; ``"none"``: a float32
            tensor (N,).

    Returns:
        A float in [0, 1], or a float32 tensor (N,) with ``aggregate="none"``.
    """
    check_choice(aggregate, "aggregate", "energy_in_box", ("mean", "none"))
    maps = _as_maps(heatmaps, func="energy_in_box").clamp_min(0)
    b, m = _regions(maps, boxes, masks, "energy_in_box")
    region = _box_masks(b, *maps.shape[-2:]) if b is not None else m
    assert region is not None
    # float64 sums: float32 maps near their largest values would overflow to inf / inf
    total = maps.double().flatten(1).sum(1)
    inside = (maps.double() * region).flatten(1).sum(1)
    e = torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), 0.0).float()
    return e if aggregate == "none" else float(e.mean())
