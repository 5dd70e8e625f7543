"""Figures of projections: `plot_projection` (one projection) and `plot_layer_projections`.

The computation (the points to draw as a frame, the columns for colour and style) is in
small helpers; drawing is seaborn (2-D) or a matplotlib 3-D scatter.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featviz._images import label_names
from featviz._palette import class_order, class_palette
from featviz.hooks import to_numpy
from featviz.projection._common import _check_int, _Settings
from featviz.projection._core import Projection, _make_frame, _project_settings
from featviz.projection._methods import _METHODS, _check_method, _embed
from featviz.projection._sources import _flatten_array, _labels_array, _read

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["plot_layer_projections", "plot_projection"]


def _default_size(n: int) -> float:
    return float(np.clip(3000.0 / max(n, 1), 2.0, 40.0))


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _default_title(proj: Projection) -> str:
    name = _METHODS[proj.method].title if proj.method in _METHODS else proj.method
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
    if isinstance(palette, dict):  # the class palette: its order and colours
        hue_levels = [h for h in palette if h in set(hue_levels)]
        colors = [palette[h] for h in hue_levels]
    else:
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
    from featviz._figures import new_figure

    if ax is None:
        fig = new_figure((6.5, 5.5))
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
    """Draw a seaborn scatter plot on ``ax`` (``None`` creates a figure), small-font legend.

    A dict ``palette`` also gives the legend order (class-index order).
    """
    import seaborn as sns

    from featviz._figures import new_axes

    ax = new_axes(ax, (6.5, 5.5))
    sns.scatterplot(
        data=frame,
        x="x",
        y="y",
        hue=hue,
        style=style,
        palette=palette,
        hue_order=list(palette) if isinstance(palette, dict) else None,
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


def _name_labels(frame: pd.DataFrame, class_names: Sequence[str] | None) -> None:
    """Int labels of ``frame`` replaced by their names from ``class_names`` (in place)."""
    if class_names is None or frame["label"].isna().all():
        return
    arr = frame["label"].to_numpy()
    if arr.dtype.kind in "iu":
        frame["label"] = label_names(arr, class_names, func="plot_projection", param="labels")


def _is_classes(frame: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` holds classes (the labels, or text) rather than a quantity."""
    return column == "label" or frame[column].dtype.kind in "OSUb"


def plot_projection(
    projection_or_array: Projection | Any,
    labels: Any = None,
    *,
    class_names: Sequence[str] | None = None,
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
        class_names: Names of the class indices: int labels are shown by name, and
            classes are coloured and listed in class-index order.
        hue: Column of ``Projection.frame`` (``"label"``, ``"index"``, ...) or (N,)
            values for colour; default ``"label"`` when there are labels.
        style: Column name or (N,) values for the marker shape.
        palette: seaborn palette name, list or dict; default for classes: class index
            ``i`` in colour ``i`` of tab10 (tab20 beyond 10 classes), the rule every
            featviz figure and `explore` use, so a class keeps its colour everywhere.
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
    _name_labels(frame, class_names)
    if hue is None and frame["label"].notna().any():
        hue = "label"
    hue = _column(frame, hue, "hue")
    if palette is None and hue is not None and _is_classes(frame, hue):
        palette = class_palette(frame[hue].tolist(), class_names)
    draw = _draw_3d if k == 3 else _draw_2d
    ax = draw(
        ax,
        frame,
        hue=hue,
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
    features: Any,
    sample: Any,
    labels: Any,
    fixed: Mapping[str, Any],
    project_kwargs: Mapping[str, Any],
) -> tuple[_Settings, int | None]:
    """Check `plot_layer_projections`' arguments; `project`'s settings for every layer."""
    fn = "plot_layer_projections"
    if not isinstance(features, Mapping) or not features:
        raise ValueError(
            f"The 'features' parameter of {fn} must be a non-empty {{name: features}} "
            f"mapping. Got {type(features).__name__}"
            + (" (empty)." if isinstance(features, Mapping) else ".")
        )
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
    # each layer: 2-D, scaled to [0, 1]; everything else as project does, or as asked
    return _project_settings(fn, project_kwargs, fixed, progress=False), sample


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


def _draw_layers(
    ax: Axes | None, data: pd.DataFrame, style: str | None, class_names: Sequence[str] | None
) -> Axes:
    """All layers' points in one seaborn scatter plot, coloured by layer.

    The classes are marker styles, in class-index order (`class_order`).
    """
    import seaborn as sns

    from featviz._figures import new_axes

    ax = new_axes(ax, (6.5, 5.5))
    sns.scatterplot(
        data=data,
        x="x",
        y="y",
        hue="layer",
        style=style,
        style_order=class_order(data[style].tolist(), class_names) if style else None,
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
    class_names: Sequence[str] | None = None,
    random_state: int | None = 0,
    **project_kwargs: Any,
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
        method: A projection method, a name of `featviz.projection.METHODS`: ``"pca"``
            (default), ``"tsne"``, ``"umap"``, as in `project`.
        ax: Axes to draw on; ``None`` creates a figure.
        labels: (N,) labels (only with ``sample=None``), shown as marker styles.
        class_names: Names of the class indices: int labels are shown by name, and the
            legend lists classes in class-index order.
        random_state: Seed passed to `project`.
        **project_kwargs: Further settings of `project` for every layer (``perplexity``,
            ``pca_dims``, ``engine``, ``n_jobs``, ...; ``progress`` defaults to False).
            ``n_components`` (2), ``normalize`` (True) and ``score`` (False) are set by
            this function.

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
        TypeError: A layer's features are not numbers; ``project_kwargs`` names no
            setting of `project`, or one this function sets.
    """
    import pandas as pd

    method = _check_method(method, "plot_layer_projections")
    fixed = {"method": method, "random_state": random_state}
    fixed |= {"n_components": 2, "normalize": True, "score": False}
    s, sample = _layer_settings(features, sample, labels, fixed, project_kwargs)
    parts = [_layer_frame(k, v, sample, labels, s) for k, v in features.items()]
    style = "label" if sample is None and labels is not None else None
    data = pd.concat(parts, ignore_index=True)
    if style:
        _name_labels(data, class_names)
    ax = _draw_layers(ax, data, style, class_names)
    n_points = len(parts[0])
    what = (
        f"sample {sample}: {n_points} positions in the first layer"
        if sample is not None
        else f"{n_points} images"
    )
    ax.set_title(f"{s.row.title} of {len(parts)} layers, {what}", fontsize="medium")
    return ax
