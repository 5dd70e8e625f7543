import numpy as np
import pytest
import torch
from torch import nn

import featviz
from conftest import no_hooks
from featviz.compare import _rescale, compare_cams, compare_feature_maps, compare_projections
from featviz.models import TinyCNN


@pytest.fixture
def two_models(tiny_model):
    torch.manual_seed(1)
    untrained = TinyCNN()
    untrained.classes = tiny_model.classes
    return {"untrained": untrained.eval(), "trained": tiny_model}


def test_rescale_map_and_row_exact():
    maps = {
        "a": torch.tensor([[[0.0, 1.0], [2.0, 4.0]]]),
        "b": torch.tensor([[[2.0, 2.0], [2.0, 2.0]]]),
    }
    per_map = dict(maps)
    _rescale(per_map, "map")
    assert torch.equal(per_map["a"], torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))
    assert torch.equal(per_map["b"], torch.zeros(1, 2, 2))  # constant map -> zeros
    row = dict(maps)
    _rescale(row, "row")  # one min (0) and max (4) over both models
    assert torch.equal(row["a"], torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))
    assert torch.equal(row["b"], torch.full((1, 2, 2), 0.5))


def test_compare_cams_panels_titles_and_pixels(two_models, shapes_test):
    images = shapes_test.tensors()[0][:3]
    modes = {name: m.training for name, m in two_models.items()}
    fig = compare_cams(two_models, images, layers="features.13")
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 3 * 3  # rows x (input + 2 models)
    assert len(fig.axes) == 10  # + one shared colour bar
    titles = [ax.get_title() for ax in image_axes]
    assert titles[0] == "input"
    with torch.no_grad():
        probs = two_models["trained"](images).softmax(1)
    score, cls = probs.max(1)
    pred = f"{two_models['trained'].classes[int(cls[0])]} ({float(score[0]):.2f})"
    expected = f"trained\nlayer: features.13\n{pred}"  # the first row names the layer
    assert expected in titles
    second = f"trained\n{two_models['trained'].classes[int(cls[1])]} ({float(score[1]):.2f})"
    assert second in titles
    # the trained model's first overlay equals featviz.overlay of its normalised Grad-CAM
    cam = featviz.grad_cam(two_models["trained"], images, "features.13", normalize=False)
    lo = cam.flatten(1).min(1).values[:, None, None]
    hi = cam.flatten(1).max(1).values[:, None, None]
    ref = featviz.overlay(images, (cam - lo) / (hi - lo), alpha=0.4, normalize=False)
    panel = next(ax for ax in image_axes if ax.get_title() == expected)
    np.testing.assert_array_equal(np.asarray(panel.images[0].get_array()), ref[0].numpy())
    # models untouched, no hooks left
    assert {name: m.training for name, m in two_models.items()} == modes
    assert all(no_hooks(m) for m in two_models.values())


def test_compare_cams_restores_train_mode(two_models, shapes_test):
    model = two_models["untrained"].train()
    compare_cams({"a": model}, shapes_test.tensors()[0][:2], layers="features.13")
    assert model.training and all(m.training for m in model.modules())


def test_compare_feature_maps_pixels(two_models, shapes_test):
    images = shapes_test.tensors()[0][:2]
    fig = compare_feature_maps(
        two_models, images, layers={"untrained": "features.6", "trained": "features.13"}
    )
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 2 * 3
    with torch.no_grad(), featviz.capture(two_models["trained"], "features.13") as cap:
        two_models["trained"](images)
    summed = featviz.upsample(featviz.sum_channels(cap.activations["features.13"]), (64, 64))
    ref = featviz.overlay(images, featviz.normalize(summed), alpha=0.4, normalize=False)
    trained_axes = [ax for ax in image_axes if ax.get_title().startswith("trained")]
    np.testing.assert_array_equal(np.asarray(trained_axes[1].images[0].get_array()), ref[1].numpy())
    assert all(no_hooks(m) for m in two_models.values())


def test_compare_projections_titles_carry_quality():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    centres = rng.normal(size=(3, 16)) * 8
    good = centres[labels] + rng.normal(size=(120, 16))
    bad = rng.normal(size=(120, 16))
    fig = compare_projections({"baseline": bad, "ours": good}, labels, method="pca")
    assert len(fig.axes) == 2
    t0, t1 = (ax.get_title() for ax in fig.axes)
    assert t0.startswith("baseline\n") and t1.startswith("ours\n")
    assert "10-NN" in t1 and "trust" in t1.lower()
    assert all(len(ax.collections[0].get_offsets()) == 120 for ax in fig.axes)


def test_bad_inputs_name_the_parameter(two_models, shapes_test):
    images = shapes_test.tensors()[0][:2]
    with pytest.raises(TypeError, match="'models'"):
        compare_cams([two_models["trained"]], images)
    with pytest.raises(TypeError, match="'images'"):
        compare_cams(two_models, images.numpy())
    with pytest.raises(ValueError, match=r"'layers'.*'trained'"):
        compare_feature_maps(two_models, images, layers={"untrained": "features.6"})
    with pytest.raises(ValueError, match="'scale'"):
        compare_cams(two_models, images, layers="features.13", scale="global")
    with pytest.raises(ValueError, match="same samples"):
        compare_projections({"a": np.zeros((10, 3)), "b": np.zeros((11, 3))}, np.zeros(10))
    with pytest.raises(ValueError, match="'labels'"):
        compare_projections({"a": np.zeros((10, 3))}, np.zeros(9))
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        compare_cams({"a": nn.Linear(2, 2), "b": "model"}, images)


def test_a_given_figure_is_cleared_then_drawn_into(two_models):
    from matplotlib.figure import Figure

    from featviz.compare import compare_cams

    fig = Figure()
    stale = fig.add_subplot()
    images = torch.rand(1, 3, 32, 32)
    out = compare_cams(two_models, images, layers="features.13", fig=fig)
    assert out is fig and stale not in fig.axes
    assert len([ax for ax in fig.axes if ax.images]) == 3  # input + one per model


def test_compare_cams_titles_report_the_auto_layer_and_reshape():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=16
    )
    with pytest.warns(UserWarning, match="no layer given"):
        fig = compare_cams({"vit": vit}, torch.rand(2, 3, 32, 32))
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles[1].startswith(
        "vit\nlayer: encoder.layers.encoder_layer_0.ln_1 (tokens[:, 1:] -> (N, C, 4, 4))\n"
    )
    assert titles[3].startswith("vit\n") and "layer" not in titles[3]


def test_row_names_old_name_row_labels_warns(two_models, shapes_test):
    x = shapes_test.tensors()[0][:2]
    with pytest.warns(FutureWarning, match="'row_labels' parameter of compare_feature_maps"):
        fig = compare_feature_maps(two_models, x, layers="features.6", row_labels=["a", "b"])
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()][:2] == ["a", "b"]
