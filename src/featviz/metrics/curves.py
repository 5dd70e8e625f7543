r"""Perturbation curves: deletion and insertion AUC, Average Drop, Increase in Confidence.

The model is evaluated under `torch.no_grad` in eval mode (flags restored after). The
target is resolved once on the unperturbed images (`featviz.metrics._common`) and every
perturbed copy is scored for it.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
from torch import nn

from featviz._ops import user_stacklevel
from featviz._outputs import Target
from featviz._scoring import needs_outputs
from featviz._validation import check_choice, check_int, renamed
from featviz.metrics._common import (
    Aggregate,
    Baseline,
    _baseline,
    _chunks,
    _evaluating,
    _ranks,
    _scorer,
)
from featviz.metrics._inputs import _check_images, _maps_for

__all__ = [
    "CurveScores",
    "average_drop",
    "deletion_auc",
    "increase_in_confidence",
    "insertion_auc",
]


class CurveScores(NamedTuple):
    """Result of `deletion_auc` / `insertion_auc`.

    Attributes:
        auc: float32 tensor (N,), the area under each image's curve, in score units
            (a probability in [0, 1] with ``probability=True``).
        curve: float32 tensor (N, steps + 1), the score after each step.
        fractions: float32 tensor (steps + 1,), the fraction of pixels removed
            (deletion) or inserted (insertion) at each step: ``t / steps``.
    """

    auc: torch.Tensor
    curve: torch.Tensor
    fractions: torch.Tensor


def _curve(
    model: nn.Module,
    images: Any,
    heatmaps: Any,
    target: Target,
    *,
    steps: int,
    baseline: Any,
    batch_size: int,
    probability: bool,
    eval_mode: bool,
    progress: bool,
    insert: bool,
    func: str,
) -> CurveScores:
    images = _check_images(images, func)
    steps = check_int(steps, "steps", func, 1)
    batch_size = check_int(batch_size, "batch_size", func, 1)
    maps = _maps_for(images, heatmaps, func)
    n = images.shape[0]
    hw = images.shape[-2] * images.shape[-1]
    x = images.detach()
    base = _baseline(x, baseline)
    rank = _ranks(maps)
    t = torch.arange(steps + 1, device=x.device)
    counts = torch.div(t * hw + steps // 2, steps, rounding_mode="floor")  # round(t*hw/steps)
    curve = torch.empty(n * (steps + 1), dtype=torch.float32, device=x.device)
    from featviz._ops import progress_bar

    with _evaluating(model, eval_mode):
        scorer = _scorer(model, x, target, batch_size, probability)
        total = n * (steps + 1)
        bar = progress_bar(enabled=progress, total=total, desc=func)
        for idx in _chunks(total, batch_size):
            idx = idx.to(x.device)
            img, step = idx // (steps + 1), idx % (steps + 1)
            changed = (rank[img] < counts[step][:, None]).view(len(idx), 1, *x.shape[-2:])
            if insert:
                inputs = torch.where(changed, x[img], base[img])
            else:
                inputs = torch.where(changed, base[img], x[img])
            curve[idx] = scorer(model(inputs), img).float()
            bar.update(len(idx))
        bar.close()
    curve = curve.view(n, steps + 1)
    auc = (curve[:, :-1] + curve[:, 1:]).sum(1) / (2 * steps)
    fractions = t.float() / steps
    return CurveScores(auc, curve, fractions)


@renamed(saliency="heatmaps")
def deletion_auc(
    model: nn.Module,
    images: torch.Tensor,
    heatmaps: Any,
    target: Target = None,
    *,
    steps: int = 50,
    baseline: Baseline = "zeros",
    batch_size: int = 64,
    probability: bool = True,
    eval_mode: bool = True,
    progress: bool = True,
) -> CurveScores:
    r"""Deletion metric (Petsiuk et al. 2018): lower is better.

    Pixels are ranked by decreasing heat (ties: row-major order). At step
    $t = 0, \dots, T$ the top $k_t = \mathrm{round}(t \cdot HW / T)$ pixels (all
    channels) are replaced by the baseline and the model's class score $s_t$ is
    recorded; the area under the curve is the trapezoid rule on the fraction axis:

    $$
    \mathrm{AUC} = \frac{1}{T} \sum_{t=1}^{T} \frac{s_{t-1} + s_t}{2}.
    $$

    A faithful map makes the score drop fast, so the AUC is small.

    Args:
        model: The model: a classifier returning (N, K) logits, or any model the
            ``target`` scores (a detector with ``BoxTarget``, a segmenter, ...).
        images: float tensor (N, C, H, W), as the model takes them.
        heatmaps: (N, h, w) tensor or array; resized bilinearly to (H, W) if needed.
        target: What is scored, resolved once on the intact images: None (each image's
            arg-max class there, kept for the perturbed copies), an int, one int per
            image (length N), a `featviz.targets` object (``ClassTarget(c)`` scores
            exactly as ``c``; ``BoxTarget`` for detectors, ``SegmentationTarget``,
            ``SimilarityTarget``), or any callable ``outputs -> (B,) scores``. A callable
            sees batches of perturbed copies of several images, so it must score each
            output row on its own (the `featviz.targets` objects holding data per image
            are restricted to the batch's images for it).
        steps: Number of steps $T$ (>= 1); N * (T + 1) forward passes in all.
        baseline: What replaces deleted pixels: ``"zeros"`` (zero in the model's input
            space), ``"blur"`` (Gaussian blur, kernel 11, sigma 5, as in RISE),
            ``"mean"`` (each image's channel means), a float, or a tensor broadcastable
            to (N, C, H, W).
        batch_size: Modified images per forward pass.
        probability: Score class targets (None, ints, ``ClassTarget``, ``ClassesTarget``)
            by the softmax probability (True) or the raw logit (False). Other targets
            are scored as they return (``ProbabilityTarget`` is always a probability).
        eval_mode: Evaluate the model in eval mode (flags restored after).
        progress: Show a progress bar.

    Returns:
        `CurveScores` with ``auc`` (N,), ``curve`` (N, T + 1) and ``fractions`` (T + 1,).
    """
    return _curve(
        model,
        images,
        heatmaps,
        target,
        steps=steps,
        baseline=baseline,
        batch_size=batch_size,
        probability=probability,
        eval_mode=eval_mode,
        progress=progress,
        insert=False,
        func="deletion_auc",
    )


@renamed(saliency="heatmaps")
def insertion_auc(
    model: nn.Module,
    images: torch.Tensor,
    heatmaps: Any,
    target: Target = None,
    *,
    steps: int = 50,
    baseline: Baseline = "blur",
    batch_size: int = 64,
    probability: bool = True,
    eval_mode: bool = True,
    progress: bool = True,
) -> CurveScores:
    r"""Insertion metric (Petsiuk et al. 2018): higher is better.

    Starts from the baseline (a blurred copy by default, as in RISE) and, at step
    $t = 0, \dots, T$, puts back the $k_t = \mathrm{round}(t \cdot HW / T)$ most salient
    pixels of the image; the score curve $s_t$ is integrated as in `deletion_auc`:
    $\mathrm{AUC} = \frac{1}{T} \sum_{t=1}^{T} (s_{t-1} + s_t) / 2$.

    Args:
        model: The model: a classifier returning (N, K) logits, or any model the
            ``target`` scores (a detector with ``BoxTarget``, a segmenter, ...).
        images: float tensor (N, C, H, W).
        heatmaps: (N, h, w) tensor or array; resized bilinearly to (H, W) if needed.
        target: What is scored, resolved once on the intact images: None (each image's
            arg-max class there, kept for the perturbed copies), an int, one int per
            image (length N), a `featviz.targets` object (``ClassTarget(c)`` scores
            exactly as ``c``; ``BoxTarget`` for detectors, ``SegmentationTarget``,
            ``SimilarityTarget``), or any callable ``outputs -> (B,) scores``. A callable
            sees batches of perturbed copies of several images, so it must score each
            output row on its own (the `featviz.targets` objects holding data per image
            are restricted to the batch's images for it).
        steps: Number of steps $T$ (>= 1).
        baseline: The starting image: ``"blur"`` (default), ``"zeros"``, ``"mean"``, a
            float or a tensor broadcastable to (N, C, H, W).
        batch_size: Modified images per forward pass.
        probability: Score class targets (None, ints, ``ClassTarget``, ``ClassesTarget``)
            by the softmax probability (True) or the raw logit (False). Other targets
            are scored as they return (``ProbabilityTarget`` is always a probability).
        eval_mode: Evaluate the model in eval mode (flags restored after).
        progress: Show a progress bar.

    Returns:
        `CurveScores` with ``auc`` (N,), ``curve`` (N, T + 1) and ``fractions`` (T + 1,).
    """
    return _curve(
        model,
        images,
        heatmaps,
        target,
        steps=steps,
        baseline=baseline,
        batch_size=batch_size,
        probability=probability,
        eval_mode=eval_mode,
        progress=progress,
        insert=True,
        func="insertion_auc",
    )


def _confidences(
    model: nn.Module,
    images: Any,
    heatmaps: Any,
    target: Target,
    batch_size: int,
    eval_mode: bool,
    func: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    images = _check_images(images, func)
    batch_size = check_int(batch_size, "batch_size", func, 1)
    x = images.detach()
    maps = _maps_for(x, heatmaps, func)
    with _evaluating(model, eval_mode):
        scorer = _scorer(model, x, target, batch_size, True)
        y = torch.cat([scorer(model(x[i]), i).float() for i in _chunks(len(x), batch_size)])
        o = torch.cat(
            [
                scorer(model(x[i] * maps[i][:, None].to(x.dtype)), i).float()
                for i in _chunks(len(x), batch_size)
            ]
        )
    return y, o


@renamed(saliency="heatmaps", reduction="aggregate", reduce="aggregate")
def average_drop(
    model: nn.Module,
    images: torch.Tensor,
    heatmaps: Any,
    target: Target = None,
    *,
    batch_size: int = 64,
    aggregate: Aggregate = "mean",
    eval_mode: bool = True,
) -> float | torch.Tensor:
    r"""Average Drop % (Chattopadhay et al. 2018): lower is better.

    With $Y_i$ the confidence of the target on image $i$ and $O_i$ the confidence on the
    explanation map $E_i = X_i \odot L_i$ (the image multiplied by its heatmap, which
    should lie in [0, 1]):

    $$
    \mathrm{Average\ Drop} = \frac{100}{N} \sum_{i=1}^{N} \frac{\max(0, Y_i - O_i)}{Y_i}.
    $$

    Args:
        model: The model: a classifier returning (N, K) logits, or any model the
            ``target`` scores (a detector with ``BoxTarget``, a segmenter, ...).
        images: float tensor (N, C, H, W).
        heatmaps: (N, h, w) maps in [0, 1]; resized bilinearly to (H, W) if needed.
        target: What is scored, as in `deletion_auc`. Class targets (None, ints,
            ``ClassTarget``, ``ClassesTarget``) are scored by their softmax probability.
        batch_size: Images per forward pass.
        aggregate: ``"mean"``: the percentage as a float; ``"none"``: the per-image
            terms $100 \max(0, Y_i - O_i) / Y_i$ as a tensor (N,).
        eval_mode: Evaluate the model in eval mode (flags restored after).

    The confidence is the softmax probability of the target class for class targets
    (None, ints, ``ClassTarget``, ``ClassesTarget``: the summed probability of its
    classes) and for ``ProbabilityTarget``; for any other target (``BoxTarget``,
    ``SegmentationTarget``, ``SimilarityTarget``, a callable) it is the target's score as
    the target returns it: a ratio of scores is meaningful for positive scores, such as
    a ``BoxTarget``'s detection scores. An image whose confidence $Y_i$ is 0 or less
    (a probability that underflowed, or a negative score) has nothing to drop: its term
    is 0, with a `RuntimeWarning` naming it (never NaN). NaN or inf in ``heatmaps`` are
    set to 0 with a `RuntimeWarning`.

    Returns:
        A float percentage, or a float32 tensor (N,) with ``aggregate="none"``.

    Raises:
        ValueError: No images or maps, or one map per image not given.
    """
    check_choice(aggregate, "aggregate", "average_drop", ("mean", "none"))
    y, o = _confidences(model, images, heatmaps, target, batch_size, eval_mode, "average_drop")
    zero = y <= 0
    if bool(zero.any()):
        idx = torch.nonzero(zero).flatten().tolist()
        what = "class probability 0" if needs_outputs(target) else "score 0 or less"
        warnings.warn(
            f"average_drop: the model gives the target {what} on images "
            f"{idx[:20]}{' ...' if len(idx) > 20 else ''}, so nothing can drop; their terms "
            "are 0 (not NaN). Check the 'target'.",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    per = 100.0 * (y - o).clamp_min(0) / torch.where(zero, torch.ones_like(y), y)
    return per if aggregate == "none" else float(per.mean())


@renamed(saliency="heatmaps", reduction="aggregate", reduce="aggregate")
def increase_in_confidence(
    model: nn.Module,
    images: torch.Tensor,
    heatmaps: Any,
    target: Target = None,
    *,
    batch_size: int = 64,
    aggregate: Aggregate = "mean",
    eval_mode: bool = True,
) -> float | torch.Tensor:
    r"""Increase in Confidence % (Chattopadhay et al. 2018): higher is better.

    With $Y_i$ and $O_i$ the target's confidence on the image and on the explanation
    map, as in `average_drop` (the class probability for class targets, the target's
    score for any other target):

    $$
    \mathrm{Increase\ in\ Confidence} = \frac{100}{N} \sum_{i=1}^{N} \mathbb{1}[O_i > Y_i].
    $$

    Args:
        model: The model: a classifier returning (N, K) logits, or any model the
            ``target`` scores (a detector with ``BoxTarget``, a segmenter, ...).
        images: float tensor (N, C, H, W).
        heatmaps: (N, h, w) maps in [0, 1]; resized bilinearly to (H, W) if needed.
        target: What is scored, as in `deletion_auc`. Class targets (None, ints,
            ``ClassTarget``, ``ClassesTarget``) are scored by their softmax probability.
        batch_size: Images per forward pass.
        aggregate: ``"mean"``: the percentage as a float; ``"none"``: per-image values
            100 or 0 as a float32 tensor (N,).
        eval_mode: Evaluate the model in eval mode (flags restored after).

    Returns:
        A float percentage, or a float32 tensor (N,) with ``aggregate="none"``.
    """
    check_choice(aggregate, "aggregate", "increase_in_confidence", ("mean", "none"))
    y, o = _confidences(
        model, images, heatmaps, target, batch_size, eval_mode, "increase_in_confidence"
    )
    per = 100.0 * (o > y).float()
    return per if aggregate == "none" else float(per.mean())
