"""An interactive view of a projection: hover thumbnails, colour by class, select, click for CAMs.

`explore` turns 2-D points (a `Projection`, a `FeatureSet` projected on the fly, or a
plain (N, 2) array) plus optional images, labels, predictions and heatmaps into an
`ExploreView`: a bokeh page (WebGL scatter) that displays inline in Jupyter and saves as
one standalone HTML file with bokeh's JavaScript inlined, so it opens offline.

Everything the page shows is prepared in Python, in batches: thumbnails and the larger
click-through images are resized with one ``torch.nn.functional.interpolate`` call per
chunk, heatmaps are blended with `featviz.overlay`, and the results are packed as tiles
into a few sprite sheets (`Sprites`), encoded once per sheet (WebP by default). The page
cuts each tile out with CSS. Large sets of sheets go to a folder beside the page
(`ExploreView.save`). bokeh is imported by the functions that need it, never by
``import featviz``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featviz._images import mean_std, unit_rgb
from featviz._io import atomic_path, check_destination
from featviz._ops import resize, user_stacklevel
from featviz._validation import check_int, renamed

if TYPE_CHECKING:
    from bokeh.models import LayoutDOM

__all__ = ["COLOR_BY", "INLINE_LIMIT", "SHEET_PX", "ExploreView", "Sprites", "explore"]

#: The colourings the page offers, in this order, when their data is given.
COLOR_BY = ("label", "prediction", "correct", "confidence")

_FORMATS = {"webp": "image/webp", "jpeg": "image/jpeg", "png": "image/png"}
_CHUNK = 512  # images resized and blended per step
SHEET_PX = 4096  # longest side of a sprite sheet in pixels (WebP allows 16383)
#: Above this many encoded image bytes, `ExploreView.save` puts them in a folder beside
#: the page (``assets="auto"``).
INLINE_LIMIT = 16_000_000
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


def _fit(h: int, w: int, size: int) -> tuple[int, int]:
    """(h, w) scaled so the longer side is ``size`` (never enlarged)."""
    scale = min(1.0, size / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _unit_chunks(images: torch.Tensor, mean: Any, std: Any) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(rows, float RGB (n, 3, H, W) in [0, 1])`` chunks of `_CHUNK` images."""
    ms = None if mean is None else mean_std(mean, std, images.shape[1], images.device, "explore")
    for start in range(0, images.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        yield rows, unit_rgb(images[rows], ms)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255 + 0.5).clamp(0, 255).to(torch.uint8)


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
        mime = _FORMATS[self.fmt]
        return Sprites(self.sheets, self.sizes, mime, self.tile, self.per_row, self.per_sheet)

    def _flush(self) -> None:
        from PIL import Image

        tiles = torch.cat(self.pending)
        take, rest = tiles[: self.per_sheet], tiles[self.per_sheet :]
        self.pending = [rest] if len(rest) else []
        cols = min(self.per_row, len(take))
        rows = math.ceil(len(take) / cols)
        h, w = self.tile
        grid = torch.full((rows * cols, 3, h, w), 255, dtype=torch.uint8)
        grid[: len(take)] = take
        sheet = grid.view(rows, cols, 3, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, 3)
        buf = io.BytesIO()
        # WebP method 0: a quarter to half the default's (4) encoding time, 2-8% more bytes
        extra = {"method": 0} if self.fmt == "webp" else {}
        Image.fromarray(sheet.numpy()).save(
            buf, format=self.fmt.upper(), quality=self.quality, **extra
        )
        self.sheets.append(buf.getvalue())
        self.sizes.append((cols * w, rows * h))


