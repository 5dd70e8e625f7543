"""How good a projection is: trustworthiness and leave-one-out kNN accuracy.

Both are computed after the embedding, on what `_sources` kept of the input: the raw rows
when they are at hand (arrays, memory maps within the budget, a stream's seeded
subsample), else the PCA step's output; `Projection.quality` says which.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from featviz.projection._common import _as_float, _Reduced, _release_pages, _Settings, _subsample

logger = logging.getLogger("featviz.projection")

#: Neighbours used by the kNN accuracy in `Projection.quality`.
KNN_K = 10
#: The kNN accuracy in the reference space is skipped when N * N * D exceeds this.
KNN_COST_CAP = 4e11


def _knn_accuracy(points: np.ndarray, codes: np.ndarray, k: int, n_jobs: int | None) -> float:
    """Leave-one-out k-NN classification accuracy; ties go to the class of the nearest."""
    from sklearn.neighbors import NearestNeighbors

    n = points.shape[0]
    k = min(k, n - 1)
    nn = NearestNeighbors(n_neighbors=k + 1, n_jobs=n_jobs).fit(points)
    ind = nn.kneighbors(points, return_distance=False)
    is_self = ind == np.arange(n)[:, None]
    # drop the query itself (or the farthest, when a duplicate point came first)
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    nb = codes[np.take_along_axis(ind, order, axis=1)]  # (n, k)
    counts = np.zeros((n, int(codes.max()) + 1), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), k), nb.ravel()), 1)
    top = counts.max(axis=1)
    is_top = np.take_along_axis(counts, nb, axis=1) == top[:, None]
    pred = nb[np.arange(n), is_top.argmax(axis=1)]
    return float((pred == codes).mean())


def _reduced_name(red: _Reduced) -> str:
    d = red.data.shape[1]
    return f"pca-{d}" if red.evr is not None else f"input (D={d})"


def _trustworthiness(
    emb: np.ndarray, red: _Reduced, random_state: int | None, among: np.ndarray | None = None
) -> dict[str, Any]:
    """Trustworthiness on the seeded subsample, against the raw rows when they are at hand.

    ``among``: sorted row indices to draw the subsample from (default: all rows).
    """
    from sklearn.manifold import trustworthiness

    if among is None:
        idx = _subsample(emb.shape[0], random_state)
    else:
        idx = among[_subsample(among.size, random_state)]
    m = idx.shape[0]
    if red.rows is not None:
        ref_sub, space = _as_float(np.array(red.rows[idx])), f"input (D={red.rows.shape[1]})"
        _release_pages(red.rows)
    elif red.sub_rows is not None and among is None:
        ref_sub, space = red.sub_rows, f"input (D={red.sub_rows.shape[1]})"
    else:
        ref_sub, space = red.data[idx], _reduced_name(red)
    n_nb = min(5, (m - 1) // 2)
    value = float(trustworthiness(ref_sub, emb[idx], n_neighbors=n_nb)) if n_nb >= 1 else None
    return {"trustworthiness": value, "trustworthiness_space": space, "n_scored": int(m)}


def _knn_scores(emb: np.ndarray, red: _Reduced, labels: np.ndarray, s: _Settings) -> dict[str, Any]:
    """Leave-one-out kNN accuracy in the embedding and in the space the method was fitted on."""
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.reshape(-1)
    q: dict[str, Any] = {"knn_accuracy": _knn_accuracy(emb, codes, KNN_K, s.n_jobs)}
    n = emb.shape[0]
    ref: np.ndarray | None
    if s.row.pre_step or red.rows is None:  # fitted on the PCA step's output
        ref, space = red.data, _reduced_name(red)
    else:
        ref, space = (red.rows if red.rows_fit else None), f"input (D={red.rows.shape[1]})"
    if ref is not None and float(n) * n * ref.shape[1] <= KNN_COST_CAP:
        q["knn_accuracy_input"] = _knn_accuracy(_as_float(np.asarray(ref)), codes, KNN_K, s.n_jobs)
    else:
        q["knn_accuracy_input"] = None
        logger.info("%s: kNN accuracy in %s skipped (too costly or not in memory)", s.fn, space)
    q["knn_space"] = space
    return q


def _score(
    emb: np.ndarray,
    red: _Reduced,
    labels: np.ndarray | None,
    s: _Settings,
    fitted: np.ndarray | None = None,
) -> dict[str, Any]:
    """`Projection.quality`; ``fitted`` (N,) bool: the rows a t-SNE/UMAP map was fitted on."""
    start = time.perf_counter()
    q = _trustworthiness(emb, red, s.random_state)
    if fitted is not None and not fitted.all():  # held out of the fit: the placed rows
        held = _trustworthiness(emb, red, s.random_state, among=np.flatnonzero(~fitted))
        q["trustworthiness_placed"] = held["trustworthiness"]
        q["n_scored_placed"] = held["n_scored"]
    if labels is not None:
        q.update(_knn_scores(emb, red, labels, s))
    q["seconds"] = time.perf_counter() - start
    return q
