"""The large-set page of `featviz.explore`: binary points, streamed sheets, two drawers.

A private module of the explorer, used when ``explore(..., renderer="webgl")`` (or
``"auto"`` above `WEBGL_FROM` points). bokeh's WebGL backend took 24 s to first render
and 20 s per redraw at 1,000,000 points in headless Chromium with software WebGL. The
page draws its points with one of two drawers, picked in the browser:

- regl-scatterplot (WebGL) where WebGL runs on a GPU. Its JavaScript is not kept in
  featviz: it is read at save time from the ``jupyter-scatter`` wheel (``pip install
  featviz[webgl]``), which ships it bundled as ``jscatter/bundle.js``;
- featviz's canvas drawer (``_explorer_canvas.js``: the points' pixels written from
  JavaScript into a 2D canvas, a grid index for hover and lasso) where WebGL runs in
  software (SwiftShader, llvmpipe: no GPU), where every WebGL renderer pays about 0.5 us
  per point per frame: 27-64 ms per redraw of 1,000,000 points against regl-scatterplot's
  640-720 ms (see ``docs/explore.md``).

Both are inlined into the page with featviz's page code (``_explorer_big.js``), so the
page opens from ``file://`` with no server.

- Points are packed as binary columns (`pack`): x and y quantised to uint16 over the
  common range, class codes as uint8 (uint16 past 256 classes), confidence as uint16,
  the dataset index as uint32 only when it is not the row number: 8 bytes per point
  (10.7 as base64 in the page) with labels, logits and confidence.
- Thumbnails and click-through images are made per sheet (`ImageSource.sheet`), from the
  ingested images kept by reference (a memory-mapped array is read one sheet at a time,
  and its pages are released after each), and written one file per sheet into the
  folder beside the page; the page loads a sheet with ``<img>`` (``fetch`` of ``file://``
  is blocked in Chromium) when a point on it is hovered or clicked.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import mmap
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import torch

from featviz._explorer_page import (
    HOVER_MAX,
    assets_folder,
    encode_sheet,
    remove_folder,
    write_assets,
)
from featviz._images import rgb_float
from featviz._io import atomic_path, check_destination
from featviz._ops import resize
from featviz._palette import class_order, class_palette

if TYPE_CHECKING:
    from featviz.explorer import ExploreView

__all__ = [
    "CSS",
    "INLINE_PIXELS",
    "RENDERERS",
    "WEBGL_FROM",
    "ImageSource",
    "bundle",
    "html",
    "meta",
    "pack",
    "page_code",
    "pixel_bytes",
    "save",
    "sheet_bytes",
    "sheet_keys",
]

#: The renderers of `featviz.explore`.
RENDERERS = ("auto", "bokeh", "webgl")
#: ``renderer="auto"`` gives the large-set page ("webgl") from this many points on.
WEBGL_FROM = 100_000
_INSTALL = "pip install 'featviz[webgl]' (or pip install jupyter-scatter)"
_EXPORT = re.compile(r"\nexport \{\s*index_default as default\s*\};")
_MIMES = {"webp": "image/webp", "jpeg": "image/jpeg", "png": "image/png"}
_CORRECT = {"correct": "#2ca02c", "wrong": "#d62728"}


# -- the renderer's JavaScript ---------------------------------------------------------------
def bundle() -> str:
    """regl-scatterplot's ES module from the installed jupyter-scatter wheel, export removed.

    Returns:
        The module text; `createScatterplot` is a top-level name in it.

    Raises:
        ImportError: jupyter-scatter is not installed, or its bundle has another layout.
    """
    spec = importlib.util.find_spec("jscatter")  # finds the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "bundle.js" if locations else None
    if path is None or not path.is_file():
        raise ImportError(
            "explore's 'webgl' renderer draws with regl-scatterplot, read from the "
            f"jupyter-scatter package, which is not installed: {_INSTALL}."
        )
    text = path.read_text(encoding="utf-8")
    if "\nvar createScatterplot = " not in text or not _EXPORT.search(text):
        raise ImportError(
            f"{path} has no createScatterplot at the top level: this jupyter-scatter version "
            f"is not supported; {_INSTALL} installs one that is."
        )
    return _EXPORT.sub("\n", text)


def page_code() -> str:
    """Featviz's page code: ``featvizView(root, meta, raw, host)`` and its software drawer.

    ``_explorer_canvas.js`` (``createCanvasScatterplot``, used where WebGL has no GPU) then
    ``_explorer_big.js`` (the page around the points).
    """
    here = Path(__file__).parent
    return "\n".join(
        (here / name).read_text(encoding="utf-8")
        for name in ("_explorer_canvas.js", "_explorer_big.js")
    )


def _script_safe(text: str) -> str:
    """Text that can sit inside ``<script>`` (no closing tag or comment opener)."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.I).replace("<!--", "<\\!--")


