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

import logging
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

logger = logging.getLogger("featviz.projection")

#: ``engine="auto"`` uses openTSNE (when installed) from this many points on.
OPENTSNE_MIN_N = 1000
#: ``fit_sample="auto"``: t-SNE and UMAP of more than this many rows are fitted on a
#: seeded sample of `FIT_SAMPLE_SIZE` rows, and the other rows are placed into that map.
FIT_SAMPLE_MIN_N = 200_000
#: Rows t-SNE/UMAP is fitted on with ``fit_sample="auto"`` above `FIT_SAMPLE_MIN_N` rows.
FIT_SAMPLE_SIZE = 50_000
_PLACE_BATCH = 50_000  # rows placed per transform call (bounds its memory; one bar step)
_PLACE_ITER = 250  # openTSNE optimisation steps of placed rows (its default)


@dataclass(frozen=True)
class _SampleSettings(_Settings):
    """`_Settings` plus ``fit_sample`` (a field of `_Settings` once the package is merged)."""

    fit_sample: int | str | None = "auto"


@dataclass
class _PlacedEmbedding(_Embedding):
    """`_Embedding` plus which rows the method was fitted on ((N,) bool; None: all)."""

    fitted: np.ndarray | None = None


def _fit_rows(n: int, s: _Settings) -> np.ndarray | None:
    """Sorted indices of the rows t-SNE/UMAP is fitted on (None: all N rows).

    ``fit_sample="auto"``: `FIT_SAMPLE_SIZE` rows when N > `FIT_SAMPLE_MIN_N`; an int m:
    m rows (all when m >= N); None: all. The sample is drawn with ``random_state``
    (a stream of its own, not the scoring subsample's).
    """
    m = getattr(s, "fit_sample", None)
    if m == "auto":
        m = FIT_SAMPLE_SIZE if n > FIT_SAMPLE_MIN_N else None
    if m is None or int(m) >= n:
        return None
    seed = None if s.random_state is None else [s.random_state, 0xF17]
    return np.sort(np.random.default_rng(seed).choice(n, int(m), replace=False))


def _place(
    z: np.ndarray, fit: np.ndarray, fitted: np.ndarray, transform: Callable[..., Any], s: _Settings
) -> np.ndarray:
    """(N, k) embedding: the fitted rows' ``fitted`` (m, k), the others ``transform``ed."""
    from tqdm.auto import tqdm

    n = z.shape[0]
    out = np.empty((n, fitted.shape[1]), dtype=np.float64)
    out[fit] = fitted
    rest = np.setdiff1d(np.arange(n), fit, assume_unique=True)
    spans = range(0, rest.size, _PLACE_BATCH)
    for start in tqdm(spans, desc="placing rows", disable=not s.progress, leave=False):
        rows = rest[start : start + _PLACE_BATCH]
        out[rows] = np.asarray(transform(np.ascontiguousarray(z[rows], dtype=np.float64)))
    return out


def _sampled(
    emb: np.ndarray, engine: str, n: int, fit: np.ndarray | None, params: dict[str, Any]
) -> _PlacedEmbedding:
    m = n if fit is None else int(fit.size)
    mask = None
    if fit is not None:
        mask = np.zeros(n, dtype=bool)
        mask[fit] = True
    return _PlacedEmbedding(emb, engine, {**params, "n_fitted": m, "n_placed": n - m}, mask)


def _has_opentsne() -> bool:
    import importlib.util

    return importlib.util.find_spec("openTSNE") is not None


def _embed_pca(red: _Reduced, s: _Settings) -> _Embedding:
    """PCA: the PCA step already projected to k dimensions."""
    engine = "sklearn-incremental" if red.incremental else "sklearn"
    return _Embedding(np.asarray(red.data), getattr(red, "pca_engine", engine))


def _embed_tsne(red: _Reduced, s: _Settings) -> _Embedding:
    """t-SNE with openTSNE or scikit-learn (``engine="auto"``: see `OPENTSNE_MIN_N`).

    With a fit sample (`_fit_rows`), openTSNE is fitted on it and places the other rows
    (``TSNEEmbedding.transform``); scikit-learn's t-SNE cannot place rows.
    """
    fit = _fit_rows(red.data.shape[0], s)
    engine = s.engine
    if fit is not None and engine == "sklearn":
        raise ValueError(
            f"The 'fit_sample' parameter of {s.fn} needs engine='opentsne' for method='tsne' "
            "(scikit-learn's TSNE cannot place new rows into a map); use fit_sample=None to "
            "fit every row. Got engine='sklearn'."
        )
    n = red.data.shape[0] if fit is None else fit.size
    if engine == "auto":
        wants = fit is not None or n >= OPENTSNE_MIN_N
        engine = "opentsne" if wants and _has_opentsne() else "sklearn"
        if fit is not None and engine == "sklearn" and getattr(s, "fit_sample", None) == "auto":
            logger.info("%s: openTSNE is not installed; fitting t-SNE on all rows", s.fn)
            fit, n = None, red.data.shape[0]
    perplexity = s.perplexity
    if n <= 3 * perplexity:
        lowered = (n - 1) / 3
        _warn(
            f"{s.fn}: perplexity={perplexity:g} needs N > {3 * perplexity:g} points but "
            f"N={n}; using perplexity={lowered:.3g} instead."
        )
        perplexity = lowered
    params = {"perplexity": perplexity}
    if fit is not None:
        emb = _tsne_placed(red.data, fit, perplexity, s)
    else:
        run = _tsne_opentsne if engine == "opentsne" else _tsne_sklearn
        emb = run(red.data, perplexity, s)
    return _sampled(emb, engine, red.data.shape[0], fit, params)


