"""Ready-made targets: small callables ``outputs -> (N,) scores`` for ``target=``.

Every CAM and metric that takes ``target`` accepts these. Each one reads one kind of
model output and returns one differentiable score per image, so gradient methods can
explain it:

- `ClassTarget`, `ProbabilityTarget`, `ClassesTarget`: classifiers (any output with
  logits: a tensor, ``.logits``, a ``"logits"`` key, a tuple's first element);
- `BoxTarget`: detections: torchvision detectors' outputs (one dict per image with
  ``boxes``, ``labels``, ``scores``) and ultralytics YOLO predictions (decoded to
  detections with a confidence threshold and non-maximum suppression);
- `SegmentationTarget`: segmentation logits (N, K, H, W), or a dict with ``"out"``;
- `SimilarityTarget`: embeddings (N, D), for CLIP-like or metric-learning models.

Targets holding data per image (boxes, masks, embeddings) have ``select(index)``: the
same target for some of the images, used where featviz scores part of a batch
(Score-CAM's masked copies, the metrics' perturbed images).

Example:
    >>> detector = fasterrcnn_resnet50_fpn(weights=None).eval()  # doctest: +SKIP
    >>> target = featviz.targets.BoxTarget(top_k=1)  # doctest: +SKIP
    >>> maps = featviz.grad_cam(detector, images, "backbone.body.layer4", target)  # doctest: +SKIP
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from featviz._outputs import as_logits, target_classes

__all__ = [
    "BoxTarget",
    "ClassTarget",
    "ClassesTarget",
    "ProbabilityTarget",
    "SegmentationTarget",
    "SimilarityTarget",
]


def _check_classes(classes: Any, where: str) -> None:
    if isinstance(classes, (bool, str)) or not isinstance(classes, (int, Sequence, torch.Tensor)):
        raise TypeError(
            f"The 'classes' parameter of {where} must be an int or a sequence of ints. "
            f"Got {type(classes).__name__} instead."
        )


@dataclass(frozen=True)
class ClassTarget:
    """The logit of one class (an int), or of one class per image (a sequence).

    Args:
        classes: A class index for every image, or one per image.

    Score-CAM scores chunks of masked copies of the images, so use an int there (or
    pass the classes as ``target`` directly).
    """

    classes: int | Sequence[int]

    def __post_init__(self) -> None:
        _check_classes(self.classes, "ClassTarget")

    def __call__(self, outputs: Any) -> torch.Tensor:
        """Scores (N,): ``logits[i, classes[i]]``."""
        logits = as_logits(outputs)
        classes = target_classes(logits, self.classes, logits.shape[0])
        return logits.gather(1, classes[:, None])[:, 0]


@dataclass(frozen=True)
class ProbabilityTarget:
    """The soft-max probability of one class (or one class per image).

    Args:
        classes: A class index for every image, or one per image.
    """

    classes: int | Sequence[int]

    def __post_init__(self) -> None:
        _check_classes(self.classes, "ProbabilityTarget")

    def __call__(self, outputs: Any) -> torch.Tensor:
        """Scores (N,): ``softmax(logits)[i, classes[i]]``."""
        logits = as_logits(outputs)
        classes = target_classes(logits, self.classes, logits.shape[0])
        return torch.softmax(logits, 1).gather(1, classes[:, None])[:, 0]


@dataclass(frozen=True)
class ClassesTarget:
    """The sum of several classes' logits, the same classes for every image.

    Args:
        classes: The class indices to sum.
    """

    classes: Sequence[int]

    def __post_init__(self) -> None:
        _check_classes(self.classes, "ClassesTarget")
        if isinstance(self.classes, int) or len(self.classes) == 0:
            raise ValueError(
                "The 'classes' parameter of ClassesTarget must be a non-empty sequence of "
                f"ints. Got {self.classes!r} instead."
            )

    def __call__(self, outputs: Any) -> torch.Tensor:
        """Scores (N,): ``logits[i, classes].sum()``."""
        logits = as_logits(outputs)
        k = logits.shape[1]
        index = torch.as_tensor(list(self.classes), dtype=torch.long, device=logits.device)
        if int(index.min()) < 0 or int(index.max()) >= k:
            raise ValueError(
                f"The 'classes' parameter of ClassesTarget must hold classes in the range "
                f"[0, {k - 1}] (the model has {k} outputs). Got {list(self.classes)} instead."
            )
        return logits[:, index].sum(1)


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU (A, B) of boxes (A, 4) and (B, 4) in (x1, y1, x2, y2)."""
    area_a = (a[:, 2] - a[:, 0]).clamp_min(0) * (a[:, 3] - a[:, 1]).clamp_min(0)
    area_b = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(2)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp_min(1e-12)


