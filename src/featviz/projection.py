"""Project features to 2-D/3-D with PCA, t-SNE or UMAP, score the result and plot it.

`project` takes features as a tensor or array (N, ...) (flattened to (N, D)), a
memory-mapped store (read in row chunks), or a raw image ``Dataset``/``DataLoader``
(streamed in batches), and returns a `Projection`: the embedding, a tidy
``pandas.DataFrame`` for plotting, the time taken, the explained variance ratio of any
PCA step, and quality figures (trustworthiness and 10-NN accuracy).

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

import logging
import math
import mmap
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

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

_METHODS = ("pca", "tsne", "umap")
_ENGINES = ("auto", "sklearn", "opentsne", "umap")
_METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
_AXES = ("x", "y", "z")


@dataclass(repr=False)
class Projection:
    """The result of `project`.

    Attributes:
        embedding_: (N, k) array, one row per input row (float32 or float64).
        frame: ``pandas.DataFrame`` with columns ``x``, ``y`` (``z`` for k = 3; further
            columns ``dim3``... for k > 3), ``label`` (``None`` without labels) and
            ``index`` (row of the input, or position in the stream).
        method: ``"pca"``, ``"tsne"`` or ``"umap"``.
        engine: What computed it: ``"sklearn"``, ``"sklearn-incremental"`` (PCA in
            chunks), ``"opentsne"`` or ``"umap-learn"``.
        seconds: Wall time of reading, checking, reducing and embedding (scoring
            excluded; see ``quality["seconds"]``).
        explained_variance_ratio_: For ``"pca"``, the ratio of each of the k components;
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

    embedding_: np.ndarray
    frame: pd.DataFrame
    method: str
    engine: str
    seconds: float
    explained_variance_ratio_: np.ndarray | None
    quality: dict[str, Any] = field(default_factory=dict)
    labels: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_components(self) -> int:
        """Number of embedding dimensions k."""
        return int(self.embedding_.shape[1])

    def __len__(self) -> int:
        return int(self.embedding_.shape[0])

    def __repr__(self) -> str:
        q = ", ".join(
            f"{k}={v:.3f}"
            for k, v in self.quality.items()
            if isinstance(v, float) and k != "seconds"
        )
        return (
            f"Projection(method={self.method!r}, engine={self.engine!r}, "
            f"shape={self.embedding_.shape}, seconds={self.seconds:.2f}"
            + (f", {q}" if q else "")
            + ")"
        )


# -- validation helpers -------------------------------------------------------------------


def _check_int(value: Any, name: str, low: int, fn: str = "project") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(
            f"The {name!r} parameter of {fn} must be an int in the range [{low}, inf). "
            f"Got {value!r} instead."
        )
    return int(value)


def _check_choice(value: Any, name: str, choices: Sequence[str], fn: str = "project") -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(
            f"The {name!r} parameter of {fn} must be one of {list(choices)}. Got {value!r} instead."
        )
    return value.lower()


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


