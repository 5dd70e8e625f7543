"""Reading the features: arrays, memory maps and streamed datasets, their labels, the PCA step.

Every input goes through one scan (`_Scan`): NaN/inf rows, identical rows and, for
methods on float32 distances, a spread float32 cannot resolve are refused before any
library runs. The PCA step (to k for PCA itself, to ``pca_dims`` before t-SNE/UMAP) runs
here: scikit-learn ``PCA`` in memory, ``IncrementalPCA`` over row chunks of a memory map
larger than the budget, or in two passes over a ``Dataset``/``DataLoader``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from featviz._images import label_array
from featviz.hooks import to_numpy
from featviz.projection._common import (
    _as_float,
    _bad_rows,
    _chunks,
    _first_rows,
    _pca_errors,
    _Reduced,
    _release_pages,
    _Settings,
    _subsample,
    _warn,
)

logger = logging.getLogger("featviz.projection")

# t-SNE and UMAP square distances in float32. Measured with scikit-learn 1.9, openTSNE
# 1.0 and umap-learn 0.5: sklearn's t-SNE collapses the map at column ranges of 1e-16
# and distorts it from 1e15 on, and crashes the interpreter (segfault) at 1e-30 or when
# the features differ by 1e-10 of their size; these bounds keep three decades of margin.
_FLOAT32_RANGE = (1e-12, 1e12)
_FLOAT32_MIN_RELATIVE = 1e-6  # float32 resolves 1.2e-7 of a value; ask for ~8 steps


class _Scan:
    """What one read of the features learns about its rows, chunk by chunk.

    Arrays, memory maps and streams all go through it, so one rule decides which rows a
    projection can use: no NaN/inf, not all identical and, for methods on float32
    distances, a spread float32 resolves.
    """

    def __init__(self) -> None:
        self.n = 0
        self.bad: list[np.ndarray] = []
        self.lo: np.ndarray | None = None  # (D,) column minima over the finite chunks
        self.hi: np.ndarray | None = None

    def add(self, chunk: np.ndarray) -> None:
        """Take the next (b, D) rows."""
        bad = _bad_rows(chunk)
        if bad.size:
            self.bad.append(bad + self.n)
        elif chunk.shape[0]:
            lo, hi = chunk.min(axis=0), chunk.max(axis=0)
            self.lo = lo if self.lo is None else np.minimum(self.lo, lo)
            self.hi = hi if self.hi is None else np.maximum(self.hi, hi)
        self.n += chunk.shape[0]

    def check(self, s: _Settings) -> None:
        """Raise the ValueError that says why these rows cannot be projected, if any."""
        if self.bad:
            rows = np.concatenate(self.bad)
            raise ValueError(
                f"The {s.name!r} parameter of {s.fn} has {rows.size} row(s) with NaN or inf "
                f"values (rows {_first_rows(rows)}); drop or impute them first."
            )
        if self.lo is None or self.hi is None:
            return
        lo, hi = self.lo.astype(np.float64), self.hi.astype(np.float64)
        spread = hi - lo
        if not spread.any():
            _identical_rows(self.n, s)
        if s.row.float32:
            _check_float32_spread(spread, np.maximum(np.abs(lo), np.abs(hi)), s)


def _identical_rows(n: int, s: _Settings) -> None:
    raise ValueError(
        f"The {s.name!r} parameter of {s.fn} has {n} identical rows (zero variance), so "
        "there is nothing to project. Check that the features vary across rows (a constant "
        "or dead layer does not)."
    )


def _check_float32_spread(spread: np.ndarray, size: np.ndarray, s: _Settings) -> None:
    """Raise if float32 distances cannot resolve how the rows differ (t-SNE, UMAP)."""
    low, high = _FLOAT32_RANGE
    widest = float(spread.max())
    if not low <= widest <= high:
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} spans {widest:.3g} across rows (its widest "
            f"column range); method={s.method!r} needs a range in [{low:g}, {high:g}], as "
            f"{s.row.title} squares distances in float32. Rescale the features (e.g. "
            "standardise each column) or use method='pca'."
        )
    relative = float(np.max(spread / np.where(size > 0, size, 1.0)))
    if relative < _FLOAT32_MIN_RELATIVE:
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} varies across rows by at most {relative:.2g} "
            f"of its values' size; method={s.method!r} needs {_FLOAT32_MIN_RELATIVE:g} or "
            f"more, as {s.row.title} computes in float32 (which resolves 1.2e-07). Subtract "
            "the mean (or standardise the features) first, or use method='pca'."
        )


def _check_size(n: int, d: int, s: _Settings) -> None:
    """Raise if N rows of D values are too few for the method or for k components."""
    row = s.row
    if n < row.min_rows:
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} must have at least {row.min_rows} rows "
            f"(N >= {row.min_rows}) for method={s.method!r}{row.min_rows_why}. Got N={n}."
        )
    if s.k > min(n, d):
        raise ValueError(
            f"The 'n_components' parameter of {s.fn} must be <= min(N, D) = {min(n, d)} for "
            f"method={s.method!r} (the features have N={n} rows of D={d} values). "
            f"Got {s.k}."
        )


def _flatten_array(features: Any, fn: str = "project", name: str = "features") -> np.ndarray:
    """(N, ...) tensor/array/memmap/array-like -> (N, D) array without copying when possible."""
    if isinstance(features, torch.Tensor):
        arr = to_numpy(features)
    elif isinstance(features, np.ndarray):  # np.memmap included, kept as a memmap
        arr = features
    else:
        try:
            arr = np.asarray(features)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"The {name!r} parameter of {fn} must be a tensor, an array (N, ...), a "
                f"Dataset or a DataLoader. Got {type(features).__name__}."
            ) from exc
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"The {name!r} parameter of {fn} must hold numbers. Got dtype {arr.dtype}.")
    if arr.ndim < 2:
        raise ValueError(
            f"The {name!r} parameter of {fn} must have shape (N, D) or (N, ...) with at least "
            f"2 dimensions. Got shape {arr.shape}; for a single feature per row use "
            "x.reshape(-1, 1)."
        )
    n = arr.shape[0]
    if n < 2:
        raise ValueError(
            f"The {name!r} parameter of {fn} must have at least 2 rows (N >= 2). Got N={n}."
        )
    d = math.prod(arr.shape[1:])
    if d < 1:
        raise ValueError(
            f"The {name!r} parameter of {fn} has no values per row. Got shape {arr.shape}."
        )
    return arr.reshape(n, d)


def _labels_array(labels: Any, n: int, fn: str = "project") -> np.ndarray:
    """(N,) labels through the one label rule (`featviz._images.label_array`).

    All present and of one kind (they are grouped by np.unique); integral floats are the
    int classes, so ``0.0`` and ``0`` are one class in every figure.
    """
    return label_array(labels, n, func=fn)


# -- sources: arrays, memory maps, streamed datasets -----------------------------------------


def _pca_target(n: int | None, d: int, s: _Settings) -> int | None:
    """Dimensions of the PCA step: k for PCA itself, else pca_dims (None: no PCA step).

    ``n=None`` (a stream before its end): the pre-step's dimensions before capping at N.
    """
    if not s.row.pre_step:
        return s.k
    if s.pca_dims is None or d <= s.pca_dims:
        return None
    return s.pca_dims if n is None else min(s.pca_dims, n)


def _ipca_components(k: int, d: int) -> int:
    # IncrementalPCA keeps only its components between chunks; tracking 20 more than
    # asked makes the leading k accurate also when the spectrum has no gap after k.
    return min(d, k + 20)


def _ipca_rows(k: int) -> int:
    # IncrementalPCA costs ~ N * D * (rows + k)^2 / rows (an SVD per chunk): chunks of a
    # few times k are fastest; below ~256 rows the per-call overhead takes over.
    return max(256, 4 * k)


class _Rechunker:
    """Regroup a stream of (b, D) batches into chunks of ``rows`` rows (last may be larger)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._buf: list[np.ndarray] = []
        self._count = 0
        self._pending: np.ndarray | None = None

    def push(self, x: np.ndarray) -> Iterator[np.ndarray]:
        self._buf.append(x)
        self._count += x.shape[0]
        while self._count >= self.rows:
            cat = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
            out, rest = cat[: self.rows], cat[self.rows :]
            self._buf = [rest] if rest.shape[0] else []
            self._count = rest.shape[0]
            if self._pending is not None:
                yield self._pending
            self._pending = out

    def finish(self) -> Iterator[np.ndarray]:
        tail = np.concatenate(self._buf) if self._buf else None
        if self._pending is not None and tail is not None:
            yield np.concatenate([self._pending, tail])  # never a too-small last chunk
        elif self._pending is not None:
            yield self._pending
        elif tail is not None:
            yield tail
        self._buf, self._count, self._pending = [], 0, None


