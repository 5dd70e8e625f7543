"""Class activation maps: hand-computed references on a tiny fixed-weight model."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from conftest import assert_no_hooks, no_hooks
from featviz.cam import CAM, METHODS, class_activation_map, grad_cam
from featviz.hooks import capture


# --------------------------------------------------------------------------------------
# a model small enough to do every method by hand
# --------------------------------------------------------------------------------------
class Tiny(nn.Module):
    """conv (identity 1x1, 2->2) -> ReLU -> global average pool -> fc (no bias).

    fc weights W = [[1, 2], [3, -1]]: s_c = sum_k W_ck mean(ReLU(A_k)), so
    d s_c / d A_k(i, j) = W_ck / 4 * [A_k(i, j) > 0] on a 2x2 input.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


A0 = [[1.0, 2.0], [3.0, -4.0]]
A1 = [[4.0, -2.0], [0.0, 1.0]]
X = torch.tensor([[A0, A1]])  # (1, 2, 2, 2); the conv is the identity, so A = X
# logits: s0 = 1.5 + 2 * 1.25 = 4.0, s1 = 3 * 1.5 - 1.25 = 3.25 -> arg-max class 0
# class 1 gradients: G0 = 0.75 * [A0 > 0], G1 = -0.25 * [A1 > 0]
G0 = [[0.75, 0.75], [0.75, 0.0]]
G1 = [[-0.25, 0.0], [0.0, -0.25]]


def _score_cam_weights() -> tuple[float, float]:
    # masks: min-max of each channel (no upsampling: the layer is at input size)
    # M0 = (A0 + 4) / 7, M1 = (A1 + 2) / 6; class-1 scores of X * M_k worked out by hand:
    s_m0 = 3 * (19 / 14) - 5 / 7  # ReLU means (19/14, 5/7)
    s_m1 = 3 * 0.5 - 1.125  # ReLU means (1/2, 9/8)
    e0, e1 = math.exp(s_m0), math.exp(s_m1)
    return e0 / (e0 + e1), e1 / (e0 + e1)


def _eigen_map() -> list[list[float]]:
    # centred channels and the top eigenvector of X^T X = [[29, -5.5], [-5.5, 18.75]]
    c0 = [0.5, 1.5, 2.5, -4.5]
    c1 = [3.25, -2.75, -0.75, 0.25]
    tr, det = 29 + 18.75, 29 * 18.75 - 5.5**2
    lam = (tr + math.sqrt(tr * tr - 4 * det)) / 2
    v = [1.0, (29 - lam) / 5.5]  # sum(v) > 0: the chosen sign
    norm = math.hypot(*v)
    v = [v[0] / norm, v[1] / norm]
    flat = [v[0] * a + v[1] * b for a, b in zip(c0, c1, strict=True)]
    return [flat[:2], flat[2:]]


_W0, _W1 = _score_cam_weights()
# raw maps (relu=False, normalize=False, size=None) for target class 1, by hand
RAW_CLASS1 = {
    # w = spatial mean of G = (2.25/4, -0.5/4)
    "gradcam": [[0.0625, 1.375], [1.6875, -2.375]],
    # alpha = g^2 / (2 g^2 + sum(A) g^3) = 0.5625 / 1.96875 = 2/7 on channel 0; w = (9/14, 0)
    "gradcam++": [[9 / 14, 18 / 14], [27 / 14, -36 / 14]],
    # w = sum(G A) / sum(A) = (4.5 / 2, -1.25 / 3)
    "xgradcam": [[7 / 12, 16 / 3], [27 / 4, -113 / 12]],
    # sum_k G_k A_k
    "hirescam": [[-0.25, 1.5], [2.25, -0.25]],
    # sum_k ReLU(G_k A_k)
    "gradcamelementwise": [[0.75, 1.5], [2.25, 0.0]],
    # sum_k ReLU(G_k) A_k
    "layercam": [[0.75, 1.5], [2.25, 0.0]],
    # softmax over channels of the masked-input class-1 scores
    "scorecam": [
        [_W0 * 1 + _W1 * 4, _W0 * 2 - _W1 * 2],
        [_W0 * 3 + _W1 * 0, -_W0 * 4 + _W1 * 1],
    ],
    "eigencam": _eigen_map(),
}


@pytest.fixture
def tiny():
    return Tiny().eval()


@pytest.mark.parametrize("method", sorted(RAW_CLASS1))
def test_raw_maps_match_hand_computation(tiny, method):
    cam = CAM(tiny, "conv", method=method, relu=False, normalize=False, size=None)
    out = cam(X, target=1)
    expected = torch.tensor([RAW_CLASS1[method]])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert out.dtype == torch.float32


