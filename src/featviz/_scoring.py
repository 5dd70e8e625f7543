"""One scoring path: a ``target`` and a model's outputs -> one score per image.

A private module every featviz module may import: CAMs and the metrics (and later the
Recorder and sanity checks) resolve and score targets here, nowhere else.

`resolve` turns any accepted ``target`` into a `Scorer`, once, on the outputs of the
unperturbed images: the predicted class (``target=None``) is found there and kept, so
the perturbed, masked or augmented copies scored later are scored for that class. A
`Scorer` then scores outputs whose rows belong to given images (Score-CAM's masked
copies, the metrics' perturbed images): ``scorer(outputs, rows) -> (B,)``.

Accepted targets:

- None (each image's arg-max class), an int (that class for every image), a sequence
  or tensor of ints (one class per image), `featviz.targets.ClassTarget`: the class's
  logit, or its soft-max probability with ``probability=True``;
- `featviz.targets.ProbabilityTarget`: the class's soft-max probability, always;
- `featviz.targets.ClassesTarget`: the sum of its classes' logits (probabilities with
  ``probability=True``);
- any other callable ``outputs -> (N,) scores``, including the other
  `featviz.targets` (`BoxTarget`, `SegmentationTarget`, `SimilarityTarget`): its
  scores as it returns them (``probability`` does not apply). Where only some images'
  outputs are scored, a target with a ``select(index)`` method (every `featviz.targets`
  class) is first restricted to those images; any other callable must score each
  output row on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from featviz._outputs import Target, as_logits, call_target, target_classes
from featviz.targets import ClassesTarget, ClassTarget, ProbabilityTarget

__all__ = ["Scorer", "is_class_target", "needs_outputs", "predicted", "resolve"]


@dataclass(frozen=True)
class Scorer:
    """A target resolved on a batch of N images.

    Attributes:
        n: The number of images N.
        classes: (N, K) int64 class indices whose scores are summed per image (class
            targets; K = 1 but for `featviz.targets.ClassesTarget`), or None.
        fn: The callable target scoring the outputs (None for class targets).
        probability: Score classes by their soft-max probability instead of the logit.
    """

    n: int
    classes: torch.Tensor | None = None
    fn: Callable[[Any], torch.Tensor] | None = None
    probability: bool = False

    @property
    def single(self) -> torch.Tensor | None:
        """(N,) int64: the one class of each image, or None (no class, or several)."""
        if self.classes is None or self.classes.shape[1] != 1:
            return None
        return self.classes[:, 0]

    def __call__(self, outputs: Any, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B,) of ``outputs`` whose B rows belong to images ``rows`` (B,).

        Args:
            outputs: What the model returned for B inputs.
            rows: (B,) int64 index of the image each output row belongs to; None: the
                N images in order.

        Returns:
            (B,) scores, differentiable where the outputs are; logits keep the outputs'
            dtype, probabilities are computed in float32.
        """
        b = self.n if rows is None else len(rows)
        if self.classes is not None:
            logits = as_logits(outputs, b)
            cols = self.classes if rows is None else self.classes[rows.to(self.classes.device)]
            values = logits.float().softmax(1) if self.probability else logits
            picked = values.gather(1, cols.to(values.device))
            return picked[:, 0] if picked.shape[1] == 1 else picked.sum(1)
        assert self.fn is not None
        fn = self.fn
        select = getattr(fn, "select", None)
        if rows is not None and callable(select):
            fn = select(rows)
        return call_target(fn, outputs, b)


def is_class_target(target: Any) -> bool:
    """Whether ``target`` resolves to one class per image (None, ints, class targets)."""
    if isinstance(target, Scorer):
        return target.single is not None
    if isinstance(target, (ClassTarget, ProbabilityTarget)):
        return True
    return not callable(target) or isinstance(target, torch.Tensor)


def needs_outputs(target: Any) -> bool:
    """Whether `resolve` reads the outputs for ``target`` (class targets), else None will do."""
    if isinstance(target, (ClassTarget, ProbabilityTarget, ClassesTarget)):
        return True
    return not isinstance(target, Scorer) and (
        not callable(target) or isinstance(target, torch.Tensor)
    )


def predicted(outputs: Any, n: int, probability: bool = False) -> Scorer:
    """The arg-max class of each of the n images' outputs, as a `Scorer`."""
    return Scorer(n, target_classes(outputs, None, n)[:, None], None, probability)


def _check_image_size(target: Any, size: tuple[int, int] | None) -> None:
    want = getattr(target, "image_size", None)
    if want is None or size is None or tuple(want) == tuple(size):
        return
    raise ValueError(
        f"The 'image_size' parameter of {type(target).__name__} must be the (H, W) of the "
        f"input images it scores, {tuple(size)}. Got image_size={tuple(want)} instead."
    )


def resolve(
    target: Target | Scorer,
    outputs: Any,
    n: int,
    *,
    probability: bool = False,
    size: tuple[int, int] | None = None,
) -> Scorer:
    """``target`` resolved on the outputs of n unperturbed images.

    Args:
        target: Any accepted target (see the module docstring), or a `Scorer`
            (returned as it is: resolved once, kept for later batches).
        outputs: The model's outputs for the n images (read by class targets: the
            arg-max class, the range check); None is allowed for a callable target.
        n: The number of images.
        probability: Score class targets by soft-max probability instead of logit.
        size: The input images' (H, W), checked against a target's ``image_size``.

    Returns:
        The `Scorer`.

    Raises:
        TypeError: ``target`` is of no accepted type.
        ValueError: Classes out of range, one class per image not given for each
            image, outputs without logits for a class target, or an ``image_size``
            that is not the images' size.
    """
    if isinstance(target, Scorer):
        return target
    _check_image_size(target, size)
    if isinstance(target, (ClassTarget, ProbabilityTarget)):
        prob = probability or isinstance(target, ProbabilityTarget)
        return Scorer(n, target_classes(outputs, target.classes, n)[:, None], None, prob)
    if isinstance(target, ClassesTarget):
        logits = as_logits(outputs, n)
        target(logits)  # its range check
        index = torch.as_tensor(list(target.classes), dtype=torch.long, device=logits.device)
        return Scorer(n, index.expand(n, -1), None, probability)
    if callable(target) and not isinstance(target, torch.Tensor):
        return Scorer(n, None, target, False)
    return Scorer(n, target_classes(outputs, target, n)[:, None], None, probability)