def _reduce_memmap(x: np.ndarray, k: int, s: _Settings) -> _Reduced:
    """IncrementalPCA over row chunks of a memory map larger than the budget."""
    from sklearn.decomposition import IncrementalPCA

    from featviz._ops import progress_bar

    n, d = x.shape
    k_fit = min(_ipca_components(k, d), n)
    rows = min(_ipca_rows(k_fit), n)
    ipca = IncrementalPCA(n_components=k_fit)
    scan = _Scan()
    spans = list(_chunks(n, rows))
    if len(spans) > 1 and spans[-1].stop - spans[-1].start < k_fit:
        last = spans.pop()  # keep every chunk at least k_fit rows
        spans[-1] = slice(spans[-1].start, last.stop)
    for sl in progress_bar(spans, enabled=s.progress, desc="IncrementalPCA fit", leave=False):
        chunk = _as_float(np.array(x[sl]))
        _release_pages(x)
        scan.add(chunk)
        if not scan.bad:
            with _pca_errors(s, "scikit-learn's IncrementalPCA"):
                ipca.partial_fit(chunk)
    scan.check(s)
    z = np.empty((n, k), dtype=np.result_type(x.dtype, np.float32))
    for sl in progress_bar(spans, enabled=s.progress, desc="IncrementalPCA transform", leave=False):
        with _pca_errors(s, "scikit-learn's IncrementalPCA"):
            z[sl] = ipca.transform(_as_float(np.array(x[sl])))[:, :k]
        _release_pages(x)
    evr = ipca.explained_variance_ratio_[:k].copy()
    return _Reduced(z, evr, True, x, n_features=d, rows_fit=False)


