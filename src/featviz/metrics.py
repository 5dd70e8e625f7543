r"""Faithfulness and localisation metrics for heatmaps (saliency maps), batched.

Model-based metrics (the model is evaluated under `torch.no_grad` in eval mode, its
flags restored after):

- `deletion_auc` and `insertion_auc` (Petsiuk et al. 2018, RISE): remove (or insert)
  pixels in order of decreasing heat and integrate the class score curve.
- `average_drop` and `increase_in_confidence` (Chattopadhay et al. 2018, Grad-CAM++):
  compare the class confidence on the image and on the image multiplied by its map.

Localisation metrics against ground truth (boxes ``(x0, y0, x1, y1)`` with exclusive
ends, as `featviz.datasets.Shapes` gives them, or boolean masks):

- `pointing_game` (Zhang et al. 2016): is the map's maximum inside the object?
- `energy_in_box` (Wang et al. 2020, Score-CAM): the share of the map's mass inside.

Saliency maps are (N, h, w) tensors or arrays; the model-based metrics resize them
bilinearly to the images' size when needed.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from featviz import _ops
from featviz._outputs import as_logits, target_classes, target_on
from featviz._validation import check_choice, check_int, renamed

__all__ = [
    "CurveScores",
    "average_drop",
    "deletion_auc",
    "energy_in_box",
    "increase_in_confidence",
    "insertion_auc",
    "pointing_game",
]

Baseline = Literal["zeros", "blur", "mean"] | float | torch.Tensor
Reduce = Literal["mean", "none"]


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


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# model evaluation
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _evaluating(model: nn.Module, eval_mode: bool) -> Iterator[None]:
    """Eval mode (flags restored after) and no_grad for the block."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"The 'model' parameter must be a torch.nn.Module. Got {type(model).__name__} instead."
        )
    with _ops.eval_mode(model, eval_mode), torch.no_grad():
        yield


def _score(outputs: Any, classes: torch.Tensor, probability: bool) -> torch.Tensor:
    logits = as_logits(outputs).float()
    if probability:
        logits = logits.softmax(1)
    return logits.gather(1, classes.to(logits.device)[:, None])[:, 0]


def _classes(model: nn.Module, images: torch.Tensor, target: Any, batch_size: int) -> torch.Tensor:
    if target is not None and callable(target) and not isinstance(target, torch.Tensor):
        raise TypeError(
            "The 'target' parameter of the metrics must be None, an int or one int per image; "
            "callables are not supported."
        )
    n = images.shape[0]
    if isinstance(target, torch.Tensor):
        target = target_on(target, images.device)  # fails before the model runs
    if target is None:
        outs = [model(chunk) for chunk in images.split(batch_size)]
        return torch.cat([target_classes(o, None, len(o)) for o in outs])
    probe = model(images[:1])
    probe = probe.expand(n, -1) if isinstance(probe, torch.Tensor) and probe.ndim == 2 else probe
    return target_classes(probe, target, n)


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


