"""Correlation matrices, labelled heatmaps of them, and threshold labelling.

`correlation` turns an (N, K) feature or score matrix into a (K, K) Pearson, Spearman,
cosine or covariance matrix (tensors stay tensors on their device). `plot_correlation`
draws any (R, K) matrix as a labelled seaborn heatmap that stays readable for long
name lists. `threshold_labels` picks the columns (or rows) whose mean exceeds a
threshold, by default the midpoint ``(max + min) / 2`` of the matrix, and
`plot_correlation_maps` writes one heatmap per matrix of a (B, K, K) stack (for example
one attention map per image) with those labels in each title.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from featviz._io import atomic_path
from featviz._ops import user_stacklevel
from featviz._validation import check_choice, renamed
from featviz.hooks import to_numpy

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["correlation", "plot_correlation", "plot_correlation_maps", "threshold_labels"]

logger = logging.getLogger(__name__)

Method = Literal["pearson", "spearman", "cosine", "covariance"]
Statistic = Literal["mean", "max", "sum"]

_METHODS = ("pearson", "spearman", "cosine", "covariance")
_STATISTICS = ("mean", "max", "sum")
#: At most this many tick labels per axis; longer name lists show every n-th name.
_MAX_TICKS = 40
#: Names in a `plot_correlation_maps` title before "(+n more)".
_MAX_TITLE_NAMES = 12


# --------------------------------------------------------------------------- helpers


def _check_axis(axis: Any, func: str) -> int:
    if isinstance(axis, bool) or axis not in (0, 1):
        raise ValueError(f"The 'axis' parameter of {func} must be 0 or 1. Got {axis!r} instead.")
    return int(axis)


def _nonfinite_message(param: str, func: str, bad: np.ndarray, dims: Sequence[str]) -> str:
    """Describe non-finite entries: how many, and where the first one is."""
    where = np.argwhere(bad)
    first = ", ".join(f"{d} {int(i)}" for d, i in zip(dims, where[0], strict=True))
    return (
        f"The {param!r} parameter of {func} contains {len(where)} non-finite value(s) "
        f"(NaN or inf); the first is at {first}. Remove or impute them first."
    )


def _as_float_numpy(x: Any, param: str, func: str) -> np.ndarray:
    """Any array-like or tensor as a float64 numpy array (never modifies ``x``)."""
    arr = to_numpy(x) if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(
            f"The {param!r} parameter of {func} must be a numeric array or tensor. "
            f"Got dtype {arr.dtype} instead."
        )
    if np.iscomplexobj(arr):
        raise TypeError(
            f"The {param!r} parameter of {func} must be real-valued. Got dtype {arr.dtype}."
        )
    return arr.astype(np.float64, copy=False)


def _check_names(names: Any, n: int, param: str, func: str, what: str) -> list[Any] | None:
    if names is None:
        return None
    if isinstance(names, str):
        raise TypeError(
            f"The {param!r} parameter of {func} must be a sequence of names, not a string. "
            f"Got {names!r}."
        )
    out = list(names)
    if len(out) != n:
        raise ValueError(
            f"The {param!r} parameter of {func} must have one name per {what}: "
            f"got {len(out)} names for a matrix with {n} {what}s."
        )
    return out


# --------------------------------------------------------------------------- correlation


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N down each column of (N, K), ties get their average rank (scipy's default)."""
    n = x.shape[0]
    values, order = torch.sort(x, dim=0, stable=True)
    pos = torch.arange(1, n + 1, device=x.device, dtype=x.dtype)[:, None].expand_as(values)
    differs = values[1:] != values[:-1]
    start = torch.ones_like(values, dtype=torch.bool)
    start[1:] = differs
    end = torch.ones_like(values, dtype=torch.bool)
    end[:-1] = differs
    # first / last sorted position of each run of equal values
    first = torch.where(start, pos, torch.zeros_like(pos)).cummax(0).values
    last = torch.where(end, pos, torch.full_like(pos, n + 1)).flip(0).cummin(0).values.flip(0)
    return torch.empty_like(values).scatter_(0, order, (first + last) / 2)