def _split_batch(batch: Any, s: _Settings) -> tuple[Any, Any]:
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return batch, None
    if isinstance(batch, Mapping):
        for key in ("image", "images", "pixel_values", "x"):
            if key in batch:
                lab = next(
                    (batch[k] for k in ("label", "labels", "target", "y") if k in batch), None
                )
                return batch[key], lab
    elif isinstance(batch, (tuple, list)) and len(batch) >= 1:
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise TypeError(
        f"The {s.name!r} parameter of {s.fn}: each batch of the Dataset/DataLoader must be a "
        "tensor, a (image, label, ...) tuple or a dict with an 'image' key. "
        f"Got {type(batch).__name__}."
    )


def _stream(source: Any, s: _Settings) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    if isinstance(source, DataLoader):
        loader: Iterable[Any] = source
    else:
        loader = DataLoader(source, batch_size=s.batch_size, shuffle=False)
    for batch in loader:
        images, lab = _split_batch(batch, s)
        x = to_numpy(images) if isinstance(images, torch.Tensor) else np.asarray(images)
        if x.ndim < 2:
            raise ValueError(
                f"The {s.name!r} parameter of {s.fn}: batches of the Dataset/DataLoader must "
                f"have shape (B, ...) with at least 2 dimensions. Got {x.shape}."
            )
        x = _as_float(x.reshape(x.shape[0], -1))
        lab_np = None
        if lab is not None:
            lab_np = to_numpy(lab) if isinstance(lab, torch.Tensor) else np.asarray(lab)
            lab_np = lab_np.reshape(x.shape[0], -1)[:, 0] if lab_np.ndim else None
        yield x, lab_np


