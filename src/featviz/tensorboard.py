"""Export to TensorBoard: an embedding for the projector and heatmap overlays as images.

`to_tensorboard` writes through ``torch.utils.tensorboard.SummaryWriter`` (TensorBoard
must be installed: ``pip install featviz[tensorboard]``): the features with their labels
as an embedding, with a sprite of thumbnails sized to stay inside the projector's
8192 x 8192 pixel limit, and each heatmap overlaid on its image (`featviz.overlay`) as
an image summary at a step.

Each embedding goes into its own folder and is added to the run's
``projector_config.pbtxt``, so earlier exports (other steps, other calls at the same
step) stay listed; a tab, newline or carriage return in a label becomes a space
(`TSV_SEPARATOR_REPLACEMENT`), so ``metadata.tsv`` keeps one line per point.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from featviz._errors import describe, param_error
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
    rgb_float,
)
from featviz._ops import resize, user_stacklevel
from featviz._validation import renamed

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["MAX_POINTS", "SPRITE_LIMIT", "TensorBoardExport", "to_tensorboard"]

#: The projector's limit on each side of the sprite image, in pixels.
SPRITE_LIMIT = 8192
#: Points the projector loads at most; more are subsampled (with a warning).
MAX_POINTS = 100_000
#: Smallest automatic sprite thumbnail side, in pixels.
MIN_SPRITE_SIZE = 8
_FN = "to_tensorboard"


@dataclass
class TensorBoardExport:
    """What `to_tensorboard` wrote.

    Attributes:
        logdir: The run folder the event files and projector files are in.
        rows: (M,) int64 rows of the inputs that went into the embedding (all N, or a
            seeded subsample, in increasing order); empty without ``features``.
        sprite_size: Side of each sprite thumbnail in pixels, or None without a sprite.
        image_tags: Tags of the image summaries written.
        embedding: The embedding's name in the projector (``"{tag}:{step:05d}"``, with
            ``"-2"``, ``"-3"``... when that step and tag were exported before), or None
            without ``features``.
    """

    logdir: Path
    rows: np.ndarray
    sprite_size: int | None = None
    image_tags: list[str] = field(default_factory=list)
    embedding: str | None = None


def _error(name: str, expected: str, value: Any) -> Exception:
    return param_error(ValueError, name, _FN, expected, describe(value))


def _writer(writer: Any) -> tuple[SummaryWriter, bool]:
    """A SummaryWriter and whether this call owns it (and must close it)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch imports tensorboard lazily and raises here
        raise ImportError(
            "featviz.to_tensorboard needs TensorBoard: pip install featviz[tensorboard]"
        ) from exc
    if isinstance(writer, SummaryWriter):
        return writer, False
    if isinstance(writer, (str, os.PathLike)):
        return SummaryWriter(log_dir=os.fspath(writer)), True
    raise TypeError(
        f"The 'writer' parameter of {_FN} must be a torch.utils.tensorboard."
        f"SummaryWriter or a folder path. Got {type(writer).__name__} instead."
    )


def _images(images: Any, n: int, mean: Any, std: Any) -> torch.Tensor:
    """N images (any form `featviz._images` reads) as float RGB (N, 3, H, W) in [0, 1]."""
    batch = image_batch(images, func=_FN, n=n)
    ms = display_mean_std(batch.nhwc, mean, std, func=_FN)
    return rgb_float(batch.nhwc, ms, channels_first=True)


def _sprite_size(n: int, image_hw: tuple[int, int], sprite_size: int | None) -> int:
    """The largest square thumbnail side <= the image's longer side that fits n in the limit."""
    if sprite_size is not None:
        return sprite_size
    fits = SPRITE_LIMIT // math.ceil(math.sqrt(n))
    return max(MIN_SPRITE_SIZE, min(max(image_hw), fits))


