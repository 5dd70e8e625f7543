"""featviz._images: image ingestion, sizes and mean/std (one rule each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from featviz import _images


def test_pil_to_rgb_composites_alpha_on_white():
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # fully transparent blue -> background
    out = _images.pil_to_rgb(Image.fromarray(rgba, "RGBA"))
    assert out.dtype == np.uint8
    assert out.tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_pil_to_float_keeps_16_bit_depth():
    a = np.array([[0, 257, 65535]], np.uint16)
    out = _images.pil_to_float(Image.fromarray(a))
    assert out.shape == (1, 3, 3) and out.dtype == np.float32
    assert np.allclose(out[0, :, 0], [0.0, 257 / 65535, 1.0])


@pytest.mark.parametrize(("size", "expected"), [(5, (5, 5)), ((3, 4), (3, 4)), ([2, 1], (2, 1))])
def test_size2_accepts(size, expected):
    assert _images.size2(size, "size", "f") == expected


@pytest.mark.parametrize("size", [0, -1, (1,), (1, 2, 3), (1.5, 2), True, "3", (0, 2)])
def test_size2_rejects_naming_parameter_and_function(size):
    with pytest.raises(ValueError, match=r"The 'size' parameter of f must be"):
        _images.size2(size, "size", "f")


def test_mean_std_shapes_and_values():
    m, s = _images.mean_std((0.5, 0.25, 0.0), 2.0, 3, torch.device("cpu"), "f")
    assert m.shape == (3, 1, 1) and s.shape == (1, 1, 1)
    assert m.flatten().tolist() == [0.5, 0.25, 0.0] and float(s) == 2.0


@pytest.mark.parametrize(
    ("mean", "std"),
    [((0.5, 0.5), 1.0), (0.5, (1.0, 0.0, 1.0)), (0.5, 0.0), (float("nan"), 1.0), ("a", 1.0)],
)
def test_mean_std_one_rule(mean, std):
    with pytest.raises(ValueError, match=r"The 'mean' and 'std' parameters of f"):
        _images.mean_std(mean, std, 3, torch.device("cpu"), "f")
