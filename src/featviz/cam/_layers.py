"""Layer finding for CAMs: the auto layer, token grids and channel-last outputs.

`probe_layer` picks the layer whose maps a CAM uses when none is given (the rule is in
`featviz.cam.CAM`'s docstring); `layout` says how to read a layer's output as
(N, C, h, w) from the input size (token grids, channel-last maps).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from featviz._ops import user_stacklevel
from featviz.hooks import capture, unwrap_model

__all__ = ["layout", "prefix_tokens", "probe_layer", "token_grid", "vit_grid"]


def vit_grid(tokens: torch.Tensor) -> torch.Tensor:
    """ViT tokens (N, 1 + h*w, C) -> (N, C, h, w): drop the class token, square grid."""
    if tokens.ndim != 3:
        raise ValueError(
            "reshape_transform='vit' expects tokens of shape (N, 1 + h*w, C). "
            f"Got shape {tuple(tokens.shape)} instead."
        )
    n, t, c = tokens.shape
    side = math.isqrt(t - 1)
    if side * side != t - 1:
        raise ValueError(
            f"reshape_transform='vit': {t} tokens are not a class token plus a square grid; "
            "pass a callable reshape_transform instead."
        )
    return tokens[:, 1:, :].transpose(1, 2).reshape(n, c, side, side)


@dataclass(frozen=True)
class _TokenGrid:
    """Tokens (N, prefix + h*w, C) -> (N, C, h, w), the leading ``prefix`` tokens dropped."""

    prefix: int
    h: int
    w: int

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        n, _, c = tokens.shape
        return tokens[:, self.prefix :].transpose(1, 2).reshape(n, c, self.h, self.w)

    def __repr__(self) -> str:
        return f"tokens[:, {self.prefix}:] -> (N, C, {self.h}, {self.w})"


@dataclass(frozen=True)
class _ChannelsLast:
    """(N, h, w, C) -> (N, C, h, w), as Swin blocks and their norms return."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return "channels-last (N, h, w, C) -> (N, C, h, w)"


