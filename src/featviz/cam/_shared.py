"""One forward/backward pass shared by several CAM methods (for the sanity checks).

Every method of `featviz.cam.METHODS` weights the same activations (and gradients of
the same target scores), so one pass over a batch serves them all. This room of the
cam package uses the pipeline's own steps (`CAM`'s one pass and its per-method maps).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from featviz._ops import autograd_input, check_autograd_model, eval_mode, grad_enabled, kept_buffers
from featviz._outputs import Target, target_on
from featviz._scoring import is_class_target
from featviz.cam._pipeline import CAM

__all__ = ["shared_maps"]


def shared_maps(cams: Sequence[CAM], images: torch.Tensor, target: Target) -> list[torch.Tensor]:
    """The maps of several CAMs of one model and layers from one forward/backward pass.

    Every method of `featviz.cam.METHODS` is a weighting of the same activations (and
    gradients of the same target scores), so one pass serves them all: gradients are
    taken once if any method needs them, and each CAM applies its own weights, ReLU,
    resizing and normalisation. Each map equals ``cam(images, target)``. The CAMs must
    share the model, the layers and ``eval_mode``; others (and ``aug_smooth``) run alone.

    Args:
        cams: CAMs of one model with the same layers and ``eval_mode``.
        images: float tensor (N, C, H, W).
        target: As in `CAM.__call__`.

    Returns:
        One float32 tensor (N, H', W') per CAM, in order.
    """
    first = cams[0]
    classes = is_class_target(target)
    alone = [
        type(c) is not CAM  # a subclass may compute its maps another way
        or c.aug_smooth
        or c.model is not first.model
        or c._keys != first._keys
        or c.eval_mode != first.eval_mode
        or c._spec.attention is not None  # attention maps: their own pass
        or (c.method == "cam" and not c.average_classes and not classes)  # its own error
        for c in cams
    ]
    together = [c for c, a in zip(cams, alone, strict=True) if not a]
    maps: dict[int, torch.Tensor] = {}
    if together:
        lead = together[0]
        if any(c._spec.gradients for c in together):
            check_autograd_model(lead.model, f"CAM(method={lead.method!r})")
        if isinstance(target, torch.Tensor):
            target = target_on(target, images.device)
        with grad_enabled(), eval_mode(lead.model, lead.eval_mode), kept_buffers(lead.model):
            x = autograd_input(images)
            keys = lead._keys_for(x)
            assert keys is not None  # attention methods run alone
            gradients = any(c._spec.gradients for c in together)
            run = lead._activations(x, target, keys, gradients, any(c._scored for c in together))
            for cam in together:
                maps[id(cam)] = cam._maps(x, run)[0]
    return [maps[id(c)] if id(c) in maps else c(images, target) for c in cams]
