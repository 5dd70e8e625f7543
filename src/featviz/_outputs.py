"""Model outputs and targets: any output -> logits, one target class or score per image.

A private module every featviz module may import (CAMs and the metrics share it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "Target",
    "as_logits",
    "call_target",
    "find_logits",
    "target_classes",
    "target_on",
]

#: What ``target`` may be: None (arg-max class), one class for all images, one class per
#: image, or a callable ``outputs -> (N,) scores``.
Target = int | Sequence[int] | torch.Tensor | Callable[[Any], torch.Tensor] | None


def find_logits(outputs: Any) -> torch.Tensor | None:
    """The (N, num_classes) logits inside ``outputs``, or None where there are none.

    Accepted, in this order: a 2-D tensor; an object with a 2-D tensor attribute
    ``logits`` (Hugging Face ``ModelOutput``, torchvision's ``GoogLeNetOutputs`` and
    ``InceptionOutputs`` have ``.logits``); a mapping with a ``"logits"`` key; a tuple or
    list whose first element is a 2-D tensor (Hugging Face ``return_dict=False``).
    """
    if isinstance(outputs, torch.Tensor):
        return outputs if outputs.ndim == 2 else None
    found = getattr(outputs, "logits", None)
    if found is None and isinstance(outputs, Mapping):
        found = outputs.get("logits")
    if found is None and isinstance(outputs, (tuple, list)) and outputs:
        found = outputs[0]
    if isinstance(found, torch.Tensor) and found.ndim == 2:
        return found
    return None


def _describe(outputs: Any) -> str:
    if isinstance(outputs, torch.Tensor):
        return f"a tensor of shape {tuple(outputs.shape)}"
    if isinstance(outputs, Mapping):
        return f"a {type(outputs).__name__} with keys {list(outputs)[:8]}"
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], Mapping):
        return f"a {type(outputs).__name__} of {len(outputs)} dicts with keys {list(outputs[0])}"
    return type(outputs).__name__


def _what_to_pass(outputs: Any) -> str:
    boxes = outputs.get("pred_boxes") if isinstance(outputs, Mapping) else None
    if isinstance(boxes, torch.Tensor) and boxes.ndim == 3:
        return (
            "DETR-style outputs (.logits (N, queries, classes + 1), .pred_boxes) have no "
            "per-image class logits: pass target=featviz.targets.BoxTarget(top_k=1) (or "
            "BoxTarget(boxes, image_size=(H, W))), or a callable 'outputs -> (N,) scores'."
        )
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], Mapping):
        if "boxes" in outputs[0]:
            return (
                "Detection outputs (one dict per image) have no class logits: pass "
                "target=featviz.targets.BoxTarget(boxes) (or BoxTarget(top_k=1)), or a "
                "callable 'outputs -> (N,) scores'."
            )
    first = outputs[0] if isinstance(outputs, (tuple, list)) and outputs else None
    if isinstance(first, (tuple, list)) and first:  # YOLO segmentation: ((pred, proto), raw)
        first = first[0]
    if isinstance(first, torch.Tensor) and first.ndim == 3:
        return (
            "YOLO-style predictions (N, 4 + classes, anchors) have no class logits: pass "
            "target=featviz.targets.BoxTarget(top_k=1) (or BoxTarget(boxes)), or a callable "
            "'outputs -> (N,) scores'."
        )
    out = outputs.get("out") if isinstance(outputs, Mapping) else None
    if isinstance(out, torch.Tensor) and out.ndim == 4:
        return (
            "Segmentation outputs (N, num_classes, H, W) in 'out' have no class logits: pass "
            "target=featviz.targets.SegmentationTarget(k), or a callable such as "
            "lambda o: o['out'][:, k].sum((1, 2))."
        )
    if isinstance(outputs, Mapping):
        key = next(iter(outputs), "key")
        return (
            f"Pass a callable target 'outputs -> (N,) scores' instead, such as "
            f"lambda o: o[{key!r}][:, k]."
        )
    return "Pass a callable target 'outputs -> (N,) scores' instead."


def as_logits(outputs: Any, n: int | None = None) -> torch.Tensor:
    """The (N, num_classes) logits of ``outputs`` (see `find_logits`), else a ValueError.

    Args:
        outputs: What the model returned.
        n: The number of images; logits with another number of rows are a ValueError.
    """
    logits = find_logits(outputs)
    if logits is None:
        raise ValueError(
            "A class target (None, an int or one int per image) needs model outputs of shape "
            f"(N, num_classes), a .logits attribute or a 'logits' key; the model returned "
            f"{_describe(outputs)}. {_what_to_pass(outputs)}"
        )
    if n is not None and logits.shape[0] != n:
        raise ValueError(
            f"The model's logits have {logits.shape[0]} rows but the batch has {n} images; "
            "a class target needs one row per image. Pass a callable target "
            "'outputs -> (N,) scores' instead."
        )
    return logits


def call_target(fn: Callable[[Any], torch.Tensor], outputs: Any, n: int) -> torch.Tensor:
    """Scores (n,) of a callable target, checked to be one per image."""
    scores = fn(outputs)
    if not isinstance(scores, torch.Tensor) or scores.shape != (n,):
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(
            f"The 'target' callable must return a tensor of shape ({n},), one score per "
            f"image. Got {got} instead."
        )
    return scores


def target_classes(outputs: Any, target: Target, n: int) -> torch.Tensor:
    """Class index (N,) int64 per image for a non-callable target."""
    logits = as_logits(outputs, n)
    k = logits.shape[1]
    if target is None:
        return logits.detach().argmax(1)
    if isinstance(target, bool):
        raise TypeError("The 'target' parameter must not be a bool. Got True/False instead.")
    if isinstance(target, int):
        classes = torch.full((n,), target, dtype=torch.long, device=logits.device)
    elif isinstance(target, str):
        raise TypeError(
            "The 'target' parameter must be None, an int, a sequence of ints or a callable. "
            f"Got str {target!r} instead."
        )
    else:
        if isinstance(target, torch.Tensor):
            target = target_on(target, logits.device)
        try:
            classes = torch.as_tensor(target).to(device=logits.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                "The 'target' parameter must be None, an int, a sequence of ints or a "
                f"callable. Got {type(target).__name__} instead."
            ) from exc
        if classes.ndim == 0:
            classes = classes.expand(n)
        if classes.ndim != 1 or classes.dtype.is_floating_point or classes.dtype == torch.bool:
            raise TypeError(
                "The 'target' parameter must hold one int class per image. "
                f"Got dtype {classes.dtype} and shape {tuple(classes.shape)} instead."
            )
        if len(classes) != n:
            raise ValueError(
                f"The 'target' parameter must have one entry per image: the batch has {n} "
                f"images but 'target' has {len(classes)} entries."
            )
        classes = classes.long()
    if n and (int(classes.min()) < 0 or int(classes.max()) >= k):
        raise ValueError(
            f"The 'target' parameter must hold classes in the range [0, {k - 1}] "
            f"(the model has {k} outputs). Got {classes.tolist() if n <= 16 else target!r}."
        )
    return classes


def target_on(target: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A class-index tensor moved to the images' device, or a ValueError saying why not."""
    try:
        return target.to(device)
    except (RuntimeError, NotImplementedError) as exc:
        raise ValueError(
            f"The 'target' parameter is a tensor on device {target.device}, which cannot be "
            f"copied to the images' device {device}. Got a {tuple(target.shape)} tensor on "
            f"{target.device} instead; pass the class indices as a list or a tensor on the "
            "CPU or on the images' device."
        ) from exc
