r"""Class activation maps: Grad-CAM, CAM and the family, batched, on the images' device.

Every method computes a map for each image as a weighted sum of a layer's activation
channels, $L = \mathrm{ReLU}(\sum_k w_k A_k)$, and differs only in how the
weights $w$ are found (see ``docs/cam.md`` for the formulas). One shared path does
the rest: hooks (attached only during a call, via `featviz.capture`), target scores,
gradients with `torch.autograd.grad` (never ``.backward()``, so parameters' ``.grad``
fields are untouched), fusion of several layers, bilinear resizing and per-image
min-max normalisation.

Example:
    >>> maps = featviz.grad_cam(model, images, layers="features.13")  # doctest: +SKIP
    >>> maps.shape  # (N, H, W), float32 in [0, 1]  # doctest: +SKIP
    torch.Size([8, 64, 64])
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import torch
from torch import nn

from featviz._ops import (
    autograd_input,
    check_autograd_model,
    eval_mode,
    finite_or_zero,
    grad_enabled,
    kept_buffers,
    minmax,
    resize,
    user_stacklevel,
)
from featviz._outputs import Target, as_logits, call_target, target_classes, target_on
from featviz._validation import renamed
from featviz.hooks import LayerSpec, capture, hookable, resolve_layers, unwrap_model

__all__ = ["CAM", "METHODS", "NearZeroMapWarning", "class_activation_map", "grad_cam"]

logger = logging.getLogger(__name__)

#: Output size: ``"input"`` (the images' size), None (the layer's size) or ``(H, W)``.
Size = Literal["input"] | tuple[int, int] | None


# --------------------------------------------------------------------------------------
# channel weightings: one function per method, the only thing that differs
# --------------------------------------------------------------------------------------
@dataclass
class _Job:
    """What a weighting may need besides activations and gradients."""

    model: nn.Module
    images: torch.Tensor  # (N, C, H, W) as passed to the model
    classes: torch.Tensor | None  # (N,) int64 target classes; None for a callable target
    target_fn: Callable[[Any], torch.Tensor] | None
    fc_weight: torch.Tensor | None  # (K, C) for classic CAM
    average_classes: bool
    batch_size: int
    progress: bool
    scores: torch.Tensor | None = None  # (N,) target scores, for the near-zero check
    check: bool = True  # warn about near-zero maps (off for the extra views of aug_smooth)

    def score(self, outputs: Any, rows: torch.Tensor) -> torch.Tensor:
        """Target scores (B,) of ``outputs`` whose rows belong to images ``rows`` (B,)."""
        if self.classes is not None:
            logits = as_logits(outputs)
            return logits.gather(1, self.classes[rows].to(logits.device)[:, None])[:, 0]
        assert self.target_fn is not None
        return call_target(self.target_fn, outputs, len(rows))


_HW = (2, 3)


def _w_gradcam(a: torch.Tensor, g: torch.Tensor | None, job: _Job) -> torch.Tensor:
    assert g is not None
    return g.mean(_HW, keepdim=True)


def _w_gradcampp(a: torch.Tensor, g: torch.Tensor | None, job: _Job) -> torch.Tensor:
    # Chattopadhay et al. 2018, eq. 19, with the exponential replaced by its first-order
    # terms as in their code and in pytorch-grad-cam
    assert g is not None
    g2 = g * g
    alpha = g2 / (2 * g2 + a.sum(_HW, keepdim=True) * g2 * g + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    return (g.clamp_min(0) * alpha).sum(_HW, keepdim=True)


def _w_xgradcam(a: torch.Tensor, g: torch.Tensor | None, job: _Job) -> torch.Tensor:
    assert g is not None
    return (g * a).sum(_HW, keepdim=True) / (a.sum(_HW, keepdim=True) + 1e-7)


def _w_hirescam(a: torch.Tensor, g: torch.Tensor | None, job: _Job) -> torch.Tensor:
    assert g is not None
    return g


def _w_gradcam_elementwise(a: torch.Tensor, g: torch.Tensor | None, job: _Job) -> torch.Tensor:
    # sum_k ReLU(g_k a_k) == sum_k w_k a_k with w_k = g_k where g_k a_k > 0, else 0
    assert g is not None
    return torch.where(g * a > 0, g, torch.zeros_like(g))


def _w_layercam(a: torch.Tensor, g: torch.Tensor | None, job: _Job) -> torch.Tensor:
    assert g is not None
    return g.clamp_min(0)


def _w_cam(a: torch.Tensor, g: torch.Tensor | None, job: _Job) -> torch.Tensor:
    assert job.fc_weight is not None
    weight = job.fc_weight.to(device=a.device, dtype=a.dtype)
    if job.average_classes:
        w = weight.mean(0).expand(a.shape[0], -1)
    else:
        assert job.classes is not None
        w = weight[job.classes.to(a.device)]
    return w[:, :, None, None]


def _principal_direction(x: torch.Tensor) -> torch.Tensor:
    r"""(N, C, h, w) -> (N, C): first principal direction of each image's (h*w, C) matrix.

    The matrix is centred per channel; the direction is its first right-singular vector,
    with the sign that makes $\sum_k v_k \ge 0$: the projection then correlates
    positively with the channel sum $\sum_k x_k$ (its covariance with it is
    $s_1^2 \sum_k v_k$), a fixed convention where the SVD's sign is arbitrary.
    """
    m = x.flatten(2).transpose(1, 2)
    m = m - m.mean(1, keepdim=True)
    _, sv, vh = torch.linalg.svd(m, full_matrices=False)
    v = vh[:, 0, :]
    total = v.sum(1)
    # ties: the first two singular values equal (the direction is arbitrary), or a
    # direction orthogonal to the channel sum (the sign is arbitrary)
    top = sv[:, 0] > 0
    tied = sv[:, 1] >= sv[:, 0] * (1 - 1e-5) if sv.shape[1] > 1 else torch.zeros_like(top)
    unsigned = total.abs() <= 1e-6 * v.abs().sum(1)
    bad = (top & (tied | unsigned)).nonzero().flatten().tolist()
    if bad:
        warnings.warn(
            f"The principal direction of images {bad} is not unique (equal leading singular "
            "values, or a direction orthogonal to the channel sum): their maps depend on "
            "rounding.",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    return v * torch.where(total[:, None] >= 0, 1.0, -1.0).to(v.dtype)


def _principal_map(x: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, h, w): the centred maps projected on `_principal_direction`."""
    v = _principal_direction(x)
    return torch.einsum("nc,nchw->nhw", v, x - x.mean(_HW, keepdim=True))