def _stream_labels(source: Any, labels: np.ndarray | None) -> Any:
    """Labels read from the items, as class names when the dataset has ``classes``."""
    ds = source.dataset if isinstance(source, DataLoader) else source
    names = getattr(ds, "classes", None)
    named = isinstance(names, (list, tuple)) and bool(names)
    if not named or not all(isinstance(c, str) for c in names):  # type: ignore[union-attr]
        return labels
    if labels is None or labels.dtype.kind not in "iu" or not labels.size:
        return labels
    if 0 <= labels.min() and labels.max() < len(names):  # type: ignore[arg-type]
        return np.asarray(names, dtype=object)[labels]
    return labels


def _stack_labels(labs: list[np.ndarray | None]) -> np.ndarray | None:
    if not labs or any(lab is None for lab in labs):
        return None
    return np.concatenate([lab for lab in labs if lab is not None])


@dataclass
class _StreamFit:
    """What the first pass over a stream found: rows seen, D, and the PCA fitted (if any)."""

    seen: int = 0
    d: int = 0
    k: int | None = None  # dimensions of the PCA step (None: no PCA, rows kept)
    ipca: Any = None
    kept: list[np.ndarray] = field(default_factory=list)  # the rows, when no PCA
    labels: list[np.ndarray | None] = field(default_factory=list)


def _reduce_stream(source: Any, s: _Settings) -> _Reduced:
    """Two passes over a Dataset/DataLoader: IncrementalPCA fit, then transform.

    Without a PCA step (a pre-step with D <= pca_dims, or pca_dims=None) one pass
    collects the rows (they are small then).
    """
    if isinstance(source, DataLoader) and isinstance(source.sampler, RandomSampler):
        _warn(
            f"{s.fn}: the DataLoader shuffles; rows of the projection follow the order of its "
            "last pass, not the dataset's. Use shuffle=False to keep the dataset's order."
        )
    fit = _stream_fit(source, s)
    if fit.ipca is None:
        rows = np.concatenate(fit.kept)
        return _Reduced(rows, None, False, rows, _stack_labels(fit.labels), fit.d)
    return _stream_transform(source, fit, s)


def _stream_fit(source: Any, s: _Settings) -> _StreamFit:
    """Pass 1: check every batch and fit IncrementalPCA in chunks (or keep the rows)."""
    from sklearn.decomposition import IncrementalPCA

    from featviz._ops import progress_bar

    scan, fit = _Scan(), _StreamFit()
    rechunk: _Rechunker | None = None
    bar = progress_bar(enabled=s.progress, desc="reading (pass 1)", unit="row", leave=False)
    for x, lab in _stream(source, s):
        if fit.seen == 0:  # first batch: now D is known
            fit.d, fit.k = x.shape[1], _pca_target(None, x.shape[1], s)
        scan.add(x)
        fit.seen += x.shape[0]
        bar.update(x.shape[0])
        if fit.k is None:
            fit.kept.append(x)
            fit.labels.append(lab)
            continue
        if rechunk is None:
            fit.ipca = IncrementalPCA(n_components=_ipca_components(fit.k, fit.d))
            rechunk = _Rechunker(_ipca_rows(fit.ipca.n_components))
        if not scan.bad:
            for chunk in rechunk.push(x):
                with _pca_errors(s, "scikit-learn's IncrementalPCA"):
                    fit.ipca.partial_fit(chunk)
    bar.close()
    if fit.seen < 2:
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} must yield at least 2 rows (N >= 2). "
            f"Got N={fit.seen}."
        )
    scan.check(s)
    _check_size(fit.seen, fit.d, s)
    if rechunk is not None:
        _fit_tail(fit, list(rechunk.finish()), s)
    return fit