def _rows(n: int, size: int | None, max_points: int, random_state: int | None) -> np.ndarray:
    """All rows, or a sorted seeded subsample of what the projector and the sprite allow."""
    cap = max_points if size is None else min(max_points, (SPRITE_LIMIT // size) ** 2)
    if n <= cap:
        return np.arange(n, dtype=np.int64)
    why = f"max_points={max_points}"
    if cap < max_points:
        why = f"a {SPRITE_LIMIT} px sprite of {size} px thumbnails"
    warnings.warn(
        f"{_FN}: embedding {cap} of {n} points, a random subsample ({why}); "
        "TensorBoardExport.rows says which.",
        stacklevel=user_stacklevel(),
    )
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=cap, replace=False)).astype(np.int64)


def _square_thumbnails(images: torch.Tensor, size: int) -> torch.Tensor:
    """(M, 3, size, size): each image fitted inside the square, white margins."""
    h, w = images.shape[2:]
    scale = size / max(h, w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    out = resize(images, (th, tw), antialias=True)
    top, left = (size - th) // 2, (size - tw) // 2
    pad = (left, size - tw - left, top, size - th - top)
    return F.pad(out, pad, value=1.0).clamp(0, 1)


#: What `to_tensorboard` writes instead of a tab, newline or carriage return in a label:
#: metadata.tsv is tab-separated with one point per line.
TSV_SEPARATOR_REPLACEMENT = " "
_TSV_BREAKS = str.maketrans(dict.fromkeys("\t\n\r", TSV_SEPARATOR_REPLACEMENT))


def _tsv_cell(text: str) -> str:
    """``text`` safe as one metadata.tsv cell: each tab, LF and CR becomes a space."""
    return text.translate(_TSV_BREAKS)


def _metadata(
    labels: Any, predictions: Any, rows: np.ndarray, n: int, class_names: Sequence[str] | None
) -> list[str] | None:
    """The lines of metadata.tsv: one column without a header, or a header and two."""
    columns: dict[str, list[str]] = {}
    for name, values in (("label", labels), ("prediction", predictions)):
        if values is None:
            continue
        param = name + "s"
        if name == "prediction":
            classes, _ = prediction_array(values, n, func=_FN)
        else:
            classes = label_array(values, n, func=_FN, param=param)
        names = label_names(classes[rows], class_names, func=_FN, param=param)
        columns[name] = [_tsv_cell(v) for v in names]
    if not columns:
        return None
    if len(columns) == 1:
        return next(iter(columns.values()))
    table = zip(*columns.values(), strict=True)
    return ["\t".join(columns), *("\t".join(r) for r in table)]


def _encode_tag(tag: str) -> str:
    """``tag`` as one folder name (as SummaryWriter spells it: %, / and backslash escaped)."""
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def _read_config(logdir: Path) -> Any:
    """The run's projector config (empty when there is none); a damaged one is refused."""
    from google.protobuf import text_format  # type: ignore[import-untyped,unused-ignore]
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    config = ProjectorConfig()
    path = logdir / "projector_config.pbtxt"
    if not path.exists():
        return config
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), config)
    except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
        raise ValueError(
            f"The 'writer' parameter of {_FN} names a run whose "
            f"{str(path)!r} cannot be read ({exc}); move it away or choose another folder. "
            "Nothing was written."
        ) from exc
    return config


def _new_folder(logdir: Path, step: int, tag: str) -> tuple[Path, str]:
    """A fresh embedding folder ``{step:05d}/{tag}`` (``-2``, ``-3``... if taken), its name."""
    base = logdir / f"{step:05d}"
    base.mkdir(parents=True, exist_ok=True)
    name, k = f"{tag}:{step:05d}", 1
    while True:
        suffix = "" if k == 1 else f"-{k}"
        folder = base / (_encode_tag(tag) + suffix)
        try:
            folder.mkdir()  # atomic: two exports never share a folder
            return folder, name + suffix
        except FileExistsError:
            k += 1


