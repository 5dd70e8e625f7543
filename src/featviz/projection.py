"""Project features to 2-D/3-D with PCA, t-SNE or UMAP, score the result and plot it.

`project` takes features as a tensor or array (N, ...) (flattened to (N, D)), a
memory-mapped store (read in row chunks), or a raw image ``Dataset``/``DataLoader``
(streamed in batches), and returns a `Projection`: the embedding, a tidy
``pandas.DataFrame`` for plotting, the time taken, the explained variance ratio of any
PCA step, and quality figures (trustworthiness and 10-NN accuracy).

Everything `project` knows about a method (its display name, engines, smallest N, most
components, PCA pre-step, embedding function) is one row of the table ``_METHODS``.

Engine choice for ``method="tsne"`` with ``engine="auto"``: openTSNE (FFT-accelerated
interpolation above 10,000 points, Barnes-Hut below; the ``fast`` extra) when it is
installed and N >= `OPENTSNE_MIN_N`, else scikit-learn's Barnes-Hut ``TSNE``. Before
t-SNE and UMAP, features with D > ``pca_dims`` are reduced to ``pca_dims`` dimensions
by PCA.

Example:
    >>> proj = featviz.project(features, labels=labels)  # doctest: +SKIP
    >>> proj.quality["knn_accuracy"], proj.seconds  # doctest: +SKIP
    (0.98, 4.2)
    >>> featviz.plot_projection(proj)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import logging
import math
import mmap
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from featviz._ops import minmax, user_stacklevel
from featviz._validation import check_choice, check_int
from featviz.hooks import to_numpy

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["Projection", "plot_layer_projections", "plot_projection", "project"]

logger = logging.getLogger(__name__)

#: ``engine="auto"`` uses openTSNE (when installed) from this many points on.
OPENTSNE_MIN_N = 1000
#: Trustworthiness is computed on a seeded subsample of at most this many points.
TRUSTWORTHINESS_MAX_POINTS = 2000
#: Neighbours used by the kNN accuracy in `Projection.quality`.
KNN_K = 10
#: The kNN accuracy in the reference space is skipped when N * N * D exceeds this.
KNN_COST_CAP = 4e11
#: A memory-mapped input larger than this fraction of available memory (or than
#: ``max_memory``) is reduced by ``IncrementalPCA`` in row chunks.
DEFAULT_MEMORY_FRACTION = 0.25

# t-SNE and UMAP square distances in float32. Measured with scikit-learn 1.9, openTSNE
# 1.0 and umap-learn 0.5: sklearn's t-SNE collapses the map at column ranges of 1e-16
# and distorts it from 1e15 on, and crashes the interpreter (segfault) at 1e-30 or when
# the features differ by 1e-10 of their size; these bounds keep three decades of margin.
_FLOAT32_RANGE = (1e-12, 1e12)
_FLOAT32_MIN_RELATIVE = 1e-6  # float32 resolves 1.2e-7 of a value; ask for ~8 steps
_AXES = ("x", "y", "z")


@dataclass(repr=False)
class Projection:
    """The result of `project`: a plain record.

    Nothing is fitted on a `Projection` (it is not an estimator), so its fields have plain
    names; the scikit-learn style names ``embedding_`` and ``explained_variance_ratio_``
    of earlier releases still work but give a ``FutureWarning``.

    Attributes:
        embedding: (N, k) array, one row per input row (float32 or float64).
        frame: ``pandas.DataFrame`` with columns ``x``, ``y`` (``z`` for k = 3; further
            columns ``dim3``... for k > 3), ``label`` (``None`` without labels) and
            ``index`` (row of the input, or position in the stream).
        method: ``"pca"``, ``"tsne"`` or ``"umap"``.
        engine: What computed it: ``"sklearn"``, ``"sklearn-incremental"`` (PCA in
            chunks), ``"opentsne"`` or ``"umap-learn"``.
        seconds: Wall time of reading, checking, reducing and embedding (scoring
            excluded; see ``quality["seconds"]``).
        explained_variance_ratio: For ``"pca"``, the ratio of each of the k components;
            for t-SNE/UMAP, that of the PCA pre-step's components; ``None`` when no PCA
            ran.
        quality: ``trustworthiness`` (sklearn, 5 neighbours, on a seeded subsample of at
            most `TRUSTWORTHINESS_MAX_POINTS` rows; ``trustworthiness_space`` says
            against which features), ``n_scored`` (that subsample's size) and, with
            labels, ``knn_accuracy`` (leave-one-out 10-NN classification accuracy in the
            embedding), ``knn_accuracy_input`` (the same in ``knn_space``: the features
            the method was fitted on, i.e. the PCA-reduced ones after a pre-step) and
            ``knn_space``; ``seconds`` (time spent scoring). Empty with ``score=False``.
        labels: (N,) labels, or ``None``.
        params: Settings actually used (``perplexity`` after any adjustment,
            ``pca_dims`` of the pre-step or ``None``, ``random_state``, ...).
    """

    embedding: np.ndarray
    frame: pd.DataFrame
    method: str
    engine: str
    seconds: float
    explained_variance_ratio: np.ndarray | None
    quality: dict[str, Any] = field(default_factory=dict)
    labels: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def embedding_(self) -> np.ndarray:
        """Deprecated name of `embedding` (gives a ``FutureWarning``)."""
        _warn_renamed("embedding_", "embedding")
        return self.embedding

    @embedding_.setter
    def embedding_(self, value: np.ndarray) -> None:
        _warn_renamed("embedding_", "embedding")
        self.embedding = value

    @property
    def explained_variance_ratio_(self) -> np.ndarray | None:
        """Deprecated name of `explained_variance_ratio` (gives a ``FutureWarning``)."""
        _warn_renamed("explained_variance_ratio_", "explained_variance_ratio")
        return self.explained_variance_ratio

    @explained_variance_ratio_.setter
    def explained_variance_ratio_(self, value: np.ndarray | None) -> None:
        _warn_renamed("explained_variance_ratio_", "explained_variance_ratio")
        self.explained_variance_ratio = value

    @property
    def n_components(self) -> int:
        """Number of embedding dimensions k."""
        return int(self.embedding.shape[1])

    def __len__(self) -> int:
        return int(self.embedding.shape[0])

    def __repr__(self) -> str:
        q = ", ".join(
            f"{k}={v:.3f}"
            for k, v in self.quality.items()
            if isinstance(v, float) and k != "seconds"
        )
        return (
            f"Projection(method={self.method!r}, engine={self.engine!r}, "
            f"shape={self.embedding.shape}, seconds={self.seconds:.2f}"
            + (f", {q}" if q else "")
            + ")"
        )


def _warn_renamed(old: str, new: str) -> None:
    warnings.warn(
        f"Projection.{old} is deprecated and will be removed; use Projection.{new}. "
        "(A Projection is a plain record, not a fitted estimator, so its fields have no "
        "trailing underscore.)",
        FutureWarning,
        stacklevel=user_stacklevel(),
    )


def _warn(message: str) -> None:
    """``UserWarning`` attributed to the first caller outside this module (the user's line)."""
    frame, level = inspect.currentframe(), 1
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


# -- arguments -----------------------------------------------------------------------------


def _check_int(value: Any, name: str, low: int, fn: str = "project") -> int:
    return check_int(value, name, fn, low)


def _check_choice(value: Any, name: str, choices: Sequence[str], fn: str = "project") -> str:
    return check_choice(value, name, fn, choices, ignore_case=True)


def _check_perplexity(value: Any, fn: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 and math.isfinite(value))
    ):
        raise ValueError(
            f"The 'perplexity' parameter of {fn} must be a float in the range (0, inf). "
            f"Got {value!r} instead."
        )
    return float(value)


def _check_seed(value: Any, fn: str) -> int | None:
    return None if value is None else _check_int(value, "random_state", 0, fn)


def _check_n_jobs(value: Any, fn: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value == 0:
        raise ValueError(
            f"The 'n_jobs' parameter of {fn} must be None or a non-zero int (-1: all cores). "
            f"Got {value!r} instead."
        )
    return int(value)


@dataclass(frozen=True)
class _Settings:
    """`project`'s checked arguments, and the names its error messages use."""

    method: str
    k: int
    pca_dims: int | None
    engine: str
    perplexity: float
    random_state: int | None
    n_jobs: int | None
    batch_size: int
    budget: int  # bytes a memory map may take when read at once
    normalize: bool
    progress: bool
    score: bool
    fn: str = "project"  # the public function named in messages
    name: str = "features"  # how messages name the features parameter

    @property
    def row(self) -> _Method:
        """This method's row of `_METHODS`."""
        return _METHODS[self.method]


def _settings(
    *,
    method: Any,
    n_components: Any,
    pca_dims: Any,
    engine: Any,
    perplexity: Any,
    random_state: Any,
    n_jobs: Any,
    batch_size: Any,
    max_memory: Any,
    normalize: bool,
    progress: bool,
    score: bool,
    fn: str = "project",
) -> _Settings:
    """Check `project`'s arguments against each other and the method's row of `_METHODS`."""
    method = _check_choice(method, "method", list(_METHODS), fn)
    row = _METHODS[method]
    engine = _check_choice(engine, "engine", _all_engines(), fn)
    k = _check_int(n_components, "n_components", 1, fn)
    if row.max_components is not None and k > row.max_components:
        raise ValueError(
            f"The 'n_components' parameter of {fn} must be an int in the range "
            f"[1, {row.max_components}] for method={method!r}. Got {n_components!r} instead."
        )
    if pca_dims is not None:
        pca_dims = _check_int(pca_dims, "pca_dims", 1, fn)
        if row.pre_step and pca_dims < k:
            raise ValueError(
                f"The 'pca_dims' parameter of {fn} must be >= n_components = {k} for "
                f"method={method!r} (the PCA pre-step must keep at least k dimensions); "
                f"use pca_dims=None for no pre-step. Got {pca_dims!r} instead."
            )
    if engine not in row.engines:
        raise ValueError(
            f"The 'engine' parameter of {fn} must be one of {list(row.engines)} for "
            f"method={method!r}. Got {engine!r} instead."
        )
    if max_memory is not None:
        max_memory = _check_int(max_memory, "max_memory", 1, fn)
    return _Settings(
        method=method,
        k=k,
        pca_dims=pca_dims,
        engine=engine,
        perplexity=_check_perplexity(perplexity, fn),
        random_state=_check_seed(random_state, fn),
        n_jobs=_check_n_jobs(n_jobs, fn),
        batch_size=_check_int(batch_size, "batch_size", 1, fn),
        budget=max_memory or int(DEFAULT_MEMORY_FRACTION * _available_memory()),
        normalize=normalize,
        progress=progress,
        score=score,
        fn=fn,
    )


# -- checks on the data --------------------------------------------------------------------


def _available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def _release_pages(arr: np.ndarray) -> None:
    """Drop the resident pages of a read-only/shared memory map from this process's RSS.

    The data stays in the OS page cache; later reads fault it back in. Copy-on-write maps
    (mode ``"c"``) are left alone, since that would discard private changes.
    """
    mm = getattr(arr, "_mmap", None)
    if not isinstance(mm, mmap.mmap) or getattr(arr, "mode", "c") not in ("r", "r+"):
        return
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None or not hasattr(mm, "madvise"):  # pragma: no cover - non-Linux
        return
    try:
        mm.madvise(advice)
    except (OSError, ValueError):  # pragma: no cover - closed map or odd platform
        pass


def _as_float(chunk: np.ndarray) -> np.ndarray:
    if chunk.dtype in (np.float32, np.float64):
        return chunk
    return chunk.astype(np.float32)


def _bad_rows(chunk: np.ndarray) -> np.ndarray:
    """Indices of rows of a 2-D chunk holding NaN or inf."""
    if chunk.dtype.kind not in "fc":
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(chunk).all(axis=1))


def _first_rows(rows: np.ndarray) -> str:
    more = ", ..." if rows.size > 5 else ""
    return ", ".join(str(int(r)) for r in rows[:5]) + more


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
            raise ValueError(
                f"The {s.name!r} parameter of {s.fn} has {self.n} identical rows (zero "
                "variance), so there is nothing to project. Check that the features vary "
                "across rows (a constant or dead layer does not)."
            )
        if s.row.float32:
            _check_float32_spread(spread, np.maximum(np.abs(lo), np.abs(hi)), s)


def _check_float32_spread(spread: np.ndarray, size: np.ndarray, s: _Settings) -> None:
    """Raise if float32 distances cannot resolve how the rows differ (t-SNE, UMAP)."""
    low, high = _FLOAT32_RANGE
    widest = float(spread.max())
    if not low <= widest <= high:
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} spans {widest:.3g} across rows (its widest "
            f"column range); method={s.method!r} needs a range in [{low:g}, {high:g}], as "
            f"{s.row.name} squares distances in float32. Rescale the features (e.g. "
            "standardise each column) or use method='pca'."
        )
    relative = float(np.max(spread / np.where(size > 0, size, 1.0)))
    if relative < _FLOAT32_MIN_RELATIVE:
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} varies across rows by at most {relative:.2g} "
            f"of its values' size; method={s.method!r} needs {_FLOAT32_MIN_RELATIVE:g} or "
            f"more, as {s.row.name} computes in float32 (which resolves 1.2e-07). Subtract "
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


