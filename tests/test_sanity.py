"""Sanity checks: the measures by hand, the randomisation by hand, Quantus 0.6 parity."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

import featviz
from conftest import no_hooks
from featviz import _similarity as sim
from featviz.cam import CAM, METHODS
from featviz.cam._shared import shared_maps
from featviz.sanity import (
    SanityReport,
    _random_classes,
    plot_sanity_curves,
    plot_sanity_maps,
    sanity_check,
)


class Tiny(nn.Module):
    """conv (1 -> 4 channels) -> ReLU -> global mean -> fc (4 -> 3 classes).

    With seed 0 and the images of `_images`, no method gives an all-zero map.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


def _tiny() -> Tiny:
    torch.manual_seed(0)
    return Tiny().eval()


def _images(n: int = 4, size: int = 24) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(1))


# -- the measures --------------------------------------------------------------------------
def test_spearman_by_hand_with_ties():
    a = torch.tensor([[1.0, 2.0, 2.0, 3.0]])
    b = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    # ranks (1, 2.5, 2.5, 4) and (4, 3, 2, 1): centred (-1.5, 0, 0, 1.5), (1.5, .5, -.5, -1.5)
    expected = -4.5 / math.sqrt(4.5 * 5.0)
    assert sim.spearman(a, b).item() == pytest.approx(expected, abs=1e-12)
    assert sim.spearman_abs(-a, b).item() == pytest.approx(expected, abs=1e-12)
    assert sim.spearman(-a, b).item() == pytest.approx(-expected, abs=1e-12)
    assert math.isnan(sim.spearman(torch.ones(1, 4), b).item())  # constant: as scipy


def test_ssim_by_hand_on_one_window():
    rng = np.random.default_rng(0)
    a, b = rng.random((7, 7)), rng.random((7, 7))
    # one 7 x 7 window: sample (co)variances, data range of the pair
    r = max(a.max(), b.max()) - min(a.min(), b.min())
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    cov = np.cov(a.ravel(), b.ravel())  # ddof 1
    ua, ub = a.mean(), b.mean()
    expected = ((2 * ua * ub + c1) * (2 * cov[0, 1] + c2)) / (
        (ua**2 + ub**2 + c1) * (cov[0, 0] + cov[1, 1] + c2)
    )
    got = sim.ssim(torch.from_numpy(a)[None], torch.from_numpy(b)[None])
    assert got.item() == pytest.approx(expected, abs=1e-12)
    assert sim.ssim(torch.from_numpy(a)[None], torch.from_numpy(a)[None]).item() == 1.0


def test_hog_by_hand_on_a_ramp():
    # a horizontal ramp: every gradient points along the columns (0 degrees, bin 0)
    ramp = torch.arange(24.0).expand(24, 24)[None]
    f = sim.hog_features(ramp)
    assert f.shape == (1, 1 * 1 * 3 * 3 * 9)  # one block of 3 x 3 cells, 9 bins
    blocks = f.view(3, 3, 9)
    # each cell's bin 0 is > 0.2 of the block norm: clipped to 0.2, renormalised to 1/3
    torch.testing.assert_close(blocks[..., 0], torch.full((3, 3), 1 / 3, dtype=torch.float64))
    assert blocks[..., 1:].abs().max() == 0
    assert sim.hog(ramp, 2 * ramp + 1).item() == pytest.approx(1.0)


def test_measures_agree_with_scipy_and_scikit_image():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 40, 37)), rng.random((3, 40, 37))
    b[0] = np.round(a[0] * 3) / 3  # ties
    a[1, :20] = 0
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for i in range(3):
        ref = scipy.stats.spearmanr(a[i].ravel(), b[i].ravel())[0]
        assert sim.spearman(ta, tb)[i].item() == pytest.approx(ref, abs=1e-12)
    skimage = pytest.importorskip("skimage")
    from skimage.feature import hog
    from skimage.metrics import structural_similarity

    for i in range(3):
        r = max(a[i].max(), b[i].max()) - min(a[i].min(), b[i].min())
        ref = structural_similarity(a[i], b[i], data_range=r)
        assert sim.ssim(ta, tb)[i].item() == pytest.approx(ref, abs=1e-12)
        np.testing.assert_allclose(sim.hog_features(ta[i : i + 1])[0], hog(a[i]), atol=1e-6)
        ref = np.corrcoef(hog(a[i]), hog(b[i]))[0, 1]
        assert sim.hog(ta[i : i + 1], tb[i : i + 1]).item() == pytest.approx(ref, abs=1e-6)
    assert skimage


# -- one pass for every method ------------------------------------------------------------
def test_shared_maps_equal_separate_calls():
    model, x = _tiny(), _images()
    target = torch.tensor([0, 1, 2, 0])
    cams = [CAM(model, "relu", m, progress=False) for m in METHODS]
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    together = shared_maps(cams, x, target)
    forwards = len(calls)
    for cam, got in zip(cams, together, strict=True):
        torch.testing.assert_close(got, cam(x, target), rtol=0, atol=1e-6, msg=cam.method)
    # one pass for all, plus Score-CAM's own: one probe of one image (to size its masked
    # batches from memory) and its masked forwards (4 channels x 4 images: 1 batch)
    assert forwards == 1 + 2


