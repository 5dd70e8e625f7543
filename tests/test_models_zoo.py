"""The auto layer and auto reshape on real architectures (random weights, small inputs).

Each model: finite maps in [0, 1], one per image, model state and mode untouched, and
equality (1e-4) with Grad-CAM computed here by hand on the explicit layer and reshape.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from featviz.cam import CAM
from featviz.hooks import capture

torchvision = pytest.importorskip("torchvision")


def _reference(model, x, layer, reshape, target):
    """Grad-CAM by hand: grad of the target logits w.r.t. the layer, channel means."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():  # an in-place-free copy
        if hasattr(m, "inplace"):
            m.inplace = False
    with capture(model, layer, detach=False) as cap:
        logits = model(x)
    act = cap.activations[layer]
    (g,) = torch.autograd.grad(logits[torch.arange(len(x)), target].sum(), act)
    a, g = reshape(act.detach()), reshape(g)
    raw = (g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True).clamp_min(0)
    up = nn.functional.interpolate(raw, x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo = up.amin((1, 2), keepdim=True)
    span = up.amax((1, 2), keepdim=True) - lo
    return torch.where(span > 0, (up - lo) / span.clamp_min(1e-30), torch.zeros_like(up))


def _tokens(prefix, h, w):
    return lambda t: t[:, prefix:].transpose(1, 2).reshape(t.shape[0], -1, h, w)


def _channels_last(t):
    return t.permute(0, 3, 1, 2)


def _identity(t):
    return t


def _vit():
    return torchvision.models.VisionTransformer(
        image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )


CASES = {
    # name: (constructor, input (H, W), expected layer, reference reshape, repr of reshape)
    "vgg11": (
        lambda: torchvision.models.vgg11(num_classes=7),
        (64, 64),
        "features",
        _identity,
        None,
    ),
    "resnet18": (
        lambda: torchvision.models.resnet18(num_classes=7),
        (64, 64),
        "layer4.1",
        _identity,
        None,
    ),
    "vit": (
        _vit,
        (64, 64),
        "encoder.layers.encoder_layer_1.ln_1",
        _tokens(1, 4, 4),
        "tokens[:, 1:] -> (N, C, 4, 4)",
    ),
    "swin_t": (
        lambda: torchvision.models.swin_t(num_classes=7),
        (64, 96),
        "features.7.1.norm1",
        _channels_last,
        "channels-last (N, h, w, C) -> (N, C, h, w)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_auto_layer_and_reshape_equal_the_explicit_reference(name):
    make, (h, w), layer, reshape, shown = CASES[name]
    torch.manual_seed(0)
    model = make().train()
    x = torch.rand(2, 3, h, w)
    state = copy.deepcopy(model.state_dict())
    cam = CAM(model)
    with pytest.warns(UserWarning, match=f"using {layer!r}"):
        maps = cam(x, target=[1, 3])
    assert cam.layers_ == [layer]
    assert (repr(cam.reshapes_[0]) if cam.reshapes_[0] else None) == shown
    assert maps.shape == (2, h, w) and bool(torch.isfinite(maps).all())
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    ref = _reference(model, x, layer, reshape, torch.tensor([1, 3]))
    torch.testing.assert_close(maps, ref, atol=1e-4, rtol=0)


def test_timm_deit_distilled_strips_two_prefix_tokens():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "deit_tiny_distilled_patch16_224", pretrained=False, img_size=(64, 96), num_classes=5
    ).eval()
    x = torch.rand(2, 3, 64, 96)
    cam = CAM(model)
    with pytest.warns(UserWarning, match=r"using 'blocks\.11\.norm1'"):
        maps = cam(x, target=[0, 4])
    assert repr(cam.reshapes_[0]) == "tokens[:, 2:] -> (N, C, 4, 6)"
    ref = _reference(model, x, "blocks.11.norm1", _tokens(2, 4, 6), torch.tensor([0, 4]))
    torch.testing.assert_close(maps, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("name", "kwargs", "layer", "grid"),
    [
        # CaiT declares one prefix token but adds its class token only after blocks.*
        ("cait_xxs24_224", {"img_size": 64}, "blocks.23.norm1", (0, 4, 4)),
        # DINOv2 with 4 register tokens + the class token, on a non-square input
        (
            "vit_small_patch14_reg4_dinov2",
            {"img_size": (56, 42)},
            "blocks.11.norm1",
            (5, 4, 3),
        ),
    ],
)
def test_timm_prefix_tokens(name, kwargs, layer, grid):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()
    size = kwargs["img_size"] if isinstance(kwargs["img_size"], tuple) else (64, 64)
    x = torch.rand(2, 3, *size)
    cam = CAM(model)
    with pytest.warns(UserWarning, match=f"using {layer!r}"):
        maps = cam(x, target=[0, 4])
    prefix, h, w = grid
    assert repr(cam.reshapes_[0]) == f"tokens[:, {prefix}:] -> (N, C, {h}, {w})"
    ref = _reference(model, x, layer, _tokens(prefix, h, w), torch.tensor([0, 4]))
    torch.testing.assert_close(maps, ref, atol=1e-4, rtol=0)


def _hf_vit():
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=64,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=5,
    )
    return ViTForImageClassification(config)


def _hf_swin():
    from transformers import SwinConfig, SwinForImageClassification

    config = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=4,
        num_labels=5,
    )
    return SwinForImageClassification(config)


@pytest.mark.parametrize(
    ("make", "layer", "grid"),
    [
        (_hf_vit, "vit.layers.1.layernorm_before", (1, 4, 4)),
        (_hf_swin, "swin.encoder.layers.1.blocks.0.layernorm_before", (0, 8, 8)),
    ],
    ids=["vit", "swin"],
)
def test_hugging_face_models_from_configs(make, layer, grid):
    """ModelOutput logits, blocks that return tuples, token layouts without a class token."""
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = make().eval()
    x = torch.rand(2, 3, 64, 64)
    cam = CAM(model)
    with pytest.warns(UserWarning, match=f"using {layer!r}"):
        maps = cam(x, target=[0, 4])
    prefix, h, w = grid
    assert repr(cam.reshapes_[0]) == f"tokens[:, {prefix}:] -> (N, C, {h}, {w})"

    class Logits(nn.Module):  # the reference needs plain logits
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner(x).logits

    ref = _reference(Logits(), x, f"inner.{layer}", _tokens(prefix, h, w), torch.tensor([0, 4]))
    torch.testing.assert_close(maps, ref, atol=1e-4, rtol=0)
