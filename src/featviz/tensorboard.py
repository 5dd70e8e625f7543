"""Export to TensorBoard: an embedding for the projector and heatmap overlays as images.

`to_tensorboard` writes through ``torch.utils.tensorboard.SummaryWriter`` (TensorBoard
must be installed: ``pip install featviz[tensorboard]``): the features with their labels
as an embedding, with a sprite of thumbnails sized to stay inside the projector's
8192 x 8192 pixel limit, and each heatmap overlaid on its image (`featviz.overlay`) as
an image summary at a step.
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
    as_tensor,
    check_pair,
    display_mean_std,
    heatmap_batch,
    image_batch,
    label_array,
    label_names,
    rgb_float,
)
from featviz._ops import resize, user_stacklevel

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
    """

    logdir: Path
    rows: np.ndarray
    sprite_size: int | None = None
    image_tags: list[str] = field(default_factory=list)


def _error(name: str, expected: str, value: Any) -> Exception:
    return param_error(ValueError, name, _FN, expected, describe(value))


def _array(value: Any, name: str) -> np.ndarray:
    """Features or logits (numbers) as a numpy array."""
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    t, _ = as_tensor(value, func=_FN, param=name)
    return (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).cpu().numpy()


def _writer(writer_or_logdir: Any) -> tuple[SummaryWriter, bool]:
    """A SummaryWriter and whether this call owns it (and must close it)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch imports tensorboard lazily and raises here
        raise ImportError(
            "featviz.to_tensorboard needs TensorBoard: pip install featviz[tensorboard]"
        ) from exc
    if isinstance(writer_or_logdir, SummaryWriter):
        return writer_or_logdir, False
    if isinstance(writer_or_logdir, (str, os.PathLike)):
        return SummaryWriter(log_dir=os.fspath(writer_or_logdir)), True
    raise TypeError(
        f"The 'writer_or_logdir' parameter of {_FN} must be a torch.utils.tensorboard."
        f"SummaryWriter or a folder path. Got {type(writer_or_logdir).__name__} instead."
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


def _metadata(
    labels: Any, predictions: Any, rows: np.ndarray, n: int, class_names: Sequence[str] | None
) -> tuple[list[Any] | None, list[str] | None]:
    columns: dict[str, list[str]] = {}
    for name, values in (("label", labels), ("prediction", predictions)):
        if values is None:
            continue
        param = name + "s"
        if name == "prediction" and np.ndim(values) == 2:
            arr = _array(values, param)
            if np.issubdtype(arr.dtype, np.floating):
                values = arr.argmax(1)  # logits
        classes = label_array(values, n, func=_FN, param=param)
        columns[name] = label_names(classes[rows], class_names, func=_FN, param=param)
    if not columns:
        return None, None
    if len(columns) == 1:
        return next(iter(columns.values())), None
    return [list(r) for r in zip(*columns.values(), strict=True)], list(columns)


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


def to_tensorboard(
    writer_or_logdir: Any,
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
    thumbnails. The thumbnail side is the largest that keeps the sprite within
    `SPRITE_LIMIT` pixels (at most the image size); above ``max_points`` points, or more
    than the sprite holds at an explicit ``sprite_size``, a seeded random subsample is
    embedded and a warning says so. Each heatmap is blended over its image with
    `featviz.overlay` (or coloured alone without images) and written as an image summary
    ``"{tag}/{name}"`` of the first ``max_images`` samples at ``step``.

    Args:
        writer_or_logdir: A ``torch.utils.tensorboard.SummaryWriter`` (left open), or a
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
        ValueError: Shapes that do not match N, values out of range.
    """
    _check_counts(step, max_points, max_images, sprite_size)
    check_pair(mean, std, func=_FN)
    n = _count(features, heatmaps)
    imgs = None if images is None else _images(images, n, mean, std)
    writer, owned = _writer(writer_or_logdir)
    try:
        opts = {"max_images": max_images, "alpha": alpha, "cmap": cmap, "tag": tag, "step": step}
        tags = _write_heatmaps(writer, heatmaps or {}, imgs, n, opts)
        rows, size = np.zeros(0, dtype=np.int64), None
        if features is not None:
            feats = torch.from_numpy(_array(features, "features")).float().reshape(n, -1)
            hw = None if imgs is None else (int(imgs.shape[2]), int(imgs.shape[3]))
            size = None if hw is None else _sprite_size(n, hw, sprite_size)
            rows = _rows(n, size, max_points, random_state)
            meta, header = _metadata(labels, predictions, rows, n, class_names)
            sprite = None if imgs is None or size is None else _square_thumbnails(imgs[rows], size)
            writer.add_embedding(
                feats[rows],
                metadata=meta,
                label_img=sprite,
                global_step=step,
                tag=tag,
                metadata_header=header,
            )
        writer.flush()
        return TensorBoardExport(Path(writer.get_logdir()), rows, size, tags)
    finally:
        if owned:
            writer.close()


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
        arr = _array(features, "features")
        if arr.ndim < 2 or arr.shape[0] < 1:
            raise _error("features", "a batch (N, ...) with N >= 1", arr)
        return int(arr.shape[0])
    if heatmaps:
        name, maps = next(iter(heatmaps.items()))
        return int(heatmap_batch(maps, func=_FN, key=str(name)).maps.shape[0])
    raise ValueError(
        f"{_FN} has nothing to write: pass 'features' (an embedding) and/or 'heatmaps'."
    )
