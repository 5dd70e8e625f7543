"""The same samples projected at several steps (e.g. of training), aligned across steps.

`project_steps` is what `featviz.Recorder` draws its projection timeline with: each step
fitted with any method of `METHODS` and rotated onto the previous one (orthogonal
Procrustes), or, for a linear method, every step mapped with one basis.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from featviz._validation import check_choice
from featviz.projection._core import _project_settings, _run
from featviz.projection._methods import _METHODS, _centred, _check_method
from featviz.projection._sources import _flatten_array

__all__ = ["ALIGN", "align_procrustes", "project_steps"]

#: The ``align`` values of `project_steps`.
ALIGN = ("procrustes", "fixed")


def align_procrustes(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rotate (or reflect) centred ``points`` onto ``reference``: orthogonal Procrustes.

    Args:
        points: (N, D) points.
        reference: (N, D) points of the same samples.

    Returns:
        (N, D) float64: ``(points - mean) @ R + mean(reference)``, with the orthogonal
        ``R`` that minimises the distance to ``reference`` (no scaling).
    """
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if p.shape != r.shape or p.ndim != 2:
        raise ValueError(
            "The 'points' and 'reference' parameters of align_procrustes must be (N, D) "
            f"arrays of one shape. Got {p.shape} and {r.shape} instead."
        )
    pc, rc = p - p.mean(0), r - r.mean(0)
    u, _, vt = np.linalg.svd(pc.T @ rc)
    return pc @ (u @ vt) + r.mean(0)


def _steps(features: Any) -> list[np.ndarray]:
    """(R, N, ...) features (an array or a sequence of arrays) as R arrays (N, D)."""
    fn = "project_steps"
    if isinstance(features, (str, bytes)) or not isinstance(features, (Sequence, np.ndarray)):
        raise TypeError(
            f"The 'features' parameter of {fn} must be an array (R, N, ...) or a sequence of "
            f"R arrays (N, ...). Got {type(features).__name__} instead."
        )
    if len(features) < 1:
        raise ValueError(f"The 'features' parameter of {fn} must hold at least 1 step. Got 0.")
    steps = [_flatten_array(f, fn, f"features[{r}]") for r, f in enumerate(features)]
    shapes = sorted({f.shape for f in steps})
    if len(shapes) > 1:
        raise ValueError(
            f"The 'features' parameter of {fn} must hold the same samples (N, D) at every "
            f"step. Got shapes {shapes}."
        )
    return steps


def project_steps(
    features: Any,
    *,
    method: str = "pca",
    align: str = "procrustes",
    n_components: int = 2,
    random_state: int | None = 0,
    **project_kwargs: Any,
) -> np.ndarray:
    """Project the same N samples seen at R steps, aligned so that frames do not spin or flip.

    - ``align="procrustes"`` (any method): each step is projected on its own with
      `project` (same method, seed and settings) in float64, then rotated or reflected
      onto the previous step's result (`align_procrustes`; no scaling).
    - ``align="fixed"`` (linear methods: those whose `METHODS` row has a ``basis``, i.e.
      ``"pca"``): the basis is fitted on the last step, and every step's centred rows
      are mapped with it, so distances between steps show real change.

    Args:
        features: (R, N, ...) array, or a sequence of R arrays/tensors (N, ...) of the
            same shape; each step is flattened to (N, D).
        method: A name of `METHODS` (``"pca"``, ``"tsne"``, ``"umap"``).
        align: ``"procrustes"`` or ``"fixed"`` (see above).
        n_components: Embedding dimensions k.
        random_state: Seed of every step's projection.
        **project_kwargs: Further settings of `project` (``perplexity``, ``pca_dims``,
            ``engine``, ``n_jobs``, ...; ``progress`` defaults to False); unused with
            ``align="fixed"``.

    Returns:
        (R, N, k) float64.

    Raises:
        ValueError: A bad parameter value, ``align="fixed"`` with a method that cannot
            map new rows, steps of different shapes, or features `project` refuses
            (named ``features[r]``).
        TypeError: ``features`` is not an array or sequence, or ``project_kwargs`` names
            no setting of `project`.
    """
    fn = "project_steps"
    method = _check_method(method, fn)
    align = check_choice(align, "align", fn, ALIGN)
    fixed = {"method": method, "n_components": n_components, "random_state": random_state}
    s = _project_settings(fn, project_kwargs, fixed | {"score": False}, progress=False)
    steps = _steps(features)
    basis_fit = _METHODS[method].basis
    if align == "fixed":
        if basis_fit is None:
            raise ValueError(
                f"The 'align' parameter of {fn} must be 'procrustes' for method={method!r}: "
                f"{_METHODS[method].title} cannot map new rows with a fitted model, so each "
                "step is fitted on its own and aligned to the previous one. Got 'fixed' "
                "instead; use align='procrustes' (or a linear method such as 'pca')."
            )
        basis = basis_fit(steps[-1], s.k)
        return np.stack([_centred(f) @ basis for f in steps])
    out: list[np.ndarray] = []
    for r, f in enumerate(steps):
        step = replace(s, name=f"features[{r}]")
        proj = _run(np.asarray(f, dtype=np.float64), None, step, time.perf_counter())
        emb = np.asarray(proj.embedding, dtype=np.float64)
        out.append(emb if not out else align_procrustes(emb, out[-1]))
    return np.stack(out)
