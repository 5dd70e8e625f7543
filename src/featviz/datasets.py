"""Built-in data: a synthetic shapes set with known object positions, and sample photos.

`Shapes` draws one coloured shape (circle, square, triangle, cross, ...) per image at a
random position and size over a textured, noisy background with thin distractor lines.
Every item carries the ground-truth box and mask of the object, so heatmaps can be
scored against the truth (pointing game, energy in box).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from featviz._validation import check_int, renamed

__all__ = ["SHAPE_CLASSES", "Shapes", "ShapesItem", "sample_photos"]

#: Shape classes `Shapes` knows how to draw, in their default order.
SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
_EXTRA_CLASSES: tuple[str, ...] = ("ring", "diamond")
_ALL_CLASSES = SHAPE_CLASSES + _EXTRA_CLASSES


class ShapesItem(NamedTuple):
    """One item of `Shapes`; the default DataLoader collate batches each field.

    Attributes:
        image: float32 tensor (3, size, size) with values in [0, 1].
        label: int64 scalar tensor, index into ``Shapes.classes``.
        box: int64 tensor (4,) ``(x0, y0, x1, y1)``, pixel bounds of the object with
            ``x1``/``y1`` exclusive, so ``mask[y0:y1, x0:x1]`` holds every object pixel.
        mask: bool tensor (size, size), True on the object's pixels.
    """

    image: torch.Tensor
    label: torch.Tensor
    box: torch.Tensor
    mask: torch.Tensor


def _shape_mask(
    kind: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float
) -> np.ndarray:
    """Boolean mask (H, W) of one shape centred at (cy, cx) with half-size r."""
    dy, dx = yy - cy, xx - cx
    if kind == "circle":
        return dx**2 + dy**2 <= r**2
    if kind == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if kind == "triangle":
        # apex up: rows from cy - r to cy + r, half-width grows linearly to r
        t = (dy + r) / (2 * r)
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= t * r)
    if kind == "cross":
        arm = r / 3
        return ((np.abs(dx) <= r) & (np.abs(dy) <= arm)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    if kind == "ring":
        d2 = dx**2 + dy**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if kind == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    raise ValueError(f"unknown shape {kind!r}")  # pragma: no cover - validated earlier


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency texture (size, size) in [0, 1]: bilinear upsampling of a coarse grid."""
    coarse = rng.random((cells + 1, cells + 1))
    pos = np.linspace(0, cells, size)
    i0 = np.minimum(pos.astype(int), cells - 1)
    f = pos - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