def test_classic_cam_matches_hand_computation(tiny):
    # ReLU(A) = [[1, 2], [3, 0]], [[4, 0], [0, 1]]; class 1 row W1 = (3, -1)
    raw = class_activation_map(tiny, X, "relu", target=1, relu=False, normalize=False, size=None)
    torch.testing.assert_close(raw, torch.tensor([[[-1.0, 6.0], [9.0, -1.0]]]))
    norm = class_activation_map(tiny, X, "relu", target=1, size=None)
    torch.testing.assert_close(norm, torch.tensor([[[0.0, 6 / 9], [1.0, 0.0]]]))
    # average over classes: mean row (2, 0.5)
    avg = class_activation_map(
        tiny, X, "relu", average_classes=True, relu=False, normalize=False, size=None
    )
    torch.testing.assert_close(avg, torch.tensor([[[4.0, 4.0], [6.0, 0.5]]]))
    # explicit fc by name gives the same
    same = class_activation_map(
        tiny, X, "relu", fc="fc", target=1, relu=False, normalize=False, size=None
    )
    torch.testing.assert_close(same, raw)


def test_gradcam_relu_then_minmax(tiny):
    out = grad_cam(tiny, X, "conv", target=1, size=None)
    # ReLU([[1/16, 11/8], [27/16, -19/8]]) / (27/16)
    torch.testing.assert_close(out, torch.tensor([[[1 / 27, 22 / 27], [1.0, 0.0]]]))
    hires = CAM(tiny, "conv", method="hirescam", size=None)(X, target=1)
    torch.testing.assert_close(hires, torch.tensor([[[0.0, 2 / 3], [1.0, 0.0]]]))


def test_target_none_is_argmax_and_callable(tiny):
    # arg-max class 0: w = (0.75/4, 1/4)
    expected0 = torch.tensor([[[1.1875, -0.125], [0.5625, -0.5]]])
    kw = {"relu": False, "normalize": False, "size": None}
    torch.testing.assert_close(grad_cam(tiny, X, "conv", **kw), expected0)
    torch.testing.assert_close(grad_cam(tiny, X, "conv", target=0, **kw), expected0)
    by_fn = grad_cam(tiny, X, "conv", target=lambda out: out[:, 1], **kw)
    torch.testing.assert_close(by_fn, torch.tensor([RAW_CLASS1["gradcam"]]))
    # a callable may score anything differentiable: 2 * s1 doubles the raw map
    doubled = grad_cam(tiny, X, "conv", target=lambda out: 2 * out[:, 1], **kw)
    torch.testing.assert_close(doubled, 2 * torch.tensor([RAW_CLASS1["gradcam"]]))


def test_per_image_targets_and_length_check(tiny):
    x = torch.cat([X, X])
    kw = {"relu": False, "normalize": False, "size": None}
    out = grad_cam(tiny, x, "conv", target=[1, 0], **kw)
    torch.testing.assert_close(out[0], torch.tensor(RAW_CLASS1["gradcam"]))
    torch.testing.assert_close(out[1], torch.tensor([[1.1875, -0.125], [0.5625, -0.5]]))
    torch.testing.assert_close(grad_cam(tiny, x, "conv", target=torch.tensor([1, 0]), **kw), out)
    with pytest.raises(ValueError, match="one entry per image: the batch has 2 images but"):
        grad_cam(tiny, x, "conv", target=[1])
    with pytest.raises(ValueError, match="one entry per image"):
        grad_cam(tiny, x, "conv", target=[1, 0, 1])
    with pytest.raises(ValueError, match=r"range \[0, 1\]"):
        grad_cam(tiny, x, "conv", target=2)
    with pytest.raises(TypeError, match="'target'"):
        grad_cam(tiny, x, "conv", target="cat")
    with pytest.raises(TypeError, match="'target'"):
        grad_cam(tiny, x, "conv", target=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        grad_cam(tiny, x, "conv", target=lambda out: out)
    with pytest.raises(ValueError, match="callable 'target' is not supported"):
        class_activation_map(tiny, x, "relu", target=lambda out: out[:, 0])


def test_constant_and_negative_maps_give_zeros(tiny):
    zeros = torch.zeros(3, 2, 2, 2)
    for method in METHODS:
        layer = "relu" if method == "cam" else "conv"
        out = CAM(tiny, layer, method=method, progress=False)(zeros, target=1)
        assert torch.equal(out, torch.zeros(3, 2, 2)), method
    # all-negative weighted sum: class 1 on an image with only channel 1 active
    neg = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [3.0, 4.0]]]])
    raw = grad_cam(tiny, neg, "conv", target=1, relu=False, normalize=False, size=None)
    assert bool((raw < 0).all())
    out = grad_cam(tiny, neg, "conv", target=1, size=(5, 7))
    assert torch.equal(out, torch.zeros(1, 5, 7))
    assert torch.isfinite(out).all()