def _refuse_non_finite(values: np.ndarray | None, what: str, s: _Settings) -> None:
    """Never return a result that holds NaN or inf: refuse it with a ValueError."""
    if values is not None and not np.isfinite(values).all():
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} gave a {what} with NaN or inf values, so it "
            "is refused. The features are probably (nearly) constant or extreme in scale: "
            "standardise them, or try another method."
        )


@contextmanager
def _library_errors(s: _Settings, library: str) -> Iterator[None]:
    """Re-raise an error of a third-party library as a ValueError that names the features."""
    try:
        yield
    except (ImportError, MemoryError, Warning):
        raise
    except Exception as exc:
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} could not be projected: {library} failed "
            f"({type(exc).__name__}: {exc}). Check that the features vary and are moderate "
            "in scale (standardise them), or try another method or engine."
        ) from exc


@contextmanager
def _pca_errors(s: _Settings, library: str) -> Iterator[None]:
    """`_library_errors` for a PCA step, with its 0/0 warnings silenced.

    They come from (nearly) constant rows, and the explained variance ratio is checked
    right after the step (`_refuse_non_finite`), so they would only repeat that error.
    """
    with _library_errors(s, library), np.errstate(divide="ignore", invalid="ignore"):
        yield


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


def _missing_labels(lab: np.ndarray) -> np.ndarray:
    """Rows whose label is None or NaN."""
    if lab.dtype.kind in "fc":
        return np.flatnonzero(np.isnan(lab))
    if lab.dtype == object:
        return np.flatnonzero([v is None or (isinstance(v, float) and v != v) for v in lab])
    return np.empty(0, dtype=np.int64)