#: ultralytics' default confidence threshold (``conf``), used for YOLO predictions.
_YOLO_CONF = 0.25


def _oriented() -> ValueError:
    return ValueError(
        "BoxTarget reads axis-aligned boxes; the model returned oriented (OBB) YOLO "
        "predictions with an angle. Got rotated boxes instead; pass a callable target "
        "'outputs -> (N,) scores'."
    )


def _yolo_raw(raw: Any) -> tuple[int | None, int, int] | None:
    """(classes or None, anchors, rows after the classes) read from a YOLO head's raw outputs.

    ultralytics >= 8.4 names them in a dict, ``"scores"`` (N, nc, A); ultralytics <= 8.3
    returns the per-level maps [(N, C, h, w), ...] (A = sum of h * w), after Segment and
    Pose heads in a tuple with their per-anchor rows (N, c, A) (mask coefficients, key
    points; an OBB head's single angle row) and mask prototypes (N, nm, h, w).
    """
    if isinstance(raw, Mapping):
        raw = raw.get("one2many", raw)  # end-to-end heads (YOLOv10, YOLO26) hold two
    if isinstance(raw, Mapping):
        if "angle" in raw:
            raise _oriented()
        scores = raw.get("scores")
        if isinstance(scores, torch.Tensor) and scores.ndim == 3:
            return scores.shape[1], scores.shape[2], 0
        return None
    maps, extras = raw, []
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], (tuple, list)):
        maps, extras = raw[0], list(raw[1:])
    if not isinstance(maps, (tuple, list)) or not maps:
        return None
    if not all(isinstance(m, torch.Tensor) and m.ndim == 4 for m in maps):
        return None
    rows = [e.shape[1] for e in extras if isinstance(e, torch.Tensor) and e.ndim == 3]
    if 1 in rows:
        raise _oriented()
    return None, sum(m.shape[2] * m.shape[3] for m in maps), sum(rows)


def _yolo_parts(outputs: Any) -> tuple[torch.Tensor, int, bool] | None:
    """(predictions, number of classes, end-to-end layout) of a YOLO output, or None.

    An ultralytics detection model in eval mode returns ``(pred, raw)``: ``pred`` is
    (N, 4 + nc + extra, A), boxes (cx, cy, w, h) in input pixels then nc class
    probabilities for each of A anchors (extra: mask coefficients, key points), and
    ``raw`` the head's raw outputs (see `_yolo_raw`). ultralytics >= 8.4 segmentation
    models return ``((pred, proto), raw)``. End-to-end heads (YOLOv10, YOLO26 with
    ``end2end=True``) return ``pred`` (N, K, 6 + extra): x1, y1, x2, y2, score, class.
    Export mode drops ``raw``: ``pred`` alone, or ``(pred, proto)``.
    """
    head, raw = outputs, None
    if isinstance(outputs, tuple) and len(outputs) == 2:
        if isinstance(outputs[1], (Mapping, tuple, list)):
            head, raw = outputs
    pred, masks = head, 0
    proto = head[1] if isinstance(head, tuple) and len(head) == 2 else None
    if isinstance(proto, torch.Tensor) and proto.ndim == 4:  # Segment: mask prototypes
        pred, masks = head[0], proto.shape[1]  # (N, nm, h, w): nm coefficients per anchor
    if not isinstance(pred, torch.Tensor) or pred.ndim != 3:
        return None
    if raw is None:
        nc = pred.shape[1] - 4 - masks
        return (pred, nc, False) if nc >= 1 else None
    found = _yolo_raw(raw)
    if found is None:
        return None
    nc_or_none, anchors, extra = found
    if pred.shape[2] == anchors:
        nc = pred.shape[1] - 4 - extra if nc_or_none is None else nc_or_none
        return (pred, nc, False) if 1 <= nc <= pred.shape[1] - 4 else None
    return (pred, 0, True) if pred.shape[2] >= 6 else None