def _tsne_placed(z: np.ndarray, fit: np.ndarray, perplexity: float, s: _Settings) -> np.ndarray:
    """t-SNE (openTSNE) fitted on rows ``fit`` of (N, d) ``z``; the other rows placed into it."""
    tsne = _opentsne(fit.size, perplexity, s)
    with _library_errors(s, "openTSNE"):
        ref = tsne.fit(np.ascontiguousarray(z[fit], dtype=np.float64))
        return _place(
            z, fit, np.asarray(ref), lambda rows: ref.transform(rows, n_iter=_PLACE_ITER), s
        )


def _opentsne(n: int, perplexity: float, s: _Settings) -> Any:
    """An ``openTSNE.TSNE`` for n rows with featviz's settings."""
    try:
        import openTSNE
    except ImportError as exc:
        raise ImportError(
            f"{s.fn}(engine='opentsne') needs openTSNE: pip install 'featviz[fast]' "
            "(or pip install openTSNE)."
        ) from exc
    default_jobs = 1 if n < OPENTSNE_MIN_N else -1
    return openTSNE.TSNE(
        n_components=s.k,
        perplexity=perplexity,
        initialization="pca",
        negative_gradient_method="auto" if s.k <= 2 else "bh",
        random_state=s.random_state,
        n_jobs=default_jobs if s.n_jobs is None else s.n_jobs,
        verbose=False,
    )


def _tsne_opentsne(z: np.ndarray, perplexity: float, s: _Settings) -> np.ndarray:
    tsne = _opentsne(z.shape[0], perplexity, s)
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
    """UMAP with umap-learn (``init="pca"``: its spectral init is not reproducible).

    With a fit sample (`_fit_rows`), UMAP is fitted on it and places the other rows
    (``UMAP.transform``).
    """
    try:
        import umap
    except ImportError as exc:
        raise ImportError(
            f"{s.fn}(method='umap') needs umap-learn: pip install 'featviz[fast]' "
            "(or pip install umap-learn)."
        ) from exc
    fit = _fit_rows(red.data.shape[0], s)
    m = red.data.shape[0] if fit is None else fit.size
    reducer = umap.UMAP(
        n_components=s.k,
        n_neighbors=max(2, min(15, m - 1)),
        init="pca",  # the default spectral init is not reproducible on disconnected graphs
        random_state=s.random_state,
        n_jobs=-1 if s.n_jobs is None else s.n_jobs,
    )
    with warnings.catch_warnings(), _library_errors(s, "umap-learn"):
        # with a random_state umap-learn runs single-threaded (deterministic) and says so
        warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
        if fit is None:
            emb = np.asarray(reducer.fit_transform(red.data))
        else:
            ref = np.asarray(reducer.fit_transform(red.data[fit]))
            emb = _place(red.data, fit, ref, reducer.transform, s)
    return _sampled(emb, "umap-learn", red.data.shape[0], fit, {})


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
        ("auto", "sklearn"),
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
        settings=("engine", "pca_dims", "perplexity", "fit_sample"),
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
        settings=("engine", "pca_dims", "fit_sample"),
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
    fit_sample: Any = "auto",
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
    return _SampleSettings(
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
        fit_sample=_check_fit_sample(fit_sample, method, row, fn),
    )


def _check_fit_sample(value: Any, method: str, row: _Method, fn: str) -> int | str | None:
    """``fit_sample``: "auto", None or an int >= the method's fewest rows (t-SNE/UMAP only)."""
    if value is None or (isinstance(value, str) and value.lower() == "auto"):
        return None if value is None else "auto"
    if isinstance(value, str):
        raise ValueError(
            f"The 'fit_sample' parameter of {fn} must be 'auto', None or an int. "
            f"Got {value!r} instead."
        )
    m = _check_int(value, "fit_sample", row.min_rows, fn)
    if "fit_sample" not in row.settings:
        raise ValueError(
            f"The 'fit_sample' parameter of {fn} applies to methods that place new rows "
            f"into a fitted map (t-SNE, UMAP); method={method!r} uses every row. Use "
            f"fit_sample='auto' or None. Got {value!r} instead."
        )
    return m


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