def test_sizes_and_output_format(tiny):
    x = torch.cat([X, 2 * X])
    small = grad_cam(tiny, x, "conv", target=1, size=None)
    assert small.shape == (2, 2, 2)
    big = grad_cam(tiny, x, "conv", target=1, size=(4, 6))
    assert big.shape == (2, 4, 6) and big.dtype == torch.float32
    assert float(big.min()) == 0.0 and float(big.max()) == 1.0
    # resize happens before the min-max: ReLU'd raw map resized then normalised
    raw = grad_cam(tiny, x, "conv", target=1, normalize=False, size=None)
    up = nn.functional.interpolate(raw[:, None], (4, 6), mode="bilinear", align_corners=False)[:, 0]
    lo = up.amin((1, 2), keepdim=True)
    hi = up.amax((1, 2), keepdim=True)
    torch.testing.assert_close(big, (up - lo) / (hi - lo))
    assert grad_cam(tiny, x, "conv", size="input").shape == (2, 2, 2)
    with pytest.raises(ValueError, match="'size' parameter"):
        grad_cam(tiny, x, "conv", size=(0, 3))
    with pytest.raises(ValueError, match="'images' parameter"):
        grad_cam(tiny, X[0], "conv")
    with pytest.raises(TypeError, match="'images' parameter"):
        grad_cam(tiny, X.numpy(), "conv")
    with pytest.raises(ValueError, match="'method' parameter"):
        CAM(tiny, "conv", method="gradcam3")
    with pytest.raises(ValueError, match="'batch_size' parameter"):
        CAM(tiny, "conv", method="scorecam", batch_size=0)
    assert CAM(tiny, "conv", method="Grad-CAM++").method == "gradcam++"
    assert CAM(tiny, "conv", method="score_cam").method == "scorecam"


def test_multi_layer_fusion_rule(tiny):
    x = torch.cat([X, X.flip(-1)])
    a = grad_cam(tiny, x, "conv", target=1)
    b = grad_cam(tiny, x, "relu", target=1)
    fused = grad_cam(tiny, x, ["conv", "relu"], target=1)
    mean = (a + b) / 2
    lo = mean.amin((1, 2), keepdim=True)
    hi = mean.amax((1, 2), keepdim=True)
    torch.testing.assert_close(fused, (mean - lo) / (hi - lo))
    raw = grad_cam(tiny, x, ["conv", "relu"], target=1, normalize=False, relu=False)
    ra = grad_cam(tiny, x, "conv", target=1, normalize=False, relu=False)
    rb = grad_cam(tiny, x, "relu", target=1, normalize=False, relu=False)
    torch.testing.assert_close(raw, (ra + rb) / 2)


# --------------------------------------------------------------------------------------
# the model is left as found
# --------------------------------------------------------------------------------------
class Bn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.relu(self.bn(self.conv(x))))
        return self.fc(self.pool(h).flatten(1))


@pytest.mark.parametrize("method", METHODS)
def test_model_left_unchanged(method):
    torch.manual_seed(0)
    model = Bn()
    model.train()
    model.fc.eval()  # mixed flags must come back exactly
    model.conv.weight.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)
    grad_obj = model.fc.weight.grad
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    req = [p.requires_grad for p in model.parameters()]
    x = torch.rand(2, 3, 8, 8)
    x_copy = x.clone()
    layer = "relu"
    out = CAM(model, layer, method=method, progress=False)(x)
    assert out.shape == (2, 8, 8)
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == req
    assert model.fc.weight.grad is grad_obj and bool((grad_obj == 7).all())
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    for k, v in model.state_dict().items():  # BatchNorm statistics untouched (eval mode)
        assert torch.equal(v, state[k]), k
    assert torch.equal(x, x_copy) and not x.requires_grad and x.grad is None
    assert_no_hooks(model)
    # eval mode during the call: the same map as an eval-mode model
    ref = CAM(model.eval(), layer, method=method, progress=False)(x)
    torch.testing.assert_close(out, ref)


