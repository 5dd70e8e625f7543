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


# -- ingestion: the internal forms ----------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "numpy", "code"),
    [
        ((5, 6), True, "HW"),
        ((5, 6, 3), True, "HWC"),
        ((2, 5, 6), True, "NHW"),
        ((2, 5, 6, 4), True, "NHWC"),
        ((3, 5, 6), False, "CHW"),
        ((2, 5, 6), False, "NHW"),
        ((2, 1, 5, 6), False, "NCHW"),
    ],
)
def test_image_layout_one_rule(shape, numpy, code):
    assert _images.image_layout(shape, numpy=numpy, func="f", param="images", value=None) == code


def test_image_layout_refuses_the_wrong_channel_order_with_the_fix():
    with pytest.raises(ValueError, match=r"use images\.transpose\(1, 2, 0\)"):
        _images.image_layout((3, 5, 6), numpy=True, func="f", param="images", value=None)
    with pytest.raises(ValueError, match=r"use images\.permute\(0, 3, 1, 2\)"):
        _images.image_layout((2, 5, 6, 3), numpy=False, func="f", param="images", value=None)
    # one image wanted: a tensor (H, W, C) is read as such
    assert (
        _images.image_layout((5, 6, 3), numpy=False, func="f", param="a", value=0, single=True)
        == "HWC"
    )


def test_image_batch_with_n_reads_3d_as_a_grey_batch():
    x = np.zeros((3, 5, 6), np.uint8)  # would be channel-first for one image
    b = _images.image_batch(x, func="f", n=3)
    assert tuple(b.nhwc.shape) == (3, 5, 6, 1) and b.batched
    with pytest.raises(ValueError, match=r"a batch of N=4 images"):
        _images.image_batch(x, func="f", n=4)


def test_rgb_float_never_aliases_grey_input():
    grey = torch.tensor([[[[0], [255]]]], dtype=torch.uint8)  # (1, 1, 2, 1)
    out = _images.rgb_float(grey, scale=255.0)
    out.add_(1)  # the in-place write that crashed plot_overlays on an expanded view
    assert out.tolist() == [[[[1.0] * 3, [256.0] * 3]]]
    assert grey.tolist() == [[[[0], [255]]]]
    chw = _images.rgb_float(grey, channels_first=True)
    assert chw.shape == (1, 3, 1, 2) and chw[0, :, 0, 1].tolist() == [1.0, 1.0, 1.0]


def test_rgb_float_standardised_and_rgba():
    x = torch.full((1, 1, 1, 3), -1.0)
    ms = (torch.tensor([0.5]), torch.tensor([0.25]))
    assert _images.rgb_float(x, ms).flatten().tolist() == [0.25] * 3
    rgba = torch.tensor([[[[255, 0, 0, 0], [255, 0, 0, 255]]]], dtype=torch.uint8)
    assert _images.rgb_float(rgba, scale=255.0).tolist() == [[[[255.0] * 3, [255.0, 0.0, 0.0]]]]


def test_display_mean_std_rules():
    f = torch.zeros(1, 2, 2, 3)
    with pytest.raises(ValueError, match="given together"):
        _images.display_mean_std(f, (0.5,), None, func="f")
    with pytest.raises(ValueError, match="Got uint8 images"):
        _images.display_mean_std(f.to(torch.uint8), 0.5, 0.5, func="f")
    m, s = _images.display_mean_std(f, (0.1, 0.2, 0.3), 2.0, func="f")
    assert m.tolist() == pytest.approx([0.1, 0.2, 0.3]) and s.tolist() == [2.0]
    with pytest.warns(UserWarning, match=r"'images' parameter of f holds floats up to 200"):
        assert _images.display_mean_std(f + 200, None, None, func="f") is None


@pytest.mark.parametrize(
    "maps",
    [
        np.ones((2, 3), np.float16),
        torch.ones(1, 2, 3, dtype=torch.bfloat16),
        torch.ones(1, 1, 2, 3, dtype=torch.float64),
        np.ones((1, 2, 3), bool),
        np.ones((1, 2, 3), np.int64),
    ],
)
def test_heatmap_batch_any_dtype_to_float32(maps):
    b = _images.heatmap_batch(maps, func="f")
    assert b.maps.dtype == torch.float32 and tuple(b.maps.shape) == (1, 2, 3)
    assert b.maps.flatten().tolist() == [1.0] * 6
    assert b.batched == (np.ndim(maps) > 2)


def test_heatmap_batch_names_the_entry():
    with pytest.raises(ValueError, match=r"N=3 \(one per image\)\. Got ndarray .* for 'cam'"):
        _images.heatmap_batch(np.zeros((2, 4, 4)), func="f", n=3, key="cam")


def test_label_array_one_rule():
    assert _images.label_array([0.0, 1.0], 2, func="f").dtype == np.int64
    assert _images.label_array([0.5, 1.0], 2, func="f").tolist() == [0.5, 1.0]
    assert _images.label_array([True, False], 2, func="f").dtype == np.bool_
    assert _images.label_array(np.array([b"a", b"b"]), 2, func="f").tolist() == ["a", "b"]
    with pytest.raises(ValueError, match=r"mix of \['int', 'str'\]"):
        _images.label_array(["a", 1], 2, func="f")


def test_model_batch_takes_float_tensors_as_they_are():
    x = torch.rand(2, 5, 4, 4, requires_grad=True)  # any channel count, grads kept
    assert _images.model_batch(x, func="f") is x
    assert _images.model_batch(x[0], func="f", single=True).shape == (1, 5, 4, 4)
    with pytest.raises(
        TypeError, match=r"'images' parameter of f must be a float tensor .* ndarray"
    ):
        _images.model_batch(np.zeros((1, 3, 4, 4)), func="f")
    with pytest.raises(
        ValueError, match=r"a non-empty float tensor \(N, C, H, W\)\. Got .* torch\.uint8"
    ):
        _images.model_batch(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), func="f")
    with pytest.raises(ValueError, match=r"Got Tensor of shape \(3, 4, 4\)"):
        _images.model_batch(torch.zeros(3, 4, 4), func="f")
