"""The metrics' images and heatmaps, through the one ingestion layer (`featviz._images`).

Images go into the model as they are: a float tensor (N, C, H, W) (`_images.model_batch`).
Heatmaps take every form `overlay` takes: (H, W), (N, H, W) or (N, 1, H, W), numpy or
tensor, any numeric dtype (`_images.heatmap_batch`).
"""

from __future__ import annotations

from typing import Any

import torch

from featviz import _ops
from featviz._images import heatmap_batch, model_batch

__all__: list[str] = []


def _check_images(images: Any, func: str) -> torch.Tensor:
    """A float tensor (N, C, H, W), N >= 1, as the model takes it."""
    return model_batch(images, func=func)


def _as_maps(heatmaps: Any, n: int | None = None, *, func: str, clean: bool = True) -> torch.Tensor:
    """(N, H, W) float32 maps, N >= 1 (``n`` when given).

    With ``clean``, NaN and inf are set to 0 with a warning.
    """
    maps = heatmap_batch(heatmaps, func=func, n=n).maps.detach()
    return _ops.finite_or_zero(maps, what="heatmaps") if clean else maps


def _maps_for(images: torch.Tensor, heatmaps: Any, func: str) -> torch.Tensor:
    """One map per image, on the images' device, resized to their (H, W)."""
    maps = _as_maps(heatmaps, images.shape[0], func=func).to(images.device)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    return _ops.resize(maps, size)