def _write_embedding(
    logdir: Path,
    feats: np.ndarray,
    meta: list[str] | None,
    sprite: torch.Tensor | None,
    opts: dict[str, Any],
) -> str:
    """Write one embedding into its own folder and add it to the run's projector config.

    Earlier embeddings of the run (other steps, other calls at the same step, other
    writers) stay listed; every file is written atomically. Returns the tensor name.
    """
    from google.protobuf import text_format  # type: ignore[import-untyped,unused-ignore]

    from featviz._io import atomic_path

    config = _read_config(logdir)
    folder, name = _new_folder(logdir, opts["step"], opts["tag"])
    rel = folder.relative_to(logdir).as_posix()
    info = config.embeddings.add(tensor_name=name, tensor_path=f"{rel}/tensors.tsv")
    with atomic_path(folder / "tensors.tsv") as tmp:
        np.savetxt(tmp, feats, fmt="%.9g", delimiter="\t")
    if meta is not None:
        info.metadata_path = f"{rel}/metadata.tsv"
        with atomic_path(folder / "metadata.tsv") as tmp:
            tmp.write_text("\n".join(meta) + "\n", encoding="utf-8")
    if sprite is not None:
        info.sprite.image_path = f"{rel}/sprite.png"
        info.sprite.single_image_dim.extend([int(sprite.shape[3]), int(sprite.shape[2])])
        with atomic_path(folder / "sprite.png") as tmp:
            _sprite_image(sprite).save(tmp, format="PNG")
    with atomic_path(logdir / "projector_config.pbtxt", overwrite=True) as tmp:
        tmp.write_text(text_format.MessageToString(config), encoding="utf-8")
    return name


def _sprite_image(thumbs: torch.Tensor) -> Any:
    """(M, 3, s, s) in [0, 1] as one square PIL sprite, row by row, black after the last."""
    from PIL import Image

    m, _, s, _ = thumbs.shape
    cols = math.ceil(math.sqrt(m))
    grid = torch.zeros(cols * cols, 3, s, s)
    grid[:m] = thumbs
    grid = grid.view(cols, cols, 3, s, s).permute(0, 3, 1, 4, 2).reshape(cols * s, cols * s, 3)
    return Image.fromarray((grid * 255).round().clamp(0, 255).to(torch.uint8).numpy())


def _write_heatmaps(
    writer: SummaryWriter,
    heatmaps: Mapping[str, Any],
    images: torch.Tensor | None,
    n: int,
    opts: dict[str, Any],
) -> list[str]:
    """Each heatmap over its image (or coloured alone) for the first ``max_images``."""
    from featviz.featuremaps import normalize
    from featviz.overlays import colorize, overlay

    k = min(n, opts["max_images"])
    tags = []
    for name, maps in heatmaps.items():
        m = heatmap_batch(maps, func=_FN, n=n, key=str(name)).maps
        if images is None:
            shown = colorize(normalize(m[:k]), cmap=opts["cmap"])
        else:  # display RGB in [0, 1]: checked and warned about once, by _images
            shown = overlay(images[:k], m[:k], alpha=opts["alpha"], cmap=opts["cmap"])
        tag = f"{opts['tag']}/{name}"
        writer.add_images(tag, shown, global_step=opts["step"], dataformats="NHWC")
        tags.append(tag)
    return tags