def _w_eigencam(a: torch.Tensor, g: torch.Tensor | None, job: _Job) -> torch.Tensor:
    # the map correlates positively with the channel sum of the activations
    return _principal_direction(a)[:, :, None, None]


def _w_scorecam(a: torch.Tensor, g: torch.Tensor | None, job: _Job) -> torch.Tensor:
    n, c = a.shape[:2]
    images = job.images
    size = images.shape[-2:]
    flat = a.flatten(2)
    constant = flat.amax(2) == flat.amin(2)  # (N, C): mask is all zeros
    scores = torch.zeros((n, c), dtype=torch.float32, device=a.device)
    if bool(constant.any()):
        # a zero mask blanks the whole input: one forward pass serves every such channel
        zero_out = job.model(torch.zeros_like(images[:1]))
        if job.classes is not None:
            zero = as_logits(zero_out)[0, job.classes.to(images.device)]
        else:
            assert job.target_fn is not None
            zero = call_target(job.target_fn, zero_out, 1).expand(n)
        scores = torch.where(constant, zero.float().to(a.device)[:, None], scores)
    pairs = (~constant).nonzero()
    chunks = pairs.split(job.batch_size)
    from featviz._ops import progress_bar

    for chunk in progress_bar(chunks, enabled=job.progress and len(chunks) > 1, desc="Score-CAM"):
        i, k = chunk[:, 0], chunk[:, 1]
        m = minmax(resize(a[i, k], size), what="Score-CAM mask")[:, None]
        img_rows = i.to(images.device)
        out = job.model(images[img_rows] * m.to(images.device, images.dtype))
        scores[i, k] = job.score(out, img_rows).float().to(a.device)
    return torch.softmax(scores, dim=1)[:, :, None, None].to(a.dtype)


_Weighting = Callable[[torch.Tensor, torch.Tensor | None, _Job], torch.Tensor]


class NearZeroMapWarning(RuntimeWarning):
    """A map's raw range is at floating-point noise level: it shows rounding, not evidence."""


@dataclass(frozen=True)
class _Method:
    weights: _Weighting
    gradients: bool  # needs d(score)/d(activation)
    target: bool = True  # uses the target at all
    centered: bool = False  # weights apply to spatially centred activations


_METHODS: dict[str, _Method] = {
    "cam": _Method(_w_cam, gradients=False),
    "gradcam": _Method(_w_gradcam, gradients=True),
    "gradcam++": _Method(_w_gradcampp, gradients=True),
    "xgradcam": _Method(_w_xgradcam, gradients=True),
    "hirescam": _Method(_w_hirescam, gradients=True),
    "gradcamelementwise": _Method(_w_gradcam_elementwise, gradients=True),
    "layercam": _Method(_w_layercam, gradients=True),
    "scorecam": _Method(_w_scorecam, gradients=False),
    "eigencam": _Method(_w_eigencam, gradients=False, target=False, centered=True),
}

#: Methods whose maps are in the target score's units (gradients or linear weights times
#: activations), for the near-zero check.
_SCORE_UNITS = frozenset(k for k, m in _METHODS.items() if m.gradients) | {"cam"}

#: ``aug_smooth``'s views: (horizontal flip, intensity factor), pytorch-grad-cam's six.
_AUG_VIEWS = tuple((flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))

#: The method names `CAM` accepts (case, ``-`` and ``_`` are ignored; ``gradcampp`` is
#: an alias of ``gradcam++``).
METHODS: tuple[str, ...] = tuple(_METHODS)


def _method_name(method: Any) -> str:
    if not isinstance(method, str):
        raise TypeError(
            f"The 'method' parameter must be a str, one of {list(METHODS)}. "
            f"Got {type(method).__name__} instead."
        )
    key = method.lower().replace("-", "").replace("_", "").replace(" ", "")
    key = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++"}.get(key, key)
    if key not in _METHODS:
        raise ValueError(
            f"The 'method' parameter must be one of {list(METHODS)}. Got {method!r} instead."
        )
    return key