class Shapes(Dataset[ShapesItem]):
    """Synthetic images of coloured shapes with ground-truth boxes and masks.

    All images are drawn once, at construction, from ``random_state``: the same arguments give
    bit-identical data on every machine. Classes are balanced (counts differ by at most
    one) and shuffled.

    Args:
        n: Number of images, >= 1.
        size: Image side in pixels, >= 16.
        random_state: Seed of the generator that draws everything (int >= 0).
        class_names: Shape names to draw, a subset of ``("circle", "square", "triangle",
            "cross", "ring", "diamond")``; their order defines the labels.
        distractors: Maximum number of thin random lines drawn per image (0 for none).
        noise: Standard deviation of the per-pixel Gaussian noise added to each image.

    Attributes:
        classes: The class names, ``classes[label]`` names a label.
        images: uint8 tensor (n, 3, size, size), the stored images.
        labels: int64 tensor (n,).
        boxes: int64 tensor (n, 4), ``(x0, y0, x1, y1)`` with exclusive ends.
        masks: bool tensor (n, size, size).

    Raises:
        ValueError: On ``n < 1``, ``size < 16``, negative ``distractors`` or ``noise``,
            an unknown or repeated class name, or fewer than two classes.

    Example:
        >>> ds = Shapes(8, random_state=0)
        >>> item = ds[0]
        >>> item.image.shape, ds.classes[int(item.label)]  # doctest: +SKIP
        (torch.Size([3, 64, 64]), 'triangle')
    """

    @renamed(seed="random_state", classes="class_names")
    def __init__(
        self,
        n: int,
        size: int = 64,
        random_state: int = 0,
        class_names: Sequence[str] = SHAPE_CLASSES,
        *,
        distractors: int = 3,
        noise: float = 0.04,
    ) -> None:
        n = check_int(n, "n", "Shapes", 1)
        size = check_int(size, "size", "Shapes", 16)
        seed = check_int(random_state, "random_state", "Shapes", 0)
        if isinstance(class_names, str):
            raise ValueError(
                "The 'class_names' parameter of Shapes must be a sequence of names. "
                f"Got {class_names!r}."
            )
        classes = tuple(class_names)
        unknown = [c for c in classes if c not in _ALL_CLASSES]
        if unknown:
            raise ValueError(
                f"The 'class_names' parameter of Shapes has unknown names {unknown}; "
                f"choose from {list(_ALL_CLASSES)}."
            )
        if len(set(classes)) != len(classes) or len(classes) < 2:
            raise ValueError(
                "The 'class_names' parameter of Shapes needs at least two distinct names. "
                f"Got {list(classes)}."
            )
        distractors = check_int(distractors, "distractors", "Shapes", 0)
        if (
            isinstance(noise, bool)
            or not isinstance(noise, numbers.Real)
            or not 0 <= float(noise) < math.inf
        ):
            raise ValueError(
                "The 'noise' parameter of Shapes must be a finite float >= 0 (the noise "
                f"amplitude; 0 for none). Got {noise!r} instead."
            )
        self.classes: tuple[str, ...] = classes
        self.size: int = size
        self.random_state: int = seed
        images, labels, boxes, masks = self._draw(n, size, seed, classes, distractors, noise)
        self.images: torch.Tensor = torch.from_numpy(images)
        self.labels: torch.Tensor = torch.from_numpy(labels)
        self.boxes: torch.Tensor = torch.from_numpy(boxes)
        self.masks: torch.Tensor = torch.from_numpy(masks)

    @staticmethod
    def _draw(
        n: int, size: int, seed: int, classes: tuple[str, ...], distractors: int, noise: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        k = len(classes)
        labels = rng.permutation(np.arange(n) % k).astype(np.int64)
        images = np.empty((n, 3, size, size), dtype=np.uint8)
        boxes = np.empty((n, 4), dtype=np.int64)
        masks = np.empty((n, size, size), dtype=bool)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        for i in range(n):
            # background: a dark random tint, low-frequency texture and fine noise
            tint = rng.uniform(0.05, 0.4, size=3)
            texture = _smooth_noise(rng, size, cells=int(rng.integers(3, 8)))
            img = tint[:, None, None] * (0.6 + 0.8 * texture[None])
            for _ in range(int(rng.integers(0, distractors + 1))):
                # thin line segment, at most a third of the image long
                x0, y0 = rng.uniform(0, size, size=2)
                ang = rng.uniform(0, np.pi)
                length = rng.uniform(size / 8, size / 3)
                t = np.linspace(0, 1, int(length) * 2 + 2)
                px = np.clip((x0 + np.cos(ang) * length * t).astype(int), 0, size - 1)
                py = np.clip((y0 + np.sin(ang) * length * t).astype(int), 0, size - 1)
                img[:, py, px] = rng.uniform(0.3, 0.9, size=3)[:, None]
            # the object: bright colour, random size and position, fully inside
            r = rng.uniform(0.1, 0.2) * size
            cy, cx = rng.uniform(r + 1, size - r - 2, size=2)
            mask = _shape_mask(classes[labels[i]], yy, xx, cy, cx, r)
            colour = rng.uniform(0.55, 1.0, size=3)
            colour[rng.integers(0, 3)] = rng.uniform(0.8, 1.0)
            img[:, mask] = colour[:, None]
            img += rng.normal(0.0, noise, size=img.shape)
            images[i] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
            ys, xs = np.nonzero(mask)
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            masks[i] = mask
        return images, labels, boxes, masks

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> ShapesItem:
        """Return item ``index`` as `ShapesItem` (image float32 (3, H, W) in [0, 1])."""
        return ShapesItem(
            self.images[index].float().div_(255.0),
            self.labels[index],
            self.boxes[index],
            self.masks[index],
        )

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images and labels at once.

        Returns:
            ``(images, labels)``: float32 (n, 3, size, size) in [0, 1], int64 (n,).
        """
        return self.images.float().div_(255.0), self.labels.clone()

    def __repr__(self) -> str:
        return (
            f"Shapes(n={len(self)}, size={self.size}, random_state={self.random_state}, "
            f"classes={self.classes})"
        )


def sample_photos() -> dict[str, np.ndarray]:
    """Real photographs shipped with scikit-learn, for overlays on natural images.

    Returns:
        ``{"china": array, "flower": array}``, each uint8 RGB of shape (427, 640, 3).
        The arrays are fresh copies, free to modify.
    """
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    names = [str(f).rsplit("/", 1)[-1].rsplit(".", 1)[0] for f in bunch.filenames]
    return {name: np.ascontiguousarray(img) for name, img in zip(names, bunch.images, strict=True)}