def _raise_bad_rows(bad: list[np.ndarray], fn: str = "project", name: str = "features") -> None:
    rows = np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)
    if rows.size:
        first = ", ".join(str(int(r)) for r in rows[:5])
        more = ", ..." if rows.size > 5 else ""
        raise ValueError(
            f"The {name!r} parameter of {fn} has {rows.size} row(s) with NaN or inf values "
            f"(rows {first}{more}); drop or impute them first."
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
    lab = to_numpy(labels) if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n:
        got = lab.shape[0] if lab.ndim == 1 else f"shape {lab.shape}"
        raise ValueError(
            f"The 'labels' parameter of {fn} must have one entry per row of the features "
            f"(N={n}). Got {got}."
        )
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


def _reduce_memmap(
    x: np.ndarray, k: int, *, progress: bool
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """IncrementalPCA over row chunks of a memory map; returns (Z, evr, bad-row list)."""
    from sklearn.decomposition import IncrementalPCA
    from tqdm.auto import tqdm

    n, d = x.shape
    k_fit = min(_ipca_components(k, d), n)
    rows = min(_ipca_rows(k_fit), n)
    ipca = IncrementalPCA(n_components=k_fit)
    bad: list[np.ndarray] = []
    spans = list(_chunks(n, rows))
    if len(spans) > 1 and spans[-1].stop - spans[-1].start < k_fit:
        last = spans.pop()  # keep every chunk at least k_fit rows
        spans[-1] = slice(spans[-1].start, last.stop)
    for sl in tqdm(spans, desc="IncrementalPCA fit", disable=not progress, leave=False):
        chunk = _as_float(np.array(x[sl]))
        _release_pages(x)
        b = _bad_rows(chunk)
        if b.size:
            bad.append(b + sl.start)
        if not bad:
            ipca.partial_fit(chunk)
    if bad:
        return np.empty((0, k)), np.empty(0), bad
    z = np.empty((n, k), dtype=np.result_type(x.dtype, np.float32))
    for sl in tqdm(spans, desc="IncrementalPCA transform", disable=not progress, leave=False):
        z[sl] = ipca.transform(_as_float(np.array(x[sl])))[:, :k]
        _release_pages(x)
    return z, ipca.explained_variance_ratio_[:k].copy(), bad


def _split_batch(batch: Any) -> tuple[Any, Any]:
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
        "The 'features' parameter of project: each batch of the Dataset/DataLoader must be a "
        "tensor, a (image, label, ...) tuple or a dict with an 'image' key. "
        f"Got {type(batch).__name__}."
    )


def _stream(source: Any, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    if isinstance(source, DataLoader):
        loader: Iterable[Any] = source
    else:
        loader = DataLoader(source, batch_size=batch_size, shuffle=False)
    for batch in loader:
        images, lab = _split_batch(batch)
        x = to_numpy(images) if isinstance(images, torch.Tensor) else np.asarray(images)
        if x.ndim < 2:
            raise ValueError(
                "The 'features' parameter of project: batches of the Dataset/DataLoader must "
                f"have shape (B, ...) with at least 2 dimensions. Got {x.shape}."
            )
        x = _as_float(x.reshape(x.shape[0], -1))
        lab_np = None
        if lab is not None:
            lab_np = to_numpy(lab) if isinstance(lab, torch.Tensor) else np.asarray(lab)
            lab_np = lab_np.reshape(x.shape[0], -1)[:, 0] if lab_np.ndim else None
        yield x, lab_np


def _class_names(source: Any) -> Sequence[str] | None:
    ds = source.dataset if isinstance(source, DataLoader) else source
    classes = getattr(ds, "classes", None)
    if isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes):
        return classes
    return None


def _reduce_stream(
    source: Any,
    k: int | None,
    *,
    optional: bool,
    batch_size: int,
    progress: bool,
    random_state: int | None,
) -> _Reduced:
    """Two passes over a Dataset/DataLoader: IncrementalPCA fit, then transform.

    With ``k=None``, or ``optional`` and D <= k (no PCA wanted), one pass collects the
    rows (they are small then).
    """
    from sklearn.decomposition import IncrementalPCA
    from tqdm.auto import tqdm

    if isinstance(source, DataLoader) and isinstance(source.sampler, RandomSampler):
        warnings.warn(
            "project: the DataLoader shuffles; rows of the projection follow the order of its "
            "last pass, not the dataset's. Use shuffle=False to keep the dataset's order.",
            stacklevel=3,
        )
    bad: list[np.ndarray] = []
    seen = 0
    kept: list[np.ndarray] = []
    labs: list[np.ndarray | None] = []
    ipca: IncrementalPCA | None = None
    rechunk: _Rechunker | None = None
    bar = tqdm(desc="reading (pass 1)", unit="row", disable=not progress, leave=False)
    for x, lab in _stream(source, batch_size):
        b = _bad_rows(x)
        if b.size:
            bad.append(b + seen)
        seen += x.shape[0]
        bar.update(x.shape[0])
        if seen == x.shape[0]:  # first batch: now D is known
            d = x.shape[1]
            if k is not None and optional and d <= k:
                k = None
            elif k is not None and k > d:
                raise ValueError(
                    "The 'n_components' parameter of project must be <= D "
                    f"= {d} for method='pca'. Got {k}."
                )
        if k is None:
            kept.append(x)
            labs.append(lab)
            continue
        if rechunk is None:
            k_fit = _ipca_components(k, x.shape[1])
            ipca = IncrementalPCA(n_components=k_fit)
            rechunk = _Rechunker(_ipca_rows(k_fit))
        if not bad:
            for chunk in rechunk.push(x):
                ipca.partial_fit(chunk)  # type: ignore[union-attr]
    bar.close()
    if seen < 2:
        raise ValueError(
            "The 'features' parameter of project must yield at least 2 rows (N >= 2). "
            f"Got N={seen}."
        )
    _raise_bad_rows(bad)
    if k is None:
        rows = np.concatenate(kept)
        return _Reduced(rows, None, False, rows, _stack_labels(labs), rows.shape[1])
    if ipca is None or rechunk is None:  # pragma: no cover - k is set, so a batch came
        raise RuntimeError("project: internal error, no IncrementalPCA was fitted")
    tail = list(rechunk.finish())
    if tail and not hasattr(ipca, "components_"):  # everything fits in one chunk
        if seen < k and optional:  # a pre-step to more dims than rows: keep them all
            k = seen
        elif seen < k:
            raise ValueError(
                f"project: PCA to {k} dimensions needs at least {k} rows. "
                f"Got N={seen}; lower n_components (or pca_dims)."
            )
        ipca.set_params(n_components=min(ipca.n_components, seen))
    for chunk in tail:
        ipca.partial_fit(chunk)
    out: list[np.ndarray] = []
    labs = []
    # the second pass also keeps the raw rows of the scoring subsample
    sub_idx = _subsample(seen, random_state)
    sub: list[np.ndarray] = []
    pos = 0
    bar = tqdm(
        total=seen, desc="projecting (pass 2)", unit="row", disable=not progress, leave=False
    )
    for x, lab in _stream(source, batch_size):
        out.append(ipca.transform(x)[:, :k])
        labs.append(lab)
        lo, hi = np.searchsorted(sub_idx, [pos, pos + x.shape[0]])
        sub.append(x[sub_idx[lo:hi] - pos])
        pos += x.shape[0]
        bar.update(x.shape[0])
    bar.close()
    z = np.concatenate(out)
    evr = ipca.explained_variance_ratio_[:k].copy()
    if pos != seen:
        raise ValueError(
            f"The 'features' parameter of project gave {seen} rows in the first pass and {pos} "
            "in the second; a Dataset/DataLoader must give the same rows every time."
        )
    return _Reduced(
        z, evr, True, None, _stack_labels(labs), int(ipca.n_features_in_), np.concatenate(sub)
    )


def _stack_labels(labs: list[np.ndarray | None]) -> np.ndarray | None:
    if not labs or any(lab is None for lab in labs):
        return None
    return np.concatenate([lab for lab in labs if lab is not None])


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


def _reduce(
    x: np.ndarray,
    k: int | None,
    *,
    budget: int,
    random_state: int | None,
    progress: bool,
) -> _Reduced:
    """PCA of an (N, D) array to k dims (``None``: no PCA); chunked for big memory maps."""
    n = x.shape[0]
    if isinstance(x, np.memmap) and x.nbytes > budget and k is not None:
        z, evr, bad = _reduce_memmap(x, k, progress=progress)
        _raise_bad_rows(bad)
        return _Reduced(z, evr, True, x)
    if isinstance(x, np.memmap):
        arr, owned = _read_owned(x, progress=progress), True
    else:
        arr = _as_float(np.asarray(x))
        owned = not np.may_share_memory(arr, x)
    step = max(1, (64 * 2**20) // max(1, arr.shape[1] * arr.itemsize))  # ~64 MiB per check
    _raise_bad_rows([_bad_rows(arr[sl]) + sl.start for sl in _chunks(n, step)])
    if k is None:
        return _Reduced(arr, None, False, x)
    from sklearn.decomposition import PCA

    # an array we own may be centred in place (copy=False): no second copy of the data;
    # the results are the same as with copy=True
    pca = PCA(n_components=k, random_state=random_state, copy=not owned)
    z = pca.fit_transform(arr)
    del arr
    return _Reduced(z, pca.explained_variance_ratio_.copy(), False, x)


# -- embedding engines -----------------------------------------------------------------------


def _has_opentsne() -> bool:
    import importlib.util

    return importlib.util.find_spec("openTSNE") is not None


def _tsne(
    z: np.ndarray,
    k: int,
    *,
    engine: str,
    perplexity: float,
    random_state: int | None,
    n_jobs: int | None,
) -> np.ndarray:
    if engine == "opentsne":
        try:
            import openTSNE
        except ImportError as exc:
            raise ImportError(
                "project(engine='opentsne') needs openTSNE: pip install 'featviz[fast]' "
                "(or pip install openTSNE)."
            ) from exc
        tsne = openTSNE.TSNE(
            n_components=k,
            perplexity=perplexity,
            initialization="pca",
            negative_gradient_method="auto" if k <= 2 else "bh",
            random_state=random_state,
            n_jobs=(1 if z.shape[0] < OPENTSNE_MIN_N else -1) if n_jobs is None else n_jobs,
            verbose=False,
        )
        return np.asarray(tsne.fit(np.ascontiguousarray(z, dtype=np.float64)), dtype=np.float64)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    # sklearn's Barnes-Hut gradient runs on every OpenMP thread; below OPENTSNE_MIN_N
    # points the thread synchronisation costs more than it saves (badly so on a busy
    # machine), so small runs use one thread unless n_jobs says otherwise.
    if n_jobs is None:
        threads: int | None = 1 if z.shape[0] < OPENTSNE_MIN_N else None
    else:
        threads = None if n_jobs < 0 else n_jobs
    tsne_sk = TSNE(
        n_components=k,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        method="barnes_hut" if k <= 3 else "exact",
        random_state=random_state,
        n_jobs=n_jobs,
    )
    with threadpool_limits(limits=threads, user_api="openmp"):
        return np.asarray(tsne_sk.fit_transform(z))


def _umap(z: np.ndarray, k: int, *, random_state: int | None, n_jobs: int | None) -> np.ndarray:
    try:
        import umap
    except ImportError as exc:
        raise ImportError(
            "project(method='umap') needs umap-learn: pip install 'featviz[fast]' "
            "(or pip install umap-learn)."
        ) from exc
    n_neighbors = min(15, z.shape[0] - 1)
    reducer = umap.UMAP(
        n_components=k,
        n_neighbors=max(2, n_neighbors),
        init="pca",  # the default spectral init is not reproducible on disconnected graphs
        random_state=random_state,
        n_jobs=-1 if n_jobs is None else n_jobs,
    )
    with warnings.catch_warnings():
        # with a random_state umap-learn runs single-threaded (deterministic) and says so
        warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
        return np.asarray(reducer.fit_transform(z))


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


def _score(
    emb: np.ndarray,
    *,
    rows: np.ndarray | None,
    sub_rows: np.ndarray | None,
    rows_fit: bool,
    reduced: np.ndarray,
    reduced_name: str,
    fitted_on_reduced: bool,
    labels: np.ndarray | None,
    random_state: int | None,
    n_jobs: int | None,
) -> dict[str, Any]:
    from sklearn.manifold import trustworthiness

    start = time.perf_counter()
    n = emb.shape[0]
    q: dict[str, Any] = {}
    idx = _subsample(n, random_state)
    m = idx.shape[0]
    if rows is not None:
        ref_sub, space = _as_float(np.array(rows[idx])), f"input (D={rows.shape[1]})"
        _release_pages(rows)
    elif sub_rows is not None:
        ref_sub, space = sub_rows, f"input (D={sub_rows.shape[1]})"
    else:
        ref_sub, space = reduced[idx], reduced_name
    n_nb = min(5, (m - 1) // 2)
    if n_nb >= 1:
        q["trustworthiness"] = float(trustworthiness(ref_sub, emb[idx], n_neighbors=n_nb))
    else:
        q["trustworthiness"] = None
    q["trustworthiness_space"] = space
    q["n_scored"] = int(m)
    if labels is not None:
        _, codes = np.unique(labels, return_inverse=True)
        codes = codes.reshape(-1)
        q["knn_accuracy"] = _knn_accuracy(emb, codes, KNN_K, n_jobs)
        ref: np.ndarray | None
        if fitted_on_reduced or rows is None:
            ref, kspace = reduced, reduced_name
        else:
            ref, kspace = (rows if rows_fit else None), f"input (D={rows.shape[1]})"
        if ref is not None and float(n) * n * ref.shape[1] <= KNN_COST_CAP:
            q["knn_accuracy_input"] = _knn_accuracy(
                _as_float(np.asarray(ref)), codes, KNN_K, n_jobs
            )
        else:
            q["knn_accuracy_input"] = None
            logger.info("project: kNN accuracy in %s skipped (too costly or not in memory)", kspace)
        q["knn_space"] = kspace
    q["seconds"] = time.perf_counter() - start
    return q


def _min_max(emb: np.ndarray) -> np.ndarray:
    lo = emb.min(axis=0)
    span = emb.max(axis=0) - lo
    safe = np.where(span > 0, span, 1)
    out = (emb - lo) / safe  # x / x == 1 exactly, so the max maps to exactly 1
    out[:, span == 0] = 0
    return out


def _make_frame(emb: np.ndarray, labels: np.ndarray | None) -> pd.DataFrame:
    import pandas as pd

    k = emb.shape[1]
    names = [*_AXES[:k], *(f"dim{i}" for i in range(3, k))]
    data: dict[str, Any] = {name: emb[:, i] for i, name in enumerate(names)}
    data["label"] = labels if labels is not None else np.full(emb.shape[0], None, dtype=object)
    data["index"] = np.arange(emb.shape[0])
    return pd.DataFrame(data)


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
        A `Projection` (``embedding_`` (N, k), ``frame``, ``quality``, ...).

    Raises:
        ValueError: N < 2, 1-D features, NaN/inf rows (the message gives how many and the
            first row indices), ``labels`` of the wrong length, or a bad parameter value.
        TypeError: ``features`` is of an unsupported type.
        ImportError: ``method="umap"`` or ``engine="opentsne"`` without the ``fast`` extra.
    """
    start = time.perf_counter()
    method = _check_choice(method, "method", _METHODS)
    engine = _check_choice(engine, "engine", _ENGINES)
    k = _check_int(n_components, "n_components", 1)
    if method == "tsne" and k > 3:
        raise ValueError(
            "The 'n_components' parameter of project must be an int in the range [1, 3] for "
            f"method='tsne'. Got {n_components!r} instead."
        )
    if pca_dims is not None:
        pca_dims = _check_int(pca_dims, "pca_dims", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    if (
        isinstance(perplexity, bool)
        or not isinstance(perplexity, (int, float))
        or not (perplexity > 0 and math.isfinite(perplexity))
    ):
        raise ValueError(
            "The 'perplexity' parameter of project must be a float in the range (0, inf). "
            f"Got {perplexity!r} instead."
        )
    if max_memory is not None:
        max_memory = _check_int(max_memory, "max_memory", 1)
    if random_state is not None:
        random_state = _check_int(random_state, "random_state", 0)
    allowed = {"pca": ("auto", "sklearn"), "tsne": ("auto", "sklearn", "opentsne")}
    allowed["umap"] = ("auto", "umap")
    if engine not in allowed[method]:
        raise ValueError(
            f"The 'engine' parameter of project must be one of {list(allowed[method])} for "
            f"method={method!r}. Got {engine!r} instead."
        )
    budget = (
        max_memory if max_memory is not None else int(DEFAULT_MEMORY_FRACTION * _available_memory())
    )

    streamed = isinstance(features, (Dataset, DataLoader))
    memmap: np.ndarray | None = None
    if streamed:
        target: int | None = k if method == "pca" else pca_dims
        red = _reduce_stream(
            features,
            target,
            optional=method != "pca",
            batch_size=batch_size,
            progress=progress,
            random_state=random_state,
        )
        n = red.data.shape[0]
        if labels is None and red.labels is not None:
            names = _class_names(features)
            labels = red.labels
            if names is not None and labels.dtype.kind in "iu" and labels.size:
                if 0 <= labels.min() and labels.max() < len(names):
                    labels = np.asarray(names, dtype=object)[labels]
        d_in = red.n_features
    else:
        x = _flatten_array(features)
        n, d_in = x.shape
        if isinstance(x, np.memmap):
            memmap = x
        if method == "pca":
            if k > min(n, d_in):
                raise ValueError(
                    "The 'n_components' parameter of project must be <= min(N, D) = "
                    f"{min(n, d_in)} for method='pca'. Got {k}."
                )
            target = k
        else:
            target = min(pca_dims, n) if pca_dims is not None and d_in > pca_dims else None
        red = _reduce(x, target, budget=budget, random_state=random_state, progress=progress)
    lab = _labels_array(labels, n) if labels is not None else None

    z = red.data
    used_engine = "sklearn-incremental" if red.incremental else "sklearn"
    params: dict[str, Any] = {
        "n_components": k,
        "random_state": random_state,
        "pca_dims": None if method == "pca" or red.evr is None else int(z.shape[1]),
        "n_features": int(d_in),
    }
    if method == "pca":
        emb = np.asarray(z)
    elif method == "tsne":
        perp = float(perplexity)
        if n <= 3 * perp:
            new = (n - 1) / 3
            warnings.warn(
                f"project: perplexity={perp:g} needs N > {3 * perp:g} points but N={n}; "
                f"using perplexity={new:.3g} instead.",
                stacklevel=2,
            )
            perp = new
        params["perplexity"] = perp
        use = engine
        if engine == "auto":
            use = "opentsne" if n >= OPENTSNE_MIN_N and _has_opentsne() else "sklearn"
        emb = _tsne(z, k, engine=use, perplexity=perp, random_state=random_state, n_jobs=n_jobs)
        used_engine = use
    else:
        emb = _umap(z, k, random_state=random_state, n_jobs=n_jobs)
        used_engine = "umap-learn"
    if normalize:
        emb = _min_max(emb)
    seconds = time.perf_counter() - start

    quality: dict[str, Any] = {}
    if score:
        reduced_name = f"pca-{z.shape[1]}" if red.evr is not None else f"input (D={z.shape[1]})"
        quality = _score(
            emb,
            rows=red.rows,
            sub_rows=red.sub_rows,
            rows_fit=memmap is None or memmap.nbytes <= budget,
            reduced=z,
            reduced_name=reduced_name,
            fitted_on_reduced=method != "pca",
            labels=lab,
            random_state=random_state,
            n_jobs=n_jobs,
        )
    return Projection(
        embedding_=emb,
        frame=_make_frame(emb, lab),
        method=method,
        engine=used_engine,
        seconds=seconds,
        explained_variance_ratio_=red.evr,
        quality=quality,
        labels=lab,
        params=params,
    )


# -- plotting --------------------------------------------------------------------------------


def _default_size(n: int) -> float:
    return float(np.clip(3000.0 / max(n, 1), 2.0, 40.0))


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _default_title(proj: Projection) -> str:
    name = _METHOD_NAMES.get(proj.method, proj.method)
    head = f"{name} ({proj.engine}), N={len(proj):,}, {proj.seconds:.1f} s"
    q = proj.quality
    parts = []
    if "trustworthiness" in q:
        parts.append(f"trustworthiness {_fmt(q['trustworthiness'])}")
    if "knn_accuracy" in q:
        parts.append(
            f"10-NN acc. {_fmt(q['knn_accuracy'])} (input {_fmt(q.get('knn_accuracy_input'))})"
        )
    if proj.method == "pca" and proj.explained_variance_ratio_ is not None:
        parts.append(f"EVR {float(np.sum(proj.explained_variance_ratio_)):.3f}")
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
            have the wrong length or name no column, or a 3-D plot is asked on 2-D Axes.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if isinstance(projection_or_array, Projection):
        proj: Projection | None = projection_or_array
        emb = projection_or_array.embedding_
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
        frame = _make_frame(emb, None)
    k = emb.shape[1]
    if k not in (2, 3):
        raise ValueError(
            "The 'projection_or_array' parameter of plot_projection must have 2 or 3 "
            f"components. Got {k}."
        )
    if labels is not None:
        frame["label"] = _labels_array(labels, len(frame), fn="plot_projection")
    has_labels = frame["label"].notna().any()
    if hue is None and has_labels:
        hue = "label"
    hue_col = _column(frame, hue, "hue")
    style_col = _column(frame, style, "style")
    size = _default_size(len(frame)) if s is None else float(s)
    if k == 3:
        if ax is None:
            fig = plt.figure(figsize=(6.5, 5.5))
            ax = fig.add_subplot(projection="3d")
        elif getattr(ax, "name", "") != "3d":
            raise ValueError(
                "The 'ax' parameter of plot_projection must be a 3-D Axes "
                "(fig.add_subplot(projection='3d')) for a 3-component projection. "
                f"Got {type(ax).__name__}."
            )
        _scatter_3d(ax, frame, hue_col, style_col, palette, size, legend)
        ax.set_zlabel("z")  # type: ignore[union-attr]
    else:
        if ax is None:
            _, ax = plt.subplots(figsize=(6.5, 5.5))
        sns.scatterplot(
            data=frame,
            x="x",
            y="y",
            hue=hue_col,
            style=style_col,
            palette=palette,
            s=size,
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
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if title is None:
        title = _default_title(proj) if proj is not None else f"embedding, N={len(frame):,}"
    ax.set_title(title, fontsize="medium")
    return ax


def _layer_points(value: Any, name: str, sample: int | None) -> np.ndarray:
    arr = to_numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
    if sample is None:
        return _flatten_array(arr, fn="plot_layer_projections", name=f"features[{name!r}]")
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"The 'features' parameter of plot_layer_projections: layer {name!r} has shape "
            f"{arr.shape}; with 'sample' each layer needs spatial positions, (N, C, H, W) or "
            "(N, L, C) tokens."
        )
    if not -arr.shape[0] <= sample < arr.shape[0]:
        raise ValueError(
            "The 'sample' parameter of plot_layer_projections must be an index into the "
            f"{arr.shape[0]} samples of layer {name!r}. Got {sample}."
        )
    one = np.asarray(arr[sample])
    if one.ndim == 3:  # (C, H, W) -> H*W points of dimension C
        return one.reshape(one.shape[0], -1).T
    return one  # (L, C) tokens: L points of dimension C


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
            is given with ``sample`` or has the wrong length.
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    if not isinstance(features, Mapping) or not features:
        raise ValueError(
            "The 'features' parameter of plot_layer_projections must be a non-empty "
            f"{{name: features}} mapping. Got {type(features).__name__}"
            + (" (empty)." if isinstance(features, Mapping) else ".")
        )
    method = _check_choice(method, "method", _METHODS, fn="plot_layer_projections")
    if sample is not None:
        sample = _check_int(sample, "sample", -(2**62), fn="plot_layer_projections")
        if labels is not None:
            raise ValueError(
                "The 'labels' parameter of plot_layer_projections is only used with "
                "sample=None (with a sample, points are spatial positions, not images)."
            )
    ns = {name: len(v) for name, v in features.items()}
    if len(set(ns.values())) > 1:
        raise ValueError(
            "The 'features' parameter of plot_layer_projections must hold the same images "
            f"for every layer. Got N per layer {ns}."
        )
    parts = []
    for name, value in features.items():
        pts = _layer_points(value, name, sample)
        lab = labels if sample is None else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="project: perplexity")
            proj = project(
                pts,
                method=method,
                labels=lab,
                normalize=True,
                random_state=random_state,
                progress=False,
                score=False,
            )
        evr = proj.explained_variance_ratio_
        tag = f"{name} (EVR {float(np.sum(evr)):.2f})" if evr is not None else name
        frame = proj.frame.assign(layer=tag)
        parts.append(frame)
    data = pd.concat(parts, ignore_index=True)
    style = "label" if sample is None and labels is not None else None
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
    name = _METHOD_NAMES[method]
    n_points = len(parts[0])
    what = (
        f"sample {sample}: {n_points} positions in the first layer"
        if sample is not None
        else f"{n_points} images"
    )
    ax.set_title(f"{name} of {len(parts)} layers, {what}", fontsize="medium")
    ax.set_xlabel("component 1 (scaled)")
    ax.set_ylabel("component 2 (scaled)")
    return ax