def _sprites(
    images: torch.Tensor,
    heatmaps: Mapping[str, torch.Tensor],
    opts: dict[str, Any],
) -> tuple[Sprites, dict[str, Sprites]]:
    """Thumbnails, and the click-through image with each heatmap over it, in one pass."""
    from featviz.featuremaps import overlay

    h, w = int(images.shape[2]), int(images.shape[3])
    fmt, q, mean, std = opts["image_format"], opts["quality"], opts["mean"], opts["std"]
    thumbs = _Packer(_fit(h, w, opts["thumbnail_size"]), fmt, q)
    big = _fit(h, w, opts["detail_size"])
    details = {k: _Packer(big, fmt, q) for k in ("image", *heatmaps)}
    for rows, x in _unit_chunks(images, mean, std):
        thumbs.add(_to_uint8(resize(x, thumbs.tile, antialias=True)))
        detail = _to_uint8(resize(x, big, antialias=True))
        details["image"].add(detail)
        for name, maps in heatmaps.items():
            blended = overlay(detail, maps[rows].to(detail.device).float())
            details[name].add(blended.permute(0, 3, 1, 2))
    return thumbs.finish(), {k: p.finish() for k, p in details.items()}


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
    """

    data: dict[str, Any]
    color_by: list[str]
    thumbnails: Sprites | None = None
    details: dict[str, Sprites] = field(default_factory=dict)
    title: str = "featviz explore"
    width: int = 720
    height: int = 600
    detail_px: int = 160

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
        return _layout(self, urls or self._urls(None))

    def html(self, urls: Mapping[str, list[str]] | None = None) -> str:
        """The standalone page: one HTML string with bokeh's JavaScript inlined (no CDN)."""
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        return file_html(self.layout(urls), resources=INLINE, title=self.title)

    def save(self, path: str | Path, *, overwrite: bool = False, assets: str = "auto") -> Path:
        """Write the standalone page atomically (and its image folder, if any).

        Args:
            path: Destination ``.html`` file.
            overwrite: Replace an existing page (and image folder written by featviz).
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
            ValueError: ``assets`` is not one of the above.
        """
        if assets not in ("auto", "inline", "folder"):
            raise ValueError(
                "The 'assets' parameter of ExploreView.save must be one of 'auto', 'inline', "
                f"'folder'. Got {assets!r} instead."
            )
        path = check_destination(path, overwrite=overwrite)
        folder = assets == "folder" or (assets == "auto" and self.image_bytes > INLINE_LIMIT)
        urls = _write_folder(self, path, overwrite) if folder else None
        page = self.html(urls)
        with atomic_path(path, overwrite=overwrite) as tmp:
            tmp.write_text(page, encoding="utf-8")
        return path

    def _urls(self, prefix: str | None) -> dict[str, list[str]]:
        """Sheet URLs: data URIs, or ``prefix/<file>`` for a folder."""
        named = _named(self)
        if prefix is None:
            return {key: sp.data_uris() for key, sp in named.items()}
        return {key: [f"{prefix}/{n}" for n in _file_names(self, key)] for key in named}

    def _repr_html_(self) -> str:
        """The page in an iframe, so notebooks show it without a bokeh setup."""
        if self.image_bytes > INLINE_LIMIT:
            warnings.warn(
                f"The view holds {self.image_bytes / 1e6:.0f} MB of images, all stored in the "
                "notebook to show it inline; view.save('explore.html') writes a small page "
                "with the images in a folder beside it.",
                stacklevel=user_stacklevel(),
            )
        doc = html.escape(self.html(), quote=True)
        return (
            f'<iframe srcdoc="{doc}" style="width:100%;height:{self.height + 260}px;'
            'border:none"></iframe>'
        )


_FILE = re.compile(r"^(thumb|detail\d+)_\d+\.(webp|jpeg|png)$")


def _named(view: ExploreView) -> dict[str, Sprites]:
    """Every sprite set of the view by key: ``"thumb"``, ``"detail:<name>"``."""
    named = {"thumb": view.thumbnails} if view.thumbnails is not None else {}
    return named | {f"detail:{k}": v for k, v in view.details.items()}


def _file_names(view: ExploreView, key: str) -> list[str]:
    """File names of the sheets of ``key`` ("thumb" or "detail:<name>")."""
    sprites = _named(view)[key]
    stem = "thumb" if key == "thumb" else f"detail{list(view.details).index(key[7:])}"
    ext = sprites.mime.split("/")[1]
    return [f"{stem}_{j}.{ext}" for j in range(len(sprites.sheets))]


