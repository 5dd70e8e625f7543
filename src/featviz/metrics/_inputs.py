"""The metrics' image and heatmap ingestion: images (N, C, H, W), maps (N, H, W).

Moved as they were from ``metrics.py``; the shared ingestion layer (`featviz._images`)
will replace them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featviz import _ops

__all__: list[str] = []


def _check_images(images: Any) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            "The 'images' parameter must be a torch.Tensor (N, C, H, W). "
            f"Got {type(images).__name__} instead."
        )
    if images.ndim != 4 or images.shape[0] == 0 or not images.is_floating_point():
        raise ValueError(
            "The 'images' parameter must be a non-empty float tensor of shape (N, C, H, W). "
            f"Got dtype {images.dtype} and shape {tuple(images.shape)} instead."
        )
    return images


def _as_maps(
    heatmaps: Any, n: int | None = None, *, func: str = "the metric", clean: bool = True
) -> torch.Tensor:
    """(N, H, W) float32 maps, N >= 1; with ``clean``, NaN/inf set to 0 with a warning."""
    if isinstance(heatmaps, np.ndarray):
        heatmaps = torch.from_numpy(np.ascontiguousarray(heatmaps))
    if not isinstance(heatmaps, torch.Tensor):
        raise TypeError(
            "The 'heatmaps' parameter must be a tensor or array (N, H, W). "
            f"Got {type(heatmaps).__name__} instead."
        )
    if heatmaps.ndim != 3:
        raise ValueError(
            "The 'heatmaps' parameter must have shape (N, H, W). "
            f"Got shape {tuple(heatmaps.shape)} instead."
        )
    if heatmaps.shape[0] == 0 or heatmaps[0].numel() == 0:
        raise ValueError(
            f"The 'heatmaps' parameter of {func} must hold at least one non-empty map "
            f"(N, H, W). Got shape {tuple(heatmaps.shape)} instead; a score of no maps is "
            "undefined."
        )
    if n is not None and heatmaps.shape[0] != n:
        raise ValueError(
            f"The 'heatmaps' parameter must hold one map per image: {n} images but "
            f"{heatmaps.shape[0]} maps."
        )
    maps = heatmaps.detach().float()
    return _ops.finite_or_zero(maps, what="heatmaps") if clean else maps


def _maps_for(images: torch.Tensor, heatmaps: Any, func: str) -> torch.Tensor:
    maps = _as_maps(heatmaps, images.shape[0], func=func).to(images.device)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    return _ops.resize(maps, size)
