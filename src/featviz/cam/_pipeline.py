r"""The CAM pipeline: hooks, target scores, gradients, weights, fusion, resizing.

Every method computes a map for each image as a weighted sum of a layer's activation
channels, $L = \mathrm{ReLU}(\sum_k w_k A_k)$, and differs only in how the
weights $w$ are found (`featviz.cam._methods`). This module does the rest: hooks
(attached only during a call, via `featviz.capture`), target scores (through the one
scoring path, `featviz._scoring`), gradients with `torch.autograd.grad` (never
``.backward()``, so parameters' ``.grad`` fields are untouched), fusion of several
layers, bilinear resizing and per-image min-max normalisation.
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
from featviz._outputs import Target, target_on
from featviz._scoring import Scorer, is_class_target, resolve
from featviz._validation import renamed
from featviz.cam._checks import (
    Size,
    attention_options,
    check_differentiable,
    check_reshape,
    check_size,
)
from featviz.cam._layers import layout, prefix_tokens, probe_layer
from featviz.cam._methods import _HW, _METHODS, _SCORE_UNITS, _Job, _method_name, _principal_map
from featviz.hooks import LayerSpec, capture, hookable, resolve_layers, unwrap_model

__all__ = ["CAM", "NearZeroMapWarning", "Size", "class_activation_map", "grad_cam"]

logger = logging.getLogger(__name__)


class NearZeroMapWarning(RuntimeWarning):
    """A map's raw range is at floating-point noise level: it shows rounding, not evidence."""


#: ``aug_smooth``'s views: (horizontal flip, intensity factor), pytorch-grad-cam's six.
_AUG_VIEWS = tuple((flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))


