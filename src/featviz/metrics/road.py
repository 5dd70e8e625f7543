r"""ROAD, RemOve And Debias (Rong et al. 2022), and its noisy linear imputation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import torch
from torch import nn

from featviz._outputs import Target
from featviz._scoring import Scorer
from featviz._validation import check_choice, check_int
from featviz.metrics._common import _chunks, _evaluating, _ranks, _scorer
from featviz.metrics._inputs import _check_images, _maps_for

__all__ = ["RoadScores", "noisy_linear_imputation", "road"]

Order = Literal["morf", "lerf", "both"]


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
    images = _check_images(images, func)
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
    scorer: Scorer,
    rank: np.ndarray,
    counts: np.ndarray,
    orders: tuple[str, ...],
    *,
    noise: float,
    seed: int,
    batch_size: int,
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
        scores[idx.to(x.device)] = scorer(model(inputs), img).float()
        bar.update(len(idx))
    bar.close()
    return scores.view(n, len(orders), k)


def road(
    model: nn.Module,
    images: torch.Tensor,
    heatmaps: Any,
    target: Target = None,
    *,
    fractions: Sequence[float] = _FRACTIONS,
    order: Order = "both",
    noise: float = 0.01,
    batch_size: int = 64,
    probability: bool = True,
    eval_mode: bool = True,
    progress: bool = True,
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
        model: The model: a classifier returning (N, K) logits, or any model the
            ``target`` scores (a detector with ``BoxTarget``, a segmenter, ...).
        images: float tensor (N, C, H, W), as the model takes them; the imputation and
            its noise work in these units.
        heatmaps: (N, h, w) tensor or array; resized bilinearly to (H, W) if needed.
        target: What is scored, resolved once on the intact images: None (each image's
            arg-max class there, kept for the perturbed copies), an int, one int per
            image (length N), a `featviz.targets` object (``ClassTarget(c)`` scores
            exactly as ``c``; ``BoxTarget`` for detectors, ``SegmentationTarget``,
            ``SimilarityTarget``), or any callable ``outputs -> (B,) scores``. A callable
            sees batches of perturbed copies of several images, so it must score each
            output row on its own (the `featviz.targets` objects holding data per image
            are restricted to the batch's images for it).
        fractions: Fractions of pixels removed, each in (0, 1); the paper's are
            0.1, 0.2, ..., 0.9. Each must keep at least one pixel.
        order: ``"morf"``, ``"lerf"`` or ``"both"``.
        noise: Standard deviation of the imputation noise (>= 0), in the images' units.
        batch_size: Imputed images per forward pass.
        probability: Score class targets (None, ints, ``ClassTarget``, ``ClassesTarget``)
            by the softmax probability (True) or the raw logit (False). Other targets
            are scored as they return (``ProbabilityTarget`` is always a probability).
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
    images = _check_images(images, func)
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
        scorer = _scorer(model, x, target, batch_size, probability)
        curves = _road_scores(
            model,
            x,
            scorer,
            rank,
            counts,
            orders,
            noise=noise,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )
    means = curves.mean(2)  # (N, len(orders))
    score = (means[:, 1] - means[:, 0]) / 2 if order == "both" else means[:, 0]
    morf = curves[:, orders.index("morf")] if "morf" in orders else None
    lerf = curves[:, orders.index("lerf")] if "lerf" in orders else None
    fractions_t = torch.as_tensor(frac, dtype=torch.float32, device=x.device)
    return RoadScores(score, morf, lerf, fractions_t)