# --------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------
# maps: normalisation, resizing, fusion
# --------------------------------------------------------------------------------------
def _vit_grid(tokens: torch.Tensor) -> torch.Tensor:
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


# --------------------------------------------------------------------------------------
# layouts: token grids and channel-last outputs, inferred from the input size
# --------------------------------------------------------------------------------------
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


def _layout(
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
        and _layout(value, size, prefix) is False
    )


def _as_nchw(value: torch.Tensor, reshape: Any) -> torch.Tensor:
    return reshape(value) if callable(reshape) else value


def _check_differentiable(scores: torch.Tensor, method: str) -> None:
    if not scores.requires_grad:
        raise ValueError(
            f"The 'target' callable returned scores with no gradient, so method={method!r} "
            "cannot differentiate them. Got a tensor without grad_fn (made with .detach(), "
            ".item(), argmax, comparisons or constants?) instead; return a differentiable "
            "function of the outputs, such as outputs[:, k], or use method='eigencam' or "
            "'scorecam', which need no gradient."
        )


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


def _check_size(size: Any) -> Size:
    if size is None or size == "input":
        return size
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        return (int(size[0]), int(size[1]))
    raise ValueError(
        "The 'size' parameter must be 'input', None or a pair (H, W) of ints >= 1. "
        f"Got {size!r} instead."
    )