def _yolo_detections(
    pred: torch.Tensor, nc: int, end2end: bool, threshold: float, nms_threshold: float
) -> list[dict[str, torch.Tensor]]:
    """One torchvision-style dict per image: confidence > threshold, then class-wise NMS.

    ``scores`` stay differentiable (each kept anchor's best class probability); boxes
    and labels are detached. End-to-end predictions are already free of duplicates, so
    only the threshold applies to them.
    """
    from torchvision.ops import batched_nms

    if end2end:
        boxes, best, labels = pred[..., :4].detach(), pred[..., 4], pred[..., 5].detach().long()
    else:
        xy, wh = pred[:, :2].detach().transpose(1, 2), pred[:, 2:4].detach().transpose(1, 2)
        boxes = torch.cat([xy - wh / 2, xy + wh / 2], 2)  # (N, A, 4) x1, y1, x2, y2
        best, labels = pred[:, 4 : 4 + nc].max(1)  # (N, A): gradient to the best class
    detections = []
    for b, s, k in zip(boxes, best, labels, strict=True):
        keep = (s.detach() > threshold).nonzero()[:, 0]
        if not end2end:
            keep = keep[
                batched_nms(b[keep].float(), s.detach()[keep].float(), k[keep], nms_threshold)
            ]
        detections.append({"boxes": b[keep], "labels": k[keep], "scores": s[keep]})
    return detections


def _field(outputs: Any, name: str) -> Any:
    return outputs.get(name) if isinstance(outputs, Mapping) else getattr(outputs, name, None)


def _detr_detections(outputs: Any) -> list[dict[str, torch.Tensor]] | None:
    """One dict per image from DETR-style outputs, or None for other outputs.

    DETR, Deformable DETR, Conditional DETR and the like (Hugging Face ``...ForObjectDetection``)
    return ``.logits`` (N, Q, K + 1), the last class being "no object", and
    ``.pred_boxes`` (N, Q, 4), (cx, cy, w, h) normalised to [0, 1]. Every query is a
    detection: its score is its best soft-max probability among the K object classes
    (differentiable), its label that class, its box (x1, y1, x2, y2) in [0, 1] (detached),
    as Hugging Face's ``post_process_object_detection`` reads them.
    """
    logits, boxes = _field(outputs, "logits"), _field(outputs, "pred_boxes")
    if not (
        isinstance(logits, torch.Tensor)
        and isinstance(boxes, torch.Tensor)
        and logits.ndim == 3
        and boxes.ndim == 3
        and boxes.shape[2] == 4
        and logits.shape[:2] == boxes.shape[:2]
        and logits.shape[2] >= 2
    ):
        return None
    best, labels = logits.softmax(-1)[..., :-1].max(-1)  # (N, Q)
    centre, wh = boxes[..., :2].detach(), boxes[..., 2:].detach()
    corners = torch.cat([centre - wh / 2, centre + wh / 2], -1)
    return [
        {"boxes": b, "labels": k, "scores": p}
        for b, k, p in zip(corners, labels, best, strict=True)
    ]


def _is_detections(outputs: Any) -> bool:
    return isinstance(outputs, (list, tuple)) and all(
        isinstance(d, Mapping) and {"boxes", "labels", "scores"} <= set(d) for d in outputs
    )