@renamed(writer_or_logdir="writer")
def to_tensorboard(
    writer: Any,
    *,
    features: Any = None,
    labels: Any = None,
    predictions: Any = None,
    images: Any = None,
    heatmaps: Mapping[str, Any] | None = None,
    step: int = 0,
    tag: str = "featviz",
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    sprite_size: int | None = None,
    max_points: int = MAX_POINTS,
    max_images: int = 16,
    alpha: float = 0.4,
    cmap: str = "jet",
    random_state: int | None = 0,
) -> TensorBoardExport:
    """Write an embedding (features, labels, sprite) and heatmap images for TensorBoard.

    The embedding goes to the projector plugin: ``features`` as the points, ``labels``
    (and ``predictions``) as metadata columns, and ``images`` as a sprite of square
    thumbnails. It is added to the run's ``projector_config.pbtxt`` in a folder of its
    own (``{step:05d}/{tag}``, then ``-2``, ``-3``... for the same step and tag), so
    earlier exports stay visible; tabs and line breaks in labels become spaces. The
    thumbnail side is the largest that keeps the sprite within
    `SPRITE_LIMIT` pixels (at most the image size); above ``max_points`` points, or more
    than the sprite holds at an explicit ``sprite_size``, a seeded random subsample is
    embedded and a warning says so. Each heatmap is blended over its image with
    `featviz.overlay` (or coloured alone without images) and written as an image summary
    ``"{tag}/{name}"`` of the first ``max_images`` samples at ``step``.

    Args:
        writer: A ``torch.utils.tensorboard.SummaryWriter`` (left open), or a
            folder for a new writer (closed before returning).
        features: (N, D) tensor/array (higher ranks are flattened), or None.
        labels: (N,) classes (ints, named through ``class_names``, or strings).
        predictions: (N,) predicted classes or (N, C) logits (argmax is taken).
        images: Any form `featviz.overlay` takes, as a batch of N: (N, C, H, W) tensor,
            (N, H, W, C) array, (N, H, W) grey, or a list of N PIL images/arrays/tensors;
            C 1, 3 or 4; uint8 or float in [0, 1] (or standardised, with ``mean`` and
            ``std``, which must be given together).
        heatmaps: ``{name: (N, h, w) maps}``, e.g. Grad-CAMs or summed feature maps.
        step: Global step of the embedding and the images.
        tag: Embedding name and prefix of the image tags.
        class_names: Names of the class indices.
        mean: Per-channel mean the images were normalised with.
        std: Per-channel standard deviation the images were normalised with.
        sprite_size: Thumbnail side in pixels; None picks it (see above).
        max_points: Most points embedded, in [1, inf).
        max_images: Images per heatmap summary, in [1, inf).
        alpha: Overlay weight of the heatmap colour, in [0, 1].
        cmap: Colour map name (see `featviz.colorize`).
        random_state: Seed of the subsample.

    Returns:
        A `TensorBoardExport` (run folder, embedded rows, sprite size, image tags).

    Raises:
        ImportError: TensorBoard is not installed.
        TypeError: Unsupported argument types.
        ValueError: Shapes that do not match N, values out of range, NaN or inf in
            ``features`` or in logits, an argument that would be ignored (``labels``,
            ``predictions`` without ``features``; ``class_names`` without either;
            ``sprite_size`` without ``features`` and ``images``; ``mean``/``std``
            without ``images``), or a run folder whose ``projector_config.pbtxt``
            cannot be read. Nothing is written then.
    """
    _check_counts(step, max_points, max_images, sprite_size)
    check_pair(mean, std, func=_FN)
    used = {"labels": labels, "predictions": predictions, "class_names": class_names}
    _check_used(features, images, used | {"sprite_size": sprite_size, "mean": mean, "std": std})
    n = _count(features, heatmaps)
    imgs = None if images is None else _images(images, n, mean, std)
    opts = {"max_images": max_images, "alpha": alpha, "cmap": cmap, "tag": tag, "step": step}
    emb = None
    if features is not None:  # everything checked before anything is written
        opts |= {"sprite_size": sprite_size, "max_points": max_points}
        emb = _embedding(
            features, labels, predictions, imgs, class_names, opts | {"seed": random_state}
        )
    writer, owned = _writer(writer)
    try:
        tags = _write_heatmaps(writer, heatmaps or {}, imgs, n, opts)
        logdir = Path(writer.get_logdir())
        name = (
            None if emb is None else _write_embedding(logdir, emb.feats, emb.meta, emb.sprite, opts)
        )
        writer.flush()
        if emb is None:
            return TensorBoardExport(logdir, np.zeros(0, dtype=np.int64), None, tags)
        return TensorBoardExport(logdir, emb.rows, emb.size, tags, name)
    finally:
        if owned:
            writer.close()