class CAM:
    r"""Class activation maps of one or more layers, for repeated use.

    Hooks are attached only while a call runs (through `featviz.capture`) and removed
    in ``finally``, so nothing stays attached between calls; the object may also be used
    as a context manager. The model's train/eval flags are restored after every call
    (it is evaluated in eval mode unless ``eval_mode=False``), its ``requires_grad``
    flags are never changed and its parameters' ``.grad`` stay as found: gradients are
    taken with `torch.autograd.grad` w.r.t. the layer activations only. A model whose
    parameters are all frozen works too (the input is made differentiable for the call,
    on a detached alias, never the caller's tensor).

    Every method computes $L = \mathrm{ReLU}(\sum_k w_k A_k)$ from the layer's
    activations $A$ (N, C, h, w); the methods differ only in the weights
    $w$ (per channel, or per channel and position), see `METHODS` and the docs.

    Args:
        model: The model; DataParallel/DDP/``torch.compile`` wrappers are unwrapped for
            layer lookup.
        layers: A layer spec or a sequence of them, as in `featviz.hooks.resolve_layers`
            (name, glob, module type, module). None picks a layer with a probe forward
            pass on the first image and warns naming it and its reshape; the pick is
            kept for later calls with images of the same (C, H, W), which then cost no
            more than naming the layer (a new size probes again). Transformers
            (a module with two or more LayerNorm/RMSNorm children, the first of which
            returns a token grid): the first norm of the last such block (``blocks.11.norm1`` in
            timm, ``encoder.layers.encoder_layer_11.ln_1`` in torchvision's ViT,
            ``features.7.1.norm1`` in Swin); the block's output instead where attention
            runs before that norm (post-norm blocks: ``features.7.1`` in Swin V2); the CNN
            rule where the last block sees no token grid (NesT). Otherwise the last
            module with a spatial (N, C, h, w) output (or a prefix-free token grid: LeViT,
            ResMLP, gMLP) that is not a pooling, resampling, dropout or identity
            layer, ran once and gave one map per probe image (two images; never a
            detector's RoI head) and is not inside a head (the last module to run when
            its output is not a map, such as a classifier or YOLO's ``Detect``, or a
            module whose (N, K, h, w) output the model returns resized to the input:
            segmentation logits); of the modules returning that tensor, the outermost,
            then the last child of a ``Sequential`` as long as it returns the same
            tensor (``features.13`` for `TinyCNN`, ``layer4.2`` = ``layer4[-1]`` for a
            torchvision ResNet-50, ``features`` for VGG, ``features.12`` for
            SqueezeNet, ``backbone.layer4.2`` for DeepLabV3, ``model.21`` for YOLOv8).
        method: One of ``cam``, ``gradcam``, ``gradcam++``, ``xgradcam``, ``hirescam``,
            ``gradcamelementwise``, ``layercam``, ``scorecam``, ``eigencam``.
        fc: For ``method="cam"``: the final linear layer (spec or module) whose weights
            (K, C) weight the channels. None: the model's last ``nn.Linear``.
        average_classes: For ``method="cam"``: weight channels by the mean of the
            linear weights over all classes instead of the target class's row (a
            class-agnostic variant some users make). The target is then ignored.
        reshape_transform: Turns a layer output that is not (N, C, h, w) into that shape,
            applied to activations and gradients alike; ``"vit"`` drops the class token of
            (N, 1 + h*w, C) tokens and reshapes the rest to a square grid. None reads
            the layout from the input size (H, W): tokens (N, p + h*w, C) whose grid
            (h, w) is (H, W) divided by one stride lose their p leading tokens (class,
            distillation, register; the model's ``num_prefix_tokens`` is tried first
            where it has one, then the fewest that leave a grid), and channel-last (N, h, w, C)
            outputs are permuted; other outputs are used as they are.
        size: ``"input"`` resizes maps to the images' (H, W); None keeps the layer's size
            (the largest layer's, with several layers); ``(H, W)`` resizes to that size.
            Resizing is bilinear with ``align_corners=False`` (equal to OpenCV's
            ``INTER_LINEAR``), on the images' device.
        relu: Apply ReLU to each layer's weighted sum (before resizing).
        normalize: Min-max normalise each map to [0, 1] per image; a constant map (for
            example an all-negative map after ReLU) becomes all zeros.
        batch_size: Score-CAM: masked inputs evaluated per forward pass. None: 16 on
            the CPU (the fastest of 8-64 for ResNets there, cache-bound), 64 elsewhere.
        eval_mode: Evaluate the model in eval mode (BatchNorm running statistics, no
            dropout) during the call; False keeps its current mode. Either way every
            buffer (BatchNorm running statistics, ``num_batches_tracked``) is restored
            bit for bit after the call.
        progress: Show a progress bar for Score-CAM's masked forward passes.
        aug_smooth: Test-time augmentation smoothing: the maps of six views of the
            images (horizontal flip or not, times intensity factors 0.9, 1.0, 1.1, the
            views of pytorch-grad-cam's ``aug_smooth``) are computed, flipped back and
            averaged (then normalised again with ``normalize``). Class targets are fixed
            by the unaugmented view; a spatial target (`featviz.targets.BoxTarget`,
            `featviz.targets.SegmentationTarget`) is refused because it would not
            follow the flip. Six times the cost of one call.
        eigen_smooth: Replace each map $\sum_k w_k A_k$ by the projection of the
            weighted activations $w_k A_k$ on their first principal direction (centred
            per channel; sign: positive correlation with $\sum_k w_k A_k$), which
            keeps the dominant pattern and drops the rest (pytorch-grad-cam's
            ``eigen_smooth``). Ignored by ``eigencam``, which is that projection
            already.

    Attributes:
        layers_: Keys of the layers used by the latest call.
        reshapes_: The reshape applied to each of those layers' outputs (None where the
            output was already (N, C, h, w)); its repr says what it does, such as
            ``tokens[:, 1:] -> (N, C, 14, 14)``.
        classes_: (N,) int64 target classes of the latest call (None for a callable
            target or a class-agnostic method).
        scores_: (N,) detached target scores of the latest call (None for ``eigencam``).

    Several layers are fused as follows: each layer's map is computed, ReLU-ed, resized
    to the output size and (with ``normalize``) min-max normalised; the maps are
    averaged over layers and the mean is normalised again. Without ``normalize`` the raw
    resized maps are averaged.

    Example:
        >>> with featviz.CAM(model, "layer4", method="gradcam++") as cam:  # doctest: +SKIP
        ...     maps = cam(images, target=[3, 7])
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec] | None = None,
        method: str = "gradcam",
        *,
        fc: LayerSpec | None = None,
        average_classes: bool = False,
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | Literal["vit"] | None = None,
        size: Size = "input",
        relu: bool = True,
        normalize: bool = True,
        batch_size: int | None = None,
        eval_mode: bool = True,
        progress: bool = True,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"The 'model' parameter must be a torch.nn.Module. Got {type(model).__name__} "
                "instead."
            )
        self.model = model
        self.method = _method_name(method)
        self._spec = _METHODS[self.method]
        if isinstance(unwrap_model(model), torch.jit.ScriptModule):
            # TorchScript runs no Python hooks: an eager module with the same names
            names = [layers] if isinstance(layers, str) else layers
            by_name = isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)
            model = hookable(model, list(names) if by_name else None)  # type: ignore[arg-type]
            self.model = model
        self._keys: list[str] | None = (
            None if layers is None else list(resolve_layers(model, layers))
        )
        self.fc = fc
        self.average_classes = bool(average_classes)
        if reshape_transform == "vit":
            self.reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = _vit_grid
        elif reshape_transform is None or callable(reshape_transform):
            self.reshape_transform = reshape_transform
        else:
            raise TypeError(
                "The 'reshape_transform' parameter must be None, 'vit' or a callable. "
                f"Got {reshape_transform!r} instead."
            )
        self.size = _check_size(size)
        self.relu = bool(relu)
        self.normalize = bool(normalize)
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(
                "The 'batch_size' parameter of CAM must be None or an int in the range "
                "[1, inf). "
                f"Got {batch_size!r} instead."
            )
        self.batch_size = batch_size
        self.eval_mode = bool(eval_mode)
        self.progress = bool(progress)
        self.aug_smooth = bool(aug_smooth)
        self.eigen_smooth = bool(eigen_smooth)
        self._fc_weight: torch.Tensor | None = None
        if self.method == "cam":
            self._fc_weight = self._find_fc(fc)
        # the auto layer (layers=None) of each image size (C, H, W) probed so far
        self._auto_layers: dict[tuple[int, ...], str] = {}
        self.layers_: list[str] | None = None
        self.reshapes_: list[Callable[[torch.Tensor], torch.Tensor] | None] = []
        self.classes_: torch.Tensor | None = None
        self.scores_: torch.Tensor | None = None

    # -- setup -------------------------------------------------------------------------
    def _find_fc(self, fc: LayerSpec | None) -> torch.Tensor:
        if fc is None:
            linears: list[tuple[str, nn.Module]] = [
                (n, m)
                for n, m in unwrap_model(self.model).named_modules()
                if isinstance(m, nn.Linear)
            ]
            if not linears:
                raise ValueError(
                    "method='cam' needs the final linear layer but the model has no nn.Linear; "
                    "pass it as the 'fc' parameter."
                )
            name, module = linears[-1]
            logger.info("CAM: using %r as the final linear layer", name)
        else:
            try:
                found = resolve_layers(self.model, fc)
            except (TypeError, ValueError) as exc:  # its messages say 'layers'
                raise type(exc)(
                    f"The 'fc' parameter must name the model's final linear layer. Got {fc!r} "
                    f"instead: {exc}"
                ) from exc
            if len(found) != 1:
                raise ValueError(
                    f"The 'fc' parameter must name one layer. Got {fc!r}, matching {list(found)}."
                )
            module = next(iter(found.values()))
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            raise ValueError(
                "The 'fc' parameter must be a linear layer with a 2-D weight (classes, "
                f"channels). Got {type(module).__name__}."
            )
        return weight

    def _probe_layer(self, images: torch.Tensor) -> str:
        """The layer the maps use when none is given (rule in the class docstring)."""
        inner = unwrap_model(self.model)
        if not any(True for _ in inner.children()):
            raise ValueError("The model has no submodules; pass the 'layers' parameter explicitly.")
        with torch.no_grad(), capture(self.model, nn.Module, detach=False) as cap:
            # two images (the first one twice for a batch of one), so that outputs with
            # a batch axis of their own (a detector's regions, position biases) stand out
            outputs = self.model(
                images[:2] if len(images) > 1 else images[:1].expand(2, -1, -1, -1)
            )
        size = (int(images.shape[-2]), int(images.shape[-1]))
        prefix = self._prefix_tokens()
        acts = cap.activations
        order = list(cap.calls)  # order of first completion

        def tokens(k: str) -> bool:  # a token grid or channel-last map of both images
            value = acts.get(k)
            return (
                isinstance(value, torch.Tensor)
                and value.shape[0] == 2
                and _layout(value, size, prefix) is not False
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
            key = self._last_feature_block(inner, cap.calls, acts, size, outputs)
            why = "the last layer with a spatial output"
        reshape = _layout(acts[key], size, prefix)
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

    def _prefix_tokens(self) -> int | None:
        """Leading non-patch tokens a timm-style model declares (``num_prefix_tokens``)."""
        n = getattr(unwrap_model(self.model), "num_prefix_tokens", None)
        return n if isinstance(n, int) and not isinstance(n, bool) else None

    @staticmethod
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
            layout = _layout(value, size, None)
            return (
                not isinstance(inner.get_submodule(k), _RESAMPLING)
                and calls[k] == 1
                and (layout is None or (isinstance(layout, _TokenGrid) and layout.prefix == 0))
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

    # -- call --------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Compute the maps of a batch.

        Args:
            images: float tensor (N, C, H, W) on the model's device.
            target: None: each image's arg-max class. An int: that class for every
                image. A sequence/tensor of ints: one class per image (its length must
                equal N, else ValueError). A callable ``outputs -> (N,) scores``: any
                differentiable score of the model outputs (segmentation, detection,
                regression heads). Ignored by ``eigencam`` and by ``cam`` with
                ``average_classes``.

        Returns:
            float32 tensor (N, H', W') on the images' device, where (H', W') is set by
            ``size``; values in [0, 1] when ``normalize``.

        Raises:
            TypeError: ``images`` is not a tensor, or ``target`` has a wrong type.
            ValueError: ``images`` is not (N, C, H, W); ``target`` has another length
                than the batch or a class out of range; a layer does not run, returns
                something other than a tensor, or is not (N, C, h, w) after
                ``reshape_transform``; the target score does not depend on a layer.
        """
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"The 'images' parameter must be a torch.Tensor (N, C, H, W). "
                f"Got {type(images).__name__} instead."
            )
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(
                "The 'images' parameter must be a non-empty batch of shape (N, C, H, W). "
                f"Got shape {tuple(images.shape)} instead."
            )
        if callable(target) and not isinstance(target, torch.Tensor):
            if self.method == "cam" and not self.average_classes:
                raise ValueError(
                    "method='cam' weights channels by one class's linear weights and needs "
                    "class indices; a callable 'target' is not supported (use 'gradcam')."
                )
        if isinstance(target, torch.Tensor):
            target = target_on(target, images.device)
        if self._spec.gradients:
            check_autograd_model(self.model, f"CAM(method={self.method!r})")
        # the same maps inside the caller's no_grad() or inference_mode()
        with (
            grad_enabled(),
            eval_mode(self.model, self.eval_mode),
            kept_buffers(self.model),  # training-mode BatchNorm statistics
        ):
            images = autograd_input(images)
            keys = self._keys
            if keys is None:  # probe once per image size (the pick reads shapes only)
                shape = tuple(images.shape[1:])
                if shape not in self._auto_layers:
                    self._auto_layers[shape] = self._probe_layer(images)
                keys = [self._auto_layers[shape]]
            if self.aug_smooth:
                return self._smoothed(images, target, keys)
            return self._compute(images, target, keys)

    def _smoothed(self, images: torch.Tensor, target: Target, keys: list[str]) -> torch.Tensor:
        """``aug_smooth``: the mean of the maps of six views, each mapped back to the image."""
        if getattr(target, "spatial", False):
            raise ValueError(
                f"aug_smooth flips the images, but the 'target' {type(target).__name__} scores "
                "fixed positions (boxes or masks) that would not follow the flip; use "
                "aug_smooth=False with spatial targets."
            )
        first = self._compute(images, target, keys)  # the unaugmented view sets the results
        kept = (self.layers_, self.reshapes_, self.classes_, self.scores_)
        fixed = self.classes_ if self.classes_ is not None else target
        maps = [first]
        for flip, factor in _AUG_VIEWS:
            if not flip and factor == 1.0:
                continue
            view = images.flip(-1) if flip else images
            m = self._compute(view * factor, fixed, keys, check=False)
            maps.append(m.flip(-1) if flip else m)
        self.layers_, self.reshapes_, self.classes_, self.scores_ = kept
        out = torch.stack(maps).mean(0)
        return minmax(out, what="CAM maps") if self.normalize else out

    def _forward(
        self, x: torch.Tensor, keys: list[str], detach: bool
    ) -> tuple[Any, list[torch.Tensor]]:
        with capture(self.model, keys, detach=detach) as cap:
            outputs = self.model(x)
        acts = []
        for key in keys:
            if key not in cap.activations:
                raise ValueError(f"Layer {key!r} did not run during the model's forward pass.")
            act = cap.activations[key]
            if not isinstance(act, torch.Tensor):
                # dict keys are selected by their key: "backbone['0']", never 'backbone[0]'
                first = next(iter(act), 0) if isinstance(act, Mapping) else 0
                raise ValueError(
                    f"Layer {key!r} returned {type(act).__name__}, not a tensor; select one "
                    f'element with a selector such as "{key}[{first!r}]".'
                )
            if cap.calls[key] > 1:
                warnings.warn(
                    f"CAM: layer {key!r} ran {cap.calls[key]} times in one forward pass; its "
                    "maps use the last call's output. Choose a module that runs once (a "
                    "block's output) unless the last call is the one you mean.",
                    stacklevel=user_stacklevel(),
                )
            acts.append(act)
        return outputs, acts

    def _compute(
        self, images: torch.Tensor, target: Target, keys: list[str], check: bool = True
    ) -> torch.Tensor:
        spec = self._spec
        n = images.shape[0]
        callable_target = callable(target) and not isinstance(target, torch.Tensor)
        x = images.detach()
        grads: Sequence[torch.Tensor | None]
        if spec.gradients:
            with torch.enable_grad():
                frozen = not any(p.requires_grad for p in self.model.parameters())
                if frozen and x.is_floating_point():
                    x = x.requires_grad_(True)  # x is a detached alias: caller's tensor untouched
                outputs, acts = self._forward(x, keys, detach=False)
                if not all(a.requires_grad for a in acts) and not x.requires_grad:
                    # frozen layers before the target layer: redo with a differentiable input
                    logger.info("CAM: layer output needs no grad; rerunning with input grad")
                    x = images.detach().requires_grad_(True)
                    outputs, acts = self._forward(x, keys, detach=False)
                for key, act in zip(keys, acts, strict=True):
                    if not act.requires_grad:
                        raise ValueError(
                            f"Layer {key!r}'s output does not depend differentiably on the "
                            "input or parameters; gradient-based methods cannot use it."
                        )
                if callable_target:
                    classes = None
                    scores = call_target(target, outputs, n)  # type: ignore[arg-type]
                    _check_differentiable(scores, self.method)
                else:
                    classes = target_classes(outputs, target, n)
                    scores = as_logits(outputs).gather(1, classes[:, None])[:, 0]
                grads = torch.autograd.grad(scores.sum(), acts, allow_unused=True)
            for key, g in zip(keys, grads, strict=True):
                if g is None:
                    raise ValueError(
                        f"The target score does not depend on layer {key!r} (the 'layers' "
                        "parameter): no gradient flows from the score to it. Choose a layer on "
                        "the path from the input to the scored output."
                    )
            scores = scores.detach()
            acts = [a.detach() for a in acts]  # release the graph before the maps
            del outputs
        else:
            with torch.no_grad():
                outputs, acts = self._forward(x, keys, detach=True)
                classes, scores_opt = None, None
                need_target = spec.target and not (self.method == "cam" and self.average_classes)
                if need_target:
                    if callable_target:
                        scores_opt = call_target(target, outputs, n)  # type: ignore[arg-type]
                    else:
                        classes = target_classes(outputs, target, n)
                        scores_opt = as_logits(outputs).gather(1, classes[:, None])[:, 0]
            grads = [None] * len(acts)
            del outputs
        self.layers_ = list(keys)
        self.classes_ = classes
        self.scores_ = scores if spec.gradients else scores_opt

        job = _Job(
            model=self.model,
            images=x.detach(),
            classes=classes,
            target_fn=target if callable_target else None,  # type: ignore[arg-type]
            fc_weight=self._fc_weight.detach() if self._fc_weight is not None else None,
            average_classes=self.average_classes,
            batch_size=self.batch_size or (16 if images.device.type == "cpu" else 64),
            progress=self.progress,
            scores=self.scores_,
            check=check,
        )
        self.reshapes_ = []
        with torch.no_grad():
            raw = [
                self._layer_map(key, a, g, job) for key, a, g in zip(keys, acts, grads, strict=True)
            ]
            return self._finish(raw, images)

    def _layer_map(
        self, key: str, act: torch.Tensor, grad: torch.Tensor | None, job: _Job
    ) -> torch.Tensor:
        a = act.detach()
        g = grad
        reshape = self.reshape_transform
        if reshape is None:  # token grids and channel-last outputs, read from the input size
            size = (int(job.images.shape[-2]), int(job.images.shape[-1]))
            reshape = _layout(a, size, self._prefix_tokens()) or None
        self.reshapes_.append(reshape)
        if reshape is not None:
            a = reshape(a)
            g = reshape(g) if g is not None else None
        if a.ndim != 4:
            raise ValueError(
                f"The 'layers' entry {key!r} gives activations of shape {tuple(a.shape)}; "
                "CAMs need (N, C, h, w). Choose a convolutional layer, or pass a "
                "reshape_transform (e.g. 'vit' for ViT tokens)."
            )
        if a.shape[0] != job.images.shape[0]:
            raise ValueError(
                f"The 'layers' entry {key!r} gives {a.shape[0]} maps for a batch of "
                f"{job.images.shape[0]} images (a detector's region head, or a layer that "
                "regroups the batch?); the number of maps must equal the number of images. "
                "Choose a layer of the backbone, such as 'backbone.body.layer4'."
            )
        # the one rule for NaN/inf (featviz._ops): set to 0, with a RuntimeWarning
        a = finite_or_zero(a.float(), what=f"activations of layer {key!r}")
        g = finite_or_zero(g.float(), what=f"gradients of layer {key!r}") if g is not None else None
        if self.method == "cam" and self._fc_weight is not None:
            if self._fc_weight.shape[1] != a.shape[1]:
                raise ValueError(
                    f"The 'fc' layer takes {self._fc_weight.shape[1]} features but layer "
                    f"{key!r} has {a.shape[1]} channels; classic CAM needs the layer that "
                    "feeds the global pooling before 'fc'."
                )
        w = self._spec.weights(a, g, job)
        if self._spec.centered:
            a = a - a.mean(_HW, keepdim=True)
        if self.eigen_smooth and self.method != "eigencam":
            cam = _principal_map(w * a)
        elif w.shape[2:] == (1, 1):
            cam = torch.einsum("nc,nchw->nhw", w[:, :, 0, 0], a)
        else:
            cam = (w * a).sum(1)
        if job.check:
            self._check_noise(key, cam, (w * a).abs().sum(1), a.shape[1], job.scores)
        return cam.clamp_min(0) if self.relu else cam

    def _check_noise(
        self,
        key: str,
        cam: torch.Tensor,
        terms: torch.Tensor,
        channels: int,
        scores: torch.Tensor | None,
    ) -> None:
        r"""Warn about maps that carry no signal (rule in ``docs/cam.md#near-zero-maps``).

        Args:
            key: The layer.
            cam: (N, h, w) signed maps before the ReLU.
            terms: (N, h, w) sums of the magnitudes of the terms, $\sum_k |w_k A_k|$.
            channels: C, the number of terms.
            scores: (N,) target scores, or None.
        """
        if cam.shape[-2:] == (1, 1):
            warnings.warn(
                f"CAM: layer {key!r} has a 1x1 grid, so its maps are constant (all zeros "
                "after normalisation); choose an earlier layer or a larger input.",
                NearZeroMapWarning,
                stacklevel=user_stacklevel(),
            )
            return
        eps = torch.finfo(torch.float32).eps
        span = cam.flatten(1).amax(1) - cam.flatten(1).amin(1)
        # cancellation: the range is within the rounding error of summing C terms
        biggest = terms.flatten(1).amax(1)
        limit = 8 * eps * math.sqrt(channels) * biggest
        if scores is not None and self.method in _SCORE_UNITS:
            # maps in score units: below float32's resolution at the score's scale
            unit = eps * scores.detach().abs().float().clamp_min(1.0).to(span.device)
            limit = torch.maximum(limit, unit)
        zero = (biggest == 0).nonzero().flatten().tolist()
        if zero:
            warnings.warn(
                f"CAM: the maps of images {zero} from layer {key!r} are all zeros: every "
                "weighted activation w_k A_k is 0 (zero gradients: a zero-initialised head, "
                "as torchvision's ViT without weights, or a target that does not reach the "
                "layer; or all-zero activations).",
                NearZeroMapWarning,
                stacklevel=user_stacklevel(),
            )
        tiny = ((span <= limit) & (biggest > 0)).nonzero().flatten().tolist()
        if tiny:
            ranges = ", ".join(f"{float(span[i]):.1e}" for i in tiny[:4])
            warnings.warn(
                f"CAM: the maps of images {tiny} from layer {key!r} have raw ranges ({ranges}) "
                "at floating-point noise level: after normalisation they show rounding, not "
                "evidence. Random or saturated weights, or a layer the score hardly depends "
                "on? Check cam.scores_ and the layer.",
                NearZeroMapWarning,
                stacklevel=user_stacklevel(),
            )

    def _finish(self, raw: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        if self.size == "input":
            size = (int(images.shape[-2]), int(images.shape[-1]))
        elif self.size is None:
            size = max((tuple(r.shape[-2:]) for r in raw), key=lambda s: s[0] * s[1])  # type: ignore[assignment]
        else:
            size = self.size
        # checked at the layer's (small) size: resizing finite values keeps them finite;
        # finite inputs may still overflow in the weighted sum
        raw = [finite_or_zero(r, what="CAM maps") for r in raw]
        maps = [resize(r, size).to(images.device) for r in raw]
        if len(maps) == 1:
            out = maps[0]
        else:
            out = torch.stack([minmax(m) if self.normalize else m for m in maps]).mean(0)
        if self.normalize:
            out = minmax(out)
        return out.float().contiguous()

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> CAM:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # hooks never outlive a call; drop references to the latest results
        self.classes_ = None
        self.scores_ = None

    def __repr__(self) -> str:
        layers = self._keys if self._keys is not None else "auto"
        return f"CAM(method={self.method!r}, layers={layers!r}, size={self.size!r})"


@renamed(layer="layers")
def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    target: Target = None,
    *,
    size: Size = "input",
    relu: bool = True,
    normalize: bool = True,
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | Literal["vit"] | None = None,
    eval_mode: bool = True,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
) -> torch.Tensor:
    r"""Grad-CAM (Selvaraju et al. 2017) heatmaps of a batch.

    Channel weights are the spatial means of the gradient of the target score with
    respect to the layer's activations, $w_k = \frac{1}{hw}\sum_{ij}
    \partial y / \partial A_{kij}$; the map is $\mathrm{ReLU}(\sum_k w_k A_k)$,
    resized bilinearly and min-max normalised per image: the definition used by
    pytorch-grad-cam. See `CAM` for every option.

    Args:
        model: The model.
        images: float tensor (N, C, H, W).
        layers: Layer spec(s) as in `featviz.hooks.resolve_layers`; None picks the last
            layer with a spatial output and warns naming it.
        target: None (arg-max class), an int, one int per image, or a callable
            ``outputs -> (N,) scores``.
        size: ``"input"``, None (the layer's size) or ``(H, W)``.
        relu: Apply ReLU to the weighted sum.
        normalize: Min-max normalise each map to [0, 1] (constant maps -> zeros).
            ``relu=False, normalize=False`` gives the raw signed map.
        reshape_transform: ``"vit"`` or a callable mapping the layer output to
            (N, C, h, w).
        eval_mode: Evaluate in eval mode during the call (flags restored after).
        aug_smooth: Average the maps of six flipped/rescaled views (see `CAM`).
        eigen_smooth: Keep the first principal component of the weighted
            activations (see `CAM`).

    Returns:
        float32 tensor (N, H', W') on the images' device.
    """
    cam = CAM(
        model,
        layers,
        "gradcam",
        reshape_transform=reshape_transform,
        size=size,
        relu=relu,
        normalize=normalize,
        eval_mode=eval_mode,
        aug_smooth=aug_smooth,
        eigen_smooth=eigen_smooth,
    )
    return cam(images, target)