def _write_folder(view: ExploreView, page: Path, overwrite: bool) -> dict[str, list[str]]:
    """Write the sheets to ``<page stem>_files`` (all or nothing); return their URLs."""
    import shutil
    import tempfile
    from urllib.parse import quote

    folder = page.with_name(page.stem + "_files")
    if folder.exists():
        if not overwrite:
            raise FileExistsError(
                f"The image folder {str(folder)!r} of the page exists; pass overwrite=True "
                "to replace it."
            )
        foreign = [p.name for p in folder.iterdir() if not _FILE.match(p.name)]
        if foreign or not folder.is_dir():
            raise FileExistsError(
                f"{str(folder)!r} holds files featviz did not write ({foreign[:3]}); "
                "move them or save the page under another name."
            )
    tmp = Path(tempfile.mkdtemp(dir=page.parent, prefix=f".{folder.name}."))
    try:
        for key, sprites in _named(view).items():
            for name, data in zip(_file_names(view, key), sprites.sheets, strict=True):
                (tmp / name).write_bytes(data)
        old = folder.with_name(f".{folder.name}.old") if folder.exists() else None
        if old is not None:
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return view._urls(quote(folder.name))


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
    img = ""
    if view.thumbnails is not None:
        h, w = view.thumbnails.tile
        img = (
            f'<div class="featviz-thumb" style="width:{w}px;height:{h}px;flex:none;'
            "margin-right:6px;background:url('@thumb_sheet{custom}') "
            '-@thumb_x{0}px -@thumb_y{0}px"></div>'
        )
    return (
        f'<div class="featviz-tip" style="display:flex;align-items:center">{img}'
        f'<div style="font-size:12px">{"<br>".join(rows)}</div></div>'
    )


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
        CustomJSHover,
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
    # the tooltip's thumbnail: sheet number -> sheet URL, stored once, not once per point
    sheet_url = CustomJSHover(args={"urls": thumb_urls}, code="return urls[value];")
    formatters: dict[str, Any] = {"@thumb_sheet": sheet_url}
    box = BoxSelectTool(renderers=shown)  # active: selecting is what the view is for
    tools = [
        HoverTool(tooltips=_tooltip(view), renderers=shown, formatters=formatters),
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


def _layout(view: ExploreView, urls: Mapping[str, list[str]]) -> LayoutDOM:
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


# -- public entry point --------------------------------------------------------------------
def _check_options(thumbnail_size: Any, detail_size: Any, fmt: Any, quality: Any) -> None:
    check_int(thumbnail_size, "thumbnail_size", "explore", 8, 512)
    check_int(detail_size, "detail_size", "explore", 16, 1024)
    if fmt not in _FORMATS:
        raise _error("image_format", f"one of {list(_FORMATS)}", fmt)
    check_int(quality, "quality", "explore", 1, 100)


def _check_mean_std(mean: Any, std: Any) -> None:
    if (mean is None) != (std is None):
        raise _error("std" if std is None else "mean", "given together with the other", None)


def _images_sprites(
    images: Any, heatmaps: Any, n: int, opts: dict[str, Any]
) -> tuple[Sprites | None, dict[str, Sprites]]:
    """Thumbnail and click-through sprites from the images and heatmaps."""
    if heatmaps is not None and not isinstance(heatmaps, Mapping):
        expected = 'a mapping of names to (N, h, w) maps, e.g. {"gradcam": m}'
        raise _type_error("heatmaps", expected, heatmaps)
    if images is None:
        if heatmaps:
            raise _error("images", "given when 'heatmaps' is (the maps are drawn on them)", None)
        return None, {}
    if heatmaps and "image" in heatmaps:
        raise _error("heatmaps", "named other than 'image' (the name of the plain image)", "image")
    imgs = _image_tensor(images, n)
    maps = {str(k): _heatmap_tensor(str(k), v, n) for k, v in (heatmaps or {}).items()}
    return _sprites(imgs, maps, opts)


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
        images: (N, C, H, W) tensor or (N, H, W, C) array (C in 1, 3, 4; also (N, H, W)),
            uint8 0..255 or float 0..1 (or normalised, with ``mean`` and ``std``).
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

    Returns:
        An `ExploreView`; ``view.save("explore.html")`` writes the page (and, above
        `INLINE_LIMIT` bytes of images, the folder ``explore_files`` beside it).

    Raises:
        TypeError: An argument has an unsupported type.
        ValueError: Shapes or lengths do not match N, values out of range; the message
            names the parameter.
    """
    _check_options(thumbnail_size, detail_size, image_format, quality)
    _check_mean_std(mean, std)
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
    thumbnails, details = _images_sprites(images, heatmaps, n, opts)
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
