"""Project features to 2-D/3-D with PCA, t-SNE or UMAP, score the result and plot it.

`project` takes features as a tensor or array (N, ...) (flattened to (N, D)), a
memory-mapped store (read in row chunks), or a raw image ``Dataset``/``DataLoader``
(streamed in batches), and returns a `Projection`: the embedding, a tidy
``pandas.DataFrame`` for plotting, the time taken, the explained variance ratio of any
PCA step, and quality figures (trustworthiness and 10-NN accuracy).

Everything featviz knows about a method (its title, engines, settings, smallest N, most
components, PCA pre-step, embedding function, basis for new rows) is one row of the
read-only table `METHODS`; every function with a ``method=`` or ``projection=`` choice
(`project`, `plot_layer_projections`, `project_steps`, `featviz.compare_projections`,
`featviz.explore`, `featviz.Recorder`) reads it.

Engine choice for ``method="tsne"`` with ``engine="auto"``: openTSNE (FFT-accelerated
interpolation above 10,000 points, Barnes-Hut below; the ``fast`` extra) when it is
installed and N >= `OPENTSNE_MIN_N`, else scikit-learn's Barnes-Hut ``TSNE``. Before
t-SNE and UMAP, features with D > ``pca_dims`` are reduced to ``pca_dims`` dimensions
by PCA.

The package: `_sources` (reading arrays, memory maps, streams and labels; the PCA step),
`_methods` (the method table), `_quality` (trustworthiness, kNN accuracy), `_core`
(`project`, `Projection`), `_plots` (the figures), `_align` (`project_steps`).

Example:
    >>> proj = featviz.project(features, labels=labels)  # doctest: +SKIP
    >>> proj.quality["knn_accuracy"], proj.seconds  # doctest: +SKIP
    (0.98, 4.2)
    >>> featviz.plot_projection(proj)  # doctest: +SKIP
"""

from __future__ import annotations

from featviz.projection._align import ALIGN, align_procrustes, project_steps
from featviz.projection._common import DEFAULT_MEMORY_FRACTION, TRUSTWORTHINESS_MAX_POINTS
from featviz.projection._common import _available_memory as _available_memory  # benchmarks
from featviz.projection._core import Projection, project
from featviz.projection._methods import FIT_SAMPLE_MIN_N, FIT_SAMPLE_SIZE, METHODS, OPENTSNE_MIN_N
from featviz.projection._plots import plot_layer_projections, plot_projection
from featviz.projection._quality import KNN_COST_CAP, KNN_K
from featviz.projection._quality import _knn_accuracy as _knn_accuracy  # benchmarks
from featviz.projection._sources import STREAMED_PCA_MIN_BYTES

__all__ = [
    "ALIGN",
    "DEFAULT_MEMORY_FRACTION",
    "FIT_SAMPLE_MIN_N",
    "FIT_SAMPLE_SIZE",
    "KNN_COST_CAP",
    "KNN_K",
    "METHODS",
    "OPENTSNE_MIN_N",
    "STREAMED_PCA_MIN_BYTES",
    "TRUSTWORTHINESS_MAX_POINTS",
    "Projection",
    "align_procrustes",
    "plot_layer_projections",
    "plot_projection",
    "project",
    "project_steps",
]
