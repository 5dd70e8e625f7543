"""`project` and its result, `Projection`: validate -> read (PCA step) -> embed -> score."""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from featviz._ops import user_stacklevel
from featviz._validation import renamed
from featviz.projection._common import _Embedding, _Reduced, _Settings
from featviz.projection._methods import _embed, _settings
from featviz.projection._quality import _score
from featviz.projection._sources import _read

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Projection", "project"]

_AXES = ("x", "y", "z")


@dataclass(repr=False)
class Projection:
    """The result of `project`: a plain record.

    Nothing is fitted on a `Projection` (it is not an estimator), so its fields have plain
    names; the scikit-learn style names ``embedding_`` and ``explained_variance_ratio_``
    of earlier releases still work, as attributes and as keywords of the constructor,
    but give a ``FutureWarning``.

    Attributes:
        embedding: (N, k) array, one row per input row (float32 or float64).
        frame: ``pandas.DataFrame`` with columns ``x``, ``y`` (``z`` for k = 3; further
            columns ``dim3``... for k > 3), ``label`` (``None`` without labels) and
            ``index`` (row of the input, or position in the stream).
        method: The method, a name of `METHODS` (``"pca"``, ``"tsne"``, ``"umap"``).
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
            ``pca_dims`` of the pre-step or ``None``, ``random_state``, ...; for t-SNE
            and UMAP ``n_fitted`` and ``n_placed``: rows the method was fitted on and
            rows placed into that map, see ``fit_sample``).
        fitted: (N,) bool, True for the rows t-SNE/UMAP was fitted on when the other rows
            were placed into its map (``fit_sample``); ``None`` when every row was fitted.
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
    fitted: np.ndarray | None = None

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


# the old field names, as keywords of the constructor too (one release, FutureWarning)
Projection.__init__ = renamed(  # type: ignore[method-assign]
    embedding_="embedding", explained_variance_ratio_="explained_variance_ratio"
)(Projection.__init__)


def _warn_renamed(old: str, new: str) -> None:
    warnings.warn(
        f"Projection.{old} is deprecated and will be removed; use Projection.{new}. "
        "(A Projection is a plain record, not a fitted estimator, so its fields have no "
        "trailing underscore.)",
        FutureWarning,
        stacklevel=user_stacklevel(),
    )


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
    fitted = getattr(out, "fitted", None)  # rows t-SNE/UMAP was fitted on (None: all)
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
        quality=_score(out.embedding, red, labels, s, fitted) if s.score else {},
        labels=labels,
        params=params,
        fitted=fitted,
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
    fit_sample: int | str | None = "auto",
) -> Projection:
    """Project features to ``n_components`` dimensions with PCA, t-SNE or UMAP, and score it.

    Inputs:

    - a tensor (any device) or array (N, ...), flattened to (N, D), e.g. a
      ``FeatureSet`` layer (a numpy array or ``np.memmap``);
    - an ``np.memmap`` (e.g. ``np.load(path, mmap_mode="r")``, a ``FeatureSet`` layer
      opened with ``mmap=True``): when it is larger than the memory budget
      (``max_memory``, default `DEFAULT_MEMORY_FRACTION` of available memory) or than
      `STREAMED_PCA_MIN_BYTES`, the PCA step streams over row blocks (never a copy of
      the data) and the pages read are released after each block, so peak RSS stays
      near one block plus the (N, k + 10) scores rather than the data size;
    - a ``torch.utils.data.Dataset`` whose items are ``image`` or ``(image, label, ...)``
      tuples, or a ``DataLoader`` over one: streamed in batches (the "t-SNE of the raw
      images" use). PCA is fitted with ``IncrementalPCA.partial_fit`` in one pass and
      applied in a second, so only the (N, k) result is held. Labels come from the items
      (as class names when the dataset has a ``classes`` list of strings) unless
      ``labels`` is given.

    Methods: ``"pca"`` (scikit-learn ``PCA``, whose ``"auto"`` solver is randomized for
    large inputs; for memory maps larger than the budget and arrays or memory maps of at
    least `STREAMED_PCA_MIN_BYTES`, featviz's streamed PCA: block subspace iteration over
    row blocks, no copy of the data, usually two passes; ``IncrementalPCA`` for
    streamed datasets); ``"tsne"``: PCA to
    ``pca_dims`` first when D > ``pca_dims``, then scikit-learn's Barnes-Hut ``TSNE(init=
    "pca", learning_rate="auto")`` or openTSNE (``engine="auto"`` picks openTSNE when it is
    installed and N >= `OPENTSNE_MIN_N`); ``"umap"``: the same PCA pre-step, then
    umap-learn (the ``fast`` extra).

    Large N (``fit_sample``): t-SNE and UMAP of more than `FIT_SAMPLE_MIN_N` rows are
    fitted on a seeded sample of `FIT_SAMPLE_SIZE` rows, and the other rows are placed
    into that map (openTSNE's ``TSNEEmbedding.transform``, umap-learn's ``transform``);
    `Projection.fitted` and ``params["n_fitted"]``/``params["n_placed"]`` say which, and
    ``quality["trustworthiness_placed"]`` scores a held-out sample of placed rows.

    Args:
        features: Tensor/array (N, ...), memory map, Dataset or DataLoader (see above).
        method: A name of `METHODS` (the table every ``method=`` choice reads):
            ``"pca"``, ``"tsne"`` or ``"umap"``.
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
            maps go through the streamed PCA (``IncrementalPCA`` in chunks with
            ``engine="sklearn"``).
        score: Compute `Projection.quality` (trustworthiness, kNN accuracy).
        fit_sample: Rows t-SNE/UMAP is fitted on; the others are placed into the fitted
            map. ``"auto"``: `FIT_SAMPLE_SIZE` rows when N > `FIT_SAMPLE_MIN_N`, else
            all; an int m: a seeded sample of m rows (all when m >= N); ``None``: every
            row. t-SNE needs openTSNE to place rows. Only ``"auto"``/``None`` for PCA
            (linear: it uses every row).

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
        fit_sample=fit_sample,
    )
    return _run(features, labels, s, start)


def _run(features: Any, labels: Any, s: _Settings, start: float) -> Projection:
    """`project` after its arguments are checked (``start``: its `time.perf_counter`)."""
    red, lab = _read(features, labels, s)  # check the data, run the PCA step
    out = _embed(red, s)  # the method's row of the table _METHODS
    return _finish(out, red, lab, s, time.perf_counter() - start)


def _project_defaults() -> dict[str, Any]:
    """`project`'s settings and their defaults, read from its signature (``labels`` aside)."""
    params = inspect.signature(project).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name != "labels"}


def _project_settings(
    fn: str, kwargs: Mapping[str, Any], fixed: Mapping[str, Any], **defaults: Any
) -> _Settings:
    """`project`'s checked settings for a function ``fn`` that passes ``**project_kwargs`` on.

    Args:
        fn: The public function, named in messages.
        kwargs: The caller's ``project_kwargs``: any `project` settings.
        fixed: Settings ``fn`` sets itself (``kwargs`` may not name them).
        **defaults: ``fn``'s own defaults, in place of `project`'s.
    """
    known = _project_defaults()
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(
            f"The 'project_kwargs' parameter of {fn} must name settings of featviz.project "
            f"{sorted(known)}. Got {unknown} instead."
        )
    taken = sorted(set(kwargs) & set(fixed))
    if taken:
        raise TypeError(
            f"The 'project_kwargs' parameter of {fn} may not set {taken}: {fn} sets "
            f"{sorted(fixed)} itself."
        )
    return _settings(**{**known, **defaults, **kwargs, **fixed}, fn=fn)
