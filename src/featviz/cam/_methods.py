r"""The CAM methods registry: one channel-weight function and one row per method.

Every method maps a layer's activations $A$ (N, C, h, w) and, where it needs them, the
gradients of the target score $G$ to weights $w$ (per channel, (N, C, 1, 1), or per
channel and position, (N, C, h, w)); the pipeline (`featviz.cam.CAM`) does the rest,
$L = \mathrm{ReLU}(\sum_k w_k A_k)$. A new method is one function
``(activations, gradients, job) -> weights`` and one row of `_METHODS`.

Transformer-native methods (``rollout``, ``relevance``) are rows too, but build the
whole map from the model's attention probabilities instead of a layer's channels
(`featviz.cam._attention`): their row names that function in ``attention`` and
``layers`` selects attention modules (None: all of them).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from featviz._ops import minmax, resize, user_stacklevel
from featviz._scoring import Scorer
from featviz.cam._attention import AttentionResult, Options, relevance, rollout
from featviz.cam._batching import masked_batch_size

__all__ = ["ATTENTION_METHODS", "METHODS"]


@dataclass
class _Job:
    """What a weighting may need besides activations and gradients."""

    model: nn.Module
    images: torch.Tensor  # (N, C, H, W) as passed to the model
    scorer: Scorer | None  # the resolved target; None for class-agnostic methods
    fc_weight: torch.Tensor | None  # (K, C) for classic CAM
    average_classes: bool
    batch_size: int | None  # Score-CAM's masked inputs per pass; None: from memory
    progress: bool
    scores: torch.Tensor | None = None  # (N,) target scores, for the near-zero check
    check: bool = True  # warn about near-zero maps (off for the extra views of aug_smooth)

    @property
    def classes(self) -> torch.Tensor | None:
        """(N,) int64: the target class of each image, or None (no single class)."""
        return self.scorer.single if self.scorer is not None else None


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
        assert job.scorer is not None
        rows = torch.arange(n, device=images.device)[:, None]  # each image's target
        zero = torch.cat([job.scorer(zero_out, row) for row in rows])
        scores = torch.where(constant, zero.float().to(a.device)[:, None], scores)
    pairs = (~constant).nonzero()
    batch = job.batch_size or masked_batch_size(job.model, images, len(pairs))
    chunks = pairs.split(batch)
    from featviz._ops import progress_bar

    for chunk in progress_bar(chunks, enabled=job.progress and len(chunks) > 1, desc="Score-CAM"):
        i, k = chunk[:, 0], chunk[:, 1]
        m = minmax(resize(a[i, k], size), what="Score-CAM mask")[:, None]
        img_rows = i.to(images.device)
        out = job.model(images[img_rows] * m.to(images.device, images.dtype))
        assert job.scorer is not None
        scores[i, k] = job.scorer(out, img_rows).float().to(a.device)
    return torch.softmax(scores, dim=1)[:, :, None, None].to(a.dtype)


_Weighting = Callable[[torch.Tensor, torch.Tensor | None, _Job], torch.Tensor]


_AttentionMap = Callable[
    [nn.Module, torch.Tensor, Any, "list[str] | None", Options],
    AttentionResult,
]


def _w_none(a: torch.Tensor, g: torch.Tensor | None, job: _Job) -> torch.Tensor:
    raise AssertionError("attention methods weight no channels")  # pragma: no cover


@dataclass(frozen=True)
class _Method:
    weights: _Weighting
    gradients: bool  # needs d(score)/d(activation)
    target: bool = True  # uses the target at all
    centered: bool = False  # weights apply to spatially centred activations
    attention: _AttentionMap | None = None  # the whole map from attention probabilities


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
    "rollout": _Method(_w_none, gradients=False, target=False, attention=rollout),
    "relevance": _Method(_w_none, gradients=True, attention=relevance),
}


#: Methods whose maps are in the target score's units (gradients or linear weights times
#: activations), for the near-zero check.
_SCORE_UNITS = frozenset(k for k, m in _METHODS.items() if m.gradients and m.attention is None) | {
    "cam"
}


#: The channel-weighting method names `CAM` accepts for any model with a spatial layer
#: (case, ``-`` and ``_`` are ignored; ``gradcampp`` is an alias of ``gradcam++``).
METHODS: tuple[str, ...] = tuple(k for k, m in _METHODS.items() if m.attention is None)

#: The transformer-native method names `CAM` accepts as well, for vision transformers
#: (self-attention modules): ``layers`` then selects attention modules, None all of
#: them. Kept apart from `METHODS`, which every model with a spatial layer supports.
ATTENTION_METHODS: tuple[str, ...] = tuple(k for k, m in _METHODS.items() if m.attention)


def _method_name(method: Any) -> str:
    if not isinstance(method, str):
        raise TypeError(
            f"The 'method' parameter must be a str, one of {list(_METHODS)}. "
            f"Got {type(method).__name__} instead."
        )
    key = method.lower().replace("-", "").replace("_", "").replace(" ", "")
    key = {
        "gradcampp": "gradcam++",
        "gradcamplusplus": "gradcam++",
        "attentionrollout": "rollout",
        "chefer": "relevance",
    }.get(key, key)
    if key not in _METHODS:
        raise ValueError(
            f"The 'method' parameter must be one of {list(_METHODS)}. Got {method!r} instead."
        )
    return key