def test_frozen_model_and_input_requiring_grad(tiny):
    expected = grad_cam(tiny, X, "conv", target=1, relu=False, normalize=False, size=None)
    for p in tiny.parameters():
        p.requires_grad_(False)
    frozen = grad_cam(tiny, X, "conv", target=1, relu=False, normalize=False, size=None)
    torch.testing.assert_close(frozen, expected)
    assert not any(p.requires_grad for p in tiny.parameters())
    x = X.clone().requires_grad_(True)
    again = grad_cam(tiny, x, "conv", target=1, relu=False, normalize=False, size=None)
    torch.testing.assert_close(again, expected)
    assert x.grad is None and x.requires_grad


def test_partially_frozen_model_reruns_with_input_grad():
    torch.manual_seed(0)
    model = Bn().eval()
    ref = grad_cam(model, torch.rand(2, 3, 8, 8), "bn", target=0)
    x = torch.rand(2, 3, 8, 8)
    ref = grad_cam(model, x, "bn", target=0)
    model.conv.requires_grad_(False)
    model.bn.requires_grad_(False)  # the layer's output no longer needs grad
    out = grad_cam(model, x, "bn", target=0)
    torch.testing.assert_close(out, ref)
    assert not model.bn.weight.requires_grad and model.fc.weight.requires_grad


class Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Tiny()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inner.conv(x)
        raise RuntimeError("boom")


