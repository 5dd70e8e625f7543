"""The page of `featviz.explore`: sprite sheets, the bokeh layout, the image folder.

A private module of the explorer: `explore` validates and ingests its inputs and builds
an `ExploreView`; this module turns them into what the page shows. Thumbnails and the
larger click-through images are resized with one ``torch.nn.functional.interpolate``
call per chunk, heatmaps are blended with `featviz.overlay`, and the results are packed
as tiles into a few sprite sheets (`Sprites`), encoded once per sheet. bokeh is imported
by the functions that need it.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from featviz._images import rgb_float
from featviz._ops import resize
from featviz._palette import class_palette

if TYPE_CHECKING:
    from bokeh.models import LayoutDOM

    from featviz.explorer import ExploreView

__all__ = [
    "FORMATS",
    "SHEET_PX",
    "Sprites",
    "assets_folder",
    "file_names",
    "layout",
    "make_sprites",
    "remove_folder",
    "sprite_sets",
    "write_folder",
]

#: Sprite sheet formats and their MIME types.
FORMATS = {"webp": "image/webp", "jpeg": "image/jpeg", "png": "image/png"}
_CHUNK = 512  # images resized and blended per step
SHEET_PX = 4096  # longest side of a sprite sheet in pixels (WebP allows 16383)
_CORRECT_COLOURS = {"correct": "#2ca02c", "wrong": "#d62728"}


def _fit(h: int, w: int, size: int) -> tuple[int, int]:
    """(h, w) scaled so the longer side is ``size`` (never enlarged)."""
    scale = min(1.0, size / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255 + 0.5).clamp(0, 255).to(torch.uint8)


@dataclass
class Sprites:
    """Images of one kind (all the same size) packed as tiles into a few sheet images.

    Tile ``i`` is in sheet ``i // per_sheet``, at column ``k % per_row`` and row
    ``k // per_row`` of it, ``k = i % per_sheet``. One encoded image per sheet instead of
    one per point: a third fewer bytes for 48 px WebP thumbnails, and encoding runs once
    per sheet.

    Attributes:
        sheets: The encoded sheet images, in order.
        sizes: (width, height) of each sheet in pixels.
        mime: Their MIME type, e.g. ``"image/webp"``.
        tile: (height, width) of every tile in pixels.
        per_row: Tiles per sheet row.
        per_sheet: Tiles per sheet.
    """

    sheets: list[bytes]
    sizes: list[tuple[int, int]]
    mime: str
    tile: tuple[int, int]
    per_row: int
    per_sheet: int

    @property
    def nbytes(self) -> int:
        """Encoded bytes of all sheets."""
        return sum(len(b) for b in self.sheets)

    def where(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sheet, x and y pixel offset of tiles ``i`` (int arrays)."""
        k = i % self.per_sheet
        return (
            i // self.per_sheet,
            (k % self.per_row) * self.tile[1],
            (k // self.per_row) * self.tile[0],
        )

    def data_uris(self) -> list[str]:
        """The sheets as ``data:`` URIs."""
        return [
            f"data:{self.mime};base64," + base64.b64encode(b).decode("ascii") for b in self.sheets
        ]

    def image(self, i: int) -> np.ndarray:
        """Tile ``i`` decoded: RGB uint8 (h, w, 3)."""
        from PIL import Image

        sheet, x, y = (int(v) for v in self.where(np.asarray(i)))
        with Image.open(io.BytesIO(self.sheets[sheet])) as img:
            rgb = np.asarray(img.convert("RGB"))
        h, w = self.tile
        return rgb[y : y + h, x : x + w]


class _Packer:
    """Collects uint8 tiles (n, 3, h, w) in order and encodes a sheet whenever one is full."""

    def __init__(self, tile: tuple[int, int], fmt: str, quality: int) -> None:
        self.tile, self.fmt, self.quality = tile, fmt, quality
        self.per_row = max(1, SHEET_PX // tile[1])
        self.per_sheet = self.per_row * max(1, SHEET_PX // tile[0])
        self.pending: list[torch.Tensor] = []
        self.sheets: list[bytes] = []
        self.sizes: list[tuple[int, int]] = []

    def add(self, tiles: torch.Tensor) -> None:
        self.pending.append(tiles.cpu())
        while sum(len(t) for t in self.pending) >= self.per_sheet:
            self._flush()

    def finish(self) -> Sprites:
        if self.pending:
            self._flush()
        mime = FORMATS[self.fmt]
        return Sprites(self.sheets, self.sizes, mime, self.tile, self.per_row, self.per_sheet)

    def _flush(self) -> None:
        tiles = torch.cat(self.pending)
        take, rest = tiles[: self.per_sheet], tiles[self.per_sheet :]
        self.pending = [rest] if len(rest) else []
        cols = min(self.per_row, len(take))
        rows = math.ceil(len(take) / cols)
        h, w = self.tile
        self.sheets.append(encode_sheet(take, self.per_row, self.fmt, self.quality))
        self.sizes.append((cols * w, rows * h))


def encode_sheet(tiles: torch.Tensor, per_row: int, fmt: str, quality: int) -> bytes:
    """uint8 (n, 3, h, w) tiles as one sheet image, ``per_row`` to a row, row by row.

    The one sheet encoder of both explorer pages; empty cells of the last row are white.
    """
    from PIL import Image

    n, _, h, w = tiles.shape
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    grid = torch.full((rows * cols, 3, h, w), 255, dtype=torch.uint8)
    grid[:n] = tiles
    sheet = grid.view(rows, cols, 3, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, 3)
    buf = io.BytesIO()
    # WebP method 0: a quarter to half the default's (4) encoding time, 2-8% more bytes
    extra = {"method": 0} if fmt == "webp" else {}
    Image.fromarray(sheet.numpy()).save(buf, format=fmt.upper(), quality=quality, **extra)
    return buf.getvalue()


def make_sprites(
    nhwc: torch.Tensor,
    ms: tuple[torch.Tensor, torch.Tensor] | None,
    heatmaps: Mapping[str, torch.Tensor],
    opts: dict[str, Any],
) -> tuple[Sprites, dict[str, Sprites]]:
    """Thumbnails, and the click-through image with each heatmap over it, in one pass.

    Args:
        nhwc: (N, H, W, C) images from `featviz._images.image_batch`.
        ms: Their ``mean``/``std`` from `featviz._images.display_mean_std`, or None.
        heatmaps: ``{name: float32 (N, h, w) maps}``.
        opts: ``thumbnail_size``, ``detail_size``, ``image_format``, ``quality``.
    """
    from featviz.overlays import overlay

    h, w = int(nhwc.shape[1]), int(nhwc.shape[2])
    fmt, q = opts["image_format"], opts["quality"]
    thumbs = _Packer(_fit(h, w, opts["thumbnail_size"]), fmt, q)
    big = _fit(h, w, opts["detail_size"])
    details = {k: _Packer(big, fmt, q) for k in ("image", *heatmaps)}
    for start in range(0, int(nhwc.shape[0]), _CHUNK):
        rows = slice(start, start + _CHUNK)
        x = rgb_float(nhwc[rows], ms, channels_first=True)  # (n, 3, H, W) in [0, 1]
        thumbs.add(_to_uint8(resize(x, thumbs.tile, antialias=True)))
        detail = _to_uint8(resize(x, big, antialias=True))
        details["image"].add(detail)
        for name, maps in heatmaps.items():
            blended = overlay(detail, maps[rows].to(detail.device))
            details[name].add(blended.permute(0, 3, 1, 2))
    return thumbs.finish(), {k: p.finish() for k, p in details.items()}


T = TypeVar("T")
_FILE = re.compile(r"^(thumb|detail\d+)_\d+\.(webp|jpeg|png)$")


def sprite_sets(view: ExploreView) -> dict[str, Sprites]:
    """Every sprite set of the view by key: ``"thumb"``, ``"detail:<name>"``."""
    named = {"thumb": view.thumbnails} if view.thumbnails is not None else {}
    return named | {f"detail:{k}": v for k, v in view.details.items()}


def file_names(view: ExploreView, key: str) -> list[str]:
    """File names of the sheets of ``key`` ("thumb" or "detail:<name>")."""
    sprites = sprite_sets(view)[key]
    stem = "thumb" if key == "thumb" else f"detail{list(view.details).index(key[7:])}"
    ext = sprites.mime.split("/")[1]
    return [f"{stem}_{j}.{ext}" for j in range(len(sprites.sheets))]


def assets_folder(page: Path) -> Path:
    """``<page stem>_files`` beside the page: where its sheets go with ``assets="folder"``."""
    return page.with_name(page.stem + "_files")


def _owned(entry: Path) -> bool:
    """Whether ``entry`` is a sheet a page wrote: a regular file (no link) named like one."""
    return bool(_FILE.match(entry.name)) and entry.is_file() and not entry.is_symlink()


def _survey(folder: Path) -> list[Path]:
    """The sheets in an existing image folder; anything else there is refused.

    Raises:
        NotADirectoryError: ``folder`` is a file, not a folder.
        FileExistsError: It holds entries the page did not write (files, sub-folders, links).
    """
    if not folder.is_dir():
        raise NotADirectoryError(
            f"The 'assets' parameter of ExploreView.save puts the images in {str(folder)!r}, "
            "which is a file. Move that file, save the page under another name, or pass "
            "assets='inline'."
        )
    entries = list(folder.iterdir())
    foreign = sorted(e.name for e in entries if not _owned(e))
    if foreign:
        raise FileExistsError(
            f"{str(folder)!r} holds files featviz did not write ({foreign[:3]}); "
            "move them or save the page under another name."
        )
    return entries


def _remove_owned(folder: Path) -> None:
    """Delete the sheets a page wrote in ``folder``, then the folder if nothing else is left."""
    for entry in folder.iterdir():
        if _owned(entry):
            entry.unlink()
    try:
        folder.rmdir()
    except OSError:  # something else appeared there: it stays, with the folder
        pass


def write_assets(page: Path, overwrite: bool, write: Callable[[Path], T]) -> T:
    """Write a page's image folder ``<page stem>_files`` all or nothing, through ``write``.

    The one folder writer of both explorer pages. ``write(tmp)`` puts the sheets into a
    temporary folder beside the page (one file at a time, so a page of a million images
    never holds them all) and returns what the page needs (its URLs); the folder then
    replaces ``<page stem>_files``. An existing folder is replaced only with ``overwrite``
    and only when it holds nothing but sheets (`_owned`); just those are deleted, and
    anything else there is refused before a byte is written. Errors name the folder, never
    the temporary one.

    Raises:
        FileExistsError: The folder exists and ``overwrite`` is False, or it holds entries
            the page did not write.
        NotADirectoryError: ``<page stem>_files`` is a file.
    """
    import secrets
    import tempfile

    from featviz._io import write_error

    folder = assets_folder(page)
    if os.path.lexists(folder):
        if folder.is_dir() and not overwrite:
            raise FileExistsError(
                f"The image folder {str(folder)!r} of the page exists; pass overwrite=True "
                "to replace it."
            )
        _survey(folder)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=page.parent, prefix=f".{folder.name}."))
        result = write(tmp)
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.old")
            folder.rename(old)
        try:
            tmp.rename(folder)
        except OSError:
            if old is not None:
                old.rename(folder)  # the earlier sheets back in place
            raise
        tmp = None
        if old is not None:
            _remove_owned(old)
    except OSError as exc:
        raise write_error(exc, folder) from None
    finally:
        if tmp is not None:
            _remove_owned(tmp)
    return result


def write_folder(view: ExploreView, page: Path, overwrite: bool) -> dict[str, list[str]]:
    """The bokeh page's sheets into ``<page stem>_files`` (`write_assets`); their URLs."""
    from urllib.parse import quote

    def write(tmp: Path) -> dict[str, list[str]]:
        for key, sprites in sprite_sets(view).items():
            for name, data in zip(file_names(view, key), sprites.sheets, strict=True):
                (tmp / name).write_bytes(data)
        return view._urls(quote(assets_folder(page).name))

    return write_assets(page, overwrite, write)


def remove_folder(page: Path) -> None:
    """After an inline save over ``page``: delete its old image folder's sheets (only those)."""
    folder = assets_folder(page)
    if folder.is_dir() and not folder.is_symlink():
        _remove_owned(folder)


# -- the bokeh page ------------------------------------------------------------------------
def _colours(view: ExploreView, name: str) -> dict[str, str]:
    """``{class: colour}`` of column ``name``, in legend order.

    Labels and predictions share one palette keyed by class index (`class_palette`), so
    a class has the same colour in both colourings and in the library's figures.
    """
    values = view.data[name]
    if name == "correct":
        return {f: c for f, c in _CORRECT_COLOURS.items() if f in set(values)}
    every = [v for col in ("label", "prediction") if col in view.data for v in view.data[col]]
    palette = class_palette(every, view.class_names)
    present = set(values)
    return {str(v): c for v, c in palette.items() if v in present}


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
    renderers, items = [], []
    for factor, fill in _colours(view, name).items():
        only = CDSView(filter=GroupFilter(column_name=name, group=factor))
        r = fig.scatter("x", "y", source=source, view=only, fill_color=fill, **style)
        renderers.append(r)
        items.append(LegendItem(label=factor, renderers=[r]))
    legend = Legend(items=items, click_policy="hide", title=name, visible=False)
    return renderers, legend


#: Points listed in the hover box: the nearest ones to the cursor, then "+N more".
HOVER_MAX = 4

# The hover box: bokeh's own tooltip lists every point under the cursor (39 thumbnails in
# a dense spot of 20,000 points) and may leave the plot. This one gathers the hits of
# every shown renderer once per pointer move, lists the HOVER_MAX nearest on screen with
# "+N more", and is kept inside the plot frame.
_HOVER_JS = """
const g = cb_data.geometry;
const state = (cb_obj._featviz_hover ??= {key: null, box: null});
const key = `${g.sx},${g.sy}`;
if (state.key === key) return;  // one call per renderer and move: draw once
state.key = key;
const pv = Bokeh.index.get_one(plot);
if (state.box == null) {
  state.box = document.createElement("div");
  state.box.className = "featviz-hover";
  state.box.style.cssText = "position:absolute;z-index:1000;display:none;overflow:hidden;"
    + "background:#fff;border:1px solid #aaa;border-radius:4px;padding:4px 6px;"
    + "box-shadow:0 2px 6px rgba(0,0,0,.25);pointer-events:none;font:12px sans-serif";
  document.body.appendChild(state.box);
  pv.canvas_view.el.addEventListener("mouseleave", () => { state.box.style.display = "none"; });
}
const box = state.box;
const d = source.data;
const hits = new Set();
for (const r of cb_obj.renderers) {
  if (!r.visible) continue;
  const sel = r.get_selection_manager().inspectors.get(r);
  if (sel != null) for (const i of sel.indices) hits.add(i);
}
if (hits.size === 0) { box.style.display = "none"; return; }
const xs = pv.frame.x_scale, ys = pv.frame.y_scale;
const dist = (i) => Math.hypot(xs.compute(d.x[i]) - g.sx, ys.compute(d.y[i]) - g.sy);
const near = [...hits].sort((a, b) => dist(a) - dist(b) || a - b).slice(0, limit);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
let html = "";
for (const i of near) {
  const rows = [`<b>#${d.index[i]}</b>`];
  for (const col of ["label", "prediction", "confidence"]) {
    if (!(col in d)) continue;
    rows.push(`${col}: ${esc(col === "confidence" ? d[col][i].toFixed(3) : d[col][i])}`);
  }
  const img = tile == null ? "" : `<div class="featviz-thumb" style="width:${tile[1]}px;`
    + `height:${tile[0]}px;flex:none;margin-right:6px;background:url('${urls[d.thumb_sheet[i]]}')`
    + ` -${d.thumb_x[i]}px -${d.thumb_y[i]}px"></div>`;
  html += '<div class="featviz-tip" style="display:flex;align-items:center;margin:2px 0">'
    + `${img}<div>${rows.join("<br>")}</div></div>`;
}
if (hits.size > near.length) {
  html += `<div class="featviz-more" style="color:#555">+${hits.size - near.length} more</div>`;
}
box.innerHTML = html;
box.style.display = "block";
// inside the plot frame: right of and below the cursor, flipped where it would leave it
const c = pv.canvas_view.el.getBoundingClientRect(), f = pv.frame.bbox;
box.style.maxHeight = `${f.height}px`;
box.style.maxWidth = `${f.width}px`;
const w = box.offsetWidth, h = box.offsetHeight;
let left = g.sx + 12, top = g.sy + 12;
if (left + w > f.right) left = g.sx - 12 - w;
if (top + h > f.bottom) top = g.sy - 12 - h;
left = Math.max(f.left, Math.min(left, f.right - w));
top = Math.max(f.top, Math.min(top, f.bottom - h));
box.style.left = `${c.left + window.scrollX + left}px`;
box.style.top = `${c.top + window.scrollY + top}px`;
"""


def _hover(view: ExploreView, fig: Any, source: Any, thumb_urls: list[str], shown: list) -> Any:
    """The hover tool: no bokeh tooltip, the `_HOVER_JS` box instead."""
    from bokeh.models import CustomJS, HoverTool

    tile = list(view.thumbnails.tile) if view.thumbnails is not None else None
    args = {"plot": fig, "source": source, "urls": thumb_urls, "tile": tile, "limit": HOVER_MAX}
    return HoverTool(tooltips=None, renderers=shown, callback=CustomJS(args=args, code=_HOVER_JS))


def _geometry(sprites: Sprites, urls: list[str]) -> dict[str, Any]:
    """What the click handler needs to cut tiles out of the sheets."""
    return {
        "urls": urls,
        "tile": list(sprites.tile),
        "per_row": sprites.per_row,
        "per_sheet": sprites.per_sheet,
        "sizes": [list(s) for s in sprites.sizes],
    }


_SELECT_JS = """
const d = source.data;
const idx = source.selected.indices;
const ids = idx.map((i) => d.index[i]).sort((a, b) => a - b);
text.value = ids.join(", ");
count.text = `${ids.length} selected` + (ids.length ? " (indices below)" : "");
if (idx.length === 0) { detail.text = ""; return; }
// details of one point: the clicked one (a click on overlapping points: the first)
const i = idx.reduce((a, b) => (d.index[b] < d.index[a] ? b : a));
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
let out = `<b>#${d.index[i]}</b>` + (idx.length > 1 ? ` (first of ${idx.length})` : "");
for (const col of ["label", "prediction", "confidence"]) {
  if (!(col in d)) continue;
  const value = col === "confidence" ? d[col][i].toFixed(3) : d[col][i];
  out += ` &nbsp;${col}: ${esc(value)}`;
}
out += '<div style="display:flex;flex-wrap:wrap;gap:6px">';
for (const [name, g] of Object.entries(details)) {
  // tile i of the sheets, scaled so its longer side is px
  const s = Math.floor(i / g.per_sheet), k = i % g.per_sheet;
  const [h, w] = g.tile, [sw, sh] = g.sizes[s], f = px / Math.max(h, w);
  const x = (k % g.per_row) * w * f, y = Math.floor(k / g.per_row) * h * f;
  const bg = `url('${g.urls[s]}') -${x}px -${y}px / ${sw * f}px ${sh * f}px`;
  out += `<figure style="margin:0"><div class="featviz-detail" data-name="${esc(name)}"`
       + ` style="width:${w * f}px;height:${h * f}px;background:${bg};`
       + 'image-rendering:pixelated"></div>'  // enlarged small images: no bleed from neighbours
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


def _plot(
    view: ExploreView, source: Any, thumb_urls: list[str]
) -> tuple[Any, dict[str, list[Any]], dict[str, Any]]:
    """The WebGL figure with one set of renderers (and a legend) per colouring."""
    from bokeh.models import (
        BoxSelectTool,
        CustomJS,
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
        _hover(view, fig, source, thumb_urls, shown),
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


def layout(view: ExploreView, urls: Mapping[str, list[str]]) -> LayoutDOM:
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, CustomJS
    from bokeh.models.widgets import Button, Div, Select, TextAreaInput

    source = ColumnDataSource(data=dict(view.data), name="featviz_points")
    fig, groups, keys = _plot(view, source, urls.get("thumb", []))
    text = TextAreaInput(
        title="Selected indices (copy):",
        value="",
        rows=3,
        width=view.width,
        name="featviz_selected",
    )
    count = Div(text="0 selected", name="featviz_count")
    detail_width = max(260, (view.detail_px + 8) * len(view.details))
    detail = Div(text="", width=detail_width, name="featviz_detail")
    details = {k: _geometry(sp, urls[f"detail:{k}"]) for k, sp in view.details.items()}
    args: dict[str, Any] = {"source": source, "text": text, "count": count, "detail": detail}
    args |= {"details": details, "px": view.detail_px}
    source.selected.js_on_change("indices", CustomJS(args=args, code=_SELECT_JS))
    options: list[str | tuple[Any, str]] = list(groups)
    select = Select(title="Colour by", value=options[0], options=options, name="featviz_color_by")
    select.js_on_change("value", CustomJS(args={"groups": groups, "keys": keys}, code=_COLOR_JS))
    copy = Button(label="Copy indices", width=120)
    copy.js_on_event("button_click", CustomJS(args={"text": text}, code=_COPY_JS))
    return column(row(select, count), row(fig, detail), row(text, copy))