def _correlation_torch(x: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, K) matrix and a (K,) mask of degenerate variables from (N, K) float data."""
    n = x.shape[0]
    if method == "spearman":
        x = _average_ranks(x)
    # each column divided by its largest magnitude: products of large (or tiny) values
    # cannot overflow (or underflow) in float32; correlations do not change, and the
    # covariance is scaled back below
    scale = x.abs().amax(0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    x = x / scale
    if method == "cosine":
        norms = torch.linalg.vector_norm(x, dim=0)
        degenerate = norms == 0
        unit = x / torch.where(degenerate, torch.ones_like(norms), norms)
        out = unit.T @ unit
    else:
        centred = x - x.mean(0, keepdim=True)
        out = centred.T @ centred / (n - 1)
        out = (out + out.T) / 2  # exact symmetry whatever the matmul kernel does
        if method == "covariance":
            out = out * scale[:, None] * scale[None, :]
            return out, torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
        std = torch.diagonal(out).clamp_min(0).sqrt()
        degenerate = (x.amax(0) == x.amin(0)) | (std == 0) | ~torch.isfinite(std)
        std = torch.where(degenerate, torch.ones_like(std), std)
        out = out / std[:, None] / std[None, :]
    out = out.clamp(-1.0, 1.0)
    keep = (~degenerate).to(out.dtype)
    out = out * keep[:, None] * keep[None, :]
    out.diagonal().copy_(keep)
    return out, degenerate


def correlation(x: Any, *, method: Method = "pearson", axis: int = 0) -> Any:
    """Correlation (or covariance) matrix of the variables of an (N, K) matrix.

    With ``axis=0`` rows are observations and columns are variables, as in
    ``pandas.DataFrame.corr``; ``axis=1`` uses the transpose (rows are variables, as in
    ``numpy.corrcoef``). With ``X`` the (N, K) data and ``Xc`` its column-centred version:

    - ``"pearson"``: ``C = Xc.T @ Xc / (N - 1)``, ``R[i, j] = C[i, j] / sqrt(C[i, i] C[j, j])``;
    - ``"spearman"``: Pearson on the column ranks, ties given their average rank
      (the same as ``scipy.stats.spearmanr`` and ``DataFrame.corr("spearman")``);
    - ``"cosine"``: ``X.T @ X`` divided by the product of the column norms (no centring);
    - ``"covariance"``: ``C`` itself (``ddof=1``, like ``numpy.cov``).

    Degenerate variables (a constant column for pearson/spearman, an all-zero column for
    cosine) have no defined correlation: their whole row and column are set to 0,
    **including their diagonal entry**, so the diagonal is 1 for every other variable
    and 0 for them, and a `RuntimeWarning` names them. The result never contains NaN.
    Correlations are clipped to [-1, 1] to remove rounding overshoot.

    Args:
        x: (N, K) array-like or tensor of real numbers (integer and bool are accepted).
            It is not modified.
        method: ``"pearson"``, ``"spearman"``, ``"cosine"`` or ``"covariance"``.
        axis: 0 if rows are observations (columns are the K variables), 1 if the
            columns are observations.

    Returns:
        The (K, K) matrix, of the same kind as ``x``: a tensor on ``x``'s device for a
        tensor, else a numpy array. Floating inputs keep their dtype (float16/bfloat16
        tensors are computed in float32 and cast back; arrays are computed in float64);
        integer and bool inputs give float32 tensors or float64 arrays.

    Raises:
        TypeError: ``x`` is not numeric, or is complex.
        ValueError: ``x`` is not 2-D, has no variables, has fewer than 2 observations
            (1 for cosine), contains NaN or inf (the message gives how many and where
            the first is), or ``method``/``axis`` are not one of the allowed values.

    Example:
        >>> import numpy as np
        >>> correlation(np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 7.0]]))  # doctest: +SKIP
        array([[1.        , 0.99339927],
               [0.99339927, 1.        ]])
    """
    func = "correlation"
    method = check_choice(method, "method", func, _METHODS)  # type: ignore[assignment]
    axis = _check_axis(axis, func)
    is_tensor = isinstance(x, torch.Tensor)
    if is_tensor:
        t = x.detach()
        if t.is_complex():
            raise TypeError(f"The 'x' parameter of {func} must be real-valued. Got {t.dtype}.")
        out_dtype = t.dtype if t.is_floating_point() else torch.float32
        work_dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    else:
        arr = np.asarray(x)
        out_np_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
        t = torch.from_numpy(np.array(_as_float_numpy(arr, "x", func), dtype=np.float64))
        work_dtype = torch.float64
    if t.ndim != 2:
        raise ValueError(
            f"The 'x' parameter of {func} must be 2-D (N, K). Got shape {tuple(t.shape)}."
        )
    shape = tuple(t.shape)
    t = t.to(work_dtype)
    # one reduction decides the common case; the elementwise check only runs to report
    if not bool(torch.isfinite(t.sum())):
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = (~finite).cpu().numpy()
            raise ValueError(_nonfinite_message("x", func, bad, ("row", "column")))
    if axis == 1:
        t = t.T
    n, k = t.shape
    need = 1 if method == "cosine" else 2
    if k < 1 or n < need:
        raise ValueError(
            f"The 'x' parameter of {func} needs at least {need} observation(s) and 1 variable "
            f"for method={method!r} (axis={axis}). Got shape {shape}."
        )
    out, degenerate = _correlation_torch(t, method)
    if bool(degenerate.any()):
        idx = torch.nonzero(degenerate).flatten().tolist()
        kind = "all-zero" if method == "cosine" else "constant"
        where = "columns" if axis == 0 else "rows"
        shown = ", ".join(map(str, idx[:20]))
        if len(idx) > 20:
            shown += f", ... (+{len(idx) - 20} more)"
        warnings.warn(
            f"correlation: {len(idx)} of the {k} variables are {kind} ({where} {shown}); "
            f"their {method} correlation is undefined and set to 0 (diagonal included).",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    if is_tensor:
        return out.to(out_dtype)
    return out.numpy().astype(out_np_dtype, copy=False)


# --------------------------------------------------------------------------- threshold labels


def _statistic(stack: np.ndarray, statistic: str, axis: int) -> np.ndarray:
    dim = 1 if axis == 0 else 2
    if statistic == "mean":
        return stack.mean(axis=dim)
    if statistic == "max":
        return stack.max(axis=dim)
    return stack.sum(axis=dim)


def _label_stack(
    matrix: Any,
    names: Any,
    *,
    threshold: Any,
    quantile: Any,
    axis: Any,
    statistic: Any,
    func: str,
    param: str = "matrix",
) -> tuple[list[list[Any]], np.ndarray, bool]:
    """Selected labels per matrix, the thresholds used (B,), and whether input was a stack.

    ``param`` is the caller's name for ``matrix``, for the messages.
    """
    axis = _check_axis(axis, func)
    statistic = check_choice(statistic, "statistic", func, _STATISTICS)
    m = _as_float_numpy(matrix, param, func)
    if m.ndim not in (2, 3):
        raise ValueError(
            f"The {param!r} parameter of {func} must be 2-D (R, K) or a 3-D stack (B, R, K). "
            f"Got shape {m.shape}."
        )
    is_stack = m.ndim == 3
    stack = m if is_stack else m[None]
    if 0 in stack.shape:
        raise ValueError(
            f"The {param!r} parameter of {func} is empty. Got shape {m.shape} instead; pass "
            "at least one matrix with at least one row and one column."
        )
    bad = ~np.isfinite(stack)
    if bad.any():
        dims = ("matrix", "row", "column") if is_stack else ("row", "column")
        raise ValueError(_nonfinite_message(param, func, bad if is_stack else bad[0], dims))
    if threshold is not None and quantile is not None:
        raise ValueError(
            f"The 'threshold' and 'quantile' parameters of {func} are mutually exclusive. "
            f"Got threshold={threshold!r} and quantile={quantile!r}."
        )
    scores = _statistic(stack, statistic, axis)  # (B, K) for axis=0, (B, R) for axis=1
    what = "column" if axis == 0 else "row"
    labels = _check_names(names, scores.shape[1], "names", func, what)
    if threshold is not None:
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, numbers.Real)
            or not math.isfinite(threshold)
        ):
            raise ValueError(
                f"The 'threshold' parameter of {func} must be a finite real number. "
                f"Got {threshold!r} instead."
            )
        thr = np.full(len(stack), float(threshold))
    elif quantile is not None:
        if (
            isinstance(quantile, bool)
            or not isinstance(quantile, numbers.Real)
            or not 0.0 <= float(quantile) <= 1.0
        ):
            raise ValueError(
                f"The 'quantile' parameter of {func} must be a float in the range [0, 1]. "
                f"Got {quantile!r} instead."
            )
        thr = np.quantile(scores, float(quantile), axis=1)
    else:
        thr = (stack.max(axis=(1, 2)) + stack.min(axis=(1, 2))) / 2
    # strictly above, beyond rounding: the mean of equal values may differ from them in
    # the last bits, and an all-equal matrix must select nothing
    size = stack.shape[1] if axis == 0 else stack.shape[2]
    magnitude = np.maximum(np.abs(scores).max(axis=1), np.abs(thr))
    tol = 8 * np.finfo(np.float64).eps * size * magnitude
    selected = scores > (thr + tol)[:, None]
    out = [
        [labels[i] if labels is not None else int(i) for i in np.flatnonzero(row)]
        for row in selected
    ]
    return out, thr, is_stack


@renamed(reduce="statistic")
def threshold_labels(
    matrix: Any,
    names: Sequence[Any] | None = None,
    *,
    threshold: float | None = None,
    quantile: float | None = None,
    axis: int = 0,
    statistic: Statistic = "mean",
) -> list[Any]:
    """Columns (or rows) of a matrix whose mean is above a threshold.

    Each column of the (R, K) matrix is reduced over its rows (``axis=0``; with
    ``axis=1`` each row is reduced over its columns) to one score, and the labels whose
    score is **strictly greater** than the threshold are returned, in index order
    (a score equal to the threshold up to float64 rounding, ``8 * eps * R * magnitude``,
    is not selected, so an all-equal matrix selects nothing). The threshold is:

    - by default, the midpoint ``(matrix.max() + matrix.min()) / 2`` of the matrix
      (of each matrix of a stack separately), the rule often used on attention maps;
    - ``threshold``: a fixed number, compared with the scores;
    - ``quantile``: ``numpy.quantile(scores, quantile)`` (linear interpolation), so
      ``quantile=0.9`` keeps about the top 10 % of the labels.

    NaN or inf in ``matrix`` raise `ValueError` (no silent skipping).

    Args:
        matrix: (R, K) array-like or tensor, or a (B, R, K) stack of them.
        names: Labels of the K columns (R rows for ``axis=1``); if given, names are
            returned instead of indices.
        threshold: Fixed threshold; exclusive with ``quantile``.
        quantile: Quantile in [0, 1] of the scores used as threshold; exclusive with
            ``threshold``.
        axis: 0 to score columns (reduce down each column), 1 to score rows.
        statistic: How a column (row) becomes a score: ``"mean"``, ``"max"`` or ``"sum"``.

    Returns:
        A list of int indices (or of names) for an (R, K) matrix; for a (B, R, K) stack,
        a list of B such lists.

    Raises:
        TypeError: ``matrix`` is not numeric or ``names`` is a string.
        ValueError: wrong ``matrix`` shape, NaN/inf in it, ``names`` of the wrong length
            (the message gives both lengths), both ``threshold`` and ``quantile`` given,
            or an invalid ``threshold``, ``quantile``, ``axis`` or ``statistic``.

    Example:
        >>> threshold_labels([[1.0, 0.0, 0.5], [1.0, 0.0, 0.75]], ["a", "b", "c"])
        ['a', 'c']
    """
    labels, _, is_stack = _label_stack(
        matrix,
        names,
        threshold=threshold,
        quantile=quantile,
        axis=axis,
        statistic=statistic,
        func="threshold_labels",
    )
    return labels if is_stack else labels[0]


# --------------------------------------------------------------------------- plotting


def _auto_figsize(rows: int, cols: int) -> tuple[float, float]:
    """Figure size (inches) growing with the matrix size, capped at 20 x 20."""
    width = min(max(5.0, 0.2 * cols + 3.0), 20.0)
    height = min(max(4.0, 0.2 * rows + 2.0), 20.0)
    return width, height


def _tick_step(n: int) -> int:
    return max(1, math.ceil(n / _MAX_TICKS))


def _resolve_mask(mask: Any, shape: tuple[int, int]) -> np.ndarray | None:
    func = "plot_correlation"
    if mask is None:
        return None
    if isinstance(mask, str):
        if mask == "upper":
            return np.triu(np.ones(shape, dtype=bool), k=1)
        if mask == "lower":
            return np.tril(np.ones(shape, dtype=bool), k=-1)
        raise ValueError(
            f"The 'mask' parameter of {func} must be None, 'upper', 'lower' or a boolean "
            f"array. Got {mask!r} instead."
        )
    arr = np.asarray(to_numpy(mask) if isinstance(mask, torch.Tensor) else mask)
    if arr.shape != shape:
        raise ValueError(
            f"The 'mask' parameter of {func} must have the matrix's shape {shape}. "
            f"Got shape {arr.shape}."
        )
    return arr.astype(bool)


def plot_correlation(
    matrix: Any,
    names: Sequence[Any] | None = None,
    *,
    annot: bool = False,
    fmt: str = ".2f",
    clip_negative: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: Any = "YlGnBu",
    mask: Any = None,
    title: str | None = "Correlation",
    ax: Axes | None = None,
    row_names: Sequence[Any] | None = None,
    **heatmap_kws: Any,
) -> Axes:
    """Draw a matrix as a labelled heatmap (`seaborn.heatmap` on a pandas DataFrame).

    Long name lists stay readable: with more than 40 rows (columns), only every n-th
    name is shown so that at most 40 remain, column names are turned vertical when
    they would crowd, and with ``ax=None`` the figure grows with the matrix (up to
    20 x 20 inches). Keyword names follow `seaborn.heatmap`; any other keyword
    (``center``, ``robust``, ``annot_kws``, ``linewidths``, ``cbar``, ``square``,
    ``xticklabels``, ...) is passed on to it.

    Args:
        matrix: (R, K) array-like or tensor (converted with `featviz.to_numpy`; not
            modified). NaN cells are left blank, as seaborn does.
        names: The K column names; also the row names of a square matrix when
            ``row_names`` is None. Default: indices.
        annot: Write each cell's value in it.
        fmt: Format of the annotations (``format`` spec, as in seaborn).
        clip_negative: Show ``matrix * (matrix >= 0)``: negative values become 0.
        vmin: Value at the bottom of the colormap; default from the data.
        vmax: Value at the top of the colormap; default from the data.
        cmap: Matplotlib colormap name or object.
        mask: Cells to hide: a boolean (R, K) array (True hides, as in seaborn),
            ``"upper"`` (cells above the diagonal) or ``"lower"`` (below it).
        title: Axes title; None or "" for none.
        ax: Axes to draw on; default a new figure (``plt.subplots``) sized for the
            matrix. The current figure is never used.
        row_names: The R row names, for non-square matrices (default: indices).
        **heatmap_kws: More keyword arguments for `seaborn.heatmap`.

    Returns:
        The Axes drawn on (``ax.figure`` is the figure).

    Raises:
        ValueError: ``matrix`` is not 2-D or empty, ``names``/``row_names`` have the
            wrong length (the message gives both lengths), or a bad ``mask``.
        TypeError: ``matrix`` is not numeric.
    """
    import pandas as pd
    import seaborn as sns

    func = "plot_correlation"
    mat = _as_float_numpy(matrix, "matrix", func)
    if mat.ndim != 2 or 0 in mat.shape:
        raise ValueError(
            f"The 'matrix' parameter of {func} must be a non-empty 2-D (R, K) matrix. "
            f"Got shape {mat.shape}."
        )
    rows, cols = mat.shape
    col_labels = _check_names(names, cols, "names", func, "column")
    row_labels = _check_names(row_names, rows, "row_names", func, "row")
    if row_labels is None and col_labels is not None and rows == cols:
        row_labels = col_labels
    col_labels = [str(n) for n in col_labels] if col_labels is not None else list(range(cols))
    row_labels = [str(n) for n in row_labels] if row_labels is not None else list(range(rows))
    if clip_negative:
        # mat * (mat >= 0), without the -0.0 that product leaves behind; NaN stays NaN
        mat = np.where(mat < 0, 0.0, mat) + 0.0
    frame = pd.DataFrame(mat, index=row_labels, columns=col_labels)
    hidden = _resolve_mask(mask, (rows, cols))

    from featviz._figures import new_axes

    ax = new_axes(ax, _auto_figsize(rows, cols), layout="constrained")
    x_step, y_step = _tick_step(cols), _tick_step(rows)
    heatmap_kws.setdefault("xticklabels", x_step if x_step > 1 else True)
    heatmap_kws.setdefault("yticklabels", y_step if y_step > 1 else True)
    heatmap_kws.setdefault("square", rows == cols)
    sns.heatmap(
        frame,
        annot=annot,
        fmt=fmt,
        vmin=vmin,
        vmax=vmax,
        cmap=cmap,
        mask=hidden,
        ax=ax,
        **heatmap_kws,
    )
    shown_x = [t.get_text() for t in ax.get_xticklabels()]
    longest = max((len(s) for s in shown_x), default=0)
    small = max(len(shown_x), len(ax.get_yticklabels())) > 20
    ax.tick_params(axis="x", labelrotation=90 if longest * len(shown_x) > 40 else 0)
    ax.tick_params(axis="y", labelrotation=0)
    if small:
        ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title)
    return ax


def _map_title(base: str, index: int, labels: list[Any], threshold: float) -> str:
    shown = ", ".join(str(n) for n in labels[:_MAX_TITLE_NAMES]) or "(none)"
    if len(labels) > _MAX_TITLE_NAMES:
        shown += f" (+{len(labels) - _MAX_TITLE_NAMES} more)"
    return f"{base} {index}\nabove {threshold:.3g}: {shown}"


def _check_image_format(image_format: Any, func: str) -> str:
    """``image_format`` lower-cased if matplotlib can write it."""
    from matplotlib.figure import Figure

    supported = Figure().canvas.get_supported_filetypes()
    if not isinstance(image_format, str) or image_format.lower() not in supported:
        raise ValueError(
            f"The 'image_format' parameter of {func} must be one of {sorted(supported)}. "
            f"Got {image_format!r} instead."
        )
    return image_format.lower()


def _map_paths(
    out: Path, prefix: Any, image_format: str, batch: int, overwrite: bool, func: str
) -> list[Path]:
    """The B destinations ``out/{prefix}_{b:03d}.{image_format}``, all checked first.

    Raises:
        ValueError: ``prefix`` holds a folder separator.
        NotADirectoryError: ``out`` is a file.
        FileExistsError: Some destinations exist and ``overwrite`` is False.
        IsADirectoryError: A destination is a folder.
    """
    if not isinstance(prefix, str) or any(sep in prefix for sep in ("/", "\\", os.sep)):
        raise ValueError(
            f"The 'prefix' parameter of {func} must be a file name prefix without "
            f"folder separators. Got {prefix!r} instead."
        )
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(
            f"The 'out_dir' parameter of {func} names a file, not a folder: {str(out)!r}."
        )
    width = max(3, len(str(batch - 1)))
    paths = [out / f"{prefix}_{b:0{width}d}.{image_format}" for b in range(batch)]
    if not overwrite:
        existing = [p for p in paths if p.exists()]
        if existing:
            first = ", ".join(repr(str(p)) for p in existing[:3])
            raise FileExistsError(
                f"{len(existing)} of the {batch} files {func} would write exist already "
                f"(first: {first}); pass overwrite=True to replace them. Nothing was written."
            )
    clashing = [p for p in paths if p.is_dir()]
    if clashing:
        raise IsADirectoryError(f"{func}: destination {str(clashing[0])!r} is a directory.")
    return paths


@renamed(fmt="image_format", reduce="statistic")
def plot_correlation_maps(
    stack: Any,
    names: Sequence[Any] | None,
    out_dir: str | os.PathLike[str],
    *,
    image_format: str = "png",
    overwrite: bool = False,
    progress: bool = True,
    prefix: str = "map",
    dpi: float = 100,
    threshold: float | None = None,
    quantile: float | None = None,
    axis: int = 0,
    statistic: Statistic = "mean",
    **plot_kws: Any,
) -> list[Path]:
    """Save one heatmap per matrix of a (B, R, K) stack, with its threshold labels.

    Image ``b`` is ``out_dir/{prefix}_{b:03d}.{image_format}`` (more digits when B > 1000); its
    title reads ``"{title} {b}"`` and, on a second line, the labels that
    `threshold_labels` selects for that matrix (same ``threshold``/``quantile``/
    ``axis``/``statistic``). PNG, PDF and SVG files also carry that title in their
    metadata (``Title``). Labels are computed and every destination is checked before
    anything is written, so a refused call writes nothing. Each file is written
    atomically (`featviz._io.atomic_path`); figures are `matplotlib.figure.Figure`
    objects outside pyplot, cleared after saving.

    Args:
        stack: (B, R, K) array-like or tensor, e.g. one attention map per image.
        names: The K column names (also the row names when R == K), or None for indices.
        out_dir: Folder to write into; created (with parents) if missing.
        image_format: Image format supported by matplotlib (``"png"``, ``"pdf"``, ``"svg"``,
            ``"jpg"``, ...).
        overwrite: Replace existing files of the same names.
        progress: Show a tqdm progress bar.
        prefix: File name prefix.
        dpi: Resolution of raster formats.
        threshold: See `threshold_labels`.
        quantile: See `threshold_labels`.
        axis: See `threshold_labels`.
        statistic: See `threshold_labels`.
        **plot_kws: Keyword arguments for `plot_correlation` (``annot``,
            ``clip_negative``, ``cmap``, ``title`` (default ``"Correlation"``),
            ``figsize`` for the figure size, ...).

    Returns:
        The B written paths, in stack order.

    Raises:
        FileExistsError: Some destinations exist and ``overwrite`` is False (nothing
            is written; the message names how many and the first few).
        ValueError: ``stack`` is not 3-D, bad ``image_format`` or ``prefix``, and everything
            `threshold_labels` and `plot_correlation` raise.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from featviz._ops import progress_bar

    func = "plot_correlation_maps"
    arr = _as_float_numpy(stack, "stack", func)
    if arr.ndim != 3:
        raise ValueError(
            f"The 'stack' parameter of {func} must be 3-D (B, R, K). Got shape {arr.shape}; "
            "for a single matrix pass matrix[None]."
        )
    image_format = _check_image_format(image_format, func)
    labels, thresholds, _ = _label_stack(
        arr,
        names,
        threshold=threshold,
        quantile=quantile,
        axis=axis,
        statistic=statistic,
        func=func,
        param="stack",
    )
    batch, rows, cols = arr.shape
    paths = _map_paths(Path(out_dir), prefix, image_format, batch, overwrite, func)
    Path(out_dir).mkdir(parents=True, exist_ok=True)

    base = plot_kws.pop("title", "Correlation") or "Correlation"
    figsize = plot_kws.pop("figsize", None) or _auto_figsize(rows, cols)
    # names of a square matrix label its rows too; plot_correlation checks lengths
    plot_names = names if axis == 0 or rows == cols else None
    row_names = plot_kws.pop("row_names", None if axis == 0 else names)
    meta_ok = image_format in ("png", "pdf", "svg")
    for b in progress_bar(range(batch), enabled=progress, desc="correlation maps"):
        title = _map_title(str(base), b, labels[b], float(thresholds[b]))
        fig = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)  # one cached renderer for text extents (the base canvas has none)
        try:
            ax = fig.add_subplot()
            plot_correlation(
                arr[b], plot_names, ax=ax, title=title, row_names=row_names, **plot_kws
            )
            with atomic_path(paths[b], overwrite=overwrite, param="out_dir") as tmp:
                fig.savefig(
                    tmp,
                    format=image_format,
                    dpi=dpi,
                    metadata={"Title": title} if meta_ok else None,
                )
        finally:
            fig.clear()
    logger.info("%s: wrote %d files into %s", func, batch, out_dir)
    return paths