def _box_rows(value: Any, where: str) -> torch.Tensor:
    """(K, 4) boxes of one ``boxes`` entry: (4,), (K, 4) or (K, 6) (first 4 columns)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"The 'boxes' parameter of BoxTarget must hold numbers (x1, y1, x2, y2){where}. "
            f"Got {type(value).__name__} {value!r} instead."
        )
    try:
        t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"The 'boxes' parameter of BoxTarget must hold numbers (x1, y1, x2, y2){where}. "
            f"Got {type(value).__name__} instead."
        ) from exc
    if t.dtype == torch.bool or not (t.is_floating_point() or t.dtype in _INTS):
        raise TypeError(
            f"The 'boxes' parameter of BoxTarget must hold numbers (x1, y1, x2, y2){where}. "
            f"Got dtype {t.dtype} instead."
        )
    if t.ndim == 1 and t.shape[0] in (4, 6):
        t = t[None]
    if t.ndim != 2 or t.shape[1] not in (4, 6):
        raise ValueError(
            f"The 'boxes' parameter of BoxTarget must hold boxes of shape (K, 4) as (x1, y1, "
            f"x2, y2), or (K, 6) as ultralytics' results.boxes.data (x1, y1, x2, y2, score, "
            f"class; the first 4 columns are read){where}. Got shape {tuple(t.shape)} instead."
        )
    t = t[:, :4]
    bad = ((t[:, 2] < t[:, 0]) | (t[:, 3] < t[:, 1])).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"The 'boxes' parameter of BoxTarget must hold boxes (x1, y1, x2, y2) with "
            f"x1 <= x2 and y1 <= y2{where}. Got {t[bad[0]].tolist()} (row {bad[0]}) instead."
        )
    return t


_INTS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _per_image(boxes: Any) -> bool:
    """Whether ``boxes`` is a list/tuple of one entry per image (not one box of numbers)."""
    return isinstance(boxes, (list, tuple)) and not all(
        isinstance(v, numbers.Number) for v in boxes
    )


@dataclass(frozen=True)
class BoxTarget:
    """The summed scores of detections, for torchvision and ultralytics YOLO detectors.

    With ``boxes``: every detection whose box overlaps a given box with IoU >=
    ``iou_threshold`` (and, with ``classes``, whose label is that box's class) adds its
    score. Without: the ``top_k`` highest-scoring detections (of ``classes`` if given).
    An image with no matching detection scores 0 (its map is all zeros).

    The detections are, for torchvision detectors, the model's output (one dict per
    image); for DETR-style models (Hugging Face ``DetrForObjectDetection`` and the like:
    ``.logits`` (N, Q, K + 1) with a last "no object" class, ``.pred_boxes`` normalised
    (cx, cy, w, h)), every query, scored by its best object-class probability; for
    ultralytics YOLO models (``YOLO(...).model`` in eval mode, whose raw
    predictions hold a box and class probabilities per anchor), the anchors whose best
    class probability exceeds ``score_threshold``, after class-wise non-maximum
    suppression with ``nms_threshold`` (as ultralytics' ``predict``, multi-label off);
    a detection's score is its best class probability, its label that class.

    Args:
        boxes: (K, 4) boxes (x1, y1, x2, y2) in input pixels, the same for every image
            (a tensor or array; (4,) is one box), or a list/tuple of one (K_i, 4) entry
            per image (so a nested list of N boxes is one box per image). (K, 6) rows,
            as ultralytics' ``results.boxes.data`` (x1, y1, x2, y2, score, class), are
            read by their first 4 columns. Boxes with x2 < x1 or y2 < y1 are refused.
            None: use ``top_k``.
        classes: With ``boxes``: one label per box (K,), or one int for all; without:
            only detections with these labels count. None: any label.
        iou_threshold: Minimum IoU for a detection to match a given box.
        top_k: Without ``boxes``: how many of the best detections to sum.
        score_threshold: Only detections scoring above it count. None: 0.25 for YOLO
            predictions (ultralytics' default ``conf``), no threshold for torchvision
            outputs (the model applied its own, e.g. ``box_score_thresh``).
        nms_threshold: For YOLO predictions: the IoU above which NMS drops the lower
            scoring of two same-class boxes (ultralytics' default ``iou`` is 0.7).
        image_size: For DETR-style outputs with ``boxes``: the input images' (H, W), to
            turn the model's normalised boxes into pixels. None: refused with given
            boxes (``top_k`` needs no size). featviz's CAMs and metrics refuse a size
            other than their input images'.
    """

    boxes: torch.Tensor | Sequence[torch.Tensor] | None = None
    classes: int | Sequence[int] | None = None
    iou_threshold: float = 0.5
    top_k: int = 1
    score_threshold: float | None = None
    nms_threshold: float = 0.7
    image_size: tuple[int, int] | None = None

    @property
    def spatial(self) -> bool:
        """Whether the target scores fixed positions (given ``boxes``).

        A flipped view would not match them: `featviz.CAM`'s ``aug_smooth`` refuses it.
        """
        return self.boxes is not None

    def __post_init__(self) -> None:
        self._check_boxes()
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 1:
            raise ValueError(
                "The 'top_k' parameter of BoxTarget must be an int in the range [1, inf). "
                f"Got {self.top_k!r} instead."
            )
        for name in ("iou_threshold", "nms_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
                raise ValueError(
                    f"The '{name}' parameter of BoxTarget must be a float in the range "
                    f"(0, 1]. Got {value!r} instead."
                )
        size = self.image_size
        if size is not None and not (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise ValueError(
                "The 'image_size' parameter of BoxTarget must be None or (H, W), two positive "
                f"ints. Got {size!r} instead."
            )
        thr = self.score_threshold
        if thr is not None and (
            not isinstance(thr, (int, float)) or isinstance(thr, bool) or not 0 <= thr <= 1
        ):
            raise ValueError(
                "The 'score_threshold' parameter of BoxTarget must be a float in the range "
                f"[0, 1] or None. Got {thr!r} instead."
            )

    def _check_boxes(self) -> None:
        if self.boxes is None:
            return
        if not _per_image(self.boxes):
            self._check_labels(_box_rows(self.boxes, ""), "")
            return
        for i, entry in enumerate(self.boxes):
            where = f" (entry {i}: the boxes of image {i})"
            self._check_labels(_box_rows(entry, where), where)

    def _check_labels(self, boxes: torch.Tensor, where: str) -> None:
        if self.classes is None or isinstance(self.classes, int):
            return
        k = len(torch.as_tensor(self.classes).reshape(-1))
        if k not in (1, len(boxes)):
            raise ValueError(
                f"The 'classes' parameter of BoxTarget must hold one label per box or one int "
                f"for all: 'boxes' has {len(boxes)} boxes{where}. Got {k} labels instead."
            )

    def select(self, index: torch.Tensor) -> BoxTarget:
        """The same target for images ``index`` (B,) int64 of the batch.

        Boxes given per image are selected; anything else is the same for every image.
        """
        if not _per_image(self.boxes):
            return self
        assert isinstance(self.boxes, (list, tuple))
        return replace(self, boxes=[self.boxes[int(i)] for i in index])

    def _given(self, i: int, n: int) -> torch.Tensor | None:
        if self.boxes is None:
            return None
        if not _per_image(self.boxes):
            return _box_rows(self.boxes, "")
        assert isinstance(self.boxes, (list, tuple))
        if len(self.boxes) != n:
            raise ValueError(
                f"The 'boxes' parameter of BoxTarget must hold one (K, 4) tensor per image "
                f"when it is a list or tuple (entry i holds the boxes of image i; a nested "
                f"list of boxes is read as one box per image): the batch has {n} images but "
                f"'boxes' has {len(self.boxes)} entries. Pass a (K, 4) tensor or array for "
                "boxes shared by every image."
            )
        return _box_rows(self.boxes[i], f" (entry {i}: the boxes of image {i})")

    def _score(self, det: Mapping[str, torch.Tensor], given: torch.Tensor | None) -> torch.Tensor:
        scores, labels, found = det["scores"], det["labels"], det["boxes"]
        if self.score_threshold is not None:
            kept = scores.detach() > self.score_threshold
            scores, labels, found = scores[kept], labels[kept], found[kept]
        if given is None:
            keep = scores
            if self.classes is not None:
                wanted = torch.as_tensor(self.classes, device=labels.device).reshape(-1)
                keep = scores[torch.isin(labels, wanted)]
            return keep.topk(min(self.top_k, len(keep))).values.sum()
        given = given.to(found)
        match = _box_iou(given, found) >= self.iou_threshold  # (K, D)
        if self.classes is not None:
            want = torch.as_tensor(self.classes, device=labels.device).reshape(-1, 1)
            match = match & (labels[None, :] == want)
        return (match.to(scores.dtype) * scores[None, :]).sum()

    def _detections(self, outputs: Any) -> Sequence[Mapping[str, torch.Tensor]]:
        if _is_detections(outputs):
            return outputs
        detr = _detr_detections(outputs)
        if detr is not None and self.boxes is not None:  # DETR's boxes are in [0, 1]
            if self.image_size is None:
                raise ValueError(
                    "BoxTarget got boxes in pixels but the model's boxes are normalised to "
                    "[0, 1] (DETR-style outputs); pass image_size=(H, W) of the input images. "
                    "Got image_size=None instead."
                )
            h, w = self.image_size
            for d in detr:
                d["boxes"] = d["boxes"] * d["boxes"].new_tensor([w, h, w, h])
        if detr is not None:
            return detr
        yolo = _yolo_parts(outputs)
        if yolo is not None:
            thr = _YOLO_CONF if self.score_threshold is None else self.score_threshold
            return _yolo_detections(*yolo, thr, self.nms_threshold)
        if isinstance(outputs, Mapping) and (
            {"scores", "boxes"} <= set(outputs) or "one2many" in outputs
        ):
            raise ValueError(
                "BoxTarget reads YOLO predictions of a model in eval mode; the model returned "
                "its training-mode dict (undecoded boxes). Got a dict with keys "
                f"{list(outputs)} instead; call the model in eval mode (featviz's CAMs do "
                "by default, eval_mode=True)."
            )
        raise ValueError(
            "BoxTarget reads detection outputs: a list of one dict per image with 'boxes', "
            "'labels' and 'scores' (torchvision), DETR-style .logits and .pred_boxes, or "
            "ultralytics YOLO predictions (N, 4 + classes, anchors). Got "
            f"{type(outputs).__name__} instead; use "
            "ClassTarget for classifiers."
        )

    def __call__(self, outputs: Any) -> torch.Tensor:
        """Scores (N,), one per image."""
        detections = self._detections(outputs)
        n = len(detections)
        return torch.stack([self._score(d, self._given(i, n)) for i, d in enumerate(detections)])


def _as_tensor(value: Any, name: str, where: str, ndims: tuple[int, ...]) -> torch.Tensor:
    """``value`` (tensor, array or nested numbers) as a tensor with one of ``ndims`` axes."""
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"The {name!r} parameter of {where} must be a tensor or array. "
            f"Got {type(value).__name__} instead."
        ) from exc
    if (
        isinstance(value, str)
        or t.ndim not in ndims
        or not (t.is_floating_point() or t.dtype == torch.bool or t.dtype in _INTS)
    ):
        raise ValueError(
            f"The {name!r} parameter of {where} must be a numeric tensor or array with "
            f"{' or '.join(map(str, ndims))} axes. Got {type(value).__name__} with shape "
            f"{tuple(t.shape)} instead."
        )
    return t


@dataclass(frozen=True)
class SegmentationTarget:
    """The sum of one class's logits over a mask, for segmentation outputs.

    Args:
        classes: The class whose logits are summed (an int, or a numpy integer).
        mask: (H, W) or (N, H, W) weights (bool or float; a tensor or an array) at the
            output's resolution; None sums over every pixel.
    """

    classes: int
    mask: torch.Tensor | np.ndarray | None = None

    @property
    def spatial(self) -> bool:
        """Whether the target scores fixed positions (a ``mask``).

        A flipped view would not match them: `featviz.CAM`'s ``aug_smooth`` refuses it.
        """
        return self.mask is not None

    def __post_init__(self) -> None:
        if isinstance(self.classes, bool) or not isinstance(self.classes, (int, np.integer)):
            raise TypeError(
                "The 'classes' parameter of SegmentationTarget must be an int. "
                f"Got {type(self.classes).__name__} instead."
            )
        object.__setattr__(self, "classes", operator.index(self.classes))
        if self.mask is not None:
            _as_tensor(self.mask, "mask", "SegmentationTarget", (2, 3))

    def select(self, index: torch.Tensor) -> SegmentationTarget:
        """The same target for images ``index`` (B,) int64: their masks if given per image."""
        if self.mask is None or np.ndim(self.mask) != 3:
            return self
        mask = _as_tensor(self.mask, "mask", "SegmentationTarget", (3,))
        return replace(self, mask=mask[index.to(mask.device)])

    def __call__(self, outputs: Any) -> torch.Tensor:
        """Scores (N,): ``(out[:, classes] * mask).sum((1, 2))``."""
        out = outputs
        if isinstance(outputs, Mapping) and "out" in outputs:
            out = outputs["out"]
        elif not isinstance(outputs, torch.Tensor):
            out = getattr(outputs, "logits", outputs)
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                "SegmentationTarget reads logits of shape (N, K, H, W), a dict with 'out' or "
                f"an output with .logits. Got {got} instead."
            )
        if not 0 <= self.classes < out.shape[1]:
            raise ValueError(
                f"The 'classes' parameter of SegmentationTarget must be in the range "
                f"[0, {out.shape[1] - 1}]. Got {self.classes} instead."
            )
        plane = out[:, self.classes]
        if self.mask is None:
            return plane.sum((1, 2))
        mask = _as_tensor(self.mask, "mask", "SegmentationTarget", (2, 3))
        if tuple(mask.shape[-2:]) != tuple(plane.shape[-2:]):
            raise ValueError(
                f"The 'mask' parameter of SegmentationTarget must have the output's size "
                f"{tuple(plane.shape[-2:])}. Got shape {tuple(mask.shape)} instead."
            )
        if mask.ndim == 3 and mask.shape[0] != plane.shape[0]:
            raise ValueError(
                f"The 'mask' parameter of SegmentationTarget must hold one (H, W) mask for "
                f"every image, or one per image (N, H, W): the batch has {plane.shape[0]} "
                f"images. Got {mask.shape[0]} masks, shape {tuple(mask.shape)}, instead."
            )
        return (plane * mask.to(plane)).sum((1, 2))


@dataclass(frozen=True)
class SimilarityTarget:
    """Cosine similarity of each image's embedding to a given embedding.

    Args:
        embedding: (D,) reference embedding (also as (1, D), or (D, 1) as an unbatched
            forward pass gives it), or (N, D) one per image (N, D > 1); a tensor or an
            array.
    """

    embedding: torch.Tensor | np.ndarray

    def __post_init__(self) -> None:
        _as_tensor(self.embedding, "embedding", "SimilarityTarget", (1, 2))

    def select(self, index: torch.Tensor) -> SimilarityTarget:
        """The same target for images ``index`` (B,) int64: their embeddings if per image."""
        emb = _as_tensor(self.embedding, "embedding", "SimilarityTarget", (1, 2))
        if emb.ndim == 1 or min(emb.shape) == 1:  # one embedding for every image
            return self
        return replace(self, embedding=emb[index.to(emb.device)])

    def __call__(self, outputs: Any) -> torch.Tensor:
        """Scores (N,) in [-1, 1]."""
        emb = outputs if isinstance(outputs, torch.Tensor) else getattr(outputs, "logits", None)
        if not isinstance(emb, torch.Tensor) or emb.ndim != 2:
            got = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(outputs).__name__
            raise ValueError(
                f"SimilarityTarget reads embeddings of shape (N, D). Got {got} instead; wrap "
                "the model so it returns them."
            )
        ref = _as_tensor(self.embedding, "embedding", "SimilarityTarget", (1, 2)).to(emb)
        n, d = emb.shape
        if ref.numel() == d:
            ref = ref.reshape(1, d)
        if tuple(ref.shape) not in ((1, d), (n, d)):
            raise ValueError(
                f"The 'embedding' parameter of SimilarityTarget must be (D,) or (N, D) with "
                f"the model's embedding size D = {d} and N = {n} images (or 1). Got shape "
                f"{tuple(ref.shape)} instead."
            )
        return torch.nn.functional.cosine_similarity(emb, ref, dim=1)