def _fit_tail(fit: _StreamFit, tail: list[np.ndarray], s: _Settings) -> None:
    """Fit the chunk(s) left in the rechunker; a stream of one chunk may cap the dimensions."""
    if fit.k is None:  # pragma: no cover - a rechunker exists only with a PCA step
        return
    if tail and not hasattr(fit.ipca, "components_"):  # everything fits in one chunk
        fit.k = min(fit.k, fit.seen)  # a pre-step to more dims than rows keeps them all
        fit.ipca.set_params(n_components=min(fit.ipca.n_components, fit.seen))
    for chunk in tail:
        with _pca_errors(s, "scikit-learn's IncrementalPCA"):
            fit.ipca.partial_fit(chunk)


def _stream_transform(source: Any, fit: _StreamFit, s: _Settings) -> _Reduced:
    """Pass 2: apply the PCA batch by batch; keep the raw rows of the scoring subsample."""
    from featviz._ops import progress_bar

    out: list[np.ndarray] = []
    labs: list[np.ndarray | None] = []
    sub_idx = _subsample(fit.seen, s.random_state)
    sub: list[np.ndarray] = []
    pos = 0
    bar = progress_bar(
        enabled=s.progress, total=fit.seen, desc="projecting (pass 2)", unit="row", leave=False
    )
    for x, lab in _stream(source, s):
        with _pca_errors(s, "scikit-learn's IncrementalPCA"):
            out.append(fit.ipca.transform(x)[:, : fit.k])
        labs.append(lab)
        lo, hi = np.searchsorted(sub_idx, [pos, pos + x.shape[0]])
        sub.append(x[sub_idx[lo:hi] - pos])
        pos += x.shape[0]
        bar.update(x.shape[0])
    bar.close()
    if pos != fit.seen:
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} gave {fit.seen} rows in the first pass and "
            f"{pos} in the second; a Dataset/DataLoader must give the same rows every time."
        )
    evr = fit.ipca.explained_variance_ratio_[: fit.k].copy()
    n_features = int(fit.ipca.n_features_in_)
    return _Reduced(
        np.concatenate(out), evr, True, None, _stack_labels(labs), n_features, np.concatenate(sub)
    )


# -- streamed PCA: block subspace iteration over row blocks ------------------------------------

#: PCA of an array or memory map of at least this many bytes (or of a memory map larger
#: than the memory budget) runs by block subspace iteration over row blocks
#: (`Projection.engine` ``"streamed"``; ``engine="sklearn"`` keeps scikit-learn's PCA /
#: IncrementalPCA): no copy of the data, a few passes, bounded memory.
STREAMED_PCA_MIN_BYTES = 256 * 2**20
_BLOCK_BYTES = 16 * 2**20  # one row block of a streamed pass (at least _BLOCK_ROWS rows)
_BLOCK_ROWS = 512  # fewer rows per block make each BLAS call too small to be efficient
_OVERSAMPLE = 10  # the subspace tracks k + 10 directions (as sklearn's randomized_svd)
_MAX_PASSES = 12  # passes after the first (each one power iteration + Rayleigh-Ritz)
_EIGEN_TOL = 1e-5  # stop when the top-k variances are exact to this (relative bound)


def _streams(x: np.ndarray, k: int, s: _Settings) -> bool:
    """Whether the PCA step of (N, D) ``x`` to ``k`` runs streamed (`STREAMED_PCA_MIN_BYTES`)."""
    n, d = x.shape
    if s.engine == "sklearn" and not s.row.pre_step:
        return False
    big = x.nbytes >= STREAMED_PCA_MIN_BYTES or (isinstance(x, np.memmap) and x.nbytes > s.budget)
    return big and 2 * (k + _OVERSAMPLE) <= min(n, d)