# -- the randomisation, by hand ---------------------------------------------------------------
def _gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return featviz.grad_cam(model, x, "relu", target)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return [scipy.stats.spearmanr(p.ravel(), q.ravel())[0] for p, q in zip(a, b, strict=True)]


def test_cascade_and_independent_equal_a_manual_run():
    model, x = _tiny(), _images()
    with torch.no_grad():
        classes = model(x).argmax(1)
    report = sanity_check(
        model, x, "gradcam", ["fc", "conv"], cam_layers="relu", measures="spearman"
    )
    assert report.layers == ["fc", "conv"]
    assert torch.equal(report.classes, classes)
    ref = _gradcam(model, x, classes)
    s = report.scores
    # cascade by hand: fc, then conv too, each reset after manual_seed(42 + 1)
    work = copy.deepcopy(model)
    expected = {}
    for name in ("fc", "conv"):
        torch.manual_seed(43)
        getattr(work, name).reset_parameters()
        expected[name] = _spearman(ref, _gradcam(work, x, classes))
    for step, name in enumerate(("fc", "conv"), start=1):
        got = s[(s.test == "cascading") & (s.step == step)].sort_values("image")
        assert (got.layer == name).all()
        np.testing.assert_allclose(got.value, expected[name], atol=1e-12, equal_nan=True)
    # independent: conv alone random, fc as trained
    work = copy.deepcopy(model)
    torch.manual_seed(43)
    work.conv.reset_parameters()
    got = s[(s.test == "independent") & (s.layer == "conv")].sort_values("image")
    np.testing.assert_allclose(got.value, _spearman(ref, _gradcam(work, x, classes)), atol=1e-12)
    assert (s[s.step == 0].value == 1.0).all()  # the trained maps against themselves


def test_tidy_scores_and_default_layers_in_quantus_order():
    model, x = _tiny(), _images(3)
    report = sanity_check(model, x, ["gradcam", "layercam"], cam_layers="relu")
    # every module with reset_parameters, output side first
    assert report.layers == ["fc", "conv"]
    s = report.scores
    assert list(s.columns) == ["method", "test", "layer", "step", "image", "measure", "value"]
    # 2 methods x 4 measures x 3 images x (3 cascading + 3 independent + 1 random logit)
    assert len(s) == 2 * 4 * 3 * 7
    assert set(s.test) == {"cascading", "independent", "random_logit"}
    assert report.maps["gradcam"]["cascading"].shape == (3, 3, 24, 24)
    assert report.maps["gradcam"]["random_logit"].shape == (2, 3, 24, 24)
    table = report.mean("cascading")
    assert list(table.columns) == ["original", "fc", "conv"]
    assert table.loc["gradcam", "original"] == 1.0


def test_model_and_global_state_left_as_found():
    model, x = _tiny(), _images()
    model.train()
    model.conv.bias.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng, np_state = torch.random.get_rng_state(), np.random.get_state()  # noqa: NPY002
    sanity_check(model, x, list(METHODS), cam_layers="relu", measures="spearman")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.training and model.conv.training
    assert not model.conv.bias.requires_grad and model.conv.weight.requires_grad
    assert torch.equal(model.fc.weight.grad, torch.full_like(model.fc.weight, 7.0))
    assert model.conv.weight.grad is None
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()  # noqa: NPY002
    assert no_hooks(model)


def test_random_classes_follow_quantus():
    classes = torch.tensor([0, 3, 9, 4, 4, 1])
    got = _random_classes(classes, 10, 42)
    # Quantus 0.6 RandomLogit.evaluate_batch, written out
    np.random.seed(42)  # noqa: NPY002 - the reference uses the legacy global RNG
    y = classes.numpy()
    y_classes = np.stack([np.arange(10) for _ in range(len(y))])
    mask = np.ones_like(y_classes)
    mask[np.arange(len(y))[None, :], y] = 0
    off = np.random.randint(0, 9, len(y))  # noqa: NPY002
    expected = y_classes[mask.astype(bool)].reshape(len(y), -1)[np.arange(len(y)), off]
    assert got.tolist() == expected.tolist()
    assert (got != classes).all()


def test_edge_detector_fails_and_gradcam_passes():
    def edges(model: nn.Module, images: torch.Tensor, target: object) -> torch.Tensor:
        return featviz.metrics.baseline_maps(images, "edges")

    model, x = _tiny(), _images()
    report = sanity_check(model, x, {"edges": edges}, cam_layers="relu", tests="cascading")
    spearman = report.scores[report.scores.measure == "spearman_abs"]
    assert (spearman.value == 1.0).all()  # the model never enters the map
    line = report.verdicts()["edges"]
    assert line == (
        "FAILS: cascading: mean Spearman(abs) 1.00 >= 0.5 after randomising all 2 layers"
    )
    assert str(report) == "edges: " + line