def _labels_array(labels: Any, n: int, fn: str = "project") -> np.ndarray:
    """(N,) labels, all present and of one sortable kind (they are grouped by np.unique)."""
    lab = to_numpy(labels) if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n:
        got = lab.shape[0] if lab.ndim == 1 else f"shape {lab.shape}"
        raise ValueError(
            f"The 'labels' parameter of {fn} must have one entry per row of the features "
            f"(N={n}). Got {got}."
        )
    missing = _missing_labels(lab)
    if missing.size:
        raise ValueError(
            f"The 'labels' parameter of {fn} must give every row a label. Got {missing.size} "
            f"missing (None or NaN) at rows {_first_rows(missing)}; drop those rows or pass "
            "labels=None."
        )
    if lab.dtype == object:
        try:
            np.unique(lab)
        except TypeError as exc:
            kinds = sorted({type(v).__name__ for v in lab})
            raise ValueError(
                f"The 'labels' parameter of {fn} must hold labels of one kind (all numbers or "
                f"all strings). Got a mix of {kinds}; convert them, e.g. with labels.astype(str)."
            ) from exc
    return lab


# -- sources: arrays, memory maps, streamed datasets -----------------------------------------


@dataclass
class _Reduced:
    """Features ready for the embedding step, plus what the PCA step (if any) produced."""

    data: np.ndarray
    evr: np.ndarray | None
    incremental: bool
    rows: np.ndarray | None  # the raw (N, D) rows (array or memmap) when available
    labels: np.ndarray | None = None
    n_features: int = 0
    sub_rows: np.ndarray | None = None  # raw rows at _subsample(N) (streams only)
    rows_fit: bool = True  # the raw rows fit the memory budget (kNN accuracy on them)


def _pca_target(n: int | None, d: int, s: _Settings) -> int | None:
    """Dimensions of the PCA step: k for PCA itself, else pca_dims (None: no PCA step).

    ``n=None`` (a stream before its end): the pre-step's dimensions before capping at N.
    """
    if not s.row.pre_step:
        return s.k
    if s.pca_dims is None or d <= s.pca_dims:
        return None
    return s.pca_dims if n is None else min(s.pca_dims, n)


def _subsample(n: int, random_state: int | None) -> np.ndarray:
    """Sorted indices of the seeded subsample (at most TRUSTWORTHINESS_MAX_POINTS rows)."""
    m = min(n, TRUSTWORTHINESS_MAX_POINTS)
    return np.sort(np.random.default_rng(random_state).choice(n, m, replace=False))