def test_no_hooks_left_after_success_or_exception(tiny):
    for method in METHODS:
        layer = "relu" if method == "cam" else "conv"
        CAM(tiny, layer, method=method, progress=False)(X)
        assert_no_hooks(tiny)
    with pytest.raises(ValueError, match="one entry per image"):
        grad_cam(tiny, torch.cat([X, X]), "conv", target=[0])
    assert_no_hooks(tiny)
    boom = Boom()
    boom.train()
    with pytest.raises(RuntimeError, match="boom"):
        grad_cam(boom, X, "inner.conv")
    assert no_hooks(boom) and all(m.training for m in boom.modules())
    with pytest.raises(RuntimeError, match="boom"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grad_cam(boom, X)  # the probe forward raises
    assert no_hooks(boom) and all(m.training for m in boom.modules())
    with CAM(tiny, "conv") as cam:
        cam(X)
        assert_no_hooks(tiny)
        assert cam.layers_ == ["conv"]
        torch.testing.assert_close(cam.scores_, torch.tensor([4.0]))
    with pytest.raises(ValueError), CAM(tiny, "conv") as cam:
        cam(X, target=[0, 1])
    assert_no_hooks(tiny)


def test_layer_errors(tiny):
    with pytest.raises(ValueError, match="not a module"):
        CAM(tiny, "nope")
    with pytest.raises(ValueError, match="does not depend on layer"):

        class Side(Tiny):
            def __init__(self) -> None:
                super().__init__()
                self.side = nn.Conv2d(2, 2, 1)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                self.side(x)
                return super().forward(x)

        grad_cam(Side(), X, "side")
    with pytest.raises(ValueError, match="did not run"):
        tiny.unused = nn.Conv2d(2, 2, 1)
        grad_cam(tiny, X, "unused")


# --------------------------------------------------------------------------------------
# the built-in model and real architectures
# --------------------------------------------------------------------------------------
def test_gradcam_equals_pytorch_grad_cam_definition(tiny_model, shapes_test):
    import cv2

    x, _ = shapes_test.tensors()
    x = x[:16]
    ours = grad_cam(tiny_model, x, "features.13")
    # the pytorch-grad-cam recipe, written out: mean gradients, ReLU, min-max (1e-7),
    # cv2.resize (INTER_LINEAR), then the final min-max of aggregate_multi_layers
    acts = tiny_model.features(x)
    logits = tiny_model.fc(tiny_model.flatten(tiny_model.pool(acts)))
    (grads,) = torch.autograd.grad(logits.max(1).values.sum(), acts)
    a, g = acts.detach().numpy(), grads.numpy()
    cam = np.maximum((g.mean((2, 3))[:, :, None, None] * a).sum(1), 0)
    ref = []
    for img in cam:
        img = img - img.min()
        img = img / (1e-7 + img.max())
        img = cv2.resize(np.float32(img), (64, 64))
        img = img - img.min()
        ref.append(img / (1e-7 + img.max()))
    np.testing.assert_allclose(ours.numpy(), np.stack(ref), atol=1e-5)


def test_classic_cam_equals_gradcam_on_gap_model(tiny_model, shapes_test):
    # features.13 -> global average pool -> fc: Grad-CAM weights are W_ck / (h w)
    x, _ = shapes_test.tensors()
    x = x[:8]
    a = class_activation_map(tiny_model, x, "features.13")
    b = grad_cam(tiny_model, x, "features.13")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # fc found automatically == named
    torch.testing.assert_close(class_activation_map(tiny_model, x, "features.13", fc="fc"), a)


def test_batch_of_one_equals_batch_of_64(tiny_model, shapes_test):
    x, _ = shapes_test.tensors()
    x = x[:64]
    cam = CAM(tiny_model, "features.13")
    batch = cam(x)
    singles = torch.cat([cam(x[i : i + 1]) for i in range(64)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_batch_equality_every_method(tiny_model, shapes_test, method):
    x, y = shapes_test.tensors()
    x, y = x[:3], y[:3]
    cam = CAM(tiny_model, "features.13", method=method, batch_size=48, progress=False)
    batch = cam(x, y)
    singles = torch.cat([cam(x[i : i + 1], int(y[i])) for i in range(3)])
    torch.testing.assert_close(batch, singles, atol=1e-4, rtol=0)
    assert batch.shape == (3, 64, 64) and float(batch.max()) == 1.0


def test_layer_none_picks_last_spatial_layer(tiny_model, shapes_test):
    x, _ = shapes_test.tensors()
    with pytest.warns(UserWarning, match=r"using 'features\.13'.*\(64, 16, 16\)"):
        auto = grad_cam(tiny_model, x[:4])
    torch.testing.assert_close(auto, grad_cam(tiny_model, x[:4], "features.13"))


def test_layer_none_probes_once_per_image_size(tiny_model, shapes_test):
    x, _ = shapes_test.tensors()
    calls = []
    handle = tiny_model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    cam = CAM(tiny_model)
    try:
        with pytest.warns(UserWarning, match=r"using 'features\.13'"):
            first = cam(x[:4])
        assert calls == [2, 4]  # the probe (two images), then the batch
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second probe, so no second warning
            second = cam(x[4:8])
        assert calls == [2, 4, 4]
        with pytest.warns(UserWarning, match=r"using 'features\.13'.*\(64, 8, 8\)"):
            cam(x[:4, :, :32, :32])  # another size: probed again
        assert calls == [2, 4, 4, 2, 4]
    finally:
        handle.remove()
    torch.testing.assert_close(first, grad_cam(tiny_model, x[:4], "features.13"))
    torch.testing.assert_close(second, grad_cam(tiny_model, x[4:8], "features.13"))


def test_layer_none_on_resnet():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=5).eval()
    x = torch.rand(2, 3, 64, 64)
    with pytest.warns(UserWarning, match=r"using 'layer4\.1'"):
        auto = grad_cam(model, x)
    torch.testing.assert_close(auto, grad_cam(model, x, "layer4"))


def test_vit_reshape_transform():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(
        image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32
    ).eval()
    x = torch.rand(3, 3, 32, 32)
    layer = "encoder.layers.encoder_layer_0.ln_1"
    out = grad_cam(vit, x, layer, target=5, reshape_transform="vit", relu=False, normalize=False)
    assert out.shape == (3, 32, 32)
    # by hand: tokens (N, 17, 16) -> drop class token -> (N, 16, 4, 4)
    with capture(vit, layer, detach=False) as cap:
        logits = vit(x)
    tokens = cap.activations[layer]
    (g,) = torch.autograd.grad(logits[:, 5].sum(), tokens)
    a = tokens.detach()[:, 1:].transpose(1, 2).reshape(3, 16, 4, 4)
    g = g[:, 1:].transpose(1, 2).reshape(3, 16, 4, 4)
    raw = (g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True)
    ref = nn.functional.interpolate(raw, (32, 32), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    custom = grad_cam(
        vit,
        x,
        layer,
        target=5,
        reshape_transform=lambda t: t[:, 1:].transpose(1, 2).reshape(t.shape[0], -1, 4, 4),
        relu=False,
        normalize=False,
    )
    torch.testing.assert_close(custom, out)
    # the token grid is read from the input size when no reshape_transform is given
    cam = CAM(vit, layer, relu=False, normalize=False)
    torch.testing.assert_close(cam(x, target=5), out)
    assert repr(cam.reshapes_[0]) == "tokens[:, 1:] -> (N, C, 4, 4)"
    # outputs that form no grid of the input still need a reshape_transform
    with pytest.raises(ValueError, match="reshape_transform"):
        grad_cam(vit, x, "heads.head", target=5)


def test_pointing_game_on_builtin_model(tiny_model, shapes_test):
    from featviz.metrics import energy_in_box, pointing_game

    x, _ = shapes_test.tensors()
    maps = grad_cam(tiny_model, x, "features.13")
    hits = pointing_game(maps, shapes_test.boxes)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    centre = torch.exp(-((yy - 31.5) ** 2 + (xx - 31.5) ** 2) / (2 * 12.0**2))
    baseline = pointing_game(centre.expand(len(x), -1, -1), shapes_test.boxes)
    assert hits >= 0.90, hits
    assert hits > baseline + 0.2, (hits, baseline)
    e = energy_in_box(maps, shapes_test.boxes)
    e_base = energy_in_box(centre.expand(len(x), -1, -1), shapes_test.boxes)
    assert e > e_base, (e, e_base)


def test_scorecam_batch_size_sets_masked_passes():
    """None: sized from memory (here all 40 masked inputs in one pass); an int: that many."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 40, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    x = torch.rand(1, 3, 6, 6) + 0.1
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    with capture(model, "0") as cap:
        model(x)
    flat = cap.activations["0"].flatten(2)
    assert bool((flat.amax(2) > flat.amin(2)).all())  # 40 non-constant channels
    sizes.clear()
    default = CAM(model, "0", method="scorecam", progress=False)(x)
    # the forward with hooks, the footprint probe, then 40 masked inputs in one pass
    assert sizes == [1, 1, 40]
    sizes.clear()
    wide = CAM(model, "0", method="scorecam", batch_size=48, progress=False)(x)
    assert sizes == [1, 40]
    torch.testing.assert_close(default, wide)
    with pytest.raises(ValueError, match="None or an int"):
        CAM(model, "0", method="scorecam", batch_size=2.0)  # type: ignore[arg-type]


def test_scorecam_batches_sized_from_memory(monkeypatch):
    """A quarter of the free memory over one masked input's footprint, by hand."""
    from featviz.cam import _batching

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 40, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    x = torch.rand(1, 3, 6, 6) + 0.1
    # input 3*6*6*4 = 432 bytes; conv and ReLU 40*6*6*4 = 5760 each; pool, flatten 160 each
    assert _batching.activation_bytes(model, x) == 432 + 2 * 5760 + 2 * 160
    per_input = 12272 + 2 * 432  # plus the mask and the masked input
    assert _batching.masked_batch_size(model, x, 40, lambda d: 4 * 7 * per_input) == 7
    assert _batching.masked_batch_size(model, x, 40, lambda d: 4 * 7 * per_input - 1) == 6
    assert _batching.masked_batch_size(model, x, 40, lambda d: 0) == 1
    assert _batching.masked_batch_size(model, x, 1000, lambda d: 2**40) == 256
    assert all(not m._forward_hooks for m in model.modules())
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    monkeypatch.setattr(_batching, "available_bytes", lambda d: 4 * 16 * per_input)
    maps = CAM(model, "0", method="scorecam", progress=False)(x)
    assert sizes == [1, 1, 16, 16, 8]
    torch.testing.assert_close(maps, CAM(model, "0", method="scorecam", batch_size=3)(x))


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "eigencam"])
def test_scripted_model_gives_the_eager_maps(tiny_model, shapes_test, method):
    images = shapes_test.tensors()[0][:3]
    scripted = torch.jit.script(tiny_model)
    ref = CAM(tiny_model, "features.13", method=method, progress=False)(images, target=2)
    got = CAM(scripted, "features.13", method=method, progress=False)(images, target=2)
    assert torch.allclose(ref, got, atol=1e-6)
    assert torch.allclose(
        grad_cam(scripted, images, "features.13"),
        grad_cam(tiny_model, images, "features.13"),
        atol=1e-6,
    )


# --------------------------------------------------------------------------------------
# reliability (issue 14): training-mode buffers, threads
# --------------------------------------------------------------------------------------
def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.BatchNorm2d(4, momentum=None),  # cumulative average: num_batches_tracked matters
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


@pytest.mark.parametrize("method", METHODS)
def test_training_mode_call_leaves_buffers_bit_identical(method):
    model = _bn_model().train()
    x = torch.randn(3, 3, 8, 8)
    model(x)  # buffers away from their initial values
    before = {k: v.clone() for k, v in model.state_dict().items()}
    objects = {k: v for k, v in model.named_buffers()}
    CAM(model, "3", method, eval_mode=False, progress=False)(x, 1)
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert all(objects[k] is v for k, v in model.named_buffers())  # same tensors
    assert all(m.training for m in model.modules())
    # the call did run in training mode: batch statistics, not the running ones
    train_map = CAM(model, "3", "gradcam", eval_mode=False)(x, 1)
    eval_map = CAM(model, "3", "gradcam")(x, 1)
    assert not torch.allclose(train_map, eval_map)


def test_kept_buffers_restores_on_error_and_skips_eval_models():
    from featviz._ops import kept_buffers

    model = _bn_model().train()
    before = {k: v.clone() for k, v in model.named_buffers()}
    with pytest.raises(RuntimeError, match="boom"), kept_buffers(model):
        model(torch.randn(2, 3, 4, 4))
        model[1].running_mean = torch.ones(4)  # replaced, not edited: the original comes back
        raise RuntimeError("boom")
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), k
    model.eval()
    with kept_buffers(model):
        with torch.no_grad():
            model[1].running_mean.fill_(7.0)  # eval mode: nothing saved, nothing restored
    assert torch.equal(model[1].running_mean, torch.full((4,), 7.0))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "eigencam"])