@dataclass
class _Embedding:
    feats: np.ndarray
    meta: list[str] | None
    sprite: torch.Tensor | None
    rows: np.ndarray
    size: int | None


def _embedding(
    features: Any,
    labels: Any,
    predictions: Any,
    imgs: torch.Tensor | None,
    class_names: Sequence[str] | None,
    opts: dict[str, Any],
) -> _Embedding:
    """The points (finite, flattened), metadata lines and sprite of the embedding."""
    arr = number_array(features, func=_FN, param="features")
    n = arr.shape[0]
    feats = arr.astype(np.float32).reshape(n, -1)
    check_finite_rows(feats, func=_FN, param="features")
    hw = None if imgs is None else (int(imgs.shape[2]), int(imgs.shape[3]))
    size = None if hw is None else _sprite_size(n, hw, opts["sprite_size"])
    rows = _rows(n, size, opts["max_points"], opts["seed"])
    meta = _metadata(labels, predictions, rows, n, class_names)
    sprite = None if imgs is None or size is None else _square_thumbnails(imgs[rows], size)
    return _Embedding(feats[rows], meta, sprite, rows, size)


def _check_used(features: Any, images: Any, opts: dict[str, Any]) -> None:
    """Refuse arguments that would be ignored (metadata with no points to label, ...)."""
    needs = [
        ("labels", "'features' (it labels the embedding's points)", features is None),
        ("predictions", "'features' (it labels the embedding's points)", features is None),
        (
            "class_names",
            "'labels' or 'predictions' (it names their classes)",
            opts["labels"] is None and opts["predictions"] is None,
        ),
        (
            "sprite_size",
            "'features' and 'images' (it sizes the sprite's thumbnails)",
            features is None or images is None,
        ),
        ("mean", "'images' (they were normalised with it)", images is None),
        ("std", "'images' (they were normalised with it)", images is None),
    ]
    for name, partner, missing in needs:
        if missing and opts[name] is not None:
            raise param_error(
                ValueError,
                name,
                _FN,
                f"given together with {partner}",
                f"{name} without {partner.split(' (')[0]}",
                f"Pass {partner.split(' (')[0]} too, or leave {name} out.",
            )


def _check_counts(step: Any, max_points: Any, max_images: Any, sprite_size: Any) -> None:
    counts = (("step", step, 0), ("max_points", max_points, 1), ("max_images", max_images, 1))
    for name, value, low in counts:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise _error(name, f"an int in the range [{low}, inf)", value)
    if sprite_size is not None and (
        isinstance(sprite_size, bool)
        or not isinstance(sprite_size, (int, np.integer))
        or not 1 <= sprite_size <= SPRITE_LIMIT
    ):
        raise _error("sprite_size", f"None or an int in the range [1, {SPRITE_LIMIT}]", sprite_size)


def _count(features: Any, heatmaps: Any) -> int:
    """N, from the features, else from the first heatmaps (images must then match it)."""
    if heatmaps is not None and not isinstance(heatmaps, Mapping):
        raise TypeError(
            f"The 'heatmaps' parameter of {_FN} must be a mapping of names to (N, h, w) maps. "
            f"Got {type(heatmaps).__name__} instead."
        )
    if features is not None:
        arr = number_array(features, func=_FN, param="features")
        if arr.ndim < 2 or arr.shape[0] < 1:
            raise _error("features", "a batch (N, ...) with N >= 1", arr)
        return int(arr.shape[0])
    if heatmaps:
        name, maps = next(iter(heatmaps.items()))
        return int(heatmap_batch(maps, func=_FN, key=str(name)).maps.shape[0])
    raise ValueError(
        f"{_FN} has nothing to write: pass 'features' (an embedding) and/or 'heatmaps'."
    )
