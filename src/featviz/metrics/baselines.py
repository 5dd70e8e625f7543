r"""Baseline maps, so that every metric is read against maps that explain nothing.

A score means little alone: a deletion AUC of 0.21 is good only if a map that knows
nothing about the model does worse. `baseline_maps` makes three such maps for a batch:

- ``"random"``: uniform noise in [0, 1), seeded;
- ``"edges"``: the Sobel gradient magnitude of the image (an edge detector, which
  Adebayo et al. 2018 showed many saliency maps resemble), min-max normalised per image;
- ``"gaussian"``: a centred isotropic Gaussian, $\sigma = \min(H, W) / 4$, peak 1 (the
  centre bias of photographs).

`compare_baselines` scores the heatmaps and each baseline with any featviz metric and
says by how much the heatmaps beat each one, in the metric's own direction.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from featviz import _ops
from featviz._validation import check_choice
from featviz.metrics._inputs import _as_maps, _check_images

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BASELINE_KINDS", "baseline_maps", "compare_baselines"]

#: The kinds of baseline map `baseline_maps` makes.
BASELINE_KINDS: tuple[str, ...] = ("random", "edges", "gaussian")

#: featviz metrics whose lower scores are better (the others: higher is better).
_LOWER_IS_BETTER = frozenset({"deletion_auc", "average_drop"})

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _edges(images: torch.Tensor) -> torch.Tensor:
    grey = images.float().mean(1, keepdim=True)
    mode = "reflect" if min(grey.shape[-2:]) > 1 else "replicate"
    padded = F.pad(grey, (1, 1, 1, 1), mode=mode)
    kx = _SOBEL.to(grey.device).view(1, 1, 3, 3)
    gx = F.conv2d(padded, kx)
    gy = F.conv2d(padded, kx.transpose(2, 3))
    return _ops.minmax(torch.hypot(gx, gy)[:, 0], what="edge map")


def _gaussian(n: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    sigma = min(h, w) / 4
    y = torch.arange(h, dtype=torch.float32, device=device) - (h - 1) / 2
    x = torch.arange(w, dtype=torch.float32, device=device) - (w - 1) / 2
    g = torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return g.expand(n, h, w).clone()


def baseline_maps(images: torch.Tensor, kind: str, *, random_state: int = 0) -> torch.Tensor:
    r"""Maps that explain nothing, one per image, to read a metric's scores against.

    Args:
        images: float tensor (N, C, H, W), as the model takes them.
        kind: ``"random"`` (uniform noise in [0, 1) from a generator seeded with
            ``random_state``), ``"edges"`` (Sobel gradient magnitude of the channel mean,
            reflect padding, min-max normalised per image; a constant image gives zeros)
            or ``"gaussian"`` (centred, $\sigma = \min(H, W) / 4$, peak 1 at the centre
            ``((H - 1) / 2, (W - 1) / 2)``).
        random_state: Seed of the ``"random"`` maps.

    Returns:
        float32 tensor (N, H, W) on the images' device.

    Raises:
        TypeError: ``images`` is not a tensor.
        ValueError: ``images`` is not a float (N, C, H, W) batch; an unknown ``kind``.
    """
    images = _check_images(images, "baseline_maps")
    kind = check_choice(kind, "kind", "baseline_maps", BASELINE_KINDS)
    n, _, h, w = images.shape
    if kind == "random":
        generator = torch.Generator().manual_seed(int(random_state))
        return torch.rand(n, h, w, generator=generator).to(images.device)
    if kind == "edges":
        return _edges(images.detach())
    return _gaussian(n, h, w, images.device)


def _per_image(out: Any) -> torch.Tensor:
    """(N,) scores from what a metric returned."""
    for name in ("auc", "score"):  # CurveScores, RoadScores
        if hasattr(out, name) and isinstance(getattr(out, name), torch.Tensor):
            return getattr(out, name).detach().float().cpu()
    if isinstance(out, torch.Tensor):
        return out.detach().float().cpu().reshape(-1)
    return torch.tensor([float(out)])


def _lower_is_better(metric: Callable[..., Any], kwargs: dict[str, Any]) -> bool | None:
    name = getattr(metric, "__name__", "")
    if name == "road":
        return kwargs.get("order", "both") == "morf"
    if name in _LOWER_IS_BETTER:
        return True
    if name in {"insertion_auc", "increase_in_confidence", "pointing_game", "energy_in_box"}:
        return False
    return None


def compare_baselines(
    metric: Callable[..., Any],
    images: torch.Tensor,
    heatmaps: Any,
    *,
    kinds: Sequence[str] = BASELINE_KINDS,
    random_state: int = 0,
    higher_is_better: bool | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Score ``heatmaps`` and baseline maps with one metric: does the method beat them?

    ``metric`` is called once for the heatmaps and once for each baseline kind, with
    ``heatmaps=`` the maps, ``images=`` the images where it takes them, every other
    keyword argument as given, and ``aggregate="none"`` where it takes ``aggregate`` (so
    random choices inside the metric, such as ROAD's noise, are the same for every map).

    Args:
        metric: A featviz metric, such as `featviz.metrics.deletion_auc`, or any
            function taking ``heatmaps=`` and returning per-image scores (a tensor,
            `CurveScores`, `RoadScores` or a float).
        images: float tensor (N, C, H, W): the images the heatmaps explain.
        heatmaps: (N, h, w) tensor or array: the method's maps.
        kinds: Baseline kinds (`BASELINE_KINDS`) to compare with.
        random_state: Seed of the ``"random"`` baseline.
        higher_is_better: The metric's direction; None: known for the featviz metrics
            (lower is better for ``deletion_auc``, ``average_drop`` and ``road`` with
            ``order="morf"``), required for other functions.
        **kwargs: Passed to ``metric`` (``model=``, ``target=``, ``boxes=``, ...).

    Returns:
        `pandas.DataFrame` indexed by ``maps`` (``"heatmaps"``, then the kinds), with
        columns ``score`` (the mean over images), ``margin`` (how much better the
        heatmaps score than this map, in the metric's direction: positive means the
        method beats it) and ``verdict`` (``"heatmaps beat edges by 0.12"``, or
        ``"heatmaps trail edges by 0.05"``).

    Raises:
        ValueError: an unknown kind; ``higher_is_better`` None for an unknown metric.
    """
    import pandas as pd

    images = _check_images(images, "compare_baselines")
    maps = _as_maps(heatmaps, images.shape[0], func="compare_baselines")
    kinds = [check_choice(k, "kinds", "compare_baselines", BASELINE_KINDS) for k in kinds]
    lower = _lower_is_better(metric, kwargs) if higher_is_better is None else not higher_is_better
    if lower is None:
        raise ValueError(
            "The 'higher_is_better' parameter of compare_baselines must say the direction "
            f"of the metric {getattr(metric, '__name__', metric)!r}, which is no featviz "
            "metric. Got None instead."
        )
    params = inspect.signature(metric).parameters
    if "images" in params:
        kwargs["images"] = images
    if "aggregate" in params:
        kwargs.setdefault("aggregate", "none")
    candidates = {"heatmaps": maps}
    for kind in kinds:
        candidates[kind] = baseline_maps(images, kind, random_state=random_state)
    scores = {
        name: float(_per_image(metric(heatmaps=m, **kwargs)).mean())
        for name, m in candidates.items()
    }
    ours = scores["heatmaps"]
    rows = []
    for name, score in scores.items():
        margin = (score - ours) if lower else (ours - score)
        word = "beat" if margin > 0 else "trail"
        verdict = "" if name == "heatmaps" else f"heatmaps {word} {name} by {abs(margin):.3g}"
        rows.append({"maps": name, "score": score, "margin": margin, "verdict": verdict})
    return pd.DataFrame(rows).set_index("maps")
