"""An interactive view of a projection: hover thumbnails, colour by class, select, click for CAMs.

`explore` turns 2-D points (a `Projection`, a `FeatureSet` projected on the fly, or a
plain (N, 2) array) plus optional images, labels, predictions and heatmaps into an
`ExploreView`: a bokeh page (WebGL scatter) that displays inline in Jupyter and saves as
one standalone HTML file with bokeh's JavaScript inlined, so it opens offline.

Images, heatmaps and labels are read by the one ingestion layer (`featviz._images`);
everything the page shows is prepared in Python, in batches, by `featviz._explorer_page`:
thumbnails and the larger click-through images are resized per chunk, heatmaps are
blended with `featviz.overlay`, and the results are packed as tiles into a few sprite
sheets (`Sprites`), encoded once per sheet (WebP by default). The page cuts each tile
out with CSS. Large sets of sheets go to a folder beside the page (`ExploreView.save`).
bokeh is imported by the functions that need it, never by ``import featviz``.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import featviz._explorer_big as _webgl
from featviz._errors import describe, param_error
from featviz._explorer_page import (
    FORMATS,
    SHEET_PX,
    Sprites,
    file_names,
    layout,
    make_sprites,
    remove_folder,
    sprite_sets,
    write_folder,
)
from featviz._images import (
    check_finite_rows,
    check_pair,
    display_mean_std,
    heatmap_batch,
    image_batch,
    label_array,
    label_names,
    number_array,
    prediction_array,
)
from featviz._io import atomic_path, check_destination
from featviz._ops import user_stacklevel
from featviz._validation import check_int, renamed

if TYPE_CHECKING:
    from bokeh.models import LayoutDOM

__all__ = ["COLOR_BY", "INLINE_LIMIT", "SHEET_PX", "ExploreView", "Sprites", "explore"]

#: The colourings the page offers, in this order, when their data is given.
COLOR_BY = ("label", "prediction", "correct", "confidence")

#: Above this many encoded image bytes, `ExploreView.save` puts them in a folder beside
#: the page (``assets="auto"``).
INLINE_LIMIT = 16_000_000


# -- errors --------------------------------------------------------------------------------
def _error(name: str, expected: str, value: Any, fix: str = "") -> Exception:
    return param_error(ValueError, name, "explore", expected, describe(value), fix)


def _type_error(name: str, expected: str, value: Any) -> Exception:
    return param_error(TypeError, name, "explore", expected, type(value).__name__)


# -- points --------------------------------------------------------------------------------
def _projection_fields(proj: Any) -> tuple[np.ndarray, Any]:
    """The embedding and labels of a `Projection` (the one place that reads its fields)."""
    return np.asarray(proj.embedding), proj.labels


def _feature_set_points(
    fs: Any,
    layers: str | None,
    method: str,
    random_state: int | None,
    project_kwargs: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, Any, Any]:
    from featviz.projection import METHODS, project
    from featviz.projection._core import _project_settings

    if layers is None:
        if len(fs.layers) != 1:
            raise _error(
                "layers",
                f"one of {list(fs.layers)} for a FeatureSet with {len(fs.layers)} layers",
                layers,
            )
        layers = next(iter(fs.layers))
    if layers not in fs.layers:
        raise _error("layers", f"one of the FeatureSet's layers {list(fs.layers)}", layers)
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise _error("method", f"one of {list(METHODS)}", method)
    if project_kwargs is not None and not isinstance(project_kwargs, Mapping):
        raise _type_error("project_kwargs", "a mapping of featviz.project settings", project_kwargs)
    fixed: dict[str, Any] = {"method": method, "random_state": random_state, "score": False}
    kwargs: dict[str, Any] = {"progress": False, **(project_kwargs or {})}
    _project_settings("explore", kwargs, fixed)  # names explore in its errors
    proj = project(np.asarray(fs[layers]), **fixed, **kwargs)
    emb, _ = _projection_fields(proj)
    return emb, fs.labels, fs.outputs


def _points(
    points: Any,
    layers: str | None,
    method: str,
    random_state: int | None,
    project_kwargs: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, Any, Any]:
    """(N, 2) float64 points plus the labels and model outputs that came with them."""
    from featviz.extraction import FeatureSet
    from featviz.projection import Projection

    labels = outputs = None
    if isinstance(points, Projection):
        xy, labels = _projection_fields(points)
    elif isinstance(points, FeatureSet):
        xy, labels, outputs = _feature_set_points(
            points, layers, method, random_state, project_kwargs
        )
    elif isinstance(points, (torch.Tensor, np.ndarray, list, tuple)):
        xy = number_array(points, func="explore", param="points")
    else:
        raise _type_error(
            "points", "a Projection, a FeatureSet or an (N, 2) tensor or array", points
        )
    if xy.ndim != 2 or xy.shape[1] < 2 or xy.shape[0] < 1:
        raise _error("points", "an (N, 2) array with N >= 1 (further columns are ignored)", xy)
    if not np.issubdtype(xy.dtype, np.number):
        raise _error("points", "numeric", xy)
    xy = xy[:, :2].astype(np.float64)
    if not np.isfinite(xy).all():
        bad = np.flatnonzero(~np.isfinite(xy).all(axis=1))[:5].tolist()
        raise _error("points", "finite", xy, f"Rows {bad} hold NaN or inf.")
    return xy, labels, outputs


# -- labels, predictions, confidence -------------------------------------------------------
def _names(values: Any, n: int, name: str, class_names: Sequence[str] | None) -> list[str]:
    """(N,) labels as display strings, through ``class_names`` (`featviz._images` rules)."""
    arr = label_array(values, n, func="explore", param=name)
    return label_names(arr, class_names, func="explore", param=name)


def _predictions(
    predictions: Any, n: int, class_names: Sequence[str] | None
) -> tuple[list[str], np.ndarray | None]:
    """Predicted names and, for (N, C) logits, the softmax probability of the top class."""
    classes, conf = prediction_array(predictions, n, func="explore")
    return label_names(classes, class_names, func="explore", param="predictions"), conf


def _confidence(confidence: Any, n: int) -> np.ndarray:
    arr = number_array(confidence, func="explore", param="confidence")
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.number):
        raise _error("confidence", f"numbers of shape ({n},)", arr)
    arr = arr.astype(np.float64)
    check_finite_rows(arr, func="explore", param="confidence")
    if not (arr.min() >= 0 and arr.max() <= 1):
        raise _error("confidence", "probabilities in [0, 1]", arr)
    return arr


def _check_class_names(class_names: Any) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise _type_error("class_names", "a sequence of strings (one per class)", class_names)
    return [str(c) for c in class_names]


# -- images and heatmaps -------------------------------------------------------------------
def _images_sprites(
    images: Any, heatmaps: Any, n: int, opts: dict[str, Any], lazy: bool = False
) -> tuple[Sprites | None, dict[str, Sprites]] | _webgl.ImageSource | None:
    """Thumbnail and click-through sprites from the images and heatmaps.

    With ``lazy`` (the webgl renderer): the checked inputs as an `ImageSource` (or None),
    which makes each sheet when it is saved or shown.
    """
    if heatmaps is not None and not isinstance(heatmaps, Mapping):
        expected = 'a mapping of names to (N, h, w) maps, e.g. {"gradcam": m}'
        raise _type_error("heatmaps", expected, heatmaps)
    if images is None:
        if heatmaps:
            raise _error("images", "given when 'heatmaps' is (the maps are drawn on them)", None)
        return None if lazy else (None, {})
    if heatmaps and "image" in heatmaps:
        raise _error("heatmaps", "named other than 'image' (the name of the plain image)", "image")
    batch = image_batch(images, func="explore", n=n)
    ms = display_mean_std(batch.nhwc, opts["mean"], opts["std"], func="explore")
    maps = {
        str(k): heatmap_batch(v, func="explore", n=n, key=str(k)).maps
        for k, v in (heatmaps or {}).items()
    }
    if lazy:
        return _webgl.ImageSource(batch.nhwc, ms, maps, opts, images)
    return make_sprites(batch.nhwc, ms, maps, opts)


# -- the view ------------------------------------------------------------------------------
@dataclass
class ExploreView:
    """An interactive projection view, made by `explore`.

    Display it as the last expression of a Jupyter cell, or write a standalone page with
    `save`. Each rendering builds fresh bokeh models from ``data``.

    Attributes:
        data: The columns the page holds, one entry per point: ``x``, ``y``, ``index``
            (the point's row, or its dataset index for a `FeatureSet`) and, when given,
            ``label``, ``prediction``, ``correct`` (``"correct"``/``"wrong"``),
            ``confidence``, and ``thumb_sheet``, ``thumb_x``, ``thumb_y`` (where each
            point's thumbnail is in ``thumbnails``).
        color_by: The colourings offered, first one shown (a subset of `COLOR_BY`).
        thumbnails: The hover thumbnails (tile ``i`` is point ``i``), or None.
        details: The click-through images: ``"image"``, then each heatmap over it.
        title: Title of the plot and page.
        width: Plot width in pixels.
        height: Plot height in pixels.
        detail_px: Display size (longer side) of the click-through images in pixels.
        class_names: Names of the class indices: label and prediction legends list the
            classes in this order, each in the colour of its index (`featviz._palette`).
        renderer: ``"bokeh"`` or ``"webgl"`` (the large-set page, `featviz._explorer_big`).
        source: For ``"webgl"``: the images and heatmaps its sheets are made from when
            saved or shown (``thumbnails`` and ``details`` stay empty), or None.
        widget: The live Jupyter widget last made by `show` (holds the selection).
    """

    data: dict[str, Any]
    color_by: list[str]
    thumbnails: Sprites | None = None
    details: dict[str, Sprites] = field(default_factory=dict)
    title: str = "featviz explore"
    width: int = 720
    height: int = 600
    detail_px: int = 160
    class_names: list[str] | None = None
    renderer: str = "bokeh"
    source: _webgl.ImageSource | None = field(default=None, repr=False)
    widget: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.data["x"])

    def __repr__(self) -> str:
        return (
            f"ExploreView(n={len(self)}, color_by={self.color_by}, "
            f"details={list(self.details)}, image_bytes={self.image_bytes})"
        )

    @property
    def image_bytes(self) -> int:
        """Encoded bytes of all thumbnails and click-through images."""
        sprites = [*self.details.values(), *([self.thumbnails] if self.thumbnails else [])]
        return sum(sp.nbytes for sp in sprites)

    def layout(self, urls: Mapping[str, list[str]] | None = None) -> LayoutDOM:
        """A new bokeh layout of the view (plot, colour selector, details, selection).

        Args:
            urls: ``{"thumb" or "detail:<name>": sheet URLs}``; default: data URIs.
        """
        return layout(self, urls or self._urls(None))

    def html(self, urls: Mapping[str, list[str]] | None = None) -> str:
        """The standalone page: one HTML string with bokeh's JavaScript inlined (no CDN)."""
        if self.renderer == "webgl":
            return _webgl.html(self, urls)
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        return file_html(self.layout(urls), resources=INLINE, title=self.title)

    def save(self, path: str | Path, *, overwrite: bool = False, assets: str = "auto") -> Path:
        """Write the standalone page atomically (and its image folder, if any).

        Args:
            path: Destination ``.html`` file.
            overwrite: Replace an existing page and the sheets of its image folder (only
                files featviz names like sheets; a folder holding anything else is
                refused). An inline page saved over one with a folder deletes those
                sheets, and the folder when nothing else is left in it.
            assets: ``"inline"``: the images are data URIs inside the page (one file);
                ``"folder"``: they are sheet files in ``<page name>_files/`` beside the
                page, which then stays small and opens fast (keep the two together);
                ``"auto"``: a folder when the images exceed `INLINE_LIMIT` bytes.

        Returns:
            ``path`` as a `Path`.

        Raises:
            FileExistsError: ``path`` or its folder exists and ``overwrite`` is False, or
                the folder holds files featviz did not write.
            FileNotFoundError: The folder of ``path`` does not exist.
            NotADirectoryError: With a folder, ``<page name>_files`` is a file.
            OSError: Writing failed; the message names the page or its folder, never a
                temporary file.
            ValueError: ``assets`` is not one of the above.
        """
        if assets not in ("auto", "inline", "folder"):
            raise ValueError(
                "The 'assets' parameter of ExploreView.save must be one of 'auto', 'inline', "
                f"'folder'. Got {assets!r} instead."
            )
        if self.renderer == "webgl":
            return _webgl.save(self, path, overwrite=overwrite, assets=assets)
        path = check_destination(path, overwrite=overwrite)
        folder = assets == "folder" or (assets == "auto" and self.image_bytes > INLINE_LIMIT)
        urls = write_folder(self, path, overwrite) if folder else None
        page = self.html(urls)
        with atomic_path(path, overwrite=overwrite) as tmp:
            tmp.write_text(page, encoding="utf-8")
        if not folder and overwrite:
            remove_folder(path)  # the replaced page's sheets, nothing else
        return path

    def _urls(self, prefix: str | None) -> dict[str, list[str]]:
        """Sheet URLs: data URIs, or ``prefix/<file>`` for a folder."""
        named = sprite_sets(self)
        if prefix is None:
            return {key: sp.data_uris() for key, sp in named.items()}
        return {key: [f"{prefix}/{n}" for n in file_names(self, key)] for key in named}

    def show(self) -> Any:
        """The view live in Jupyter: a widget whose selection lands in `selected`.

        Drawn as the ``"webgl"`` page (regl-scatterplot on a GPU, featviz's canvas drawer
        where WebGL runs in software) for either renderer; the
        thumbnails and click-through images are sent when the page first needs them.
        Needs ``pip install featviz[webgl]`` (anywidget and jupyter-scatter).

        Returns:
            The widget (also kept as ``view.widget``); display it, select points, then
            read ``view.selected`` in the next cell.
        """
        from featviz._explorer_widget import make_widget

        self.widget = make_widget(self)
        return self.widget

    @property
    def selected(self) -> np.ndarray:
        """(k,) int64 indices selected in the live widget (`show`), sorted; empty before."""
        ids = [] if self.widget is None else list(self.widget.selected)
        return np.asarray(ids, dtype=np.int64)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        """A webgl view with anywidget installed: the live widget; else the page (HTML)."""
        import importlib.util

        if self.renderer == "webgl" and importlib.util.find_spec("anywidget") is not None:
            return self.show()._repr_mimebundle_(include=include, exclude=exclude)
        return {"text/html": self._repr_html_()}

    def _repr_html_(self) -> str:
        """The page in an iframe, so notebooks show it without a bokeh setup.

        A webgl view whose images would exceed `featviz._explorer_big.INLINE_PIXELS` is
        shown without them, with a warning (`show` sends them when needed; `save` writes
        them to a folder).
        """
        if self.renderer == "webgl" and _webgl.pixel_bytes(self) > _webgl.INLINE_PIXELS:
            warnings.warn(
                f"The view's {len(self):,} points carry "
                f"{_webgl.pixel_bytes(self) / 2**20:,.0f} MiB of image pixels, too many to "
                "store in the notebook: it is shown without images. view.show() (pip install "
                "anywidget) loads them when hovered; view.save('explore.html') writes them to "
                "a folder beside the page.",
                stacklevel=user_stacklevel(),
            )
            return self._iframe(_webgl.html(self, images=False))
        if self.image_bytes > INLINE_LIMIT:
            warnings.warn(
                f"The view holds {self.image_bytes / 1e6:.0f} MB of images, all stored in the "
                "notebook to show it inline; view.save('explore.html') writes a small page "
                "with the images in a folder beside it.",
                stacklevel=user_stacklevel(),
            )
        return self._iframe(self.html())

    def _iframe(self, page: str) -> str:
        doc = html.escape(page, quote=True)
        return (
            f'<iframe srcdoc="{doc}" style="width:100%;height:{self.height + 260}px;'
            'border:none"></iframe>'
        )


# -- public entry point --------------------------------------------------------------------
def _check_options(thumbnail_size: Any, detail_size: Any, fmt: Any, quality: Any) -> None:
    check_int(thumbnail_size, "thumbnail_size", "explore", 8, 512)
    check_int(detail_size, "detail_size", "explore", 16, 1024)
    if fmt not in FORMATS:
        raise _error("image_format", f"one of {list(FORMATS)}", fmt)
    check_int(quality, "quality", "explore", 1, 100)


@renamed(layer="layers")
def explore(
    points: Any,
    *,
    images: Any = None,
    labels: Any = None,
    predictions: Any = None,
    confidence: Any = None,
    heatmaps: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    layers: str | None = None,
    method: str = "pca",
    random_state: int | None = 0,
    project_kwargs: Mapping[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    thumbnail_size: int = 48,
    detail_size: int = 160,
    image_format: str = "webp",
    quality: int = 80,
    title: str = "featviz explore",
    renderer: str = "auto",
) -> ExploreView:
    """An interactive scatter of a projection with thumbnails, predictions and heatmaps.

    Hover a point to see its thumbnail, index, label, prediction and confidence; colour
    by label, prediction, correct/wrong or confidence (a selector); click a legend entry
    to hide that class; select with the box (active by default) or lasso tool and copy the
    selected indices from the text field; click one point to see a larger image with
    each heatmap overlaid (`featviz.overlay`, ``jet``, alpha 0.4). Points are drawn with
    WebGL. A click on overlapping points selects them all and shows the first.

    Args:
        points: A `Projection` (its ``embedding``'s first two columns and its labels),
            a `FeatureSet` (``layers`` projected with ``method``; its labels, and its
            outputs as logits for the predictions), or an (N, 2) tensor/array.
        images: N images in any form `featviz.overlay` takes: (N, C, H, W) tensor,
            (N, H, W, C) array, (N, H, W) grey, or a list of N PIL images, arrays or
            tensors; C in 1, 3, 4; uint8 0..255 or float 0..1 (any float dtype), or
            standardised, with ``mean`` and ``std`` (given together).
        labels: (N,) true classes: ints (named through ``class_names``) or strings.
            Defaults to the labels of a `Projection`/`FeatureSet`.
        predictions: (N,) predicted classes, or (N, C) float logits (then the
            prediction is the argmax and the confidence its softmax probability).
        confidence: (N,) probabilities in [0, 1] (overrides the one from logits).
        heatmaps: ``{name: (N, h, w) maps}``, e.g. ``{"gradcam": cams}``; needs images.
        class_names: Names of the class indices in ``labels`` and ``predictions``.
        layers: The name of the one `FeatureSet` layer to project (default: its only
            layer).
        method: Projection method for a `FeatureSet`: a name of
            `featviz.projection.METHODS` (``"pca"``, ``"tsne"``, ``"umap"``).
        random_state: Seed of that projection.
        project_kwargs: Further settings of `featviz.project` for that projection
            (``perplexity``, ``pca_dims``, ``engine``, ...); None: its defaults.
        mean: Per-channel mean the images were normalised with.
        std: Per-channel standard deviation the images were normalised with.
        thumbnail_size: Longer side of the hover thumbnails in pixels, in [8, 512].
        detail_size: Longer side of the click-through images, in [16, 1024].
        image_format: Of the sprite sheets: ``"webp"`` (smallest), ``"jpeg"`` or
            ``"png"`` (lossless).
        quality: Encoder quality for WebP/JPEG, in [1, 100].
        title: Plot and page title.
        renderer: ``"bokeh"`` (the page above), ``"webgl"`` (for up to millions of
            points: regl-scatterplot where WebGL has a GPU, featviz's canvas drawer where
            it runs in software; points as binary, thumbnails loaded when hovered; needs
            ``pip install featviz[webgl]``) or ``"auto"``: ``"webgl"`` from
            `featviz._explorer_big.WEBGL_FROM` (100,000) points on.

    Returns:
        An `ExploreView`; ``view.save("explore.html")`` writes the page (and, above
        `INLINE_LIMIT` bytes of images, the folder ``explore_files`` beside it).

    Raises:
        TypeError: An argument has an unsupported type.
        ValueError: Shapes or lengths do not match N, values out of range; the message
            names the parameter.
    """
    _check_options(thumbnail_size, detail_size, image_format, quality)
    _renderer(renderer, 0)  # checked before a FeatureSet is projected
    check_pair(mean, std, func="explore")
    names = _check_class_names(class_names)
    xy, own_labels, outputs = _points(points, layers, method, random_state, project_kwargs)
    n = xy.shape[0]
    data: dict[str, Any] = {"x": xy[:, 0], "y": xy[:, 1], "index": _index(points, n)}
    labels = own_labels if labels is None else labels
    predictions = _outputs_as_logits(outputs) if predictions is None else predictions
    if labels is not None:
        data["label"] = _names(labels, n, "labels", names)
    if predictions is not None:
        data["prediction"], conf = _predictions(predictions, n, names)
        if conf is not None:
            data["confidence"] = conf
    if confidence is not None:
        data["confidence"] = _confidence(confidence, n)
    if "label" in data and "prediction" in data:
        data["correct"] = [
            "correct" if a == b else "wrong"
            for a, b in zip(data["label"], data["prediction"], strict=True)
        ]
    opts: dict[str, Any] = {"thumbnail_size": thumbnail_size, "detail_size": detail_size}
    opts |= {"mean": mean}
    opts |= {"image_format": image_format, "quality": quality, "std": std}
    kind = _renderer(renderer, n)
    source = None
    if kind == "webgl":
        source = _images_sprites(images, heatmaps, n, opts, lazy=True)
        thumbnails, details = None, {}
    else:
        thumbnails, details = _images_sprites(images, heatmaps, n, opts)  # type: ignore[misc]
    if thumbnails is not None:
        where = thumbnails.where(np.arange(n))
        data |= {
            k: v.astype(np.int32)
            for k, v in zip(("thumb_sheet", "thumb_x", "thumb_y"), where, strict=True)
        }
    color_by = [c for c in COLOR_BY if c in data]
    return ExploreView(
        data=data,
        color_by=color_by,
        thumbnails=thumbnails,
        details=details,
        title=title,
        detail_px=detail_size,
        class_names=names,
        renderer=kind,
        source=source,  # type: ignore[arg-type]
    )


def _renderer(renderer: Any, n: int) -> str:
    """``"bokeh"`` or ``"webgl"`` for ``renderer`` and N points."""
    if renderer not in _webgl.RENDERERS:
        raise _error("renderer", f"one of {list(_webgl.RENDERERS)}", renderer)
    if renderer == "auto":
        return "webgl" if n >= _webgl.WEBGL_FROM else "bokeh"
    return str(renderer)


def _index(points: Any, n: int) -> np.ndarray:
    from featviz.extraction import FeatureSet

    if isinstance(points, FeatureSet):
        return np.asarray(points.index, dtype=np.int64)
    return np.arange(n, dtype=np.int64)


def _outputs_as_logits(outputs: Any) -> Any:
    if outputs is None:
        return None
    arr = np.asarray(outputs)
    return arr if arr.ndim == 2 and np.issubdtype(arr.dtype, np.floating) else None
