import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from featviz.datasets import SHAPE_CLASSES, Shapes, ShapesItem, sample_photos


def test_items_shapes_and_types():
    ds = Shapes(12, size=32, random_state=3)
    item = ds[5]
    assert isinstance(item, ShapesItem)
    assert item.image.shape == (3, 32, 32) and item.image.dtype == torch.float32
    assert 0.0 <= float(item.image.min()) and float(item.image.max()) <= 1.0
    assert item.label.dtype == torch.int64 and 0 <= int(item.label) < 4
    assert item.box.shape == (4,) and item.mask.shape == (32, 32) and item.mask.dtype == torch.bool
    assert ds.classes == SHAPE_CLASSES and len(ds) == 12


def test_deterministic_by_seed():
    a, b, c = Shapes(20, random_state=7), Shapes(20, random_state=7), Shapes(20, random_state=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)


def test_boxes_inside_image_and_tight_around_mask():
    ds = Shapes(200, size=48, random_state=0)
    x0, y0, x1, y1 = ds.boxes.unbind(1)
    assert bool(((x0 >= 0) & (y0 >= 0) & (x1 <= 48) & (y1 <= 48)).all())
    assert bool(((x1 > x0) & (y1 > y0)).all())
    for i in range(len(ds)):
        m = ds.masks[i]
        bx0, by0, bx1, by1 = ds.boxes[i].tolist()
        assert int(m.sum()) == int(m[by0:by1, bx0:bx1].sum()) > 0
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == (
            bx0,
            by0,
            bx1,
            by1,
        )


def test_object_pixels_are_the_drawn_colour():
    # object pixels are bright (>= 0.55 - noise), so the mask marks what is drawn
    ds = Shapes(50, random_state=2, noise=0.0, distractors=0)
    img = ds.images.float() / 255
    inside = img.permute(0, 2, 3, 1)[ds.masks]
    assert float(inside.min()) >= 0.54


def test_class_balance():
    ds = Shapes(103, random_state=1)
    counts = torch.bincount(ds.labels, minlength=4)
    assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == 103


def test_custom_classes_and_loader_collate():
    ds = Shapes(8, random_state=0, class_names=("ring", "diamond"))
    assert ds.classes == ("ring", "diamond")
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch.image.shape == (4, 3, 64, 64) and batch.box.shape == (4, 4)


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"n": 0}, "'n'"),
        ({"n": -3}, "'n'"),
        ({"n": 4, "size": -1}, "'size'"),
        ({"n": 4, "size": 8}, "'size'"),
        ({"n": 4, "class_names": ("circle", "hexagon")}, "hexagon"),
        ({"n": 4, "class_names": ("circle",)}, "'class_names'"),
        ({"n": 4, "class_names": "circle"}, "'class_names'"),
        ({"n": 4, "distractors": -1}, "'distractors'"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, param):
    with pytest.raises(ValueError, match=param):
        Shapes(**kwargs)


def test_sample_photos():
    photos = sample_photos()
    assert set(photos) == {"china", "flower"}
    for img in photos.values():
        assert img.shape == (427, 640, 3) and img.dtype == np.uint8


def test_class_names_old_name_classes_warns_and_gives_the_same_data():
    with pytest.warns(FutureWarning, match="'classes' parameter of Shapes is renamed"):
        old = Shapes(6, random_state=3, classes=("ring", "diamond"))
    new = Shapes(6, random_state=3, class_names=("ring", "diamond"))
    assert old.classes == new.classes == ("ring", "diamond")
    assert torch.equal(old.images, new.images) and torch.equal(old.labels, new.labels)
