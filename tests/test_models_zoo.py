"""The auto layer and auto reshape on real architectures (random weights, small inputs).

One model per torchvision family, and timm and Hugging Face models built from small
configs. Each: the expected layer and reshape, finite maps in [0, 1], one per image, the
model's parameters, buffers, gradients and train flags untouched, and equality (1e-4)
with Grad-CAM computed here by hand on an in-place-free copy of the model, on the
explicit layer and reshape. The targets are classes whose reference maps are not all
zero with these random weights, so that the comparison can fail.
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
    model = torchvision.models.VisionTransformer(
        image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    nn.init.normal_(model.heads.head.weight, std=0.02)  # zero-initialised: no gradient
    return model


def _resnext():
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=7, groups=4, width_per_group=8)


def _densenet():
    # features.norm5 is followed by F.relu(inplace=True) in forward
    return torchvision.models.DenseNet(8, (1, 1, 1, 1), 16, num_classes=7)


def _efficientnet(version):
    from torchvision.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig

    first = (
        FusedMBConvConfig(1, 3, 2, 16, 16, 1) if version == 2 else MBConvConfig(1, 3, 2, 16, 16, 1)
    )
    setting = [first, MBConvConfig(4, 3, 2, 16, 24, 1), MBConvConfig(4, 3, 2, 24, 32, 1)]
    return EfficientNet(
        setting, dropout=0.0, num_classes=7, last_channel=64 if version == 2 else None
    )


def _convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=7)


def _maxvit():
    return torchvision.models.MaxVit(
        input_size=(64, 64),
        stem_channels=8,
        partition_size=2,
        block_channels=[16, 32],
        block_layers=[1, 1],
        head_dim=8,
        stochastic_depth_prob=0.0,
        num_classes=7,
    )


def _plain(make, layer, size=(64, 64), target=(3, 4)):
    return (make, size, layer, _identity, None, target)


CASES = {
    # name: (constructor, input (H, W), expected layer, reference reshape, repr of reshape,
    # targets whose maps are not all zero with these random weights)
    "alexnet": _plain(lambda: torchvision.models.alexnet(num_classes=7), "features.11"),
    "vgg11": _plain(lambda: torchvision.models.vgg11(num_classes=7), "features"),
    "resnet18": _plain(lambda: torchvision.models.resnet18(num_classes=7), "layer4.1"),
    "resnext": _plain(_resnext, "layer4.0"),
    "densenet": _plain(_densenet, "features.norm5"),
    "squeezenet1_1": _plain(  # its class-map conv block is the head: skipped
        lambda: torchvision.models.squeezenet1_1(num_classes=7), "features.12"
    ),
    "inception_v3": _plain(
        lambda: torchvision.models.inception_v3(
            num_classes=7, aux_logits=False, init_weights=False
        ),
        "Mixed_7c",
        (107, 107),
        (3, 5),
    ),
    "googlenet": _plain(
        lambda: torchvision.models.googlenet(num_classes=7, aux_logits=False, init_weights=False),
        "inception5b",
        target=(3, 5),
    ),
    "mobilenet_v2": _plain(
        lambda: torchvision.models.mobilenet_v2(num_classes=7, width_mult=0.25), "features.18.2"
    ),
    "mobilenet_v3_small": _plain(
        lambda: torchvision.models.mobilenet_v3_small(num_classes=7), "features.12.2"
    ),
    "mnasnet0_5": _plain(
        lambda: torchvision.models.mnasnet0_5(num_classes=7), "layers.16", target=(1, 5)
    ),
    "shufflenet_v2_x0_5": _plain(
        lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=7), "conv5.2"
    ),
    "efficientnet_v1": _plain(lambda: _efficientnet(1), "features.4.2"),
    "efficientnet_v2": _plain(lambda: _efficientnet(2), "features.4.2"),
    "regnet_x_400mf": _plain(
        lambda: torchvision.models.regnet_x_400mf(num_classes=7),
        "trunk_output.block4.block4-11",
        target=(4, 5),
    ),
    "convnext": _plain(_convnext, "features.3.0"),
    "maxvit": _plain(_maxvit, "blocks.1"),
    "vit": (
        _vit,
        (64, 64),
        "encoder.layers.encoder_layer_1.ln_1",
        _tokens(1, 4, 4),
        "tokens[:, 1:] -> (N, C, 4, 4)",
        (3, 4),
    ),
    "swin_t": (
        lambda: torchvision.models.swin_t(num_classes=7),
        (64, 96),
        "features.7.1.norm1",
        _channels_last,
        "channels-last (N, h, w, C) -> (N, C, h, w)",
        (3, 4),
    ),
    # post-norm blocks (x + norm1(attn(x))): the block output, not the attention branch
    "swin_v2_t": (
        lambda: torchvision.models.swin_v2_t(num_classes=7),
        (64, 64),
        "features.7.1",
        _channels_last,
        "channels-last (N, h, w, C) -> (N, C, h, w)",
        (3, 4),
    ),
}


def _check(model, x, layer, reshape, shown, target, reference_model=None, prefix=""):
    """Run the auto layer on ``model`` and compare with the reference.

    ``reference_model`` (default ``model``) returns plain logits; ``prefix`` is the
    name of ``model`` inside it.
    """
    state = copy.deepcopy(model.state_dict())
    flags = [
        (m.training, [p.requires_grad for p in m.parameters(recurse=False)])
        for m in model.modules()
    ]
    cam = CAM(model)
    with pytest.warns(UserWarning, match=f"using {layer!r}"):
        maps = cam(x, target=list(target))
    assert cam.layers_ == [layer]
    assert (repr(cam.reshapes_[0]) if cam.reshapes_[0] else None) == shown
    assert maps.shape == (x.shape[0], *x.shape[2:]) and bool(torch.isfinite(maps).all())
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert [
        (m.training, [p.requires_grad for p in m.parameters(recurse=False)])
        for m in model.modules()
    ] == flags
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    ref = _reference(reference_model or model, x, prefix + layer, reshape, torch.tensor(target))
    assert bool((ref.flatten(1).amax(1) == 1).all())  # no all-zero reference map
    torch.testing.assert_close(maps, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_torchvision_families(name):
    make, (h, w), layer, reshape, shown, target = CASES[name]
    torch.manual_seed(0)
    model = make().train()
    _check(model, torch.rand(2, 3, h, w), layer, reshape, shown, target)


@pytest.mark.parametrize(
    ("name", "kwargs", "size", "layer", "grid", "target"),
    [
        # the distillation token too: two prefix tokens, on a non-square input
        (
            "deit_tiny_distilled_patch16_224",
            {"img_size": (64, 96)},
            (64, 96),
            "blocks.11.norm1",
            (2, 4, 6),
            (1, 4),
        ),
        # CaiT declares one prefix token but adds its class token only after blocks.*
        ("cait_xxs24_224", {"img_size": 64}, (64, 64), "blocks.23.norm1", (0, 4, 4), (0, 4)),
        # DINOv2 with 4 register tokens + the class token, on a non-square input
        (
            "vit_small_patch14_reg4_dinov2",
            {"img_size": (56, 42)},
            (56, 42),
            "blocks.11.norm1",
            (5, 4, 3),
            (0, 4),
        ),
        ("convnext_atto", {}, (64, 64), "stages.3", None, (0, 4)),
        ("efficientnet_b0", {}, (64, 64), "bn2", None, (0, 4)),
        # blockified tokens (N, blocks, tokens per block, C) are no grid: the last level
        ("nest_tiny", {"img_size": 64}, (64, 64), "levels.2", None, (0, 4)),
    ],
    ids=["deit_distilled", "cait", "dinov2_reg4", "convnext_atto", "efficientnet_b0", "nest"],
)
def test_timm_models(name, kwargs, size, layer, grid, target):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()
    x = torch.rand(2, 3, *size)
    if grid is None:
        _check(model, x, layer, _identity, None, target)
    else:
        prefix, h, w = grid
        shown = f"tokens[:, {prefix}:] -> (N, C, {h}, {w})"
        _check(model, x, layer, _tokens(prefix, h, w), shown, target)


# a two-block ViT/16 at 64x64 (4x4 patches), for ViT and DeiT alike
_HF_VIT = dict(
    image_size=64,
    patch_size=16,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=5,
)


def _hf_vit():
    from transformers import ViTConfig, ViTForImageClassification

    return ViTForImageClassification(ViTConfig(**_HF_VIT))


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


def _hf_deit():
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

    return DeiTForImageClassificationWithTeacher(DeiTConfig(**_HF_VIT))


def _hf_convnext():
    from transformers import ConvNextConfig, ConvNextForImageClassification

    config = ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5)
    return ConvNextForImageClassification(config)


@pytest.mark.parametrize(
    ("make", "layer", "grid", "target"),
    [
        (_hf_vit, "vit.layers.1.layernorm_before", (1, 4, 4), (0, 4)),
        (_hf_deit, "deit.layers.1.layernorm_before", (2, 4, 4), (0, 4)),
        (_hf_swin, "swin.encoder.layers.1.blocks.0.layernorm_before", (0, 8, 8), (0, 4)),
        (_hf_convnext, "convnext.encoder.stages.1", None, (0, 4)),
    ],
    ids=["vit", "deit", "swin", "convnext"],
)
def test_hugging_face_models_from_configs(make, layer, grid, target):
    """ModelOutput logits, blocks that return tuples, token layouts without a class token."""
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = make().eval()

    class Logits(nn.Module):  # the reference needs plain logits
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner(x).logits

    x = torch.rand(2, 3, 64, 64)
    if grid is None:
        _check(model, x, layer, _identity, None, target, Logits(), "inner.")
    else:
        prefix, h, w = grid
        shown = f"tokens[:, {prefix}:] -> (N, C, {h}, {w})"
        _check(model, x, layer, _tokens(prefix, h, w), shown, target, Logits(), "inner.")
