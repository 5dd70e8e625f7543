"""In-place ops after the chosen layer must not change what featviz reads (issue 14).

Each model is compared with an identical copy whose in-place ops are all turned off
(``inplace=False`` on modules; torchvision's ``out += identity`` and DenseNet's
functional ``relu(..., inplace=True)`` replaced by out-of-place forwards on the copy):
`capture` activations and gradients, and the maps of every CAM method, agree to 1e-5.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_no_hooks
from featviz import CAM, capture
from featviz.cam import METHODS

TOL = {"rtol": 0, "atol": 1e-5}


class _Residual(nn.Module):
    """conv -> bn -> (out += identity) -> relu, like torchvision's BasicBlock."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        if self.inplace:
            out += x
        else:
            out = out + x
        return self.relu(out)


def _conv_relu() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )


def _residual() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        _Residual(),
        _Residual(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )


def _vgg11() -> nn.Module:
    tv = pytest.importorskip("torchvision")
    return tv.models.vgg11(weights=None, num_classes=10)


def _resnet18() -> nn.Module:
    tv = pytest.importorskip("torchvision")
    return tv.models.resnet18(weights=None, num_classes=10)


def _densenet121() -> nn.Module:
    tv = pytest.importorskip("torchvision")
    return tv.models.densenet121(weights=None, num_classes=10)


def _basic_block_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + identity)


def _densenet_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = F.relu(self.features(x), inplace=False)
    out = torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
    return self.classifier(out)


def _out_of_place(model: nn.Module) -> nn.Module:
    """An identical copy of ``model`` with every in-place op turned off."""
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
        if type(m).__name__ == "BasicBlock":
            m.forward = types.MethodType(_basic_block_forward, m)
        if type(m).__name__ == "DenseNet":
            m.forward = types.MethodType(_densenet_forward, m)
    return ref


# (builder, input shape, layers, a layer with few channels for Score-CAM or None)
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], list[str], str | None]] = {
    "conv+relu(inplace)": (_conv_relu, (2, 3, 8, 8), ["0", "2"], "2"),
    "out += identity": (_residual, (2, 3, 8, 8), ["1.bn", "2.bn", "1"], "2.bn"),
    "vgg11": (_vgg11, (1, 3, 32, 32), ["features.0", "features.18"], "features.0"),
    "resnet18": (
        _resnet18,
        (2, 3, 64, 64),
        ["layer1.0.bn1", "layer2.1.bn2", "layer4.1.bn2"],
        "layer1.0.bn2",
    ),
    "densenet121": (_densenet121, (1, 3, 64, 64), ["features.norm5"], None),
}


@pytest.fixture(scope="module", params=list(CASES))
def pair(request):
    build, shape, layers, score_layer = CASES[request.param]
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    return request.param, model, _out_of_place(model), x, layers, score_layer


def test_reference_differs_without_the_fix(pair):
    """The patterns do modify the layer's output in place (so the tests can fail)."""
    _, model, _, x, layers, _ = pair
    seen: dict[str, torch.Tensor] = {}
    copies: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:

        def keep(mod, args, out, name=name):
            seen[name], copies[name] = out, out.detach().clone()

        handles.append(model.get_submodule(name).register_forward_hook(keep))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    assert any(not torch.equal(seen[n], copies[n]) for n in layers)


@pytest.mark.parametrize("detach", [True, False])
def test_capture_activations_and_gradients_match_out_of_place_model(pair, detach):
    _, model, ref, x, layers, _ = pair
    results = []
    for m in (model, ref):
        with capture(m, layers, gradients=True, detach=detach) as cap:
            y = m(x)
            params = [p for p in m.parameters() if p.requires_grad][:1]
            torch.autograd.grad(y[:, 3].sum() + (y**2).mean(), params)
        results.append(cap)
        assert_no_hooks(m)
    got, want = results
    for name in layers:
        torch.testing.assert_close(got.activations[name], want.activations[name], **TOL)
        torch.testing.assert_close(got.gradients[name], want.gradients[name], **TOL)
        assert float(want.gradients[name].abs().max()) > 0


def test_capture_detach_false_gives_gradients_of_the_layer_output(pair):
    """autograd.grad w.r.t. the stored live tensors equals the out-of-place model's."""
    _, model, ref, x, layers, _ = pair
    grads = []
    for m in (model, ref):
        with capture(m, layers, detach=False) as cap:
            y = m(x)
        grads.append(torch.autograd.grad(y[:, 3].sum(), [cap.activations[n] for n in layers]))
    for g, r in zip(*grads, strict=True):
        torch.testing.assert_close(g, r, **TOL)


@pytest.mark.parametrize("method", METHODS)
def test_every_cam_method_matches_out_of_place_model(pair, method):
    name, model, ref, x, layers, score_layer = pair
    if method == "scorecam":
        if score_layer is None:
            pytest.skip("Score-CAM over 1024 channels is too slow here")
        layers = [score_layer]
        x = x[:1]  # one masked forward pass per channel and image: keep it short
    if method == "cam":
        if name == "vgg11":
            pytest.skip("VGG has no global pooling before its classifier: classic CAM")
        layers = [layers[-1]]  # the layer feeding the pooling (its channels match fc)
    for layer in layers:
        got = CAM(model, layer, method, progress=False)(x, 3)
        want = CAM(ref, layer, method, progress=False)(x, 3)
        torch.testing.assert_close(got, want, **TOL)
    assert_no_hooks(model)
    assert not any(m.training for m in model.modules())
