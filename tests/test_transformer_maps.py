"""Transformer-native CAM methods: attention rollout and gradient-weighted relevance.

Exactness is checked against a reference written out by hand on a tiny torchvision
ViT with fixed (seeded) weights: the attention matrices are computed explicitly as
softmax(Q K^T / sqrt(d)) in a manual forward pass, and the rollout and relevance
formulas are applied to them (gradients taken w.r.t. those explicit matrices).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VisionTransformer

from featviz.cam import ATTENTION_METHODS, CAM, METHODS
from featviz.models import TinyCNN
from featviz.models_vit import TinyViT

timm = pytest.importorskip("timm")


def _tv_vit(seed: int = 0) -> VisionTransformer:
    torch.manual_seed(seed)
    m = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=4,
    )
    nn.init.normal_(m.heads.head.weight)  # torchvision zero-initialises the head
    return m.eval()


def _images(n: int = 3, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _manual(m: VisionTransformer, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and the explicit attention matrices (N, H, T, T) of torchvision's ViT."""
    n = x.shape[0]
    t = m.conv_proj(x).flatten(2).transpose(1, 2)
    t = torch.cat([m.class_token.expand(n, -1, -1), t], 1) + m.encoder.pos_embedding
    attentions = []
    for layer in m.encoder.layers:
        mha = layer.self_attention
        heads, e = mha.num_heads, t.shape[-1]
        d = e // heads
        h = layer.ln_1(t)
        q, k, v = F.linear(h, mha.in_proj_weight, mha.in_proj_bias).chunk(3, -1)
        q, k, v = (z.reshape(n, -1, heads, d).transpose(1, 2) for z in (q, k, v))
        a = torch.softmax(q @ k.transpose(-2, -1) / d**0.5, dim=-1)
        attentions.append(a)
        o = (a @ v).transpose(1, 2).reshape(n, -1, e)
        t = t + mha.out_proj(o)
        t = t + layer.mlp(layer.ln_2(t))
    return m.heads(m.encoder.ln(t)[:, 0]), attentions


def _rollout_ref(attentions: list[torch.Tensor], fusion: str = "mean") -> torch.Tensor:
    r = None
    for a in attentions:
        f = {"mean": a.mean(1), "max": a.amax(1), "min": a.amin(1)}[fusion]
        f = (f + torch.eye(f.shape[-1])) / 2
        f = f / f.sum(-1, keepdim=True)
        r = f if r is None else f @ r
    assert r is not None
    return r


def _raw(model: nn.Module, method: str, x: torch.Tensor, target=None, **kw) -> torch.Tensor:
    cam = CAM(model, method=method, size=None, normalize=False, relu=False, progress=False, **kw)
    return cam(x, target)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_equals_hand_computed_reference(fusion: str) -> None:
    m, x = _tv_vit(), _images()
    logits, attentions = _manual(m, x)
    with torch.no_grad():
        torch.testing.assert_close(logits, m(x), rtol=1e-4, atol=1e-5)  # the reference is ViT
    r = _rollout_ref([a.detach() for a in attentions], fusion)
    want = r[:, 0, 1:].reshape(3, 4, 4)
    got = _raw(m, "rollout", x, head_fusion=fusion)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_relevance_equals_hand_computed_reference() -> None:
    m, x = _tv_vit(), _images()
    target = [0, 3, 1]
    logits, attentions = _manual(m, x)
    score = logits[torch.arange(3), torch.tensor(target)].sum()
    grads = torch.autograd.grad(score, attentions)
    r = torch.eye(17).expand(3, 17, 17)
    for a, g in zip(attentions, grads, strict=True):
        r = r + (g * a).clamp_min(0).mean(1) @ r
    want = r[:, 0, 1:].reshape(3, 4, 4).detach()
    assert want.std() > 1e-3  # not a constant map
    got = _raw(m, "relevance", x, target)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_discard_ratio_zeroes_the_smallest_entries() -> None:
    m, x = _tv_vit(), _images(1)
    _, attentions = _manual(m, x)
    fused = []
    for a in attentions:
        f = a.detach().mean(1).reshape(1, -1).clone()
        keep = f[:, 0].clone()
        f[0, f[0].argsort()[: int(0.5 * 17 * 17)]] = 0.0
        f[:, 0] = keep
        fused.append(f.reshape(1, 1, 17, 17))
    want = _rollout_ref(fused)[:, 0, 1:].reshape(1, 4, 4)
    got = _raw(m, "rollout", x, discard_ratio=0.5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got, _raw(m, "rollout", x))


def _timm_vit(**kw) -> nn.Module:
    torch.manual_seed(0)
    model = timm.models.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=4, **kw
    )
    return model.eval()


def _timm_probabilities(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """timm's own attention probabilities: the input of attn_drop on the unfused path."""
    found: list[torch.Tensor] = []
    flags = [b.attn.fused_attn for b in model.blocks]
    handles = [
        b.attn.attn_drop.register_forward_hook(lambda mod, i, o: found.append(o.detach()))
        for b in model.blocks
    ]
    try:
        for b in model.blocks:
            b.attn.fused_attn = False
        with torch.no_grad():
            model(x)
    finally:
        for b, flag in zip(model.blocks, flags, strict=True):
            b.attn.fused_attn = flag
        for h in handles:
            h.remove()
    return found


@pytest.mark.parametrize(
    "kw", [{}, {"reg_tokens": 4}, {"class_token": True, "reg_tokens": 2, "no_embed_class": True}]
)
def test_timm_fused_attention_prefix_tokens(kw: dict) -> None:
    model, x = _timm_vit(**kw), _images()
    for b in model.blocks:
        b.attn.fused_attn = True
    with torch.no_grad():
        before = model(x)
    got = _raw(model, "rollout", x)
    prefix = model.num_prefix_tokens
    r = _rollout_ref(_timm_probabilities(model, x))
    torch.testing.assert_close(got, r[:, 0, prefix:].reshape(3, 4, 4), rtol=1e-5, atol=1e-6)
    assert all(b.attn.fused_attn for b in model.blocks)  # flags as found
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), before)  # bit-identical outputs after the call


