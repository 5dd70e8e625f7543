r"""Faithfulness and localisation metrics for heatmaps (saliency maps), batched.

Model-based metrics (the model is evaluated under `torch.no_grad` in eval mode, its
flags restored after):

- `deletion_auc` and `insertion_auc` (Petsiuk et al. 2018, RISE): remove (or insert)
  pixels in order of decreasing heat and integrate the class score curve.
- `average_drop` and `increase_in_confidence` (Chattopadhay et al. 2018, Grad-CAM++):
  compare the class confidence on the image and on the image multiplied by its map.
- `road` (Rong et al. 2022, ROAD): remove the most (or least) relevant pixels, fill them
  in with `noisy_linear_imputation`, and record the class score.

Localisation metrics against ground truth (boxes ``(x0, y0, x1, y1)`` with exclusive
ends, as `featviz.datasets.Shapes` gives them, or boolean masks):

- `pointing_game` (Zhang et al. 2016): is the map's maximum inside the object?
- `energy_in_box` (Wang et al. 2020, Score-CAM): the share of the map's mass inside.

Saliency maps are (N, h, w) tensors or arrays; the model-based metrics resize them
bilinearly to the images' size when needed.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from featviz import _ops
from featviz._ops import user_stacklevel
from featviz._outputs import as_logits, target_classes, target_on
from featviz._validation import check_choice, check_int, renamed

__all__ = [
    "CurveScores",
    "RoadScores",
    "average_drop",
    "deletion_auc",
    "energy_in_box",
    "increase_in_confidence",
    "insertion_auc",
    "noisy_linear_imputation",
    "pointing_game",
    "road",
]

Baseline = Literal["zeros", "blur", "mean"] | float | torch.Tensor
Reduce = Literal["mean", "none"]
Order = Literal["morf", "lerf", "both"]


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


class RoadScores(NamedTuple):
    """Result of `road`.

    Attributes:
        score: float32 tensor (N,), each image's summary: the mean MoRF score with
            ``order="morf"`` (lower is better), the mean LeRF score with ``"lerf"``
            (higher is better), and half their difference, LeRF minus MoRF, with
            ``"both"`` (higher is better).
        morf: float32 tensor (N, K), the score after removing each fraction of the most
            relevant pixels first; None with ``order="lerf"``.
        lerf: float32 tensor (N, K), the same removing the least relevant pixels first;
            None with ``order="morf"``.
        fractions: float32 tensor (K,), the fraction of pixels removed at each column.
    """

    score: torch.Tensor
    morf: torch.Tensor | None
    lerf: torch.Tensor | None
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


def _ranks(maps: torch.Tensor) -> torch.Tensor:
    """(N, H*W) rank of every pixel by decreasing heat; ties: lower row-major index first."""
    n = maps.shape[0]
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand(n, -1))
    return rank


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
    rank = _ranks(maps)
    t = torch.arange(steps + 1, device=x.device)
    counts = torch.div(t * hw + steps // 2, steps, rounding_mode="floor")  # round(t*hw/steps)
    curve = torch.empty(n * (steps + 1), dtype=torch.float32, device=x.device)
    from featviz._ops import progress_bar

    with _evaluating(model, eval_mode):
        classes = _classes(model, x, target, batch_size)
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
            stacklevel=user_stacklevel(),
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
# ROAD: remove and debias (Rong et al. 2022)
# --------------------------------------------------------------------------------------
# (row offset, column offset, weight) of the 8 neighbours in the noisy linear imputation
_NEIGHBOURS = (
    (-1, 0, 1 / 6),
    (1, 0, 1 / 6),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (-1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (1, 1, 1 / 12),
)
_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_ORDERS = ("morf", "lerf")  # column of each order in the noise seeds, whatever `order` is


def _check_noise(noise: Any, func: str) -> float:
    ok = isinstance(noise, (int, float, np.integer, np.floating)) and not isinstance(noise, bool)
    if not ok or not math.isfinite(noise) or noise < 0:
        raise ValueError(
            f"The 'noise' parameter of {func} must be a float in the range [0, inf). "
            f"Got {noise!r} instead."
        )
    return float(noise)


def _check_fractions(fractions: Any, func: str) -> np.ndarray:
    try:
        f = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        f = np.empty((0, 0))
    if f.ndim != 1 or f.size == 0 or not bool(np.all((f > 0) & (f < 1))):
        raise ValueError(
            f"The 'fractions' parameter of {func} must be a non-empty sequence of floats in "
            f"the range (0, 1), e.g. (0.1, 0.2, ..., 0.9). Got {fractions!r} instead."
        )
    return f


def _check_removed(masks: Any, images: torch.Tensor, func: str) -> np.ndarray:
    """(N, H, W) bool array; every image keeps at least one pixel."""
    n, _, h, w = images.shape
    m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else masks
    if not isinstance(m, np.ndarray) or m.dtype != np.bool_ or m.shape != (n, h, w):
        shape = getattr(m, "shape", None)
        raise ValueError(
            f"The 'masks' parameter of {func} must be a bool tensor or array of shape "
            f"{(n, h, w)} (True where a pixel is removed). Got "
            f"{type(masks).__name__} with dtype {getattr(m, 'dtype', None)} and shape "
            f"{None if shape is None else tuple(shape)} instead."
        )
    full = np.flatnonzero(m.reshape(n, -1).all(1))
    if full.size:
        raise ValueError(
            f"The 'masks' parameter of {func} removes every pixel of images "
            f"{full[:20].tolist()}: nothing is left to impute from. Keep at least one pixel."
        )
    return m


def _impute_one(
    image: np.ndarray, removed: np.ndarray, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """One (C, H, W) float64 image with its ``removed`` (H, W) pixels imputed.

    Each removed pixel becomes the weighted mean of its in-image neighbours (removed
    neighbours enter with their own unknown values): one sparse linear system, solved
    exactly for all channels at once, then Gaussian noise of std ``noise`` is added.
    """
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    c, h, w = image.shape
    out = image.reshape(c, h * w).copy()
    unknown = np.flatnonzero(removed)
    n = unknown.size
    if n == 0:
        return out.reshape(c, h, w)
    index = np.full(h * w, -1, dtype=np.int64)
    index[unknown] = np.arange(n)
    ys, xs = np.divmod(unknown, w)
    diag = np.zeros(n)
    rhs = np.zeros((n, c))
    rows, cols, vals = [], [], []
    for dy, dx, weight in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = np.flatnonzero((ny >= 0) & (ny < h) & (nx >= 0) & (nx < w))
        neighbour = ny[inside] * w + nx[inside]
        diag[inside] += weight
        var = index[neighbour]
        free = var >= 0
        rows.append(inside[free])
        cols.append(var[free])
        vals.append(np.full(int(free.sum()), -weight))
        rhs[inside[~free]] += weight * out[:, neighbour[~free]].T
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    system = csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    out[:, unknown] = splu(system).solve(rhs).reshape(n, c).T
    if noise > 0:
        out[:, unknown] += noise * rng.standard_normal((c, n))
    return out.reshape(c, h, w)


def noisy_linear_imputation(
    images: torch.Tensor,
    masks: Any,
    *,
    noise: float = 0.01,
    random_state: int = 0,
) -> torch.Tensor:
    r"""Fill removed pixels with the noisy linear imputation of ROAD (Rong et al. 2022).

    Every removed pixel $p$ takes the weighted mean of its neighbours $q$ inside the
    image, with weight $w_{pq} = 1/6$ for the 4 direct and $1/12$ for the 4 diagonal
    neighbours; a removed neighbour enters with its own imputed value, so the values
    $v$ solve one sparse linear system per image (exactly, with scipy's sparse LU, for all
    channels at once):

    $$
    v_p \sum_{q \in \mathcal{N}(p)} w_{pq} = \sum_{q \in \mathcal{N}(p)} w_{pq}\,
    \tilde x_q, \qquad \tilde x_q = v_q \text{ if } q \text{ is removed, else } x_q.
    $$

    Gaussian noise of standard deviation ``noise`` is then added to the removed pixels,
    each channel drawn independently. Kept pixels are returned unchanged. The solve runs
    on the CPU in float64; the result has the images' dtype and device.

    Args:
        images: float tensor (N, C, H, W), in the units the noise refers to (the model's
            input space when used for `road`).
        masks: bool tensor or array (N, H, W), True where a pixel is removed; each image
            keeps at least one pixel.
        noise: Standard deviation of the added noise (>= 0; 0 gives the plain linear
            imputation). The paper uses 0.01.
        random_state: Seed of the noise (int >= 0); image $i$'s noise depends only on
            ``random_state`` and $i$.

    Returns:
        A new tensor (N, C, H, W); ``images`` is not modified.

    Raises:
        ValueError: ``masks`` not a bool (N, H, W) array matching the images, or an
            image with every pixel removed; ``noise`` negative or not finite.
    """
    func = "noisy_linear_imputation"
    images = _check_images(images)
    noise = _check_noise(noise, func)
    seed = check_int(random_state, "random_state", func, 0)
    removed = _check_removed(masks, images, func)
    pixels = images.detach().to("cpu", torch.float64).numpy()
    out = np.stack(
        [
            _impute_one(pixels[i], removed[i], noise, np.random.default_rng([seed, i]))
            for i in range(len(pixels))
        ]
    )
    return torch.from_numpy(out).to(images.device, images.dtype)


def _road_counts(fractions: np.ndarray, hw: int, h: int, w: int, func: str) -> np.ndarray:
    """k_j = round(f_j * H * W) pixels removed (halves up); refuses removing all of them."""
    counts = np.floor(fractions * hw + 0.5).astype(np.int64)
    if bool((counts >= hw).any()):
        f = float(fractions[int(np.argmax(counts))])
        raise ValueError(
            f"The 'fractions' parameter of {func} removes every pixel of a {h}x{w} image at "
            f"{f} (round({f} * {hw}) = {hw}); ROAD needs at least one pixel to impute from. "
            "Use smaller fractions or larger images."
        )
    return counts


def _road_scores(
    model: nn.Module,
    x: torch.Tensor,
    classes: torch.Tensor,
    rank: np.ndarray,
    counts: np.ndarray,
    orders: tuple[str, ...],
    *,
    noise: float,
    seed: int,
    batch_size: int,
    probability: bool,
    progress: bool,
) -> torch.Tensor:
    """(N, len(orders), K) class scores of the imputed images (model already evaluating)."""
    from featviz._ops import progress_bar

    n, k, hw = x.shape[0], len(counts), rank.shape[1]
    per_image = len(orders) * k
    pixels = x.to("cpu", torch.float64).numpy()
    scores = torch.empty(n * per_image, dtype=torch.float32, device=x.device)
    bar = progress_bar(enabled=progress, total=n * per_image, desc="road")
    for idx in _chunks(n * per_image, batch_size):
        batch = []
        for item in idx.tolist():
            i, o, j = item // per_image, (item % per_image) // k, item % k
            kept = hw - counts[j]
            removed = rank[i] < counts[j] if orders[o] == "morf" else rank[i] >= kept
            rng = np.random.default_rng([seed, i, _ORDERS.index(orders[o]), j])
            batch.append(_impute_one(pixels[i], removed.reshape(x.shape[-2:]), noise, rng))
        inputs = torch.from_numpy(np.stack(batch)).to(x.device, x.dtype)
        img = (idx // per_image).to(x.device)
        scores[idx.to(x.device)] = _score(model(inputs), classes[img], probability)
        bar.update(len(idx))
    bar.close()
    return scores.view(n, len(orders), k)


def road(
    model: nn.Module,
    images: torch.Tensor,
    heatmaps: Any,
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    fractions: Sequence[float] = _FRACTIONS,
    order: Order = "both",
    noise: float = 0.01,
    batch_size: int = 64,
    probability: bool = True,
    eval_mode: bool = True,
    progress: bool = False,
    random_state: int = 0,
) -> RoadScores:
    r"""ROAD, RemOve And Debias (Rong et al. 2022): class scores after imputed removal.

    Pixels are ranked by decreasing heat (ties: row-major order first). For each
    fraction $f_j$, $k_j = \mathrm{round}(f_j \cdot HW)$ pixels (halves up; all
    channels) are removed: the first $k_j$ of the ranking for MoRF (most relevant
    first), the last $k_j$ for LeRF (least relevant first; among tied pixels the later
    ones in row-major order go first). The removed pixels are filled in by
    `noisy_linear_imputation` (weighted mean of the neighbours, 1/6 direct and 1/12
    diagonal, plus Gaussian noise of std ``noise``), which leaves no trace of the mask
    shape for the model to pick up. The model's class score on each imputed image gives
    $s^{\mathrm{MoRF}}_j$ and $s^{\mathrm{LeRF}}_j$, and the summary is

    $$
    \bar s^{\mathrm{MoRF}} = \frac{1}{K}\sum_j s^{\mathrm{MoRF}}_j, \qquad
    \bar s^{\mathrm{LeRF}} = \frac{1}{K}\sum_j s^{\mathrm{LeRF}}_j, \qquad
    \mathrm{ROAD} = \frac{\bar s^{\mathrm{LeRF}} - \bar s^{\mathrm{MoRF}}}{2}.
    $$

    A faithful map makes the MoRF score fall fast (low $\bar s^{\mathrm{MoRF}}$) and the
    LeRF score stay (high $\bar s^{\mathrm{LeRF}}$). With ``order="both"`` the score is
    pytorch-grad-cam's ``ROADCombined``.

    Args:
        model: Classifier returning (N, K) logits.
        images: float tensor (N, C, H, W), as the model takes them; the imputation and
            its noise work in these units.
        heatmaps: (N, h, w) tensor or array; resized bilinearly to (H, W) if needed.
        target: None (each image's arg-max class on the intact image), an int, or one
            int per image.
        fractions: Fractions of pixels removed, each in (0, 1); the paper's are
            0.1, 0.2, ..., 0.9. Each must keep at least one pixel.
        order: ``"morf"``, ``"lerf"`` or ``"both"``.
        noise: Standard deviation of the imputation noise (>= 0), in the images' units.
        batch_size: Imputed images per forward pass.
        probability: Score with the softmax probability of the class (True) or the raw
            logit (False).
        eval_mode: Evaluate the model in eval mode (flags restored after).
        progress: Show a progress bar.
        random_state: Seed of the noise (int >= 0). Each imputed image draws its own
            noise from ``random_state``, its index in the batch, its order and its
            fraction, so results do not depend on ``batch_size`` and the MoRF curve is
            the same with ``order="morf"`` and ``"both"``.

    Returns:
        `RoadScores` with ``score`` (N,), ``morf`` and ``lerf`` (N, K) (None for the order
        not run) and ``fractions`` (K,). The model runs N * K forward passes per order
        (in chunks of ``batch_size``), plus the passes that find the target classes.

    Raises:
        ValueError: A fraction outside (0, 1) or one that removes every pixel, an
            unknown ``order``, a negative ``noise``, or mismatched images and maps.
    """
    func = "road"
    images = _check_images(images)
    frac = _check_fractions(fractions, func)
    order = cast(Order, check_choice(order, "order", func, ("morf", "lerf", "both")))
    noise = _check_noise(noise, func)
    batch_size = check_int(batch_size, "batch_size", func, 1)
    seed = check_int(random_state, "random_state", func, 0)
    h, w = int(images.shape[-2]), int(images.shape[-1])
    counts = _road_counts(frac, h * w, h, w, func)
    rank = _ranks(_maps_for(images, heatmaps, func)).cpu().numpy()
    orders = _ORDERS if order == "both" else (order,)
    x = images.detach()
    with _evaluating(model, eval_mode):
        classes = _classes(model, x, target, batch_size)
        curves = _road_scores(
            model,
            x,
            classes,
            rank,
            counts,
            orders,
            noise=noise,
            seed=seed,
            batch_size=batch_size,
            probability=probability,
            progress=progress,
        )
    means = curves.mean(2)  # (N, len(orders))
    score = (means[:, 1] - means[:, 0]) / 2 if order == "both" else means[:, 0]
    morf = curves[:, orders.index("morf")] if "morf" in orders else None
    lerf = curves[:, orders.index("lerf")] if "lerf" in orders else None
    fractions_t = torch.as_tensor(frac, dtype=torch.float32, device=x.device)
    return RoadScores(score, morf, lerf, fractions_t)


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
