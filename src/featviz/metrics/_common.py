"""What the model-based metrics share: evaluation, the target on the clean images, masks.

The target goes through the one scoring path (`featviz._scoring`): it is resolved once
on the unperturbed images (the predicted class of ``target=None`` is found there and
kept), then every perturbed copy is scored for the image it came from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from featviz import _ops
from featviz._outputs import Target, as_logits, target_on
from featviz._scoring import Scorer, needs_outputs, predicted, resolve

__all__: list[str] = []

Baseline = Literal["zeros", "blur", "mean"] | float | torch.Tensor
Aggregate = Literal["mean", "none"]


@contextlib.contextmanager
def _evaluating(model: nn.Module, eval_mode: bool) -> Iterator[None]:
    """Eval mode (flags restored after) and no_grad for the block."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"The 'model' parameter must be a torch.nn.Module. Got {type(model).__name__} instead."
        )
    with _ops.eval_mode(model, eval_mode), torch.no_grad():
        yield


def _scorer(
    model: nn.Module, images: torch.Tensor, target: Target, batch_size: int, probability: bool
) -> Scorer:
    """``target`` resolved on the clean ``images`` (N, C, H, W), model already evaluating.

    The arg-max class of ``target=None`` needs every image's outputs (in chunks of
    ``batch_size``); other class targets are checked against the outputs of one image;
    callables need no forward pass here.
    """
    n = images.shape[0]
    size = (int(images.shape[-2]), int(images.shape[-1]))
    if isinstance(target, torch.Tensor):
        target = target_on(target, images.device)  # fails before the model runs
    if target is None:
        outs = [model(chunk) for chunk in images.split(batch_size)]
        classes = torch.cat([predicted(o, len(o)).classes for o in outs])  # type: ignore[misc]
        return Scorer(n, classes, None, probability)
    if not needs_outputs(target):
        return resolve(target, None, n, probability=probability, size=size)
    logits = as_logits(model(images[:1]))
    return resolve(target, logits.expand(n, -1), n, probability=probability, size=size)


def _gaussian_blur(images: torch.Tensor, ksize: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, reflect padding (replicate if small)."""
    half = ksize // 2
    x = torch.arange(ksize, dtype=torch.float32, device=images.device) - half
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = (k / k.sum()).to(images.dtype)
    c = images.shape[1]
    mode = "reflect" if min(images.shape[-2:]) > half else "replicate"
    out = F.pad(images, (half, half, half, half), mode=mode)
    out = F.conv2d(out, k.view(1, 1, 1, ksize).expand(c, 1, 1, ksize), groups=c)
    return F.conv2d(out, k.view(1, 1, ksize, 1).expand(c, 1, ksize, 1), groups=c)


def _baseline(images: torch.Tensor, baseline: Any) -> torch.Tensor:
    if isinstance(baseline, str):
        if baseline == "zeros":
            return torch.zeros_like(images)
        if baseline == "blur":
            return _gaussian_blur(images)
        if baseline == "mean":
            return images.mean((2, 3), keepdim=True).expand_as(images)
        raise ValueError(
            "The 'baseline' parameter must be 'zeros', 'blur', 'mean', a float or a tensor "
            f"broadcastable to the images. Got {baseline!r} instead."
        )
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(images, float(baseline))
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(images.device, images.dtype).expand_as(images)
        except RuntimeError as exc:
            raise ValueError(
                f"The 'baseline' tensor of shape {tuple(baseline.shape)} does not broadcast to "
                f"the images' shape {tuple(images.shape)}."
            ) from exc
    raise TypeError(
        "The 'baseline' parameter must be 'zeros', 'blur', 'mean', a float or a tensor. "
        f"Got {type(baseline).__name__} instead."
    )


def _chunks(total: int, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, total, size):
        yield torch.arange(start, min(start + size, total))


def _ranks(maps: torch.Tensor) -> torch.Tensor:
    """(N, H*W) rank of every pixel by decreasing heat; ties: lower row-major index first."""
    n = maps.shape[0]
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand(n, -1))
    return rank
