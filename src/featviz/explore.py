"""An interactive view of a projection: hover thumbnails, colour by class, select, click for CAMs.

`explore` turns 2-D points (a `Projection`, a `FeatureSet` projected on the fly, or a
plain (N, 2) array) plus optional images, labels, predictions and heatmaps into an
`ExploreView`: a bokeh page (WebGL scatter) that displays inline in Jupyter and saves as
one standalone HTML file with bokeh's JavaScript inlined, so it opens offline.

Everything the page shows is prepared in Python, in batches: thumbnails and the larger
click-through images are resized with one ``torch.nn.functional.interpolate`` call per
chunk, heatmaps are blended with `featviz.overlay`, and only the final encoding to
WebP/JPEG runs per image. bokeh is imported by the functions that need it, never by
``import featviz``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from featviz._io import atomic_path

if TYPE_CHECKING:
    from bokeh.models import LayoutDOM

__all__ = ["COLOR_BY", "ExploreView", "explore"]

#: The colourings the page offers, in this order, when their data is given.
COLOR_BY = ("label", "prediction", "correct", "confidence")

_FORMATS = {"webp": "image/webp", "jpeg": "image/jpeg", "png": "image/png"}
_CHUNK = 512  # images resized and blended per step
_CORRECT_COLOURS = {"correct": "#2ca02c", "wrong": "#d62728"}


# -- errors --------------------------------------------------------------------------------
def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    text = repr(value)
    return text if len(text) <= 60 else f"{type(value).__name__} of length {_len(value)}"


def _len(value: Any) -> str:
    try:
        return str(len(value))
    except TypeError:
        return "?"


def _error(name: str, expected: str, value: Any, fix: str = "") -> ValueError:
    hint = f" {fix}" if fix else ""
    return ValueError(
        f"The {name!r} parameter of explore must be {expected}. Got {_describe(value)} instead."
        + hint
    )


def _type_error(name: str, expected: str, value: Any) -> TypeError:
    return TypeError(
        f"The {name!r} parameter of explore must be {expected}. Got {type(value).__name__} instead."
    )


def _array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    raise _type_error(name, "a tensor, numpy array, list or tuple", value)


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        top = "inf)" if high is None else f"{high}]"
        raise _error(name, f"an int in the range [{low}, {top}", value)
    return int(value)


# -- points --------------------------------------------------------------------------------
def _projection_fields(proj: Any) -> tuple[np.ndarray, Any]:
    """The embedding and labels of a `Projection` (the one place that reads its fields)."""
    return np.asarray(proj.embedding_), proj.labels


def _feature_set_points(
    fs: Any, layer: str | None, method: str, random_state: int | None
) -> tuple[np.ndarray, Any, Any]:
    from featviz.projection import project

    if layer is None:
        if len(fs.layers) != 1:
            raise _error(
                "layer",
                f"one of {list(fs.layers)} for a FeatureSet with {len(fs.layers)} layers",
                layer,
            )
        layer = next(iter(fs.layers))
    if layer not in fs.layers:
        raise _error("layer", f"one of the FeatureSet's layers {list(fs.layers)}", layer)
    if method not in ("pca", "tsne", "umap"):
        raise _error("method", "one of 'pca', 'tsne', 'umap'", method)
    proj = project(
        np.asarray(fs[layer]), method=method, random_state=random_state, progress=False, score=False
    )
    emb, _ = _projection_fields(proj)
    return emb, fs.labels, fs.outputs


def _points(
    points: Any, layer: str | None, method: str, random_state: int | None
) -> tuple[np.ndarray, Any, Any]:
    """(N, 2) float64 points plus the labels and model outputs that came with them."""
    from featviz.extraction import FeatureSet
    from featviz.projection import Projection

    labels = outputs = None
    if isinstance(points, Projection):
        xy, labels = _projection_fields(points)
    elif isinstance(points, FeatureSet):
        xy, labels, outputs = _feature_set_points(points, layer, method, random_state)
    elif isinstance(points, (torch.Tensor, np.ndarray, list, tuple)):
        xy = _array(points, "points")
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
    """(N,) labels (ints, bools or strings) as display strings, through ``class_names``."""
    arr = _array(values, name)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise _error(name, f"a 1-D sequence of length N={n}, one per point", arr)
    if class_names is not None and np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() >= len(class_names)):
            raise _error(
                name,
                f"class indices in [0, {len(class_names) - 1}] (class_names has "
                f"{len(class_names)} entries)",
                values,
                f"Its values span [{arr.min()}, {arr.max()}].",
            )
        table = np.asarray([str(c) for c in class_names], dtype=object)
        return list(table[arr])
    return [str(v) for v in arr.tolist()]


def _predictions(
    predictions: Any, n: int, class_names: Sequence[str] | None
) -> tuple[list[str], np.ndarray | None]:
    """Predicted names and, for (N, C) logits, the softmax probability of the top class."""
    arr = _array(predictions, "predictions")
    if arr.ndim == 2 and arr.shape[0] == n and np.issubdtype(arr.dtype, np.floating):
        logits = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
        conf, top = torch.softmax(logits, dim=1).max(dim=1)
        return _names(top.numpy(), n, "predictions", class_names), conf.numpy()
    if arr.ndim != 1:
        raise _error("predictions", f"(N,) classes or (N, C) float logits with N={n}", arr)
    return _names(arr, n, "predictions", class_names), None


def _confidence(confidence: Any, n: int) -> np.ndarray:
    arr = _array(confidence, "confidence")
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.number):
        raise _error("confidence", f"numbers of shape ({n},)", arr)
    arr = arr.astype(np.float64)
    if not (np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1):
        raise _error("confidence", "probabilities in [0, 1]", arr)
    return arr


def _check_class_names(class_names: Any) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise _type_error("class_names", "a sequence of strings (one per class)", class_names)
    return [str(c) for c in class_names]


# -- images --------------------------------------------------------------------------------
def _image_tensor(images: Any, n: int) -> torch.Tensor:
    """Images as a channel-first (N, C, H, W) tensor, C in (1, 3, 4); not yet scaled."""
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
            raise _error("images", "a channel-last (N, H, W) or (N, H, W, C) array", images)
        t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    elif isinstance(images, torch.Tensor):
        t = images.detach()
        if t.ndim == 3:
            t = t[:, None]
        if t.ndim != 4 or t.shape[1] not in (1, 3, 4):
            raise _error("images", "a channel-first (N, H, W) or (N, C, H, W) tensor", images)
    else:
        raise _type_error("images", "a tensor (N, C, H, W) or numpy array (N, H, W, C)", images)
    if t.shape[0] != n:
        raise _error("images", f"a batch of N={n} images, one per point", images)
    if t.dtype != torch.uint8 and not t.is_floating_point():
        raise _error("images", "uint8 (0..255) or float (0..1) images", images)
    return t


def _to_unit_rgb(chunk: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """(n, C, H, W) uint8/float chunk -> float32 RGB in [0, 1] (alpha onto white)."""
    x = chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk.float()
    if mean is not None:
        m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = x * s + m
    if x.shape[1] == 4:
        x = x[:, :3] * x[:, 3:] + (1 - x[:, 3:])
    elif x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.clamp(0, 1)


def _fit(h: int, w: int, size: int) -> tuple[int, int]:
    """(h, w) scaled so the longer side is ``size`` (never enlarged)."""
    scale = min(1.0, size / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resized(
    images: torch.Tensor, size: int, mean: Any, std: Any
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(rows, uint8 (n, 3, h, w))`` chunks resized with one interpolate call each."""
    hw = _fit(images.shape[2], images.shape[3], size)
    for start in range(0, images.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        x = _to_unit_rgb(images[rows], mean, std)
        if tuple(x.shape[2:]) != hw:
            x = F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False)
        yield rows, (x * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def _encode(batch: torch.Tensor, fmt: str, quality: int) -> list[str]:
    """(n, H, W, 3) uint8 -> data URIs; the only per-image step, spread over threads."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    # WebP method 0: half the encoding time of the default (4) for ~4% more bytes here
    options: dict[str, Any] = {"quality": quality} | ({"method": 0} if fmt == "webp" else {})
    prefix = f"data:{_FORMATS[fmt]};base64,"

    def one(img: np.ndarray) -> str:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt.upper(), **options)
        return prefix + base64.b64encode(buf.getvalue()).decode("ascii")

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(one, batch.cpu().numpy()))


def _heatmap_tensor(name: str, maps: Any, n: int) -> torch.Tensor:
    t = torch.as_tensor(_array(maps, f"heatmaps[{name!r}]"))
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3 or t.shape[0] != n:
        raise ValueError(
            f"The 'heatmaps' parameter of explore must map names to (N, h, w) maps with "
            f"N={n}. Got {_describe(t)} for {name!r} instead."
        )
    return t


def _thumbnails(
    images: torch.Tensor, size: int, fmt: str, quality: int, mean: Any, std: Any
) -> list[str]:
    thumbs: list[str] = []
    for _, chunk in _resized(images, size, mean, std):
        thumbs += _encode(chunk.permute(0, 2, 3, 1), fmt, quality)
    return thumbs


def _details(
    images: torch.Tensor,
    heatmaps: Mapping[str, torch.Tensor],
    size: int,
    fmt: str,
    quality: int,
    mean: Any,
    std: Any,
) -> dict[str, list[str]]:
    """Click-through images: the image and each heatmap overlaid on it, batched per chunk."""
    from featviz.featuremaps import overlay

    out: dict[str, list[str]] = {"image": [], **{k: [] for k in heatmaps}}
    for rows, chunk in _resized(images, size, mean, std):
        out["image"] += _encode(chunk.permute(0, 2, 3, 1), fmt, quality)
        for name, maps in heatmaps.items():
            blended = overlay(chunk, maps[rows].to(chunk.device).float())
            out[name] += _encode(blended, fmt, quality)
    return out


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
            ``confidence``, ``thumb`` (data URI), ``detail_image`` and
            ``detail_<heatmap name>`` (data URIs of the click-through images).
        color_by: The colourings offered, first one shown (a subset of `COLOR_BY`).
        heatmap_names: Names of the heatmaps, in the order shown on click.
        title: Title of the plot and page.
        width: Plot width in pixels.
        height: Plot height in pixels.
        detail_px: Display width of the click-through images in pixels.
    """

    data: dict[str, Any]
    color_by: list[str]
    heatmap_names: list[str] = field(default_factory=list)
    title: str = "featviz explore"
    width: int = 720
    height: int = 600
    detail_px: int = 160

    def __len__(self) -> int:
        return len(self.data["x"])

    def __repr__(self) -> str:
        return (
            f"ExploreView(n={len(self)}, color_by={self.color_by}, "
            f"heatmaps={self.heatmap_names}, thumbnails={'thumb' in self.data})"
        )

    def layout(self) -> LayoutDOM:
        """A new bokeh layout of the view (plot, colour selector, details, selection)."""
        return _layout(self)

    def html(self) -> str:
        """The standalone page: one HTML string with bokeh's JavaScript inlined (no CDN)."""
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        return file_html(self.layout(), resources=INLINE, title=self.title)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the standalone page atomically.

        Args:
            path: Destination ``.html`` file.
            overwrite: Replace an existing file.

        Returns:
            ``path`` as a `Path`.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
            FileNotFoundError: The folder of ``path`` does not exist.
        """
        page = self.html()
        with atomic_path(path, overwrite=overwrite) as tmp:
            tmp.write_text(page, encoding="utf-8")
        return Path(path)

    def _repr_html_(self) -> str:
        """The page in a sandbox-free iframe, so notebooks show it without a bokeh setup."""
        doc = html.escape(self.html(), quote=True)
        return (
            f'<iframe srcdoc="{doc}" style="width:100%;height:{self.height + 260}px;'
            'border:none"></iframe>'
        )


# -- the bokeh page ------------------------------------------------------------------------
def _palette(k: int) -> list[str]:
    from bokeh.palettes import Category10, Category20, Turbo256

    if k <= 10:
        return list(Category10[10][:k])
    if k <= 20:
        return list(Category20[20][:k])
    return [Turbo256[round(i * 255 / (k - 1))] for i in range(k)]


def _factors(values: Sequence[str], name: str) -> list[str]:
    if name == "correct":
        return [f for f in ("correct", "wrong") if f in set(values)]
    uniq = sorted(set(values), key=lambda s: (not s.lstrip("-").isdigit(), _num(s), s))
    return uniq


def _num(s: str) -> int:
    return int(s) if s.lstrip("-").isdigit() else 0


def _marker_size(n: int) -> float:
    return float(np.clip(12 - 2 * math.log10(max(n, 1)), 3, 9))


def _group_renderers(fig: Any, source: Any, view: ExploreView, name: str) -> tuple[list, Any]:
    """One scatter renderer per class of column ``name`` and their legend (click hides)."""
    from bokeh.models import CDSView, GroupFilter, LinearColorMapper
    from bokeh.models.annotations import ColorBar, Legend, LegendItem
    from bokeh.palettes import Viridis256

    style: dict[str, Any] = {"size": _marker_size(len(view)), "line_color": None}
    style |= {"fill_alpha": 0.8}
    style |= {"nonselection_fill_alpha": 0.15, "selection_line_color": "black"}
    if name == "confidence":
        mapper = LinearColorMapper(palette=Viridis256, low=0.0, high=1.0)
        colour = {"field": name, "transform": mapper}
        r = fig.scatter("x", "y", source=source, fill_color=colour, **style)
        bar = ColorBar(color_mapper=mapper, title="confidence", visible=False)
        return [r], bar
    factors = _factors(view.data[name], name)
    colours = (
        [_CORRECT_COLOURS[f] for f in factors] if name == "correct" else _palette(len(factors))
    )
    renderers, items = [], []
    for factor, fill in zip(factors, colours, strict=True):
        only = CDSView(filter=GroupFilter(column_name=name, group=factor))
        r = fig.scatter("x", "y", source=source, view=only, fill_color=fill, **style)
        renderers.append(r)
        items.append(LegendItem(label=factor, renderers=[r]))
    legend = Legend(items=items, click_policy="hide", title=name, visible=False)
    return renderers, legend


def _tooltip(view: ExploreView) -> str:
    rows = ["<b>#@index</b>"]
    for col, fmt in (("label", ""), ("prediction", ""), ("confidence", "{0.000}")):
        if col in view.data:
            rows.append(f"{col}: @{col}{fmt}")
    img = (
        '<img src="@thumb" style="display:block;margin-right:6px">' if "thumb" in view.data else ""
    )
    return (
        f'<div class="featviz-tip" style="display:flex;align-items:center">{img}'
        f'<div style="font-size:12px">{"<br>".join(rows)}</div></div>'
    )


_SELECT_JS = """
const d = source.data;
const idx = source.selected.indices;
const ids = idx.map((i) => d.index[i]).sort((a, b) => a - b);
text.value = ids.join(", ");
count.text = `${ids.length} selected` + (ids.length ? " (indices below)" : "");
if (idx.length !== 1) { detail.text = ""; return; }
const i = idx[0];
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
let out = `<b>#${d.index[i]}</b>`;
for (const col of ["label", "prediction", "confidence"]) {
  if (!(col in d)) continue;
  const value = col === "confidence" ? d[col][i].toFixed(3) : d[col][i];
  out += ` &nbsp;${col}: ${esc(value)}`;
}
out += '<div style="display:flex;flex-wrap:wrap;gap:6px">';
for (const name of names) {
  out += `<figure style="margin:0"><img src="${d["detail_" + name][i]}" style="width:${px}px">`
       + `<figcaption>${esc(name)}</figcaption></figure>`;
}
detail.text = out + "</div>";
"""

_COLOR_JS = """
for (const [name, rs] of Object.entries(groups)) {
  const on = name === this.value;
  for (const r of rs) r.visible = on;
  keys[name].visible = on;
}
"""

_SYNC_JS = """
// hidden renderers (other colourings, classes hidden in the legend) take no hover or selection
const shown = renderers.filter((r) => r.visible);
for (const tool of tools) tool.renderers = shown;
"""

_COPY_JS = "navigator.clipboard.writeText(text.value).catch(() => {});"


def _plot(view: ExploreView, source: Any) -> tuple[Any, dict[str, list[Any]], dict[str, Any]]:
    """The WebGL figure with one set of renderers (and a legend) per colouring."""
    from bokeh.models import (
        BoxSelectTool,
        CustomJS,
        HoverTool,
        LassoSelectTool,
        TapTool,
    )
    from bokeh.models.widgets import Div
    from bokeh.plotting import figure

    fig = figure(
        title=view.title,
        width=view.width,
        height=view.height,
        output_backend="webgl",
        tools="pan,wheel_zoom,reset",
        active_scroll="wheel_zoom",
        name="featviz_plot",
    )
    groups: dict[str, list[Any]] = {}
    keys: dict[str, Any] = {}
    for name in view.color_by or ["all"]:
        if name == "all":
            groups[name] = [fig.scatter("x", "y", source=source, size=_marker_size(len(view)))]
            keys[name] = Div(visible=False)
            continue
        groups[name], keys[name] = _group_renderers(fig, source, view, name)
        fig.add_layout(keys[name], "right")
    first = next(iter(groups))
    keys[first].visible = True
    for name, renderers in groups.items():
        for r in renderers:
            r.visible = name == first
    every = [r for renderers in groups.values() for r in renderers]
    shown = groups[first]
    box = BoxSelectTool(renderers=shown)  # active: selecting is what the view is for
    tools = [
        HoverTool(tooltips=_tooltip(view), renderers=shown),
        TapTool(mode="replace", renderers=shown),  # the default "toggle" unselects on a click
        box,
        LassoSelectTool(renderers=shown),
    ]
    fig.add_tools(*tools)
    fig.toolbar.active_drag = box
    sync = CustomJS(args={"renderers": every, "tools": tools}, code=_SYNC_JS)
    for r in every:
        r.js_on_change("visible", sync)
    return fig, groups, keys


def _layout(view: ExploreView) -> LayoutDOM:
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, CustomJS
    from bokeh.models.widgets import Button, Div, Select, TextAreaInput

    source = ColumnDataSource(data=dict(view.data), name="featviz_points")
    fig, groups, keys = _plot(view, source)
    text = TextAreaInput(
        title="Selected indices (copy):",
        value="",
        rows=3,
        width=view.width,
        name="featviz_selected",
    )
    count = Div(text="0 selected", name="featviz_count")
    detail_width = (view.detail_px + 8) * (1 + len(view.heatmap_names))
    detail = Div(text="", width=detail_width, name="featviz_detail")
    names = ["image", *view.heatmap_names] if "detail_image" in view.data else []
    args: dict[str, Any] = {"source": source, "text": text, "count": count, "detail": detail}
    args |= {"names": names, "px": view.detail_px}
    source.selected.js_on_change("indices", CustomJS(args=args, code=_SELECT_JS))
    options: list[str | tuple[Any, str]] = list(groups)
    select = Select(title="Colour by", value=options[0], options=options, name="featviz_color_by")
    select.js_on_change("value", CustomJS(args={"groups": groups, "keys": keys}, code=_COLOR_JS))
    copy = Button(label="Copy indices", width=120)
    copy.js_on_event("button_click", CustomJS(args={"text": text}, code=_COPY_JS))
    return column(row(select, count), row(fig, detail), row(text, copy))


# -- public entry point --------------------------------------------------------------------
def _check_options(thumbnail_size: Any, detail_size: Any, fmt: Any, quality: Any) -> None:
    _check_int(thumbnail_size, "thumbnail_size", 8, 512)
    _check_int(detail_size, "detail_size", 16, 1024)
    if fmt not in _FORMATS:
        raise _error("image_format", f"one of {list(_FORMATS)}", fmt)
    _check_int(quality, "quality", 1, 100)


def _check_mean_std(mean: Any, std: Any) -> None:
    if (mean is None) != (std is None):
        raise _error("std" if std is None else "mean", "given together with the other", None)


def _images_columns(
    images: Any, heatmaps: Any, n: int, opts: dict[str, Any]
) -> tuple[dict[str, list[str]], list[str]]:
    """Thumbnail and click-through columns (data URIs) from the images and heatmaps."""
    if heatmaps is not None and not isinstance(heatmaps, Mapping):
        expected = 'a mapping of names to (N, h, w) maps, e.g. {"gradcam": m}'
        raise _type_error("heatmaps", expected, heatmaps)
    if images is None:
        if heatmaps:
            raise _error("images", "given when 'heatmaps' is (the maps are drawn on them)", None)
        return {}, []
    imgs = _image_tensor(images, n)
    maps = {str(k): _heatmap_tensor(str(k), v, n) for k, v in (heatmaps or {}).items()}
    fmt, q, mean, std = opts["image_format"], opts["quality"], opts["mean"], opts["std"]
    cols = {"thumb": _thumbnails(imgs, opts["thumbnail_size"], fmt, q, mean, std)}
    details = _details(imgs, maps, opts["detail_size"], fmt, q, mean, std)
    cols |= {f"detail_{k}": v for k, v in details.items()}
    return cols, list(maps)


def explore(
    points: Any,
    *,
    images: Any = None,
    labels: Any = None,
    predictions: Any = None,
    confidence: Any = None,
    heatmaps: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    layer: str | None = None,
    method: str = "pca",
    random_state: int | None = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    thumbnail_size: int = 48,
    detail_size: int = 160,
    image_format: str = "webp",
    quality: int = 80,
    title: str = "featviz explore",
) -> ExploreView:
    """An interactive scatter of a projection with thumbnails, predictions and heatmaps.

    Hover a point to see its thumbnail, index, label, prediction and confidence; colour
    by label, prediction, correct/wrong or confidence (a selector); click a legend entry
    to hide that class; select with the box (active by default) or lasso tool and copy the
    selected indices from the text field; click one point to see a larger image with
    each heatmap overlaid (`featviz.overlay`, ``jet``, alpha 0.4). Points are drawn with
    WebGL.

    Args:
        points: A `Projection` (its ``embedding_``'s first two columns and its labels),
            a `FeatureSet` (``layer`` projected with ``method``; its labels, and its
            outputs as logits for the predictions), or an (N, 2) tensor/array.
        images: (N, C, H, W) tensor or (N, H, W, C) array (C in 1, 3, 4; also (N, H, W)),
            uint8 0..255 or float 0..1 (or normalised, with ``mean`` and ``std``).
        labels: (N,) true classes: ints (named through ``class_names``) or strings.
            Defaults to the labels of a `Projection`/`FeatureSet`.
        predictions: (N,) predicted classes, or (N, C) float logits (then the
            prediction is the argmax and the confidence its softmax probability).
        confidence: (N,) probabilities in [0, 1] (overrides the one from logits).
        heatmaps: ``{name: (N, h, w) maps}``, e.g. ``{"gradcam": cams}``; needs images.
        class_names: Names of the class indices in ``labels`` and ``predictions``.
        layer: The `FeatureSet` layer to project (default: its only layer).
        method: Projection method for a `FeatureSet`: ``"pca"``, ``"tsne"``, ``"umap"``.
        random_state: Seed of that projection.
        mean: Per-channel mean the images were normalised with.
        std: Per-channel standard deviation the images were normalised with.
        thumbnail_size: Longer side of the hover thumbnails in pixels, in [8, 512].
        detail_size: Longer side of the click-through images, in [16, 1024].
        image_format: ``"webp"`` (smallest), ``"jpeg"`` or ``"png"`` (lossless).
        quality: Encoder quality for WebP/JPEG, in [1, 100].
        title: Plot and page title.

    Returns:
        An `ExploreView`; ``view.save("explore.html")`` writes the page.

    Raises:
        TypeError: An argument has an unsupported type.
        ValueError: Shapes or lengths do not match N, values out of range; the message
            names the parameter.
    """
    _check_options(thumbnail_size, detail_size, image_format, quality)
    _check_mean_std(mean, std)
    names = _check_class_names(class_names)
    xy, own_labels, outputs = _points(points, layer, method, random_state)
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
    columns, heat_names = _images_columns(images, heatmaps, n, opts)
    data |= columns
    color_by = [c for c in COLOR_BY if c in data]
    return ExploreView(
        data=data, color_by=color_by, heatmap_names=heat_names, title=title, detail_px=detail_size
    )


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


class _CallableModule(types.ModuleType):
    """This module, callable as `explore`.

    ``import featviz.explore`` binds the package attribute ``featviz.explore`` to this
    module (the import system does that after loading a submodule), which would hide the
    lazily exported function of the same name. Calling the module calls the function, so
    ``featviz.explore(points, ...)`` works whichever was imported first.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> ExploreView:
        return explore(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