class _Blocks:
    """Row blocks of an (N, D) array or memory map, read in order, as float32/float64.

    A block of a read-only/shared memory map is released from the process's RSS right
    after use (``madvise(MADV_DONTNEED)`` on its byte range; the OS page cache keeps the
    data), so a pass holds about one block of the map however large the file.
    """

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.dtype = np.dtype(np.float64 if x.dtype == np.float64 else np.float32)
        self.rows = max(_BLOCK_ROWS, _BLOCK_BYTES // max(1, x.shape[1] * x.itemsize))
        self._map, self._offset = _map_of(x)

    def __iter__(self) -> Iterator[tuple[slice, np.ndarray]]:
        n, d = self.x.shape
        row_bytes = d * self.x.itemsize
        for sl in _chunks(n, self.rows):
            block = self.x[sl]
            yield sl, block if block.dtype == self.dtype else block.astype(self.dtype)
            if self._map is not None:
                start = self._offset + sl.start * row_bytes
                _release_range(self._map, start, (sl.stop - sl.start) * row_bytes)


def _map_of(x: np.ndarray) -> tuple[Any, int]:
    """The ``mmap`` under a C-contiguous read-only/shared memory map, and ``x``'s byte offset."""
    import mmap

    mm = getattr(x, "_mmap", None)
    if not isinstance(mm, mmap.mmap) or getattr(x, "mode", "c") not in ("r", "r+"):
        return None, 0
    if not x.flags.c_contiguous or not hasattr(mm, "madvise"):
        return None, 0
    base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    return mm, int(x.ctypes.data - base)


def _release_range(mm: Any, start: int, length: int) -> None:
    import mmap

    page = mmap.PAGESIZE
    lo = start - start % page
    try:
        mm.madvise(mmap.MADV_DONTNEED, lo, length + start - lo)
    except (OSError, ValueError):  # pragma: no cover - closed map or odd platform
        pass


@dataclass
class _Sketch:
    """State of the subspace iteration: the mean, the (D, l) basis and what a pass gives."""

    mean: np.ndarray  # (D,) float64
    q: np.ndarray  # (D, l) orthonormal basis of the current subspace
    scores: np.ndarray  # (N, l) centred rows times q, from the last pass
    total_ss: float = 0.0  # sum of squared centred values (N - 1 times the total variance)
    ritz: np.ndarray = field(default_factory=lambda: np.empty(0))  # (l,) Ritz values, desc.
    vecs: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # (l, l) Ritz vectors
    error: float = np.inf  # bound on the top-k Ritz values' relative error
    passes: int = 1  # passes over the data so far


def _first_pass(blocks: _Blocks, omega: np.ndarray, s: _Settings) -> tuple[np.ndarray, np.ndarray]:
    """One pass: column means, the row checks and the uncentred sketch X^T X omega, centred.

    Returns the (D,) float64 mean and the (D, l) sketch of the centred rows (the start of
    the subspace iteration; its float32 rounding only slows the iteration, never biases it).
    """
    n, d = blocks.x.shape
    total = np.zeros(d)
    z = np.zeros(omega.shape)
    scan = _Scan()
    ones = np.ones(blocks.rows, dtype=blocks.dtype)
    for _, b in blocks:
        colsum = (ones[: b.shape[0]] @ b).astype(np.float64)  # BLAS: one block in float32
        if s.row.float32 or not np.isfinite(colsum).all():
            scan.add(b)  # min/max for float32 methods; NaN/inf rows named
        else:
            scan.n += b.shape[0]
        if scan.bad:
            continue
        total += colsum
        y = b @ omega
        z += b.T @ y
    scan.check(s)
    mean = total / n
    z -= n * np.outer(mean, mean @ omega)
    return mean, z


def _centred_pass(blocks: _Blocks, sk: _Sketch, total: bool) -> np.ndarray:
    """One pass over the centred rows C: scores C q (kept) and C^T C q (returned, (D, l)).

    With ``total``, also the sum of squares of C (``sk.total_ss``).
    """
    q = sk.q.astype(blocks.dtype)
    mean = sk.mean.astype(blocks.dtype)
    z = np.zeros(q.shape)
    buf = np.empty((blocks.rows, q.shape[0]), dtype=blocks.dtype)
    ss = 0.0
    for sl, b in blocks:
        c = np.subtract(b, mean, out=buf[: b.shape[0]])
        y = c @ q
        sk.scores[sl] = y
        z += c.T @ y
        if total:
            ss += float(np.einsum("ij,ij->i", c, c).sum(dtype=np.float64))
    if total:
        sk.total_ss = ss
    sk.passes += 1
    return z


def _rayleigh_ritz(sk: _Sketch, z: np.ndarray, k: int) -> None:
    """Ritz values/vectors of C^T C in span(q), from z = C^T C q, and their error bound.

    The bound is |lambda - theta| <= |r|^2 / (theta - theta_l) for a Ritz pair (theta, v)
    with residual r = C^T C v - theta v, theta_l the smallest Ritz value standing for the
    spectrum outside the subspace (Kato-Temple), relative to theta.
    """
    g = sk.q.T @ z
    vals, vecs = np.linalg.eigh((g + g.T) / 2)
    order = np.argsort(vals)[::-1]
    sk.ritz, sk.vecs = np.maximum(vals[order], 0.0), vecs[:, order]
    w = sk.vecs[:, :k]
    lam = sk.ritz[:k]
    r = np.linalg.norm(z @ w - sk.q @ (w * lam), axis=0)  # |C^T C v - theta v|, |v| = 1
    tiny = np.finfo(np.float64).tiny
    gap = np.maximum(lam - sk.ritz[-1], tiny) if sk.ritz.size > k else np.full(k, np.inf)
    sk.error = float(np.max(r**2 / gap / np.maximum(lam, tiny)))


def _orthonormal(z: np.ndarray) -> np.ndarray:
    return np.linalg.qr(z)[0]


def _streamed_pca(x: np.ndarray, k: int, s: _Settings) -> tuple[np.ndarray, np.ndarray]:
    """PCA of (N, D) ``x`` to k by block subspace iteration; ((N, k) scores, (k,) ratios).

    Pass 1 computes the column means (in float64), checks the rows and sketches the range
    with a seeded Gaussian (D, k + 10) matrix; each further pass multiplies the basis by
    C^T C (C: the centred rows, a block at a time, in the data's float precision, summed
    over blocks in float64), then takes the Ritz pairs of C^T C in that basis, and stops
    when the top-k variances are exact to `_EIGEN_TOL` (a relative error bound) or after
    `_MAX_PASSES` passes.
    Components follow scikit-learn's sign rule (largest absolute loading positive).
    """
    from tqdm.auto import tqdm

    n, d = x.shape
    blocks = _Blocks(x)
    ell = min(k + _OVERSAMPLE, n, d)
    rng = np.random.default_rng(s.random_state)
    omega = rng.standard_normal((d, ell)).astype(blocks.dtype)
    mean, z = _first_pass(blocks, omega, s)
    sk = _Sketch(mean, _orthonormal(z), np.empty((n, ell), dtype=blocks.dtype))
    bar = tqdm(total=_MAX_PASSES, desc="streamed PCA", disable=not s.progress, leave=False)
    for i in range(_MAX_PASSES):
        z = _centred_pass(blocks, sk, total=i == 0)
        if sk.total_ss <= 0.0:
            _identical_rows(n, s)
        _rayleigh_ritz(sk, z, k)  # of the q the scores were computed with
        bar.update()
        if sk.error <= _EIGEN_TOL:
            break
        sk.q = _orthonormal(z)
    bar.close()
    logger.debug("streamed PCA: %d passes, variance error bound %.2g", sk.passes, sk.error)
    w = sk.vecs[:, :k]
    comps = sk.q @ w  # (D, k)
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    scores = (sk.scores @ (w * signs).astype(blocks.dtype)).astype(blocks.dtype)
    evr = sk.ritz[:k] / sk.total_ss
    return scores, evr


def _reduce_streamed(x: np.ndarray, k: int, s: _Settings) -> _Reduced:
    """The PCA step by `_streamed_pca` (no copy of the data)."""
    with _pca_errors(s, "featviz's streamed PCA"):
        z, evr = _streamed_pca(x, k, s)
    rows_fit = not isinstance(x, np.memmap) or x.nbytes <= s.budget
    return _StreamedReduced(z, evr, True, x, n_features=x.shape[1], rows_fit=rows_fit)


@dataclass
class _StreamedReduced(_Reduced):
    """The PCA step's output when `_streamed_pca` computed it."""

    pca_engine: ClassVar[str] = "streamed"


def _read_owned(x: np.ndarray, *, progress: bool) -> np.ndarray:
    """Copy a memory map into an owned float array in row chunks, releasing mapped pages.

    Peak RSS stays near the data size plus one chunk (not twice the data size).
    """
    from featviz._ops import progress_bar

    n, d = x.shape
    out = np.empty((n, d), dtype=_as_float(np.empty(0, x.dtype)).dtype)
    step = max(1, (64 * 2**20) // max(1, d * x.itemsize))  # ~64 MiB per chunk
    for sl in progress_bar(list(_chunks(n, step)), enabled=progress, desc="reading", leave=False):
        out[sl] = x[sl]
        _release_pages(x)
    return out


def _reduce(x: np.ndarray, s: _Settings) -> _Reduced:
    """PCA step of an (N, D) array (none for a small pre-step); chunked for big memory maps."""
    n, d = x.shape
    k = _pca_target(n, d, s)
    if k is not None and _streams(x, k, s):
        return _reduce_streamed(x, k, s)
    if isinstance(x, np.memmap) and x.nbytes > s.budget and k is not None:
        return _reduce_memmap(x, k, s)
    if isinstance(x, np.memmap):
        arr, owned = _read_owned(x, progress=s.progress), True
    else:
        arr = _as_float(np.asarray(x))
        owned = not np.may_share_memory(arr, x)
    rows_fit = not isinstance(x, np.memmap) or x.nbytes <= s.budget
    scan = _Scan()
    for sl in _chunks(n, max(1, (64 * 2**20) // max(1, d * arr.itemsize))):  # ~64 MiB each
        scan.add(arr[sl])
    scan.check(s)
    if k is None:
        return _Reduced(arr, None, False, x, n_features=d, rows_fit=rows_fit)
    from sklearn.decomposition import PCA

    # an array we own may be centred in place (copy=False): no second copy of the data;
    # the results are the same as with copy=True
    pca = PCA(n_components=k, random_state=s.random_state, copy=not owned)
    with _pca_errors(s, "scikit-learn's PCA"):
        z = pca.fit_transform(arr)
    del arr
    evr = pca.explained_variance_ratio_.copy()
    return _Reduced(z, evr, False, x, n_features=d, rows_fit=rows_fit)


def _read(features: Any, labels: Any, s: _Settings) -> tuple[_Reduced, np.ndarray | None]:
    """Check the features and labels, and run the PCA step: stream, memory map or array."""
    if isinstance(features, (Dataset, DataLoader)):
        red = _reduce_stream(features, s)
        if labels is None:
            labels = _stream_labels(features, red.labels)
        n = red.data.shape[0]
        return red, None if labels is None else _labels_array(labels, n, s.fn)
    x = _flatten_array(features, s.fn, s.name)
    lab = None if labels is None else _labels_array(labels, x.shape[0], s.fn)
    _check_size(x.shape[0], x.shape[1], s)
    return _reduce(x, s), lab


# -- methods: one row per method -------------------------------------------------------------