def _chunks(n: int, rows: int) -> Iterator[slice]:
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))


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
    from tqdm.auto import tqdm

    n, d = x.shape
    k_fit = min(_ipca_components(k, d), n)
    rows = min(_ipca_rows(k_fit), n)
    ipca = IncrementalPCA(n_components=k_fit)
    scan = _Scan()
    spans = list(_chunks(n, rows))
    if len(spans) > 1 and spans[-1].stop - spans[-1].start < k_fit:
        last = spans.pop()  # keep every chunk at least k_fit rows
        spans[-1] = slice(spans[-1].start, last.stop)
    for sl in tqdm(spans, desc="IncrementalPCA fit", disable=not s.progress, leave=False):
        chunk = _as_float(np.array(x[sl]))
        _release_pages(x)
        scan.add(chunk)
        if not scan.bad:
            with _pca_errors(s, "scikit-learn's IncrementalPCA"):
                ipca.partial_fit(chunk)
    scan.check(s)
    z = np.empty((n, k), dtype=np.result_type(x.dtype, np.float32))
    for sl in tqdm(spans, desc="IncrementalPCA transform", disable=not s.progress, leave=False):
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
    from tqdm.auto import tqdm

    scan, fit = _Scan(), _StreamFit()
    rechunk: _Rechunker | None = None
    bar = tqdm(desc="reading (pass 1)", unit="row", disable=not s.progress, leave=False)
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
    from tqdm.auto import tqdm

    out: list[np.ndarray] = []
    labs: list[np.ndarray | None] = []
    sub_idx = _subsample(fit.seen, s.random_state)
    sub: list[np.ndarray] = []
    pos = 0
    bar = tqdm(
        total=fit.seen, desc="projecting (pass 2)", unit="row", disable=not s.progress, leave=False
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


def _read_owned(x: np.ndarray, *, progress: bool) -> np.ndarray:
    """Copy a memory map into an owned float array in row chunks, releasing mapped pages.

    Peak RSS stays near the data size plus one chunk (not twice the data size).
    """
    from tqdm.auto import tqdm

    n, d = x.shape
    out = np.empty((n, d), dtype=_as_float(np.empty(0, x.dtype)).dtype)
    step = max(1, (64 * 2**20) // max(1, d * x.itemsize))  # ~64 MiB per chunk
    for sl in tqdm(list(_chunks(n, step)), desc="reading", disable=not progress, leave=False):
        out[sl] = x[sl]
        _release_pages(x)
    return out


def _reduce(x: np.ndarray, s: _Settings) -> _Reduced:
    """PCA step of an (N, D) array (none for a small pre-step); chunked for big memory maps."""
    n, d = x.shape
    k = _pca_target(n, d, s)
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


@dataclass
class _Embedding:
    """What a method's embedding function returns."""

    embedding: np.ndarray
    engine: str  # what computed it (Projection.engine)
    params: dict[str, Any] = field(default_factory=dict)  # settings it adjusted


def _has_opentsne() -> bool:
    import importlib.util

    return importlib.util.find_spec("openTSNE") is not None


def _embed_pca(red: _Reduced, s: _Settings) -> _Embedding:
    """PCA: the PCA step already projected to k dimensions."""
    return _Embedding(np.asarray(red.data), "sklearn-incremental" if red.incremental else "sklearn")


def _embed_tsne(red: _Reduced, s: _Settings) -> _Embedding:
    """t-SNE with openTSNE or scikit-learn (``engine="auto"``: see `OPENTSNE_MIN_N`)."""
    n = red.data.shape[0]
    perplexity = s.perplexity
    if n <= 3 * perplexity:
        lowered = (n - 1) / 3
        _warn(
            f"{s.fn}: perplexity={perplexity:g} needs N > {3 * perplexity:g} points but "
            f"N={n}; using perplexity={lowered:.3g} instead."
        )
        perplexity = lowered
    engine = s.engine
    if engine == "auto":
        engine = "opentsne" if n >= OPENTSNE_MIN_N and _has_opentsne() else "sklearn"
    run = _tsne_opentsne if engine == "opentsne" else _tsne_sklearn
    return _Embedding(run(red.data, perplexity, s), engine, {"perplexity": perplexity})


def _tsne_opentsne(z: np.ndarray, perplexity: float, s: _Settings) -> np.ndarray:
    try:
        import openTSNE
    except ImportError as exc:
        raise ImportError(
            f"{s.fn}(engine='opentsne') needs openTSNE: pip install 'featviz[fast]' "
            "(or pip install openTSNE)."
        ) from exc
    default_jobs = 1 if z.shape[0] < OPENTSNE_MIN_N else -1
    tsne = openTSNE.TSNE(
        n_components=s.k,
        perplexity=perplexity,
        initialization="pca",
        negative_gradient_method="auto" if s.k <= 2 else "bh",
        random_state=s.random_state,
        n_jobs=default_jobs if s.n_jobs is None else s.n_jobs,
        verbose=False,
    )
    with _library_errors(s, "openTSNE"):
        return np.asarray(tsne.fit(np.ascontiguousarray(z, dtype=np.float64)), dtype=np.float64)


def _tsne_sklearn(z: np.ndarray, perplexity: float, s: _Settings) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    # sklearn's Barnes-Hut gradient runs on every OpenMP thread; below OPENTSNE_MIN_N
    # points the thread synchronisation costs more than it saves (badly so on a busy
    # machine), so small runs use one thread unless n_jobs says otherwise.
    if s.n_jobs is None:
        threads: int | None = 1 if z.shape[0] < OPENTSNE_MIN_N else None
    else:
        threads = None if s.n_jobs < 0 else s.n_jobs
    tsne = TSNE(
        n_components=s.k,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        method="barnes_hut" if s.k <= 3 else "exact",
        random_state=s.random_state,
        n_jobs=s.n_jobs,
    )
    with (
        threadpool_limits(limits=threads, user_api="openmp"),
        _library_errors(s, "scikit-learn's TSNE"),
    ):
        return np.asarray(tsne.fit_transform(z))


def _embed_umap(red: _Reduced, s: _Settings) -> _Embedding:
    """UMAP with umap-learn (``init="pca"``: its spectral init is not reproducible)."""
    try:
        import umap
    except ImportError as exc:
        raise ImportError(
            f"{s.fn}(method='umap') needs umap-learn: pip install 'featviz[fast]' "
            "(or pip install umap-learn)."
        ) from exc
    reducer = umap.UMAP(
        n_components=s.k,
        n_neighbors=max(2, min(15, red.data.shape[0] - 1)),
        init="pca",  # the default spectral init is not reproducible on disconnected graphs
        random_state=s.random_state,
        n_jobs=-1 if s.n_jobs is None else s.n_jobs,
    )
    with warnings.catch_warnings(), _library_errors(s, "umap-learn"):
        # with a random_state umap-learn runs single-threaded (deterministic) and says so
        warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
        return _Embedding(np.asarray(reducer.fit_transform(red.data)), "umap-learn")


@dataclass(frozen=True)
class _Method:
    """Everything `project` knows about one method (a row of `_METHODS`)."""

    name: str  # display name, in titles and messages
    engines: tuple[str, ...]  # values ``engine=`` accepts for it ("auto" first)
    embed: Callable[[_Reduced, _Settings], _Embedding]  # PCA step's output -> embedding
    pre_step: bool  # PCA to pca_dims first when D > pca_dims (else the PCA step is to k)
    min_rows: int  # fewest rows it can embed
    min_rows_why: str  # said when N < min_rows
    max_components: int | None  # most embedding dimensions (None: min(N, D))
    float32: bool  # squares distances in float32: the rows' spread must suit it


_METHODS: dict[str, _Method] = {
    "pca": _Method("PCA", ("auto", "sklearn"), _embed_pca, False, 2, "", None, False),
    "tsne": _Method(
        "t-SNE",
        ("auto", "sklearn", "opentsne"),
        _embed_tsne,
        pre_step=True,
        min_rows=4,
        min_rows_why=" (the perplexity, lowered to (N - 1) / 3 for small N, must stay >= 1)",
        max_components=3,
        float32=True,
    ),
    "umap": _Method(
        "UMAP",
        ("auto", "umap"),
        _embed_umap,
        pre_step=True,
        min_rows=3,
        min_rows_why=" (each point needs at least 2 neighbours)",
        max_components=None,
        float32=True,
    ),
}


def _all_engines() -> list[str]:
    return list(dict.fromkeys(e for row in _METHODS.values() for e in row.engines))


def _embed(red: _Reduced, s: _Settings) -> _Embedding:
    """Run the method's row of `_METHODS` on the PCA step's output; refuse NaN/inf results."""
    if red.evr is not None:  # the rows were checked; a PCA step may still fail on them
        _refuse_non_finite(red.evr, "PCA step (explained variance ratio)", s)
        _refuse_non_finite(red.data, "PCA step", s)
    out = s.row.embed(red, s)
    _refuse_non_finite(out.embedding, f"{s.row.name} embedding", s)
    if s.normalize:
        out.embedding = _min_max(out.embedding)
    return out


# -- quality ---------------------------------------------------------------------------------


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


def _trustworthiness(emb: np.ndarray, red: _Reduced, random_state: int | None) -> dict[str, Any]:
    """Trustworthiness on the seeded subsample, against the raw rows when they are at hand."""
    from sklearn.manifold import trustworthiness

    idx = _subsample(emb.shape[0], random_state)
    m = idx.shape[0]
    if red.rows is not None:
        ref_sub, space = _as_float(np.array(red.rows[idx])), f"input (D={red.rows.shape[1]})"
        _release_pages(red.rows)
    elif red.sub_rows is not None:
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
    emb: np.ndarray, red: _Reduced, labels: np.ndarray | None, s: _Settings
) -> dict[str, Any]:
    start = time.perf_counter()
    q = _trustworthiness(emb, red, s.random_state)
    if labels is not None:
        q.update(_knn_scores(emb, red, labels, s))
    q["seconds"] = time.perf_counter() - start
    return q


def _min_max(emb: np.ndarray) -> np.ndarray:
    """Each column of an (N, k) embedding scaled to [0, 1] by the one featviz rule."""
    cols = torch.from_numpy(np.ascontiguousarray(emb.T))
    return minmax(cols, what="embedding").numpy().T


def _make_frame(emb: np.ndarray, labels: np.ndarray | None) -> pd.DataFrame:
    import pandas as pd

    k = emb.shape[1]
    names = [*_AXES[:k], *(f"dim{i}" for i in range(3, k))]
    data: dict[str, Any] = {name: emb[:, i] for i, name in enumerate(names)}
    data["label"] = labels if labels is not None else np.full(emb.shape[0], None, dtype=object)
    data["index"] = np.arange(emb.shape[0])
    return pd.DataFrame(data)


def _finish(
    out: _Embedding, red: _Reduced, labels: np.ndarray | None, s: _Settings, seconds: float
) -> Projection:
    """Score the embedding and package it with the settings that ran."""
    params: dict[str, Any] = {
        "n_components": s.k,
        "random_state": s.random_state,
        "pca_dims": int(red.data.shape[1]) if s.row.pre_step and red.evr is not None else None,
        "n_features": int(red.n_features),
        **out.params,
    }
    return Projection(
        embedding=out.embedding,
        frame=_make_frame(out.embedding, labels),
        method=s.method,
        engine=out.engine,
        seconds=seconds,
        explained_variance_ratio=red.evr,
        quality=_score(out.embedding, red, labels, s) if s.score else {},
        labels=labels,
        params=params,
    )


# -- public API ------------------------------------------------------------------------------


def project(
    features: Any,
    *,
    method: str = "tsne",
    n_components: int = 2,
    labels: Any = None,
    pca_dims: int | None = 50,
    engine: str = "auto",
    normalize: bool = False,
    random_state: int | None = 0,
    progress: bool = True,
    perplexity: float = 30.0,
    n_jobs: int | None = None,
    batch_size: int = 256,
    max_memory: int | None = None,
    score: bool = True,
) -> Projection:
    """Project features to ``n_components`` dimensions with PCA, t-SNE or UMAP, and score it.

    Inputs:

    - a tensor (any device) or array (N, ...), flattened to (N, D), e.g. a
      ``FeatureSet`` layer (a numpy array or ``np.memmap``);
    - an ``np.memmap`` (e.g. ``np.load(path, mmap_mode="r")``): when it is larger than
      the memory budget (``max_memory``, default `DEFAULT_MEMORY_FRACTION` of available
      memory), PCA runs as ``IncrementalPCA`` over row chunks and the pages read are
      released after each chunk, so peak RSS stays near the chunk size rather than the
      data size;
    - a ``torch.utils.data.Dataset`` whose items are ``image`` or ``(image, label, ...)``
      tuples, or a ``DataLoader`` over one: streamed in batches (the "t-SNE of the raw
      images" use). PCA is fitted with ``IncrementalPCA.partial_fit`` in one pass and
      applied in a second, so only the (N, k) result is held. Labels come from the items
      (as class names when the dataset has a ``classes`` list of strings) unless
      ``labels`` is given.

    Methods: ``"pca"`` (scikit-learn ``PCA``, whose ``"auto"`` solver is randomized for
    large inputs; ``IncrementalPCA`` for big memory maps and streams); ``"tsne"``: PCA to
    ``pca_dims`` first when D > ``pca_dims``, then scikit-learn's Barnes-Hut ``TSNE(init=
    "pca", learning_rate="auto")`` or openTSNE (``engine="auto"`` picks openTSNE when it is
    installed and N >= `OPENTSNE_MIN_N`); ``"umap"``: the same PCA pre-step, then
    umap-learn (the ``fast`` extra).

    Args:
        features: Tensor/array (N, ...), memory map, Dataset or DataLoader (see above).
        method: ``"pca"``, ``"tsne"`` or ``"umap"``.
        n_components: Embedding dimensions k (t-SNE: 1 to 3 with Barnes-Hut; openTSNE's
            FFT gradient is used for k <= 2).
        labels: (N,) class labels (ints or strings) for colouring and kNN accuracy.
        pca_dims: Dimensions of the PCA pre-step of t-SNE/UMAP (``None``: no pre-step).
        engine: ``"auto"``, ``"sklearn"``, ``"opentsne"`` (t-SNE) or ``"umap"``.
        normalize: Min-max scale each embedding axis to exactly [0, 1] (a constant axis
            becomes 0).
        random_state: Seed; the same seed gives bit-identical embeddings (sklearn and
            openTSNE, given the same thread count and machine).
        progress: Show tqdm bars for chunked/streamed passes.
        perplexity: t-SNE perplexity. It must be below N / 3: when N <= 3 * perplexity
            it is lowered to (N - 1) / 3 with a warning (``params["perplexity"]`` says
            what ran).
        n_jobs: Threads for neighbour searches (and openTSNE's gradient; ``None`` lets
            openTSNE use all cores).
        batch_size: Batch size when streaming a ``Dataset``.
        max_memory: Memory budget in bytes for reading a memory map at once; larger
            maps go through ``IncrementalPCA`` in chunks.
        score: Compute `Projection.quality` (trustworthiness, kNN accuracy).

    Returns:
        A `Projection` (``embedding`` (N, k), ``frame``, ``quality``, ...).

    Raises:
        ValueError: A bad parameter value; features the method cannot use, checked before
            any library runs: N < 2 (or below the method's minimum: 4 for t-SNE, 3 for
            UMAP), 1-D features, ``n_components`` > min(N, D), NaN/inf rows (the message
            gives how many and the first row indices), all rows identical, or (t-SNE,
            UMAP) a spread float32 cannot resolve; ``labels`` of the wrong length, with
            None/NaN entries or of mixed kinds; an error inside scikit-learn, openTSNE or
            umap-learn (wrapped, naming the features); a result with NaN/inf values
            (refused, never returned).
        TypeError: ``features`` is of an unsupported type.
        ImportError: ``method="umap"`` or ``engine="opentsne"`` without the ``fast`` extra.
    """
    start = time.perf_counter()
    s = _settings(
        method=method,
        n_components=n_components,
        pca_dims=pca_dims,
        engine=engine,
        perplexity=perplexity,
        random_state=random_state,
        n_jobs=n_jobs,
        batch_size=batch_size,
        max_memory=max_memory,
        normalize=normalize,
        progress=progress,
        score=score,
    )
    red, lab = _read(features, labels, s)  # check the data, run the PCA step
    out = _embed(red, s)  # the method's row of _METHODS
    return _finish(out, red, lab, s, time.perf_counter() - start)


# -- plotting --------------------------------------------------------------------------------


def _default_size(n: int) -> float:
    return float(np.clip(3000.0 / max(n, 1), 2.0, 40.0))


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _default_title(proj: Projection) -> str:
    name = _METHODS[proj.method].name if proj.method in _METHODS else proj.method
    head = f"{name} ({proj.engine}), N={len(proj):,}, {proj.seconds:.1f} s"
    q = proj.quality
    parts = []
    if "trustworthiness" in q:
        parts.append(f"trustworthiness {_fmt(q['trustworthiness'])}")
    if "knn_accuracy" in q:
        parts.append(
            f"10-NN acc. {_fmt(q['knn_accuracy'])} (input {_fmt(q.get('knn_accuracy_input'))})"
        )
    if proj.method == "pca" and proj.explained_variance_ratio is not None:
        parts.append(f"EVR {float(np.sum(proj.explained_variance_ratio)):.3f}")
    return head + ("\n" + ", ".join(parts) if parts else "")


def _column(frame: pd.DataFrame, value: Any, name: str) -> str | None:
    """Resolve a hue/style argument to a column of ``frame`` (added when given as values)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in frame.columns:
            raise ValueError(
                f"The {name!r} parameter of plot_projection must name a column of the frame "
                f"{list(frame.columns)} or give one value per point. Got {value!r}."
            )
        return value
    values = to_numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
    if values.ndim != 1 or values.shape[0] != len(frame):
        raise ValueError(
            f"The {name!r} parameter of plot_projection must have one value per point "
            f"(N={len(frame)}). Got shape {values.shape}."
        )
    frame[name] = values
    return name


def _plot_frame(
    projection_or_array: Any, labels: Any
) -> tuple[Projection | None, pd.DataFrame, int]:
    """The points to draw as a frame (a copy), the projection (if given) and k (2 or 3)."""
    if isinstance(projection_or_array, Projection):
        proj: Projection | None = projection_or_array
        k = projection_or_array.n_components
        frame = projection_or_array.frame.copy()
    else:
        proj = None
        emb = (
            to_numpy(projection_or_array)
            if isinstance(projection_or_array, torch.Tensor)
            else np.asarray(projection_or_array)
        )
        if emb.ndim != 2:
            raise ValueError(
                "The 'projection_or_array' parameter of plot_projection must be a Projection "
                f"or an array (N, 2) or (N, 3). Got shape {emb.shape}."
            )
        k, frame = emb.shape[1], _make_frame(emb, None)
    if k not in (2, 3):
        raise ValueError(
            "The 'projection_or_array' parameter of plot_projection must have 2 or 3 "
            f"components. Got {k}."
        )
    if labels is not None:
        frame["label"] = _labels_array(labels, len(frame), fn="plot_projection")
    return proj, frame, k


def _scatter_3d(
    ax: Any,
    frame: pd.DataFrame,
    hue: str | None,
    style: str | None,
    palette: Any,
    s: float,
    legend: bool,
) -> None:
    import seaborn as sns

    markers = ["o", "X", "s", "^", "P", "D", "v", "*", "p", "h"]
    hue_vals = frame[hue] if hue is not None else None
    if hue_vals is not None and hue_vals.dtype.kind in "fc" and hue_vals.nunique() > 20:
        ax.scatter(frame["x"], frame["y"], frame["z"], c=hue_vals, cmap=palette or "viridis", s=s)
        return
    hue_levels = list(dict.fromkeys(hue_vals)) if hue_vals is not None else [None]
    if hue_vals is not None and hue_vals.dtype.kind in "biuf":
        hue_levels = sorted(hue_levels, key=lambda v: float(v))  # type: ignore[arg-type]
    style_levels = list(dict.fromkeys(frame[style])) if style is not None else [None]
    colors = sns.color_palette(palette, len(hue_levels))
    for hi, h in enumerate(hue_levels):
        for si, st in enumerate(style_levels):
            mask = np.ones(len(frame), dtype=bool)
            if hue is not None:
                mask &= (frame[hue] == h).to_numpy()
            if style is not None:
                mask &= (frame[style] == st).to_numpy()
            if not mask.any():
                continue
            label = ", ".join(str(v) for v in (h, st) if v is not None) or None
            ax.scatter(
                frame["x"][mask],
                frame["y"][mask],
                frame["z"][mask],
                color=colors[hi],
                marker=markers[si % len(markers)],
                s=s,
                label=label,
                depthshade=False,
            )
    if legend and (hue is not None or style is not None):
        ax.legend(title=", ".join(c for c in (hue, style) if c is not None), fontsize="small")


def _draw_3d(
    ax: Axes | None,
    frame: pd.DataFrame,
    *,
    hue: str | None,
    style: str | None,
    palette: Any,
    s: float,
    legend: bool,
) -> Axes:
    """3-D scatter on ``ax`` (a 3-D Axes; ``None`` creates one)."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig = plt.figure(figsize=(6.5, 5.5))
        ax = fig.add_subplot(projection="3d")
    elif getattr(ax, "name", "") != "3d":
        raise ValueError(
            "The 'ax' parameter of plot_projection must be a 3-D Axes "
            "(fig.add_subplot(projection='3d')) for a 3-component projection. "
            f"Got {type(ax).__name__}."
        )
    _scatter_3d(ax, frame, hue, style, palette, s, legend)
    ax.set_zlabel("z")  # type: ignore[union-attr]
    return ax


def _draw_2d(
    ax: Axes | None,
    frame: pd.DataFrame,
    *,
    hue: str | None,
    style: str | None,
    palette: Any,
    s: float,
    legend: bool,
) -> Axes:
    """Draw a seaborn scatter plot on ``ax`` (``None`` creates a figure), small-font legend."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5.5))
    sns.scatterplot(
        data=frame,
        x="x",
        y="y",
        hue=hue,
        style=style,
        palette=palette,
        s=s,
        linewidth=0,
        legend="auto" if legend else False,
        ax=ax,
    )
    old_legend = ax.get_legend()
    if legend and old_legend is not None:
        ax.legend(
            title=old_legend.get_title().get_text() or None,
            fontsize="small",
            markerscale=1.0,
            loc="best",
        )
    return ax


def plot_projection(
    projection_or_array: Projection | Any,
    labels: Any = None,
    *,
    hue: Any = None,
    style: Any = None,
    palette: Any = None,
    s: float | None = None,
    legend: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Scatter plot of a `Projection` (or an (N, 2)/(N, 3) array) with seaborn.

    Points are coloured by label by default. With 3 components the plot is a matplotlib
    3-D scatter (``ax`` must then be a 3-D Axes, or ``None`` to create one).

    Args:
        projection_or_array: A `Projection`, or an embedding array/tensor (N, 2) or (N, 3).
        labels: (N,) labels; overrides the projection's labels.
        hue: Column of ``Projection.frame`` (``"label"``, ``"index"``, ...) or (N,)
            values for colour; default ``"label"`` when there are labels.
        style: Column name or (N,) values for the marker shape.
        palette: seaborn palette name, list or dict.
        s: Marker size; default from N (between 2 and 40).
        legend: Draw a legend.
        title: Axes title; default names the method, engine, N, seconds and quality.
        ax: Axes to draw on; ``None`` creates a figure.

    Returns:
        The Axes drawn on.

    Raises:
        ValueError: The embedding is not (N, 2) or (N, 3), ``labels``/``hue``/``style``
            have the wrong length or name no column, ``labels`` has missing (None/NaN)
            entries or mixes kinds, or a 3-D plot is asked on 2-D Axes.
    """
    proj, frame, k = _plot_frame(projection_or_array, labels)
    if hue is None and frame["label"].notna().any():
        hue = "label"
    draw = _draw_3d if k == 3 else _draw_2d
    ax = draw(
        ax,
        frame,
        hue=_column(frame, hue, "hue"),
        style=_column(frame, style, "style"),
        palette=palette,
        s=_default_size(len(frame)) if s is None else float(s),
        legend=legend,
    )
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if title is None:
        title = _default_title(proj) if proj is not None else f"embedding, N={len(frame):,}"
    ax.set_title(title, fontsize="medium")
    return ax


def _layer_points(value: Any, layer: str, sample: int | None) -> np.ndarray:
    """One layer's (P, D) points: one per image, or one per position of image ``sample``."""
    fn, name = "plot_layer_projections", f"features[{layer!r}]"
    arr = to_numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
    if sample is None:
        points = _flatten_array(arr, fn=fn, name=name)  # N >= 2 images checked there
    else:
        if arr.ndim not in (3, 4):
            raise ValueError(
                f"The 'features' parameter of {fn}: layer {layer!r} has shape {arr.shape}; "
                "with 'sample' each layer needs spatial positions, (N, C, H, W) or "
                "(N, L, C) tokens."
            )
        if not -arr.shape[0] <= sample < arr.shape[0]:
            raise ValueError(
                f"The 'sample' parameter of {fn} must be an index into the "
                f"{arr.shape[0]} samples of layer {layer!r}. Got {sample}."
            )
        one = np.asarray(arr[sample])
        # (C, H, W) -> H*W points of dimension C; (L, C) tokens: L points of dimension C
        points = one.reshape(one.shape[0], -1).T if one.ndim == 3 else one
        if points.shape[0] < 2:
            raise ValueError(
                f"The 'features' parameter of {fn}: layer {layer!r} (shape {arr.shape}) "
                f"gives {points.shape[0]} point(s) for sample={sample}; a projection needs "
                "at least 2 positions (e.g. a 1x2 map), so leave this layer out."
            )
    if points.shape[1] < 2:
        raise ValueError(
            f"The 'features' parameter of {fn}: layer {layer!r} (shape {arr.shape}) gives "
            f"points of {points.shape[1]} value(s); a 2-D projection needs at least 2, so "
            "leave this layer out."
        )
    return points


def _layer_len(value: Any) -> int:
    """Leading length of one layer's features (0 for a scalar; its shape is checked later)."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else 0
    try:
        return len(value)
    except TypeError:
        return 0


def _layer_settings(
    features: Any, sample: Any, method: Any, labels: Any, random_state: Any
) -> tuple[_Settings, int | None]:
    """Check `plot_layer_projections`' arguments; `project`'s settings for every layer."""
    fn = "plot_layer_projections"
    if not isinstance(features, Mapping) or not features:
        raise ValueError(
            f"The 'features' parameter of {fn} must be a non-empty {{name: features}} "
            f"mapping. Got {type(features).__name__}"
            + (" (empty)." if isinstance(features, Mapping) else ".")
        )
    method = _check_choice(method, "method", list(_METHODS), fn=fn)
    if sample is not None:
        sample = _check_int(sample, "sample", -(2**62), fn=fn)
        if labels is not None:
            raise ValueError(
                f"The 'labels' parameter of {fn} is only used with sample=None (with a "
                "sample, points are spatial positions, not images)."
            )
    ns = {name: _layer_len(v) for name, v in features.items()}
    if len(set(ns.values())) > 1:
        raise ValueError(
            f"The 'features' parameter of {fn} must hold the same images for every layer. "
            f"Got N per layer {ns}."
        )
    s = _settings(
        method=method,
        n_components=2,
        pca_dims=50,
        engine="auto",
        perplexity=30.0,
        random_state=random_state,
        n_jobs=None,
        batch_size=256,
        max_memory=None,
        normalize=True,
        progress=False,
        score=False,
        fn=fn,
    )
    return s, sample


def _layer_frame(
    layer: str, value: Any, sample: int | None, labels: Any, s: _Settings
) -> pd.DataFrame:
    """One layer projected to 2-D and scaled to [0, 1]; ``layer`` names it (with its EVR)."""
    s = replace(s, name=f"features[{layer!r}]")
    points = _layer_points(value, layer, sample)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f"{s.fn}: perplexity")
        red, lab = _read(points, labels if sample is None else None, s)
        out = _embed(red, s)
    evr = red.evr
    tag = f"{layer} (EVR {float(np.sum(evr)):.2f})" if evr is not None else layer
    return _make_frame(out.embedding, lab).assign(layer=tag)


def _draw_layers(ax: Axes | None, data: pd.DataFrame, style: str | None) -> Axes:
    """All layers' points in one seaborn scatter plot, coloured by layer."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5.5))
    sns.scatterplot(
        data=data,
        x="x",
        y="y",
        hue="layer",
        style=style,
        s=float(np.clip(6000.0 / len(data), 4.0, 40.0)),
        linewidth=0,
        alpha=0.7,
        ax=ax,
    )
    if ax.get_legend() is not None:
        ax.legend(fontsize="small", loc="best", markerscale=2.0)
    ax.set_xlabel("component 1 (scaled)")
    ax.set_ylabel("component 2 (scaled)")
    return ax


def plot_layer_projections(
    features: Mapping[str, Any],
    *,
    sample: int | None = None,
    method: str = "pca",
    ax: Axes | None = None,
    labels: Any = None,
    random_state: int | None = 0,
) -> Axes:
    """Overlay 2-D projections of several layers' features of the same images.

    Each layer is projected separately to 2-D (so layers of different widths can be
    compared) and min-max scaled to [0, 1] per axis, then all are drawn in one Axes,
    coloured by layer; the legend names each layer with the explained variance ratio of
    its 2 PCA components (for t-SNE/UMAP: of the PCA pre-step, when one ran).

    Two uses:

    - ``sample=None``: each layer's (N, ...) features are flattened to (N, D); every
      point is one image, so the figure compares how the layers arrange the same images
      (``labels`` set the marker style).
    - ``sample=i``: one image's feature maps; a (C, H, W) map becomes H*W points of
      dimension C (one per spatial position), (L, C) tokens become L points, so the
      figure shows how varied each layer's local features are within that image.

    Args:
        features: ``{layer name: features}``, each (N, C, H, W), (N, L, C) or (N, D),
            the same N images in the same order.
        sample: Index of one image (see above), or ``None`` for all images.
        method: ``"pca"`` (default), ``"tsne"`` or ``"umap"``, as in `project`.
        ax: Axes to draw on; ``None`` creates a figure.
        labels: (N,) labels (only with ``sample=None``), shown as marker styles.
        random_state: Seed passed to `project`.

    Returns:
        The Axes drawn on.

    Raises:
        ValueError: ``features`` is empty or not a mapping, layers have different N,
            ``sample`` is out of range or a layer has no spatial positions, or ``labels``
            is given with ``sample`` or has the wrong length or missing entries. A layer
            it cannot project (fewer than 2 points, e.g. a 1x1 map with ``sample``;
            points of 1 value; NaN/inf or identical points; fewer images than the method
            needs) raises a ValueError that names ``plot_layer_projections`` and the
            layer, as do the checks `project` makes.
        TypeError: A layer's features are not numbers.
    """
    import pandas as pd

    s, sample = _layer_settings(features, sample, method, labels, random_state)
    parts = [_layer_frame(k, v, sample, labels, s) for k, v in features.items()]
    style = "label" if sample is None and labels is not None else None
    ax = _draw_layers(ax, pd.concat(parts, ignore_index=True), style)
    n_points = len(parts[0])
    what = (
        f"sample {sample}: {n_points} positions in the first layer"
        if sample is not None
        else f"{n_points} images"
    )
    ax.set_title(f"{s.row.name} of {len(parts)} layers, {what}", fontsize="medium")
    return ax