def _is_grid(h: int, w: int, size: tuple[int, int]) -> bool:
    """Whether (h, w) is the input size ``size`` divided by one stride (floor or ceil)."""
    height, width = size
    if not (1 <= h <= height and 1 <= w <= width) or h * w <= 1:
        return False
    for s in range(max(1, height // (h + 1)), height // max(h - 1, 1) + 2):
        if (height // s, width // s) == (h, w) or (-(-height // s), -(-width // s)) == (h, w):
            return True
    return False


def _token_grid(t: int, size: tuple[int, int], prefix: int | None) -> _TokenGrid | None:
    """The grid of ``t`` tokens for an input of ``size``: the fewest leading extra tokens."""
    height, width = size
    tries = range(9) if prefix is None else [prefix, *(p for p in range(9) if p != prefix)]
    for extra in tries:  # the model's own count first (CaiT adds its class token late)
        g = t - extra
        if g < 2:
            continue
        h = max(1, round(math.sqrt(g * height / width)))
        for hh in (h - 1, h, h + 1):
            if hh >= 1 and g % hh == 0 and _is_grid(hh, g // hh, size):
                return _TokenGrid(extra, hh, g // hh)
    return None


def token_grid(t: int, size: tuple[int, int], prefix: int | None) -> tuple[int, int, int] | None:
    """(prefix tokens, h, w) of ``t`` tokens for an input of ``size``, or None (no grid)."""
    grid = _token_grid(t, size, prefix)
    return None if grid is None else (grid.prefix, grid.h, grid.w)


def layout(
    value: Any, size: tuple[int, int], prefix: int | None
) -> Callable[[torch.Tensor], torch.Tensor] | Literal[False] | None:
    """How to read ``value`` as (N, C, h, w): None (it already is), a reshape, or False."""
    if not isinstance(value, torch.Tensor):
        return False
    if value.ndim == 4:
        if _is_grid(value.shape[2], value.shape[3], size):
            return None
        if _is_grid(value.shape[1], value.shape[2], size):
            return _ChannelsLast()
        return False
    if value.ndim == 3:
        return _token_grid(value.shape[1], size, prefix) or False
    return False


#: Resampling layers the auto layer never picks (VGG's ``avgpool`` upsamples 2x2 to 7x7).
_RESAMPLING = (
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
    nn.Upsample,
    nn.Identity,
    nn.Flatten,
    nn.modules.dropout._DropoutNd,
)


def _is_layer_norm(module: nn.Module) -> bool:
    name = type(module).__name__
    return isinstance(module, nn.LayerNorm) or "LayerNorm" in name or "RMSNorm" in name


def _first_norm(module: nn.Module) -> str | None:
    """The first of two or more layer-norm children (a transformer block), else None."""
    norms = [name for name, child in module.named_children() if _is_layer_norm(child)]
    return norms[0] if len(norms) >= 2 else None


def _post_norm(block: str, norm: str, order: list[str]) -> bool:
    """Whether an attention child of ``block`` completed before its first norm."""
    rank = {k: i for i, k in enumerate(order)}
    prefix = f"{block}."
    return any(
        rank[k] < rank[prefix + norm]
        for k in order
        if k.startswith(prefix) and "." not in k[len(prefix) :] and "attn" in k[len(prefix) :]
    )


def _no_grid(value: Any, size: tuple[int, int], prefix: int | None) -> bool:
    """An output of both images with 3+ axes that is no token grid or spatial map."""
    return (
        isinstance(value, torch.Tensor)
        and value.ndim >= 3
        and value.shape[0] == 2
        and layout(value, size, prefix) is False
    )


def _as_nchw(value: torch.Tensor, reshape: Any) -> torch.Tensor:
    return reshape(value) if callable(reshape) else value


def _output_maps(outputs: Any) -> list[torch.Tensor]:
    """The 4-D tensors among a model's outputs (dicts, sequences, ``ModelOutput``s)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs] if outputs.ndim == 4 else []
    if isinstance(outputs, Mapping):
        return [t for v in outputs.values() for t in _output_maps(v)]
    if isinstance(outputs, (list, tuple)):
        return [t for v in outputs for t in _output_maps(v)]
    return []


def _inside(key: str, head: str) -> bool:
    return key == head or key.startswith(head + ".")


def _outside_heads(
    candidates: list[str],
    calls: dict[str, int],
    acts: dict[str, Any],
    size: tuple[int, int],
    outputs: Any,
) -> list[str]:
    """Spatial candidates minus the insides of heads, as long as some candidate is left.

    Heads: modules whose (N, K, h, w) output the model returns resized to the input
    size (segmentation logits), and the last module to run when its output is not a
    spatial map (a classifier or a detector's head, such as SqueezeNet's class-map
    convolution block or YOLO's ``Detect``).
    """
    maps = [m for m in _output_maps(outputs) if tuple(m.shape[-2:]) == size]

    def resized_logits(k: str) -> bool:
        v = acts.get(k)
        return (
            isinstance(v, torch.Tensor)
            and v.ndim == 4
            and tuple(v.shape[-2:]) != size
            and any(m.shape[:2] == v.shape[:2] for m in maps)
        )

    kept = candidates
    for head in [k for k in calls if resized_logits(k)]:
        rest = [k for k in kept if not _inside(k, head)]
        kept = rest or kept
    for head in reversed(list(calls)):  # the last module to run, unless a wrapper of all
        if head in candidates:
            break
        rest = [k for k in kept if not _inside(k, head)]
        if rest:
            kept = rest
            break
    return kept


def _same_tensor(a: Any, b: torch.Tensor) -> bool:
    return a is b or (
        isinstance(a, torch.Tensor)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and bool(torch.equal(a, b))
    )


def prefix_tokens(model: nn.Module) -> int | None:
    """Leading non-patch tokens a timm-style model declares (``num_prefix_tokens``)."""
    n = getattr(unwrap_model(model), "num_prefix_tokens", None)
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def probe_layer(model: nn.Module, images: torch.Tensor) -> str:
    """The layer the maps use when none is given (rule in the class docstring)."""
    inner = unwrap_model(model)
    if not any(True for _ in inner.children()):
        raise ValueError("The model has no submodules; pass the 'layers' parameter explicitly.")
    with torch.no_grad(), capture(model, nn.Module, detach=False) as cap:
        # two images (the first one twice for a batch of one), so that outputs with
        # a batch axis of their own (a detector's regions, position biases) stand out
        outputs = model(images[:2] if len(images) > 1 else images[:1].expand(2, -1, -1, -1))
    size = (int(images.shape[-2]), int(images.shape[-1]))
    prefix = prefix_tokens(model)
    acts = cap.activations
    order = list(cap.calls)  # order of first completion

    def tokens(k: str) -> bool:  # a token grid or channel-last map of both images
        value = acts.get(k)
        return (
            isinstance(value, torch.Tensor)
            and value.shape[0] == 2
            and layout(value, size, prefix) is not False
        )

    # transformer blocks: their first norm gives tokens, and so does the block unless
    # it returns a tuple (Hugging Face); CaiT's class-attention blocks return (N, 1, C).
    # A post-norm block (Swin V2: x + norm1(attn(x))) gives its output instead.
    blocks = [(k, n) for k in order if (n := _first_norm(inner.get_submodule(k)))]
    norms = [
        k if tokens(k) and _post_norm(k, norm, order) else f"{k}.{norm}"
        for k, norm in blocks
        if tokens(f"{k}.{norm}") and (tokens(k) or not isinstance(acts.get(k), torch.Tensor))
    ]
    if blocks and _no_grid(acts.get(".".join(blocks[-1])), size, prefix):
        norms = []  # the last blocks see no grid (NesT's blockified tokens): a CNN's rule
    if norms:
        key = norms[-1]
        why = "the first norm of the last transformer block"
        if key in dict(blocks):
            why = "the output of the last transformer block (a post-norm block)"
    else:
        key = _last_feature_block(inner, cap.calls, acts, size, outputs)
        why = "the last layer with a spatial output"
    reshape = layout(acts[key], size, prefix)
    shape = tuple(acts[key].shape[1:])
    nchw = tuple(_as_nchw(acts[key], reshape).shape[1:])
    read = f", output {shape} read as" if reshape else ""
    how = f" with reshape {reshape!r}" if reshape else ""
    warnings.warn(
        f"CAM: no layer given; using {key!r}, {why}{read} (C, h, w) = {nchw}{how}. "
        f"Pass layers={key!r} to choose explicitly.",
        stacklevel=user_stacklevel(),
    )
    return key


def _last_feature_block(
    inner: nn.Module,
    calls: dict[str, int],
    acts: dict[str, Any],
    size: tuple[int, int],
    outputs: Any,
) -> str:
    """The module whose output the maps of a CNN use.

    The outermost module returning the last spatial (N, C, h, w) output that is not a
    resampling layer and not inside a head (`_outside_heads`), then down through
    ``Sequential``s' last children.
    """

    def spatial(k: str) -> bool:
        # two images in, two maps out (a detector's RoI head sees hundreds of regions),
        # from a module that ran once (a shared module's last call is no block output)
        value = acts.get(k)
        found = layout(value, size, None)
        return (
            not isinstance(inner.get_submodule(k), _RESAMPLING)
            and calls[k] == 1
            and (found is None or (isinstance(found, _TokenGrid) and found.prefix == 0))
            and isinstance(value, torch.Tensor)
            and value.shape[0] == 2
        )

    candidates = [k for k in calls if spatial(k)]  # order of first completion
    candidates = _outside_heads(candidates, calls, acts, size, outputs)
    # a 1x1 grid gives constant maps (timm's conv_head after the global pool)
    candidates = [k for k in candidates if acts[k].shape[-2:].numel() > 1] or candidates
    if not candidates:
        raise ValueError(
            "No layer of the model has a spatial (N, C, h, w) output or a token grid; pass "
            "the 'layers' parameter (and a reshape_transform for other layouts)."
        )
    last = acts[candidates[-1]]
    # modules returning that tensor (capture hands the next module a clone of a live
    # output, so "the same tensor" is the same values)
    same = [k for k in candidates if _same_tensor(acts.get(k), last)]
    key = min(same, key=lambda k: k.count("."))
    while isinstance(module := inner.get_submodule(key), nn.Sequential) and len(module):
        child = f"{key}.{list(module._modules)[-1]}"
        if child not in same:
            break
        key = child
    return key
