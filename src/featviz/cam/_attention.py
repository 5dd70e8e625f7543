r"""Transformer-native maps: attention rollout and gradient-weighted attention relevance.

Both read the attention probabilities $A_l = \mathrm{softmax}(Q_l K_l^\top / \sqrt{d})$
(B, H, T, T) of every self-attention block $l$ of a vision transformer. The model runs
as it is, fused attention included (``F.scaled_dot_product_attention``, timm's
``fused_attn``, ``nn.MultiheadAttention(need_weights=False)``): hooks attached for the
call only record each attention module's inputs and output, and the probabilities are
recomputed from the module's own query and key projections; no flag is switched and
the outputs are those of a plain call.

- **rollout** (Abnar & Zuidema 2020): heads fused by their mean, max or min, the
  smallest ``discard_ratio`` of each fused matrix's entries set to 0, the residual
  added, $\hat A_l = \mathrm{rownorm}(\frac12 (A_l + I))$, and
  $R = \hat A_L \cdots \hat A_1$. Class-agnostic.
- **relevance** (Chefer, Gur & Wolf, ICCV 2021, "generic attention-model
  explainability"): $R \leftarrow R + \mathrm{mean}_h(\mathrm{ReLU}(\nabla A_l \odot
  A_l))\,R$ from $R = I$, block by block, with $\nabla A_l$ the gradient of the target
  score. The fused path exposes no $A_l$ to differentiate, so the gradient is found
  from the module's output $Y = O W_o^\top + b$ with $O_h = A_h V_h$:
  $\nabla O = \nabla Y\, W_o$ and $\nabla A_h = \nabla O_h V_h^\top$, exactly.

The map is the class token's row of $R$ over the patch tokens, reshaped to the token
grid (prefix tokens: class, distillation, registers, are dropped); a model without a
class token takes the mean of the patch tokens' rows.

Supported attention modules: ``nn.MultiheadAttention`` (torchvision's ViT), timm's
``Attention`` (``qkv``, ``num_heads``, ``proj``: ViT, DeiT, register variants) and
Hugging Face's ViT attention (``q_proj``/``k_proj``/``v_proj``/``o_proj``, or the older
``query``/``key``/``value``). Attention masks are not applied (image models use none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from featviz._outputs import Target
from featviz._scoring import Scorer, resolve
from featviz.cam._layers import prefix_tokens, token_grid
from featviz.hooks import unwrap_model

__all__ = ["HEAD_FUSIONS", "AttentionResult", "Options", "find_attention", "relevance", "rollout"]

#: How ``rollout`` fuses the heads of a block.
HEAD_FUSIONS = ("mean", "max", "min")


@dataclass(frozen=True)
class Options:
    """The attention methods' options (validated by `featviz.cam.CAM`)."""

    head_fusion: Literal["mean", "max", "min"] = "mean"
    discard_ratio: float = 0.0


@dataclass
class AttentionResult:
    """Raw maps (N, h, w), the resolved target (None if unused), scores (N,) and layers."""

    maps: torch.Tensor
    scorer: Scorer | None
    scores: torch.Tensor | None
    layers: list[str]