def test_timm_distilled_deit_and_fused_vs_unfused_relevance() -> None:
    torch.manual_seed(0)
    model = timm.models.deit.VisionTransformerDistilled(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=4
    ).eval()
    assert model.num_prefix_tokens == 2
    x = _images()
    fused = _raw(model, "relevance", x, [1, 2, 3])
    for b in model.blocks:
        b.attn.fused_attn = False
    unfused = _raw(model, "relevance", x, [1, 2, 3])
    assert fused.shape == (3, 4, 4)
    torch.testing.assert_close(fused, unfused, rtol=1e-4, atol=1e-6)


def test_hugging_face_vit_matches_its_own_attentions() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        hidden_size=32,
        intermediate_size=64,
        num_labels=4,
    )
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    assert model.config._attn_implementation == "sdpa"  # the fused path
    x = _images()
    got = _raw(model, "rollout", x)
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        attentions = model(pixel_values=x, output_attentions=True).attentions
    want = _rollout_ref(list(attentions))[:, 0, 1:].reshape(3, 4, 4)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert CAM(model, method="relevance", progress=False)(x, 0).shape == (3, 32, 32)


def test_hooks_removed_after_an_exception() -> None:
    m, x = _tv_vit(), _images()

    def boom(module: nn.Module, args: object, output: object) -> None:
        raise RuntimeError("boom")

    handle = m.heads.register_forward_hook(boom)
    try:
        for method in ATTENTION_METHODS:
            with pytest.raises(RuntimeError, match="boom"):
                CAM(m, method=method)(x)
            assert all(not mod._forward_hooks for mod in m.encoder.modules())
    finally:
        handle.remove()
    assert all(not mod._forward_hooks for mod in m.modules())


def test_rollout_is_class_agnostic_relevance_is_not() -> None:
    m, x = _tv_vit(), _images()
    assert torch.equal(_raw(m, "rollout", x, 0), _raw(m, "rollout", x, 3))
    assert not torch.allclose(_raw(m, "relevance", x, 0), _raw(m, "relevance", x, 3))


def test_registry_and_results() -> None:
    assert set(ATTENTION_METHODS) == {"rollout", "relevance"}
    assert not set(ATTENTION_METHODS) & set(METHODS)  # METHODS: any model with a spatial layer
    m, x = _tv_vit(), _images()
    cam = CAM(m, method="Attention-Rollout")
    assert cam.method == "rollout"
    cam(x)
    assert cam.layers_ == [f"encoder.layers.encoder_layer_{i}.self_attention" for i in (0, 1)]
    assert cam.classes_ is None and cam.scores_ is None
    cam = CAM(m, "encoder.layers.encoder_layer_1.self_attention", method="chefer")
    maps = cam(x, [2, 2, 2])
    assert cam.method == "relevance" and cam.classes_.tolist() == [2, 2, 2]
    assert maps.shape == (3, 32, 32) and float(maps.min()) == 0.0 and float(maps.max()) == 1.0
    with torch.no_grad():
        torch.testing.assert_close(cam.scores_, m(x)[:, 2])


def test_tiny_vit_and_torchvision_b16_shapes() -> None:
    torch.manual_seed(0)
    model = TinyViT(size=32, width=16, depth=2, heads=2, mlp_width=32).eval()
    x = _images(2)
    for method in ATTENTION_METHODS:
        assert CAM(model, method=method)(x).shape == (2, 32, 32)
    from torchvision.models import vit_b_16

    big = vit_b_16(weights=None).eval()
    maps = CAM(big, method="rollout", size=None)(torch.randn(1, 3, 224, 224))
    assert maps.shape == (1, 14, 14)


def test_bad_options_and_models() -> None:
    m = _tv_vit()
    with pytest.raises(ValueError, match=r"'head_fusion' parameter of CAM must be one of"):
        CAM(m, method="rollout", head_fusion="sum")
    with pytest.raises(ValueError, match=r"'discard_ratio' parameter of CAM .* \[0, 1\)\. Got 1"):
        CAM(m, method="rollout", discard_ratio=1.0)
    with pytest.raises(ValueError, match="needs the model's self-attention modules"):
        CAM(TinyCNN(), method="rollout")(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="needs the model's self-attention modules"):
        CAM(m, "conv_proj", method="relevance")(_images(1))


def test_tiny_vit_training_is_cached_and_deterministic(tmp_path) -> None:
    from featviz.models_vit import pretrained_tiny_vit, train_tiny_vit

    state = torch.random.get_rng_state()
    trained = pretrained_tiny_vit(epochs=1, n_train=64, cache_dir=tmp_path)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG as found
    (file,) = tmp_path.glob("tiny_vit-*.pt")
    loaded = pretrained_tiny_vit(epochs=1, n_train=64, cache_dir=tmp_path)
    again = train_tiny_vit(epochs=1, n_train=64)
    x = _images(2, 64)
    with torch.no_grad():
        assert torch.equal(trained(x), loaded(x)) and torch.equal(trained(x), again(x))
    assert not loaded.training and loaded.classes == ("circle", "square", "triangle", "cross")
    assert all(p.grad is None for p in trained.parameters())
    assert len(list(tmp_path.iterdir())) == 1 and file.exists()
    with pytest.raises(ValueError, match="'width' a multiple of 'heads'"):
        TinyViT(width=10, heads=3)