def _curve(
    model: nn.Module,
    images: Any,
    heatmaps: Any,
    target: Any,
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
    images = _check_images(images)
    steps = check_int(steps, "steps", func, 1)
    batch_size = check_int(batch_size, "batch_size", func, 1)
    maps = _maps_for(images, heatmaps, func)
    n = images.shape[0]
    hw = images.shape[-2] * images.shape[-1]
    x = images.detach()
    base = _baseline(x, baseline)
    # rank of every pixel in decreasing heat (ties: lower row-major index first)
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw, device=order.device).expand(n, -1))
    t = torch.arange(steps + 1, device=x.device)
    counts = torch.div(t * hw + steps // 2, steps, rounding_mode="floor")  # round(t*hw/steps)
    curve = torch.empty(n * (steps + 1), dtype=torch.float32, device=x.device)
    from tqdm.auto import tqdm

    with _evaluating(model, eval_mode):
        classes = _classes(model, x, target, batch_size)
        total = n * (steps + 1)
        bar = tqdm(total=total, desc=func, disable=not progress)
        for idx in _chunks(total, batch_size):
            idx = idx.to(x.device)
            img, step = idx // (steps + 1), idx % (steps + 1)
            changed = (rank[img] < counts[step][:, None]).view(len(idx), 1, *x.shape[-2:])
            if insert:
                inputs = torch.where(changed, x[img], base[img])
            else:
                inputs = torch.where(changed, base[img], x[img])
            curve[idx] = _score(model(inputs), classes[img], probability)
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
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    steps: int = 50,
    baseline: Baseline = "zeros",
    batch_size: int = 64,
    probability: bool = True,
    eval_mode: bool = True,
    progress: bool = False,
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
        model: Classifier returning (N, K) logits.
        images: float tensor (N, C, H, W), as the model takes them.
        heatmaps: (N, h, w) tensor or array; resized bilinearly to (H, W) if needed.
        target: None (each image's arg-max class on the intact image), an int, or one
            int per image (length must equal N).
        steps: Number of steps $T$ (>= 1); N * (T + 1) forward passes in all.
        baseline: What replaces deleted pixels: ``"zeros"`` (zero in the model's input
            space), ``"blur"`` (Gaussian blur, kernel 11, sigma 5, as in RISE),
            ``"mean"`` (each image's channel means), a float, or a tensor broadcastable
            to (N, C, H, W).
        batch_size: Modified images per forward pass.
        probability: Score with the softmax probability of the class (True) or the raw
            logit (False).
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
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    steps: int = 50,
    baseline: Baseline = "blur",
    batch_size: int = 64,
    probability: bool = True,
    eval_mode: bool = True,
    progress: bool = False,
) -> CurveScores:
    r"""Insertion metric (Petsiuk et al. 2018): higher is better.

    Starts from the baseline (a blurred copy by default, as in RISE) and, at step
    $t = 0, \dots, T$, puts back the $k_t = \mathrm{round}(t \cdot HW / T)$ most salient
    pixels of the image; the score curve $s_t$ is integrated as in `deletion_auc`:
    $\mathrm{AUC} = \frac{1}{T} \sum_{t=1}^{T} (s_{t-1} + s_t) / 2$.

    Args:
        model: Classifier returning (N, K) logits.
        images: float tensor (N, C, H, W).
        heatmaps: (N, h, w) tensor or array; resized bilinearly to (H, W) if needed.
        target: None (arg-max class on the intact image), an int, or one int per image.
        steps: Number of steps $T$ (>= 1).
        baseline: The starting image: ``"blur"`` (default), ``"zeros"``, ``"mean"``, a
            float or a tensor broadcastable to (N, C, H, W).
        batch_size: Modified images per forward pass.
        probability: Softmax probability (True) or raw logit (False).
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
    target: Any,
    batch_size: int,
    eval_mode: bool,
    func: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    images = _check_images(images)
    batch_size = check_int(batch_size, "batch_size", func, 1)
    x = images.detach()
    maps = _maps_for(x, heatmaps, func)
    with _evaluating(model, eval_mode):
        classes = _classes(model, x, target, batch_size)
        y = torch.cat([_score(model(x[i]), classes[i], True) for i in _chunks(len(x), batch_size)])
        o = torch.cat(
            [
                _score(model(x[i] * maps[i][:, None].to(x.dtype)), classes[i], True)
                for i in _chunks(len(x), batch_size)
            ]
        )
    return y, o


@renamed(saliency="heatmaps", reduction="reduce")
def average_drop(
    model: nn.Module,
    images: torch.Tensor,
    heatmaps: Any,
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    batch_size: int = 64,
    reduce: Reduce = "mean",
    eval_mode: bool = True,
) -> float | torch.Tensor:
    r"""Average Drop % (Chattopadhay et al. 2018): lower is better.

    With $Y_i$ the softmax probability of the target class on image $i$ and $O_i$ the
    probability on the explanation map $E_i = X_i \odot L_i$ (the image multiplied by its
    heatmap, which should lie in [0, 1]):

    $$
    \mathrm{Average\ Drop} = \frac{100}{N} \sum_{i=1}^{N} \frac{\max(0, Y_i - O_i)}{Y_i}.
    $$

    Args:
        model: Classifier returning (N, K) logits.
        images: float tensor (N, C, H, W).
        heatmaps: (N, h, w) maps in [0, 1]; resized bilinearly to (H, W) if needed.
        target: None (arg-max class), an int, or one int per image.
        batch_size: Images per forward pass.
        reduce: ``"mean"``: the percentage as a float; ``"none"``: the per-image
            terms $100 \max(0, Y_i - O_i) / Y_i$ as a tensor (N,).
        eval_mode: Evaluate the model in eval mode (flags restored after).

    An image whose confidence $Y_i$ is 0 (a probability that underflowed) has nothing
    to drop: its term is 0, with a `RuntimeWarning` naming it (never NaN). NaN or inf in
    ``heatmaps`` are set to 0 with a `RuntimeWarning`.

    Returns:
        A float percentage, or a float32 tensor (N,) with ``reduce="none"``.

    Raises:
        ValueError: No images or maps, or one map per image not given.
    """
    check_choice(reduce, "reduce", "average_drop", ("mean", "none"))
    y, o = _confidences(model, images, heatmaps, target, batch_size, eval_mode, "average_drop")
    zero = y <= 0
    if bool(zero.any()):
        idx = torch.nonzero(zero).flatten().tolist()
        warnings.warn(
            f"average_drop: the model gives the target class probability 0 on images "
            f"{idx[:20]}{' ...' if len(idx) > 20 else ''}, so nothing can drop; their terms "
            "are 0 (not NaN). Check the 'target' classes.",
            RuntimeWarning,
            stacklevel=2,
        )
    per = 100.0 * (y - o).clamp_min(0) / torch.where(zero, torch.ones_like(y), y)
    return per if reduce == "none" else float(per.mean())


@renamed(saliency="heatmaps", reduction="reduce")
def increase_in_confidence(
    model: nn.Module,
    images: torch.Tensor,
    heatmaps: Any,
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    batch_size: int = 64,
    reduce: Reduce = "mean",
    eval_mode: bool = True,
) -> float | torch.Tensor:
    r"""Increase in Confidence % (Chattopadhay et al. 2018): higher is better.

    With $Y_i$ and $O_i$ as in `average_drop`:

    $$
    \mathrm{Increase\ in\ Confidence} = \frac{100}{N} \sum_{i=1}^{N} \mathbb{1}[O_i > Y_i].
    $$

    Args:
        model: Classifier returning (N, K) logits.
        images: float tensor (N, C, H, W).
        heatmaps: (N, h, w) maps in [0, 1]; resized bilinearly to (H, W) if needed.
        target: None (arg-max class), an int, or one int per image.
        batch_size: Images per forward pass.
        reduce: ``"mean"``: the percentage as a float; ``"none"``: per-image values
            100 or 0 as a float32 tensor (N,).
        eval_mode: Evaluate the model in eval mode (flags restored after).

    Returns:
        A float percentage, or a float32 tensor (N,) with ``reduce="none"``.
    """
    check_choice(reduce, "reduce", "increase_in_confidence", ("mean", "none"))
    y, o = _confidences(
        model, images, heatmaps, target, batch_size, eval_mode, "increase_in_confidence"
    )
    per = 100.0 * (o > y).float()
    return per if reduce == "none" else float(per.mean())


# --------------------------------------------------------------------------------------
# localisation against ground truth
# --------------------------------------------------------------------------------------
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
        return b.long().to(maps.device), None
    m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks)
    if tuple(m.shape) != (n, h, w):
        raise ValueError(
            f"The 'masks' parameter of {func} must have the maps' shape {(n, h, w)}. "
            f"Got shape {tuple(m.shape)} instead."
        )
    return None, m.to(maps.device).bool()


def _box_masks(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    ys = torch.arange(h, device=boxes.device)
    xs = torch.arange(w, device=boxes.device)
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    iny = (ys[None] >= y0[:, None]) & (ys[None] < y1[:, None])
    inx = (xs[None] >= x0[:, None]) & (xs[None] < x1[:, None])
    return iny[:, :, None] & inx[:, None, :]


@renamed(saliency="heatmaps", reduction="reduce")
def pointing_game(
    heatmaps: Any,
    boxes: Any = None,
    masks: Any = None,
    *,
    tolerance: float = 0,
    reduce: Reduce = "mean",
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
        masks: (N, H, W) bools, instead of ``boxes``.
        tolerance: Distance in pixels, >= 0.
        reduce: ``"mean"``: the hit rate as a float in [0, 1]; ``"none"``: a bool
            tensor (N,) of hits.

    Returns:
        A float, or a bool tensor (N,) with ``reduce="none"``.

    Raises:
        ValueError: No maps (N = 0), neither or both of ``boxes`` and ``masks``, or
            shapes that do not match the maps.
    """
    check_choice(reduce, "reduce", "pointing_game", ("mean", "none"))
    if not float(tolerance) >= 0:
        raise ValueError(
            f"The 'tolerance' parameter of pointing_game must be >= 0. Got {tolerance!r} instead."
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
    return hit if reduce == "none" else float(hit.float().mean())


@renamed(saliency="heatmaps", reduction="reduce")
def energy_in_box(
    heatmaps: Any,
    boxes: Any = None,
    masks: Any = None,
    *,
    reduce: Reduce = "mean",
) -> float | torch.Tensor:
    r"""Energy-based pointing game (Wang et al. 2020): the map's mass inside the object.

    $$
    E_i = \frac{\sum_{(y, x) \in R_i} \max(L_i(y, x), 0)}{\sum_{(y, x)} \max(L_i(y, x), 0)},
    $$

    with $R_i$ the box (exclusive ends) or mask; an all-zero map gives $E_i = 0$.

    Args:
        heatmaps: (N, H, W) tensor or array, in the boxes' / masks' pixel grid.
        boxes: (N, 4) ints ``(x0, y0, x1, y1)``, ``x1``/``y1`` exclusive.
        masks: (N, H, W) bools, instead of ``boxes``.
        reduce: ``"mean"``: the mean over images as a float; ``"none"``: a float32
            tensor (N,).

    Returns:
        A float in [0, 1], or a float32 tensor (N,) with ``reduce="none"``.
    """
    check_choice(reduce, "reduce", "energy_in_box", ("mean", "none"))
    maps = _as_maps(heatmaps, func="energy_in_box").clamp_min(0)
    b, m = _regions(maps, boxes, masks, "energy_in_box")
    region = _box_masks(b, *maps.shape[-2:]) if b is not None else m
    assert region is not None
    # float64 sums: float32 maps near their largest values would overflow to inf / inf
    total = maps.double().flatten(1).sum(1)
    inside = (maps.double() * region).flatten(1).sum(1)
    e = torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), 0.0).float()
    return e if reduce == "none" else float(e.mean())