def test_concurrent_calls_on_one_model_equal_single_thread_results(method):
    from concurrent.futures import ThreadPoolExecutor

    model = _bn_model().eval()
    inputs = [
        torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(8)
    ]
    targets = [i % 3 for i in range(8)]
    alone = [CAM(model, "3", method)(x, t) for x, t in zip(inputs, targets, strict=True)]

    def run(i: int) -> torch.Tensor:
        return CAM(model, "3", method)(inputs[i], targets[i])

    for _ in range(3):
        with ThreadPoolExecutor(max_workers=8) as pool:
            together = list(pool.map(run, range(8)))
        for got, want in zip(together, alone, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert_no_hooks(model)


def test_concurrent_grad_cam_on_builtin_model(tiny_model, shapes_test):
    from concurrent.futures import ThreadPoolExecutor

    images = shapes_test.tensors()[0][:16]
    chunks = [images[i::4] for i in range(4)]
    alone = [grad_cam(tiny_model, c, "features.13") for c in chunks]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda c: grad_cam(tiny_model, c, "features.13"), chunks))
    for got, want in zip(together, alone, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert_no_hooks(tiny_model)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_training_mode_buffers_restored_inside_grad_off_modes(mode):
    model = _bn_model().train()
    x = torch.randn(2, 3, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = CAM(model, "3", "gradcam", eval_mode=False)(x, 1)
    with mode():
        got = CAM(model, "3", "gradcam", eval_mode=False)(x, 1)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("method", ["gradcam", "eigencam", "cam"])
def test_non_finite_activations_set_to_zero_with_a_warning(tiny, method):
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.5], [0.5, 0.5]]]])
    x[0, 0, 0, 0] = float("inf")
    with pytest.warns(RuntimeWarning, match="NaN or inf"):
        maps = CAM(tiny, "conv", method, size=None)(x, 0)
    assert torch.isfinite(maps).all()
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1