@dataclass(frozen=True)
class _Pass:
    """The activations (and gradients) of one pass over a batch, shared by the methods."""

    x: torch.Tensor  # (N, C, H, W) the input as the model saw it
    scorer: Scorer | None
    scores: torch.Tensor | None  # (N,) detached target scores
    keys: list[str]
    acts: list[torch.Tensor]
    grads: Sequence[torch.Tensor | None]


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
            ``gradcamelementwise``, ``layercam``, ``scorecam``, ``eigencam``; for vision
            transformers also ``rollout`` (attention rollout, class-agnostic) and
            ``relevance`` (gradient-weighted attention relevance, Chefer et al. 2021),
            which read every self-attention module's probabilities (``layers``: None
            or attention modules; see ``docs/cam.md#transformer-native-maps``).
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
        batch_size: Score-CAM: masked inputs evaluated per forward pass. None: as many
            as a quarter of the available memory holds (free GPU memory, or available
            RAM), at the footprint of one image's forward pass measured once per call
            (its input and every leaf module's outputs), at most 256.
        eval_mode: Evaluate the model in eval mode (BatchNorm running statistics, no
            dropout) during the call; False keeps its current mode. Either way every
            buffer (BatchNorm running statistics, ``num_batches_tracked``) is restored
            bit for bit after the call.
        head_fusion: For ``rollout``: fuse a block's heads by their ``"mean"``,
            ``"max"`` or ``"min"``.
        discard_ratio: For ``rollout``: the fraction in [0, 1) of each fused attention
            matrix's smallest entries set to 0 before the residual is added.
        progress: Show a progress bar for Score-CAM's masked forward passes.
        aug_smooth: Test-time augmentation smoothing: the maps of six views of the
            images (horizontal flip or not, times intensity factors 0.9, 1.0, 1.1, the
            views of pytorch-grad-cam's ``aug_smooth``) are computed, flipped back and
            averaged (then normalised again with ``normalize``). Class targets are fixed
            by the unaugmented view (the predicted class of ``target=None`` is kept);
            a spatial target (`featviz.targets.BoxTarget` with boxes,
            `featviz.targets.SegmentationTarget` with a mask) is refused because it
            would not follow the flip. A callable target is called on every view as it
            is: it must not read fixed pixel positions (boxes, masks, crops of the
            output), which a flipped view moves. Six times the cost of one call.
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
        classes_: (N,) int64 target classes of the latest call (None for a target that
            is no single class per image, or a class-agnostic method).
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
        head_fusion: Literal["mean", "max", "min"] = "mean",
        discard_ratio: float = 0.0,
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
        self.reshape_transform = check_reshape(reshape_transform)
        self.size = check_size(size)
        self.relu = bool(relu)
        self.normalize = bool(normalize)
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(
                "The 'batch_size' parameter of CAM must be None or an int in the range "
                f"[1, inf). Got {batch_size!r} instead."
            )
        self.batch_size = batch_size
        self.eval_mode = bool(eval_mode)
        self.progress = bool(progress)
        self.aug_smooth = bool(aug_smooth)
        self.eigen_smooth = bool(eigen_smooth)
        self._options = attention_options(head_fusion, discard_ratio)
        self.head_fusion, self.discard_ratio = head_fusion, discard_ratio
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

    # -- call --------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Compute the maps of a batch.

        Args:
            images: float tensor (N, C, H, W) on the model's device.
            target: None: each image's arg-max class. An int: that class for every
                image. A sequence/tensor of ints: one class per image (its length must
                equal N, else ValueError). A `featviz.targets` object (``ClassTarget(c)``
                is the same as ``c``; ``BoxTarget``, ``SegmentationTarget``,
                ``SimilarityTarget`` for detection, segmentation and embedding
                models). A callable ``outputs -> (N,) scores``: any differentiable score
                of the model outputs (regression heads, ...). Ignored by ``eigencam``
                and by ``cam`` with ``average_classes``; ``cam`` needs one class per
                image (None, ints, ``ClassTarget``, ``ProbabilityTarget``).

        Returns:
            float32 tensor (N, H', W') on the images' device, where (H', W') is set by
            ``size``; values in [0, 1] when ``normalize``.

        Raises:
            TypeError: ``images`` is not a tensor, or ``target`` has a wrong type.
            ValueError: ``images`` is not a float (N, C, H, W) batch; ``target`` has another length
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
        if not images.is_floating_point():
            raise ValueError(
                "The 'images' parameter must be a float tensor (N, C, H, W), as the model "
                f"takes it. Got dtype {images.dtype} instead; convert with images.float() "
                "(and the model's normalisation)."
            )
        if self.method == "cam" and not self.average_classes and not is_class_target(target):
            raise ValueError(
                "method='cam' weights channels by one class's linear weights and needs one "
                "class per image (None, an int, ints, ClassTarget or ProbabilityTarget); a "
                f"callable 'target' is not supported (use 'gradcam'). Got "
                f"{type(target).__name__} instead."
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
            keys = self._keys_for(images)
            if self.aug_smooth:
                return self._smoothed(images, target, keys)
            return self._compute(images, target, keys)[0]

    def _keys_for(self, images: torch.Tensor) -> list[str] | None:
        """The layers of this call: as given, or the auto layer of this image size.

        None for an attention method with no layer given: it reads every attention module.
        """
        if self._keys is not None or self._spec.attention is not None:
            return self._keys
        shape = tuple(images.shape[1:])  # probe once per image size (the pick reads shapes)
        if shape not in self._auto_layers:
            self._auto_layers[shape] = probe_layer(self.model, images)
        return [self._auto_layers[shape]]

    def _smoothed(
        self, images: torch.Tensor, target: Target, keys: list[str] | None
    ) -> torch.Tensor:
        """``aug_smooth``: the mean of the maps of six views, each mapped back to the image."""
        if getattr(target, "spatial", False):
            raise ValueError(
                f"aug_smooth flips the images, but the 'target' {type(target).__name__} scores "
                "fixed positions (boxes or masks) that would not follow the flip; use "
                "aug_smooth=False with spatial targets."
            )
        # the unaugmented view sets the results and fixes the target (the predicted class)
        first, scorer = self._compute(images, target, keys)
        kept = (self.layers_, self.reshapes_, self.classes_, self.scores_)
        fixed = scorer if scorer is not None else target
        maps = [first]
        for flip, factor in _AUG_VIEWS:
            if not flip and factor == 1.0:
                continue
            view = images.flip(-1) if flip else images
            m, _ = self._compute(view * factor, fixed, keys, check=False)
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
        self,
        images: torch.Tensor,
        target: Target | Scorer,
        keys: list[str] | None,
        check: bool = True,
    ) -> tuple[torch.Tensor, Scorer | None]:
        """The maps of ``images`` (N, C, H, W) and the resolved target (None if unused)."""
        if self._spec.attention is not None:
            return self._attention_maps(images, target, keys)
        assert keys is not None
        run = self._activations(images, target, keys, self._spec.gradients, self._scored)
        return self._maps(images, run, check)

    @property
    def _scored(self) -> bool:
        """Whether this method reads the target scores."""
        return self._spec.target and not (self.method == "cam" and self.average_classes)

    def _activations(
        self,
        images: torch.Tensor,
        target: Target | Scorer,
        keys: list[str],
        gradients: bool,
        scored: bool,
    ) -> _Pass:
        """One forward pass (and a backward one with ``gradients``) over ``images``."""
        x = images.detach()
        grads: Sequence[torch.Tensor | None]
        if gradients:
            x, scorer, scores, acts, grads = self._gradients(images, target, keys)
        else:
            with torch.no_grad():
                outputs, acts = self._forward(x, keys, detach=True)
                scorer, scores = None, None
                if scored:
                    scorer = self._resolve(target, outputs, images)
                    scores = scorer(outputs)
            grads = [None] * len(acts)
            del outputs
        return _Pass(x, scorer, scores, list(keys), acts, grads)

    def _maps(
        self, images: torch.Tensor, run: _Pass, check: bool = True
    ) -> tuple[torch.Tensor, Scorer | None]:
        """This method's maps from the activations (and gradients) of one pass."""
        x, scorer, scores, keys = run.x, run.scorer, run.scores, run.keys
        if not self._scored:
            scorer, scores = None, None
        self.layers_ = list(keys)
        self.classes_ = scorer.single if scorer is not None else None
        self.scores_ = scores
        job = _Job(
            model=self.model,
            images=x.detach(),
            scorer=scorer,
            fc_weight=self._fc_weight.detach() if self._fc_weight is not None else None,
            average_classes=self.average_classes,
            batch_size=self.batch_size,
            progress=self.progress,
            scores=scores,
            check=check,
        )
        self.reshapes_ = []
        with torch.no_grad():
            raw = [
                self._layer_map(key, a, g, job)
                for key, a, g in zip(keys, run.acts, run.grads, strict=True)
            ]
            return self._finish(raw, images), scorer

    def _attention_maps(
        self, images: torch.Tensor, target: Target | Scorer, keys: list[str] | None
    ) -> tuple[torch.Tensor, Scorer | None]:
        """Transformer-native maps (`featviz.cam._attention`), resized and normalised."""
        assert self._spec.attention is not None
        found = self._spec.attention(self.model, images, target, keys, self._options)
        self.layers_, self.reshapes_ = found.layers, []
        self.classes_ = found.scorer.single if found.scorer is not None else None
        self.scores_ = found.scores
        return self._finish([found.maps], images), found.scorer

    def _resolve(self, target: Target | Scorer, outputs: Any, images: torch.Tensor) -> Scorer:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return resolve(target, outputs, images.shape[0], size=size)

    def _gradients(
        self, images: torch.Tensor, target: Target | Scorer, keys: list[str]
    ) -> tuple[torch.Tensor, Scorer, torch.Tensor, list[torch.Tensor], Sequence[torch.Tensor]]:
        """(input, resolved target, detached scores (N,), activations, their gradients)."""
        x = images.detach()
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
            scorer = self._resolve(target, outputs, images)
            scores = scorer(outputs)
            if scorer.fn is not None:
                check_differentiable(scores, self.method)
            grads = torch.autograd.grad(scores.sum(), acts, allow_unused=True)
        for key, g in zip(keys, grads, strict=True):
            if g is None:
                raise ValueError(
                    f"The target score does not depend on layer {key!r} (the 'layers' "
                    "parameter): no gradient flows from the score to it. Choose a layer on "
                    "the path from the input to the scored output."
                )
        # release the graph before the maps
        return x, scorer, scores.detach(), [a.detach() for a in acts], grads

    def _layer_map(
        self, key: str, act: torch.Tensor, grad: torch.Tensor | None, job: _Job
    ) -> torch.Tensor:
        a = act.detach()
        g = grad
        reshape = self.reshape_transform
        if reshape is None:  # token grids and channel-last outputs, read from the input size
            size = (int(job.images.shape[-2]), int(job.images.shape[-1]))
            reshape = layout(a, size, prefix_tokens(self.model)) or None
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
        images: float tensor (N, C, H, W) (integer images are refused: convert them).
        layers: Layer spec(s) as in `featviz.hooks.resolve_layers`; None picks the last
            layer with a spatial output and warns naming it.
        target: None (arg-max class), an int, one int per image, a `featviz.targets`
            object, or a callable ``outputs -> (N,) scores`` (see `CAM.__call__`).
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
        target: None (arg-max class), an int, one int per image, ``ClassTarget`` or
            ``ProbabilityTarget`` (one class per image).
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