@dataclass
class _Heads:
    """One block's per-head queries, keys, values (B, H, T, d), scale and out-projection."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scale: float
    out_weight: torch.Tensor | None  # (E, H*d) of Y = O W^T + b; None: Y = O


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.MultiheadAttention):
        return "mha"
    has = lambda *names: all(hasattr(module, n) for n in names)  # noqa: E731
    if has("qkv", "num_heads", "proj") and isinstance(module.qkv, nn.Linear):
        return "timm"
    if has("q_proj", "k_proj", "v_proj", "o_proj", "num_attention_heads"):
        return "hf"
    if has("query", "key", "value", "num_attention_heads", "attention_head_size"):
        return "hf-old"
    return None


def find_attention(model: nn.Module) -> list[str]:
    """Names of the model's self-attention modules (registration order)."""
    return [k for k, m in unwrap_model(model).named_modules() if k and _kind(m) is not None]


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, H*d) -> (B, H, T, d)."""
    b, t, _ = x.shape
    return x.reshape(b, t, heads, -1).transpose(1, 2)


def _first(args: tuple[Any, ...], kwargs: dict[str, Any], names: Sequence[str]) -> torch.Tensor:
    for i, name in enumerate(names):
        if name in kwargs:
            return kwargs[name]
        if i < len(args) and isinstance(args[i], torch.Tensor):
            return args[i]
    return args[0]


def _heads_mha(m: nn.MultiheadAttention, args: tuple[Any, ...], kw: dict[str, Any]) -> _Heads:
    if m.bias_k is not None or m.add_zero_attn or not m._qkv_same_embed_dim:
        raise ValueError(
            "Attention maps support nn.MultiheadAttention without add_bias_kv, "
            "add_zero_attn or separate kdim/vdim. Got a module with one of them instead."
        )
    q_in, k_in, v_in = (_first(args[i:], kw, [n]) for i, n in enumerate(("query", "key", "value")))
    if not m.batch_first:
        q_in, k_in, v_in = (t.transpose(0, 1) for t in (q_in, k_in, v_in))
    w = m.in_proj_weight.chunk(3)
    b = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None, None, None)
    q, k, v = (
        _split(F.linear(x, w[i], b[i]), m.num_heads) for i, x in enumerate((q_in, k_in, v_in))
    )
    return _Heads(q, k, v, q.shape[-1] ** -0.5, m.out_proj.weight)


def _heads_timm(m: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> _Heads:
    if not isinstance(getattr(m, "norm", nn.Identity()), nn.Identity) or (
        getattr(m, "gate", None) is not None
    ):
        raise ValueError(
            f"Attention maps do not support timm's {type(m).__name__} with scale_norm or "
            "gated outputs: its output is no linear function of the heads' outputs."
        )
    x = _first(args, kw, ["x"])
    qkv = m.qkv(x).reshape(x.shape[0], x.shape[1], 3, m.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q = m.q_norm(q) if hasattr(m, "q_norm") else q
    k = m.k_norm(k) if hasattr(m, "k_norm") else k
    return _Heads(q, k, v, float(getattr(m, "scale", q.shape[-1] ** -0.5)), m.proj.weight)


def _heads_hf(m: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> _Heads:
    x = _first(args, kw, ["hidden_states"])
    h = m.num_attention_heads
    if hasattr(m, "o_proj"):
        q, k, v = (_split(p(x), h) for p in (m.q_proj, m.k_proj, m.v_proj))
        return _Heads(q, k, v, float(getattr(m, "scaling", q.shape[-1] ** -0.5)), m.o_proj.weight)
    q, k, v = (_split(p(x), h) for p in (m.query, m.key, m.value))
    return _Heads(q, k, v, q.shape[-1] ** -0.5, None)


_HEADS: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any]], _Heads]] = {
    "mha": _heads_mha,
    "timm": _heads_timm,
    "hf": _heads_hf,
    "hf-old": _heads_hf,
}


@dataclass
class _Call:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: torch.Tensor


@contextmanager
def _recorded(modules: dict[str, nn.Module]) -> Iterator[dict[str, _Call]]:
    """Record each module's inputs and (first) output during the block; hooks removed after."""
    calls: dict[str, _Call] = {}
    handles = []

    def hook(key: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            calls[key] = _Call(tuple(args), dict(kwargs), out)

        return record

    try:
        for key, module in modules.items():
            handles.append(module.register_forward_hook(hook(key), with_kwargs=True))
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _modules(model: nn.Module, keys: list[str] | None, method: str) -> dict[str, nn.Module]:
    inner = unwrap_model(model)
    names = find_attention(model) if keys is None else keys
    found = {k: inner.get_submodule(k) for k in names}
    bad = [k for k, m in found.items() if _kind(m) is None]
    if not found or bad:
        raise ValueError(
            f"method={method!r} needs the model's self-attention modules "
            "(nn.MultiheadAttention, timm's Attention, Hugging Face's ViT attention). Got "
            f"{bad or 'a model without any'} instead; pass layers=None or name attention modules."
        )
    return found


def _probabilities(heads: _Heads) -> torch.Tensor:
    """(B, H, T, T) float32 softmax(Q K^T * scale)."""
    logits = (heads.q.float() * heads.scale) @ heads.k.float().transpose(-2, -1)
    return logits.softmax(-1)


def _blocks(
    modules: dict[str, nn.Module], calls: dict[str, _Call]
) -> list[tuple[str, nn.Module, _Call]]:
    missing = [k for k in modules if k not in calls]
    if missing:
        raise ValueError(f"The attention modules {missing} did not run during the forward pass.")
    order = list(calls)  # call order: the blocks' order in the forward pass
    return [(k, modules[k], calls[k]) for k in order]


def _heads_of(module: nn.Module, call: _Call) -> _Heads:
    kind = _kind(module)
    assert kind is not None
    args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in call.args)
    kwargs = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in call.kwargs.items()}
    with torch.no_grad():
        return _HEADS[kind](module, args, kwargs)