# -- points as binary columns ----------------------------------------------------------------
def _codes(values: Any, class_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """Class names as codes into their unique names, in legend order (`featviz._palette`)."""
    uniq, inverse = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    names = [str(v) for v in class_order(uniq.tolist(), class_names)]
    position = {name: k for k, name in enumerate(names)}
    remap = np.array([position[u] for u in uniq.tolist()], dtype=np.int64)
    dtype = np.uint8 if len(names) <= 256 else np.uint16 if len(names) <= 65536 else np.uint32
    return remap[inverse.ravel()].astype(dtype), names


def _quantise(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """x, y as uint16 over their common span (the aspect kept); the centres in those units."""
    lo_x, lo_y = float(x.min()), float(y.min())
    span = max(float(x.max()) - lo_x, float(y.max()) - lo_y) or 1.0
    qx = np.rint((x - lo_x) * (65535 / span)).astype(np.uint16)
    qy = np.rint((y - lo_y) * (65535 / span)).astype(np.uint16)
    return qx, qy, [float(qx.max()) / 2, float(qy.max()) / 2]


def pack(
    data: Mapping[str, Any], class_names: Sequence[str] | None = None
) -> tuple[bytes, dict[str, Any]]:
    """The view's columns as one little-endian buffer and its description.

    Args:
        data: `ExploreView.data`: ``x``, ``y``, ``index`` and optionally ``label``,
            ``prediction`` (names, (N,)), ``confidence`` ((N,) floats in [0, 1]).
        class_names: The view's class names (they fix the order of the class codes).

    Returns:
        ``(buffer, {"columns": [{name, dtype, offset}], "names": {column: names},
        "half": [hx, hy]})``; columns are ordered by item size (aligned typed arrays).
    """
    qx, qy, half = _quantise(np.asarray(data["x"]), np.asarray(data["y"]))
    cols: dict[str, np.ndarray] = {"x": qx, "y": qy}
    names: dict[str, list[str]] = {}
    index = np.asarray(data["index"])
    if not np.array_equal(index, np.arange(len(index))):
        cols["index"] = index.astype(np.uint32)
    for name in ("label", "prediction"):
        if name in data:
            cols[name], names[name] = _codes(data[name], class_names)
    if "confidence" in data:
        cols["confidence"] = np.rint(np.asarray(data["confidence"]) * 65535).astype(np.uint16)
    order = sorted(cols, key=lambda k: -cols[k].dtype.itemsize)
    parts, described, offset = [], [], 0
    for name in order:
        arr = cols[name].astype(cols[name].dtype.newbyteorder("<"), copy=False)
        described.append({"name": name, "dtype": arr.dtype.name, "offset": offset})
        parts.append(arr.tobytes())
        offset += arr.nbytes
    return b"".join(parts), {"columns": described, "names": names, "half": half}


# -- images, one sheet at a time ---------------------------------------------------------------
def _fit(h: int, w: int, size: int) -> tuple[int, int]:
    scale = min(1.0, size / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _grid(tile: tuple[int, int]) -> tuple[int, int]:
    """Tiles per row and per sheet: sheets of about 1024 px (fast to decode on hover)."""
    side = min(4096, max(1024, 8 * max(tile)))
    per_row = max(1, side // tile[1])
    return per_row, per_row * max(1, side // tile[0])


def _release(images: Any) -> None:
    """Drop a read-only memory map's pages from this process (they stay in the page cache)."""
    mapped = getattr(images, "_mmap", None)  # numpy.memmap keeps its mmap.mmap here
    if isinstance(mapped, mmap.mmap) and getattr(images, "mode", "") in ("r", "r+"):
        if hasattr(mmap, "MADV_DONTNEED"):
            mapped.madvise(mmap.MADV_DONTNEED)


@dataclass
class ImageSource:
    """Ingested images (kept by reference) and heatmaps that sheets are made from on demand.

    Attributes:
        nhwc: (N, H, W, C) images from `featviz._images.image_batch`.
        ms: Their ``mean``/``std`` (`featviz._images.display_mean_std`), or None.
        maps: ``{name: float32 (N, h, w) heatmaps}``.
        opts: ``thumbnail_size``, ``detail_size``, ``image_format``, ``quality``.
        images: What the user passed (a `numpy.memmap` has its pages released).
    """

    nhwc: torch.Tensor
    ms: tuple[torch.Tensor, torch.Tensor] | None
    maps: dict[str, torch.Tensor]
    opts: dict[str, Any]
    images: Any = field(default=None, repr=False)

    def tile(self, key: str) -> tuple[int, int]:
        """(height, width) of the tiles of ``key`` ("thumb" or "detail:<name>")."""
        h, w = int(self.nhwc.shape[1]), int(self.nhwc.shape[2])
        return _fit(h, w, self.opts["thumbnail_size" if key == "thumb" else "detail_size"])

    def keys(self) -> list[str]:
        """The sheet sets: ``"thumb"``, ``"detail:image"``, ``"detail:<heatmap>"``..."""
        return ["thumb", "detail:image", *(f"detail:{k}" for k in self.maps)]

    def sheet(self, key: str, j: int) -> bytes:
        """Sheet ``j`` of ``key``, encoded: its images read, resized, blended, packed."""
        from featviz.overlays import overlay

        per_row, per_sheet = _grid(self.tile(key))
        rows = slice(j * per_sheet, min((j + 1) * per_sheet, int(self.nhwc.shape[0])))
        chunk = self.nhwc[rows]
        if self.tile(key) == tuple(chunk.shape[1:3]) and chunk.dtype == torch.uint8:
            if chunk.shape[3] == 3:  # RGB at its own size: the pixels as they are
                tiles = chunk.permute(0, 3, 1, 2).contiguous()
            else:
                tiles = _to_uint8(rgb_float(chunk, self.ms, channels_first=True))
        else:
            x = rgb_float(chunk, self.ms, channels_first=True)  # (n, 3, H, W) in [0, 1]
            tiles = _to_uint8(resize(x, self.tile(key), antialias=True))
        del chunk
        _release(self.images)
        if key.startswith("detail:") and key != "detail:image":
            blended = overlay(tiles, self.maps[key[7:]][rows].to(tiles.device))
            tiles = blended.permute(0, 3, 1, 2)
        return encode_sheet(tiles.cpu(), per_row, self.opts["image_format"], self.opts["quality"])


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def sheet_keys(view: ExploreView) -> dict[str, dict[str, Any]]:
    """Every sheet set of the view: ``{key: {tile, per_row, per_sheet, sheets, ext}}``."""
    n = len(view)
    if view.source is not None:
        src = view.source
        out = {}
        for key in src.keys():
            tile = src.tile(key)
            per_row, per_sheet = _grid(tile)
            out[key] = {"tile": list(tile), "per_row": per_row, "per_sheet": per_sheet}
            out[key] |= {"sheets": math.ceil(n / per_sheet), "ext": src.opts["image_format"]}
        if out["detail:image"]["tile"] == out["thumb"]["tile"]:  # the same sheets: made once
            out["detail:image"]["same_as"] = "thumb"
        return out
    sets = {"thumb": view.thumbnails} if view.thumbnails is not None else {}
    sets |= {f"detail:{k}": v for k, v in view.details.items()}
    return {
        key: {"tile": list(sp.tile), "per_row": sp.per_row, "per_sheet": sp.per_sheet}
        | {"sheets": len(sp.sheets), "ext": sp.mime.split("/")[1]}
        for key, sp in sets.items()
        if sp is not None
    }


def sheet_bytes(view: ExploreView, key: str, j: int) -> bytes:
    """Encoded sheet ``j`` of ``key`` (made now for a webgl view, stored for a bokeh one)."""
    if view.source is not None:
        same = sheet_keys(view)[key].get("same_as")
        return view.source.sheet(same or key, j)
    sprites = view.thumbnails if key == "thumb" else view.details[key[7:]]
    assert sprites is not None
    return sprites.sheets[j]


#: Raw (decoded) bytes of images a webgl page may carry inline (data URIs): past it, the
#: page would take minutes to encode and hundreds of MB (`save` refuses ``assets="inline"``,
#: a notebook shows the points without images).
INLINE_PIXELS = 256 * 2**20


def pixel_bytes(view: ExploreView) -> int:
    """Raw RGB bytes of every sheet the page would carry (thumbnails and click-through)."""
    keys = sheet_keys(view)
    n = len(view)
    return sum(3 * n * g["tile"][0] * g["tile"][1] for g in keys.values() if "same_as" not in g)


def _stem(keys: list[str], key: str) -> str:
    """File name stem of a sheet set: ``thumb_``, ``detail0_`` (the image), ``detail1_``..."""
    return "thumb_" if key == "thumb" else f"detail{keys.index(key) - ('thumb' in keys)}_"


# -- the page --------------------------------------------------------------------------------
def _colors(view: ExploreView, names: Mapping[str, list[str]]) -> dict[str, Any]:
    from bokeh.palettes import Viridis256

    out: dict[str, Any] = {}
    for name in view.color_by or ["all"]:
        if name == "confidence":
            out[name] = {"names": [], "colors": list(Viridis256)}
        elif name == "correct":
            out[name] = {"names": list(_CORRECT), "colors": list(_CORRECT.values())}
        elif name == "all":
            out[name] = {"names": ["all"], "colors": ["#1f77b4"]}
        else:
            palette = class_palette(names[name], view.class_names)
            out[name] = {"names": names[name], "colors": [palette[k] for k in names[name]]}
    return out


def meta(view: ExploreView, layout: Mapping[str, Any]) -> dict[str, Any]:
    """What the page's code reads: sizes, columns, names, colours, sheet geometry.

    Args:
        view: The view.
        layout: `pack`'s description of the buffer.
    """
    n = len(view)
    sheets = {
        k: {g: v[g] for g in ("tile", "per_row", "per_sheet", "ext")}
        for k, v in sheet_keys(view).items()
    }
    return {
        "n": n,
        "title": view.title,
        "width": view.width,
        "height": view.height,
        "point_size": float(np.clip(12 - 2 * math.log10(max(n, 1)), 2, 6)),
        "performance_mode": n >= 500_000,
        "xy": {"half": layout["half"]},
        "columns": layout["columns"],
        "names": layout["names"],
        "colors": _colors(view, layout["names"]),
        "sheets": sheets,
        "detail_px": view.detail_px,
        "hover_max": HOVER_MAX,
    }


#: The page's style sheet (also the widget's).
CSS = """
.featviz-big{font:13px sans-serif}
.featviz-bar{display:flex;gap:12px;align-items:center;margin:4px 0}
.featviz-main{display:flex;gap:12px}.featviz-plot{position:relative;border:1px solid #ddd}
.featviz-tip{position:absolute;pointer-events:none;background:#fff;border:1px solid #999;
padding:4px;gap:4px;flex-direction:column;font-size:12px;z-index:2}
.featviz-row{display:flex;gap:6px;align-items:center}.featviz-more{color:#555}
.featviz-legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.featviz-bar-scale{height:10px;width:160px}.featviz-details{display:flex;flex-wrap:wrap;gap:6px}
.featviz-details figure{margin:0}.featviz-on{background:#cde}
.featviz-entry{cursor:pointer;user-select:none}.featviz-off{opacity:.35;text-decoration:line-through}
"""

_PAGE_JS = """
const meta = JSON.parse(document.getElementById("featviz-meta").textContent);
const text = document.getElementById("featviz-points").textContent;
const raw = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const urls = meta.urls;
featvizView(document.getElementById("featviz-app"), meta, raw, {
  sheetUrl: async (key, j) => {
    const u = urls[key].same_as ? urls[urls[key].same_as] : urls[key];
    return Array.isArray(u) ? u[j] : `${u.prefix}${j}.${u.ext}`;
  },
  onSelect: () => {},
}).then((view) => { window.featviz = view; });
"""


def html(view: ExploreView, urls: Mapping[str, Any] | None = None, *, images: bool = True) -> str:
    """The standalone page of a view (regl-scatterplot or the canvas drawer draws it).

    Args:
        view: The view.
        urls: ``{key: {"prefix": ..., "ext": ...}}`` (sheet ``j`` is at
            ``prefix + j + "." + ext``) or ``{key: [URL per sheet]}``; default: every
            sheet encoded now as a data URI (small views; `save` writes a folder).
        images: False: the points only (no thumbnails or click-through images).

    Returns:
        One HTML string: the bundle, the page code, the points as base64 binary.
    """
    raw, layout = pack(view.data, view.class_names)
    info = meta(view, layout)
    if not images:
        info["sheets"], urls = {}, {}
    if urls is None:
        urls = {}
        for key, g in sheet_keys(view).items():
            if "same_as" in g:  # the same sheets: carried once
                urls[key] = {"same_as": g["same_as"]}
                continue
            urls[key] = [
                f"data:{_MIMES[g['ext']]};base64,"
                + base64.b64encode(sheet_bytes(view, key, j)).decode("ascii")
                for j in range(g["sheets"])
            ]
    info["urls"] = dict(urls)
    data = base64.b64encode(raw).decode("ascii")
    from html import escape

    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>'
        f"{escape(view.title)}</title><style>{CSS}</style></head><body>"
        '<div id="featviz-app"></div>\n'
        f'<script type="application/json" id="featviz-meta">{_script_safe(json.dumps(info))}'
        f'</script>\n<script type="application/octet-stream" id="featviz-points">{data}</script>\n'
        f'<script type="module">\n{_script_safe(bundle())}\n{_script_safe(page_code())}\n{_PAGE_JS}'
        "</script></body></html>\n"
    )


def _write_sheets(view: ExploreView, tmp: Path, name: str) -> dict[str, Any]:
    """Every sheet into ``tmp``, one at a time; URL patterns for the folder ``name``."""
    keys = sheet_keys(view)
    urls: dict[str, Any] = {}
    for key, g in keys.items():
        if g.get("same_as") in urls:
            urls[key] = urls[g["same_as"]]
            continue
        stem = _stem(list(keys), key)
        for j in range(g["sheets"]):
            (tmp / f"{stem}{j}.{g['ext']}").write_bytes(sheet_bytes(view, key, j))
        urls[key] = {"prefix": f"{quote(name)}/{stem}", "ext": g["ext"]}
    return urls


def save(view: ExploreView, path: str | Path, *, overwrite: bool, assets: str) -> Path:
    """Write the page (and its sheets, one file at a time, to ``<stem>_files``).

    Args:
        view: The view.
        path: Destination ``.html`` file.
        overwrite: Replace an existing page and image folder written by featviz.
        assets: ``"auto"``/``"folder"``: sheets in the folder; ``"inline"``: data URIs
            inside the page (only for views with few images: they are all in memory).

    Returns:
        ``path`` as a `Path`.
    """
    path = check_destination(path, overwrite=overwrite)
    bundle()  # jupyter-scatter is there: fail before any sheet is made
    keys = sheet_keys(view)
    if keys and assets == "inline" and pixel_bytes(view) > INLINE_PIXELS:
        raise ValueError(
            f"The 'assets' parameter of ExploreView.save is 'inline', but this view's "
            f"{len(view):,} points carry {pixel_bytes(view) / 2**20:,.0f} MiB of image pixels "
            f"(more than {INLINE_PIXELS / 2**20:.0f} MiB) to encode into one page. Use "
            "assets='auto' or 'folder': the images go to a folder beside the page."
        )
    urls = None
    if keys and assets != "inline":
        name = assets_folder(path).name
        with atomic_path(path, overwrite=overwrite) as out:
            # the sheets first (all or nothing, one at a time), then the page that needs them
            urls = write_assets(path, overwrite, lambda tmp: _write_sheets(view, tmp, name))
            out.write_text(html(view, urls), encoding="utf-8")
        return path
    page = html(view, urls)
    with atomic_path(path, overwrite=overwrite) as out:
        out.write_text(page, encoding="utf-8")
    remove_folder(path)  # an inline page over a folder one: its old sheets go
    return path