def test_data_randomisation_trains_on_permuted_labels():
    labels = torch.arange(20) % 3
    seen = []

    def train(permuted: torch.Tensor) -> nn.Module:
        seen.append(permuted)
        torch.manual_seed(5)
        return Tiny()

    model, x = _tiny(), _images()
    report = sanity_check(
        model, x, "gradcam", cam_layers="relu", tests="data", train=train, train_labels=labels
    )
    (permuted,) = seen
    assert sorted(permuted.tolist()) == sorted(labels.tolist())
    assert permuted.tolist() != labels.tolist()
    g = torch.Generator().manual_seed(42)
    assert torch.equal(permuted, labels[torch.randperm(20, generator=g)])
    rows = report.scores
    assert set(rows.test) == {"data"} and set(rows.layer) == {""} and set(rows.step) == {1}
    torch.manual_seed(5)
    other = Tiny()
    expected = _spearman(_gradcam(model, x, report.classes), _gradcam(other, x, report.classes))
    got = rows[rows.measure == "spearman"].sort_values("image").value
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tests": "bogus"}, ValueError, "'tests' parameter of sanity_check"),
        ({"measures": "pearson"}, ValueError, "'measures' parameter of sanity_check"),
        ({"tests": "data"}, ValueError, "needs the 'train' function"),
        ({"methods": 3}, TypeError, "'methods' parameter of sanity_check"),
        ({"methods": "nope"}, ValueError, "'method' parameter must be one of"),
        ({"target": lambda out: out[:, 0]}, ValueError, "needs one class per image"),
        ({"threshold": "high"}, TypeError, "'threshold' parameter of sanity_check"),
        ({"layers": "relu"}, ValueError, "no parameters to randomise"),
    ],
)
def test_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        sanity_check(_tiny(), _images(), **{"cam_layers": "relu", **kwargs})


def test_plots_draw_the_maps_and_one_curve_per_method():
    from matplotlib.figure import Figure

    report = sanity_check(_tiny(), _images(3), ["gradcam", "eigencam"], cam_layers="relu")
    assert isinstance(report, SanityReport)
    fig = plot_sanity_maps(report, "eigencam")
    axes = fig.axes
    assert len(axes) == 3 * 3  # 3 images x (original, fc, conv)
    maps = report.maps["eigencam"]["cascading"]
    np.testing.assert_array_equal(axes[1].images[0].get_array(), maps[1, 0].numpy())
    assert [a.get_title() for a in axes[:3]] == ["original", "fc", "conv"]
    again = Figure()
    again.add_subplot()
    assert plot_sanity_maps(report, test="random_logit", fig=again) is again
    assert len(again.axes) == 3 * 2  # cleared first
    ax = plot_sanity_curves(report, measure="ssim")
    assert [line.get_label() for line in ax.lines[:2]] == ["gradcam", "eigencam"]
    np.testing.assert_allclose(
        ax.lines[0].get_ydata(), report.mean("cascading", "ssim").loc["gradcam"].to_numpy()
    )


# -- Quantus 0.6 ------------------------------------------------------------------------------
def test_mprt_and_random_logit_equal_quantus():
    quantus = pytest.importorskip("quantus")
    model, x = _tiny(), _images(5)
    with torch.no_grad():
        y = model(x).argmax(1)
    report = sanity_check(model, x, "gradcam", None, y, cam_layers="relu", measures="spearman_abs")

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **kw: object):
        return _gradcam(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()

    spearman = quantus.similarity_func.correlation_spearman
    s = report.scores
    worst = 0.0
    for order, test in (("top_down", "cascading"), ("independent", "independent")):
        mprt = quantus.MPRT(
            layer_order=order, seed=42, abs=True, normalise=True, similarity_func=spearman
        )
        q = mprt(model, x.numpy(), y.numpy(), explain_func=explain, batch_size=len(x))
        assert set(q) == {"original", *report.layers}
        for layer, values in q.items():
            mine = s[(s.test == test) & (s.layer == layer)].sort_values("image").value
            worst = max(worst, float(np.max(np.abs(mine.to_numpy() - np.asarray(values)))))
    logit = quantus.RandomLogit(
        num_classes=3, seed=42, abs=True, normalise=True, similarity_func=spearman
    )
    q = logit(model, x.numpy(), y.numpy(), explain_func=explain, batch_size=len(x))
    mine = s[s.test == "random_logit"].sort_values("image").value.to_numpy()
    worst = max(worst, float(np.max(np.abs(mine - np.asarray(q)))))
    assert worst < 1e-6


def test_randomised_maps_do_not_warn_but_trained_ones_do():
    # a zero head: every map of the trained model is all zeros
    model, x = _tiny(), _images(2)
    with torch.no_grad():
        model.fc.weight.zero_()
    with pytest.warns(featviz.NearZeroMapWarning) as record:
        sanity_check(model, x, "gradcam", ["conv"], 0, cam_layers="relu", tests="independent")
    # the trained maps warn once; the randomised conv (zero head kept) is silent
    assert len([w for w in record if issubclass(w.category, featviz.NearZeroMapWarning)]) == 1