def _to_map(r: torch.Tensor, model: nn.Module, size: tuple[int, int]) -> torch.Tensor:
    """(N, T, T) relevance -> (N, h, w): the class token's row over the patch tokens."""
    t = r.shape[-1]
    grid = token_grid(t, size, prefix_tokens(model))
    if grid is None:
        raise ValueError(
            f"The attention modules see {t} tokens, which are no token grid for images of "
            f"size {size} (prefix tokens plus (h, w) patches)."
        )
    prefix, h, w = grid
    row = r[:, 0, prefix:] if prefix > 0 else r.mean(1)
    return row.reshape(r.shape[0], h, w)


def _fuse(a: torch.Tensor, options: Options) -> torch.Tensor:
    """(N, H, T, T) -> (N, T, T): heads fused, the smallest entries discarded."""
    fused = {"mean": a.mean(1), "max": a.amax(1), "min": a.amin(1)}[options.head_fusion]
    n, t, _ = fused.shape
    drop = int(options.discard_ratio * t * t)
    if drop > 0:
        flat = fused.reshape(n, t * t).clone()
        index = flat.topk(drop, dim=1, largest=False).indices
        keep = flat[:, :1].clone()  # the class token's attention to itself stays
        flat.scatter_(1, index, 0.0)
        flat[:, :1] = keep
        fused = flat.reshape(n, t, t)
    return fused


def rollout(
    model: nn.Module,
    images: torch.Tensor,
    target: Target | Scorer,
    keys: list[str] | None,
    options: Options,
) -> AttentionResult:
    """Attention rollout maps (N, h, w) of ``images`` (N, C, H, W); ``target`` unused."""
    modules = _modules(model, keys, "rollout")
    with torch.no_grad(), _recorded(modules) as calls:
        model(images)
    blocks = _blocks(modules, calls)
    r: torch.Tensor | None = None
    for _, module, call in blocks:
        fused = _fuse(_probabilities(_heads_of(module, call)), options)
        eye = torch.eye(fused.shape[-1], device=fused.device)
        a = (fused + eye) / 2
        a = a / a.sum(-1, keepdim=True)
        r = a if r is None else a @ r
    assert r is not None
    size = (int(images.shape[-2]), int(images.shape[-1]))
    return AttentionResult(_to_map(r, model, size), None, None, [k for k, _, _ in blocks])


def _gradient(heads: _Heads, grad_y: torch.Tensor) -> torch.Tensor:
    """(B, H, T, T) d(score)/dA from d(score)/dY (B, T, E), Y = O W^T + b, O_h = A_h V_h."""
    g = grad_y.float()
    if heads.out_weight is not None:
        g = g @ heads.out_weight.detach().float()
    return _split(g, heads.q.shape[1]) @ heads.v.float().transpose(-2, -1)


def relevance(
    model: nn.Module,
    images: torch.Tensor,
    target: Target | Scorer,
    keys: list[str] | None,
    options: Options,
) -> AttentionResult:
    """Gradient-weighted attention relevance maps (N, h, w) of ``images`` for ``target``."""
    modules = _modules(model, keys, "relevance")
    x = images.detach().requires_grad_(True)  # a detached alias: the caller's tensor untouched
    with torch.enable_grad(), _recorded(modules) as calls:
        outputs = model(x)
    blocks = _blocks(modules, calls)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    with torch.enable_grad():
        scorer = resolve(target, outputs, images.shape[0], size=size)
        scores = scorer(outputs)
        grads = torch.autograd.grad(
            scores.sum(), [c.output for _, _, c in blocks], allow_unused=True
        )
    del outputs
    r: torch.Tensor | None = None
    for (_, module, call), g in zip(blocks, grads, strict=True):
        heads = _heads_of(module, call)
        a = _probabilities(heads)
        if g is None:
            g = torch.zeros_like(call.output)
        cam = (_gradient(heads, g) * a).clamp_min(0).mean(1)
        if r is None:
            r = torch.eye(a.shape[-1], device=a.device).expand_as(cam).clone()
        r = r + cam @ r
    assert r is not None
    return AttentionResult(
        _to_map(r, model, size), scorer, scores.detach(), [k for k, _, _ in blocks]
    )