# --------------------------------------------------------------------------------------
# outputs of any shape; one map per image
# --------------------------------------------------------------------------------------
class _Wrapped(nn.Module):
    """Tiny, with its logits returned in another container."""

    def __init__(self, wrap) -> None:
        super().__init__()
        self.net = Tiny()
        self.wrap = wrap

    def forward(self, x: torch.Tensor):
        return self.wrap(self.net(x))


class _HFOutput(dict):
    """Stand-in for a Hugging Face ModelOutput (dict with attributes)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.__dict__.update(kw)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda y: {"logits": y, "features": y * 0},
        lambda y: _HFOutput(loss=None, logits=y),
        lambda y: (y, y * 0),
    ],
    ids=["dict", "model-output", "tuple"],
)
@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_class_targets_work_on_wrapped_logits(wrap, method):
    x = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]], [[0.0, 4.0], [-1.0, 2.0]]]]).repeat(2, 1, 1, 1)
    wrapped = _Wrapped(wrap)
    got = CAM(wrapped, "net.conv", method, size=None, progress=False)(x, target=[0, 1])
    ref = CAM(wrapped.net, "conv", method, size=None, progress=False)(x, target=[0, 1])
    torch.testing.assert_close(got, ref)


def test_maps_per_image_or_a_value_error():
    class Regions(nn.Module):
        """Three regions per image enter the head (as in a detector's RoI head)."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Conv2d(2, 2, 1)
            self.head = nn.Conv2d(2, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            regions = self.backbone(x).repeat_interleave(3, 0)  # (3N, C, h, w)
            return self.head(regions).mean((1, 2, 3)).view(-1, 3).sum(1, keepdim=True)

    model = Regions()
    x = torch.rand(2, 2, 4, 4)
    with pytest.raises(ValueError, match=r"'head' gives 6 maps for a batch of 2 images"):
        grad_cam(model, x, "head", target=lambda o: o[:, 0])
    assert grad_cam(model, x, "backbone", target=lambda o: o[:, 0]).shape == (2, 4, 4)


def test_dict_layer_error_suggests_a_selector_that_works():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = _Levels()

        def forward(self, x):
            return self.backbone(x)["0"].mean((2, 3))

    class _Levels(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 1)

        def forward(self, x):
            return {"0": self.conv(x), "1": self.conv(x)[..., ::2, ::2]}

    x = torch.rand(2, 2, 4, 4)
    with pytest.raises(ValueError, match=r"""selector such as "backbone\['0'\]"\."""):
        grad_cam(Net(), x, "backbone", target=0)
    maps = grad_cam(Net(), x, "backbone['0']", target=0)
    assert maps.shape == (2, 4, 4)


# heads: the last module to run (non-spatial output) and segmentation logits resized to
# the input are never the auto layer; the backbone's last block is
_HEAD_CASES = {
    "squeezenet1_0": (lambda tv: tv.models.squeezenet1_0(num_classes=5), "features.12"),
    "deeplabv3_mobilenet_v3_large": (
        lambda tv: tv.models.segmentation.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=3
        ),
        "backbone.16.2",
    ),
    "fcn_resnet50_aux": (
        lambda tv: tv.models.segmentation.fcn_resnet50(
            weights=None, weights_backbone=None, num_classes=3, aux_loss=True
        ),
        "backbone.layer4.2",
    ),
}


@pytest.mark.parametrize("name", list(_HEAD_CASES))
def test_auto_layer_skips_classifier_and_segmentation_heads(name):
    from featviz.targets import SegmentationTarget

    tv = pytest.importorskip("torchvision")
    make, expected = _HEAD_CASES[name]
    torch.manual_seed(0)
    model = make(tv).eval()
    x = torch.rand(2, 3, 64, 64)
    target = None if name.startswith("squeeze") else SegmentationTarget(1)
    cam = CAM(model, method="eigencam" if target is None else "gradcam")
    with pytest.warns(UserWarning, match=f"using '{re.escape(expected)}'"):
        maps = cam(x, target)
    assert cam.layers_ == [expected]
    named = CAM(model, expected, method=cam.method)(x, target)
    assert torch.equal(maps, named)


# --------------------------------------------------------------------------------------
# targets through the one scoring path (featviz._scoring)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_class_target_gives_the_maps_of_its_classes(tiny, method):
    from featviz.targets import ClassTarget

    layer = "relu" if method == "cam" else "conv"
    x = torch.cat([X, X * 0.5])
    cam = CAM(tiny, layer, method=method, relu=False, normalize=False, size=None, progress=False)
    ref = cam(x, target=[1, 0])
    ref_classes = cam.classes_
    out = cam(x, target=ClassTarget([1, 0]))  # Score-CAM scores chunks: rows follow
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    if method != "eigencam":
        assert cam.classes_ is not None and ref_classes is not None
        assert cam.classes_.tolist() == ref_classes.tolist() == [1, 0]


def test_score_cam_callable_per_image_target_follows_rows(tiny):
    # SegmentationTarget-like per-image data: SimilarityTarget with one embedding per image
    from featviz.targets import SimilarityTarget

    x = torch.cat([X, -X, X * 2])
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cam = CAM(tiny, "conv", method="scorecam", relu=False, normalize=False, batch_size=2)
    both = cam(x, SimilarityTarget(emb))
    for i in range(3):
        one = cam(x[i : i + 1], SimilarityTarget(emb[i]))
        torch.testing.assert_close(both[i], one[0])


def test_cam_refuses_integer_images_naming_images(tiny):
    with pytest.raises(ValueError, match=r"'images' parameter must be a float.*torch.uint8"):
        grad_cam(tiny, (X * 10).to(torch.uint8), "conv")
    with pytest.raises(ValueError, match=r"'images' parameter"):
        CAM(tiny, "conv", method="eigencam")(X.long())