@renamed(layer="layers")
def class_activation_map(
    model: nn.Module,
    images: torch.Tensor,
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    fc: LayerSpec | None = None,
    target: Target = None,
    *,
    average_classes: bool = False,
    size: Size = "input",
    relu: bool = True,
    normalize: bool = True,
    eval_mode: bool = True,
) -> torch.Tensor:
    r"""Classic CAM (Zhou et al. 2016): channels weighted by the final linear layer.

    For a model ending in ``layer -> global average pool -> fc``, the map of class
    $c$ is $\sum_k W_{ck} A_k$ with $W$ the (K, C) weight of ``fc``;
    no gradients are needed. With ``average_classes=True`` the weights are the mean row
    $\frac{1}{K}\sum_c W_{ck}$ (one class-agnostic map, the "average over all
    classes" variant); ``target`` is then ignored.

    Args:
        model: The model.
        images: float tensor (N, C, H, W).
        layers: The layer feeding the global pooling; None picks the last spatial layer.
        fc: The final linear layer; None uses the model's last ``nn.Linear``.
        target: None (arg-max class), an int, or one int per image.
        average_classes: Average the linear weights over all classes.
        size: ``"input"``, None (the layer's size) or ``(H, W)``.
        relu: Apply ReLU to the weighted sum.
        normalize: Min-max normalise each map to [0, 1] (constant maps -> zeros).
        eval_mode: Evaluate in eval mode during the call (flags restored after).

    Returns:
        float32 tensor (N, H', W') on the images' device.
    """
    cam = CAM(
        model,
        layers,
        "cam",
        fc=fc,
        average_classes=average_classes,
        size=size,
        relu=relu,
        normalize=normalize,
        eval_mode=eval_mode,
    )
    return cam(images, target)
