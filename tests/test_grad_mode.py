"""Every entry point that trains or needs gradients works inside no_grad and inference_mode.

Users call featviz from evaluation loops, which nearly always run under `torch.no_grad()`
or `torch.inference_mode()`; the results must be the same as outside them.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

import featviz
from featviz import metrics
from featviz.cam import CAM, METHODS
from featviz.models import pretrained_tiny_cnn, train_tiny_cnn

MODES = {
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}
GRADIENT_METHODS = [m for m in METHODS if m not in ("cam", "scorecam", "eigencam")]


@pytest.fixture(scope="module")
def batch(shapes_test):
    return shapes_test.tensors()[0][:4]


def _in_mode(mode: str, fn):
    with MODES[mode]():
        return fn()


@pytest.mark.parametrize("mode", list(MODES))
def test_train_tiny_cnn_under_grad_off_modes(mode):
    ref = train_tiny_cnn(epochs=1, n_train=64)
    got = _in_mode(mode, lambda: train_tiny_cnn(epochs=1, n_train=64))
    for (name, a), (_, b) in zip(ref.state_dict().items(), got.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # parameters are normal tensors: the model can be used with autograd afterwards
    assert not any(p.is_inference() for p in got.parameters())


@pytest.mark.parametrize("mode", list(MODES))
def test_pretrained_tiny_cnn_cold_cache_under_grad_off_modes(mode, tmp_path, batch):
    model = _in_mode(mode, lambda: pretrained_tiny_cnn(epochs=1, n_train=64, cache_dir=tmp_path))
    assert len(list(tmp_path.glob("tiny_cnn-*.pt"))) == 1
    # the warm path too, and the loaded model still works with autograd
    again = _in_mode(mode, lambda: pretrained_tiny_cnn(epochs=1, n_train=64, cache_dir=tmp_path))
    assert not any(p.is_inference() for p in again.parameters())
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    maps = featviz.grad_cam(again, batch, "features.13")
    assert maps.shape == (4, 64, 64)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("method", list(METHODS))
def test_cam_methods_under_grad_off_modes(mode, method, tiny_model, batch):
    ref = CAM(tiny_model, "features.13", method=method, progress=False)(batch, target=1)
    with MODES[mode]():
        x = batch.clone()  # an inference tensor under inference_mode
        got = CAM(tiny_model, "features.13", method=method, progress=False)(x, target=1)
    assert torch.allclose(ref, got, atol=1e-6)
    assert not got.is_inference()
    # the caller's grad mode is back after the call
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("mode", list(MODES))
def test_grad_cam_and_modes_restored(mode, tiny_model, batch):
    ref = featviz.grad_cam(tiny_model, batch, "features.13")
    with MODES[mode]():
        got = featviz.grad_cam(tiny_model, batch, "features.13")
        assert not torch.is_grad_enabled()
        assert torch.is_inference_mode_enabled() == (mode == "inference_mode")
    assert torch.equal(ref, got)
    assert all(p.grad is None for p in tiny_model.parameters())


@pytest.mark.parametrize("mode", list(MODES))
def test_metrics_under_grad_off_modes(mode, tiny_model, batch):
    maps = featviz.grad_cam(tiny_model, batch, "features.13")

    def run():
        return (
            metrics.deletion_auc(tiny_model, batch, maps, steps=4).auc,
            metrics.insertion_auc(tiny_model, batch, maps, steps=4).auc,
            torch.tensor(metrics.average_drop(tiny_model, batch, maps)),
            torch.tensor(metrics.increase_in_confidence(tiny_model, batch, maps)),
        )

    for a, b in zip(run(), _in_mode(mode, run), strict=True):
        assert torch.allclose(a, b)


@pytest.mark.parametrize("mode", list(MODES))
def test_compare_cams_under_grad_off_modes(mode, tiny_model, batch):
    fig = _in_mode(
        mode,
        lambda: featviz.compare_cams(
            {"a": tiny_model, "b": tiny_model}, batch[:2], layers="features.13"
        ),
    )
    # 2 rows x (input + 2 models) image panels, each with a drawn image
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6


@pytest.mark.parametrize("mode", list(MODES))
def test_cli_cam_under_grad_off_modes(mode, tmp_path, shapes_test):
    from featviz.cli import main

    path = tmp_path / "img.png"
    featviz.save_image(shapes_test.images[0].permute(1, 2, 0).mul(255).byte().numpy(), path)
    out = tmp_path / f"out-{mode}"
    with MODES[mode]():
        rc = main(["cam", str(path), "--out", str(out), "--layer", "features.13"])
    assert rc == 0
    assert len(list(out.iterdir())) >= 1


def test_model_created_in_inference_mode_gets_a_clear_error(batch):
    with torch.inference_mode():
        model = featviz.models.TinyCNN()
    with pytest.raises(RuntimeError, match="inference_mode"):
        featviz.grad_cam(model.eval(), batch, "features.13")


def test_no_grad_leaks_out_of_a_failing_call(tiny_model, batch):
    with contextlib.suppress(ValueError), torch.no_grad():
        featviz.grad_cam(tiny_model, batch, "features.13", target=99)
    assert torch.is_grad_enabled()
