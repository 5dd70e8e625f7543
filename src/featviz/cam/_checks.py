"""Argument checks of `featviz.cam.CAM`: output size, reshape, attention options, scores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from featviz.cam._attention import HEAD_FUSIONS, Options
from featviz.cam._layers import vit_grid

__all__ = ["Size", "attention_options", "check_differentiable", "check_reshape", "check_size"]

#: Output size: ``"input"`` (the images' size), None (the layer's size) or ``(H, W)``.
Size = Literal["input"] | tuple[int, int] | None


def check_differentiable(scores: torch.Tensor, method: str) -> None:
    if not scores.requires_grad:
        raise ValueError(
            f"The 'target' callable returned scores with no gradient, so method={method!r} "
            "cannot differentiate them. Got a tensor without grad_fn (made with .detach(), "
            ".item(), argmax, comparisons or constants?) instead; return a differentiable "
            "function of the outputs, such as outputs[:, k], or use method='eigencam' or "
            "'scorecam', which need no gradient."
        )


def check_size(size: Any) -> Size:
    if size is None or size == "input":
        return size
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        return (int(size[0]), int(size[1]))
    raise ValueError(
        "The 'size' parameter must be 'input', None or a pair (H, W) of ints >= 1. "
        f"Got {size!r} instead."
    )


def attention_options(head_fusion: Any, discard_ratio: Any) -> Options:
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(
            f"The 'head_fusion' parameter of CAM must be one of {list(HEAD_FUSIONS)}. "
            f"Got {head_fusion!r} instead."
        )
    if (
        isinstance(discard_ratio, bool)
        or not isinstance(discard_ratio, (int, float))
        or not 0 <= discard_ratio < 1
    ):
        raise ValueError(
            "The 'discard_ratio' parameter of CAM must be a float in the range [0, 1). "
            f"Got {discard_ratio!r} instead."
        )
    return Options(head_fusion, float(discard_ratio))


def check_reshape(reshape: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if reshape == "vit":
        return vit_grid
    if reshape is None or callable(reshape):
        return reshape
    raise TypeError(
        "The 'reshape_transform' parameter must be None, 'vit' or a callable. "
        f"Got {reshape!r} instead."
    )
