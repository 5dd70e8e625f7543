"""The projection methods: one row per method in `_METHODS`, its public view `METHODS`.

A row says everything featviz knows about a method: its display title, the engines
``engine=`` accepts, the `project` keywords it reads, the fewest rows and most components
it can embed, whether a PCA pre-step runs first, whether it squares distances in float32,
its embedding function (the PCA step's output -> the embedding) and, for a linear method,
a basis fit that maps new rows (what `project_steps` needs for ``align="fixed"``). Every
function that offers a choice of method (`project`, `plot_layer_projections`,
`featviz.compare_projections`, `featviz.explore`, `featviz.Recorder`) reads this table, so
a new method is one embedding function and one row.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from featviz._ops import minmax
from featviz.projection._common import (
    DEFAULT_MEMORY_FRACTION,
    _available_memory,
    _check_choice,
    _check_int,
    _check_n_jobs,
    _check_perplexity,
    _check_seed,
    _Embedding,
    _library_errors,
    _Reduced,
    _refuse_non_finite,
    _Settings,
    _warn,
)

#: ``engine="auto"`` uses openTSNE (when installed) from this many points on.
OPENTSNE_MIN_N = 1000


def _has_opentsne() -> bool:
    import importlib.util

    return importlib.util.find_spec("openTSNE") is not None


def _embed_pca(red: _Reduced, s: _Settings) -> _Embedding:
    """PCA: the PCA step already projected to k dimensions."""
    engine = "sklearn-incremental" if red.incremental else "sklearn"
    return _Embedding(np.asarray(red.data), getattr(red, "pca_engine", engine))


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


def _centred(x: np.ndarray) -> np.ndarray:
    """(N, D) rows in float64 minus their mean."""
    xc = np.asarray(x, dtype=np.float64)
    return xc - xc.mean(0)


def _pca_basis(x: np.ndarray, k: int) -> np.ndarray:
    """(D, k) float64 PCA basis of (N, D) rows: the top k right singular vectors.

    Columns beyond the rows' rank are zero. New rows map to ``_centred(rows) @ basis``.
    """
    xc = _centred(x)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    basis = np.zeros((xc.shape[1], k))
    m = min(k, vt.shape[0])
    basis[:, :m] = vt[:m].T
    return basis


@dataclass(frozen=True)
class _Method:
    """Everything featviz knows about one projection method (a row of `METHODS`).

    Attributes:
        title: Display name, in titles and messages (``"t-SNE"``).
        engines: Values ``engine=`` accepts for it (``"auto"`` first).
        embed: The embedding function: the PCA step's output and `project`'s checked
            settings -> the embedding (featviz-internal arguments).
        pre_step: PCA to ``pca_dims`` first when D > ``pca_dims`` (else the PCA step is
            to k).
        min_rows: Fewest rows it can embed.
        min_rows_why: Said when N < ``min_rows``.
        max_components: Most embedding dimensions (None: min(N, D)).
        float32: Squares distances in float32, so the rows' spread must suit it.
        settings: The `project` keywords this method reads besides those every method
            reads (``n_components``, ``random_state``, ``normalize``, ``n_jobs``, ...).
        basis: For a linear method, the fit of a (D, k) basis on (N, D) rows that maps
            any rows of the same features, ``(rows - rows.mean(0)) @ basis``; None for a
            method that cannot map new rows (it refuses ``align="fixed"``).
    """

    title: str
    engines: tuple[str, ...]
    embed: Callable[[_Reduced, _Settings], _Embedding]
    pre_step: bool
    min_rows: int
    min_rows_why: str
    max_components: int | None
    float32: bool
    settings: tuple[str, ...] = ()
    basis: Callable[[np.ndarray, int], np.ndarray] | None = None


_METHODS: dict[str, _Method] = {
    "pca": _Method(
        "PCA",
        ("auto", "sklearn", "streamed"),
        _embed_pca,
        pre_step=False,
        min_rows=2,
        min_rows_why="",
        max_components=None,
        float32=False,
        settings=("engine",),
        basis=_pca_basis,
    ),
    "tsne": _Method(
        "t-SNE",
        ("auto", "sklearn", "opentsne"),
        _embed_tsne,
        pre_step=True,
        min_rows=4,
        min_rows_why=" (the perplexity, lowered to (N - 1) / 3 for small N, must stay >= 1)",
        max_components=3,
        float32=True,
        settings=("engine", "pca_dims", "perplexity"),
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
        settings=("engine", "pca_dims"),
    ),
}

#: The projection methods, ``{name: row}`` in order (read-only): iterate it for the names
#: every ``method=`` parameter accepts; a row (`_Method`) gives the method's title,
#: engines, settings, fewest rows, most components and whether it can map new rows.
METHODS: Mapping[str, _Method] = MappingProxyType(_METHODS)


def _all_engines() -> list[str]:
    return list(dict.fromkeys(e for row in _METHODS.values() for e in row.engines))


def _check_method(method: Any, fn: str, name: str = "method") -> str:
    """``method`` as a key of `METHODS` (any case), or the house ValueError."""
    return _check_choice(method, name, list(_METHODS), fn)


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
    method = _check_method(method, fn)
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
        row=row,
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


def _min_max(emb: np.ndarray) -> np.ndarray:
    """Each column of an (N, k) embedding scaled to [0, 1] by the one featviz rule."""
    cols = torch.from_numpy(np.ascontiguousarray(emb.T))
    return minmax(cols, what="embedding").numpy().T


def _embed(red: _Reduced, s: _Settings) -> _Embedding:
    """Run the method's row of `_METHODS` on the PCA step's output; refuse NaN/inf results."""
    if red.evr is not None:  # the rows were checked; a PCA step may still fail on them
        _refuse_non_finite(red.evr, "PCA step (explained variance ratio)", s)
        _refuse_non_finite(red.data, "PCA step", s)
    out = s.row.embed(red, s)
    _refuse_non_finite(out.embedding, f"{s.row.title} embedding", s)
    if s.normalize:
        out.embedding = _min_max(out.embedding)
    return out
