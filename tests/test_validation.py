"""featviz._validation: one wording for argument errors, and renamed parameters."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import featviz
from featviz._validation import check_choice, check_int, renamed


def test_check_int_wording_and_range():
    assert check_int(np.int64(3), "n", "f", 1) == 3
    with pytest.raises(
        ValueError,
        match=r"^The 'n' parameter of f must be an int in the range \[1, inf\)\. Got 0 instead\.$",
    ):
        check_int(0, "n", "f", 1)
    with pytest.raises(ValueError, match=r"\[0, 9\]\. Got 10"):
        check_int(10, "n", "f", 0, 9)
    for bad in (True, 1.0, "1", None):
        with pytest.raises(ValueError, match="'n' parameter of f"):
            check_int(bad, "n", "f", 0)


def test_check_choice_case():
    assert check_choice("PCA", "method", "f", ("pca",), ignore_case=True) == "pca"
    with pytest.raises(
        ValueError, match=r"'method' parameter of f must be one of \['pca'\]\. Got 'PCA'"
    ):
        check_choice("PCA", "method", "f", ("pca",))
    with pytest.raises(ValueError, match="Got 3 instead"):
        check_choice(3, "method", "f", ("pca",), ignore_case=True)


def test_renamed_passes_the_value_warns_and_keeps_the_signature():
    @renamed(old="new")
    def f(a, new=0):
        return a + new

    assert f(1, new=2) == 3
    with pytest.warns(FutureWarning, match="The 'old' parameter of .*f is renamed 'new'"):
        assert f(1, old=5) == 6
    with pytest.raises(TypeError, match="got both 'old'"):
        f(1, old=1, new=2)
    assert list(inspect.signature(f).parameters) == ["a", "new"]


@pytest.mark.parametrize(
    ("call", "old", "new"),
    [
        (lambda kw: featviz.normalize(**kw), "map", "heatmaps"),
        (lambda kw: featviz.colorize(**kw), "map", "heatmaps"),
        (lambda kw: featviz.sum_channels(**kw), "fmap", "activations"),
    ],
)
def test_public_aliases_give_the_same_result(call, old, new):
    x = torch.rand(2, 3, 4, 4)
    with pytest.warns(FutureWarning, match=f"'{old}' parameter"):
        a = call({old: x})
    assert torch.equal(a, call({new: x}))


def test_grad_cam_layer_alias(tiny_model, shapes_test):
    images = shapes_test.tensors()[0][:2]
    with pytest.warns(FutureWarning, match="'layer' parameter of grad_cam is renamed 'layers'"):
        old = featviz.grad_cam(tiny_model, images, layer="features.13")
    assert torch.equal(old, featviz.grad_cam(tiny_model, images, layers="features.13"))
