"""featviz.targets: hand-computed scores; CAMs of torchvision detectors and segmenters."""

from __future__ import annotations

import pytest
import torch

from featviz.cam import CAM, grad_cam
from featviz.targets import (
    BoxTarget,
    ClassesTarget,
    ClassTarget,
    ProbabilityTarget,
    SegmentationTarget,
    SimilarityTarget,
)

LOGITS = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, -1.0]])


def test_class_targets_by_hand():
    assert ClassTarget(2)(LOGITS).tolist() == [2.0, -1.0]
    assert ClassTarget([1, 0])({"logits": LOGITS}).tolist() == [1.0, 3.0]
    assert ClassesTarget([0, 2])(LOGITS).tolist() == [2.0, 2.0]
    p = ProbabilityTarget(0)((LOGITS, None))
    # softmax by hand: e^0 / (e^0 + e^1 + e^2) and e^3 / (e^3 + e^0 + e^-1)
    e = torch.e
    assert p.tolist() == pytest.approx([1 / (1 + e + e**2), 1 / (1 + e**-3 + e**-4)])


def test_class_targets_errors_name_the_parameter():
    with pytest.raises(TypeError, match="'classes' parameter of ClassTarget"):
        ClassTarget("cat")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'classes' parameter of ClassesTarget .* \[0, 2\]"):
        ClassesTarget([0, 3])(LOGITS)
    with pytest.raises(ValueError, match="non-empty"):
        ClassesTarget([])
    with pytest.raises(ValueError, match="'target' parameter must hold classes"):
        ClassTarget(5)(LOGITS)


def _detections():
    return [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 9, 10]]),
            "labels": torch.tensor([1, 2, 1]),
            "scores": torch.tensor([0.9, 0.8, 0.3]),
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.long),
            "scores": torch.zeros(0),
        },
    ]


def test_box_target_by_hand():
    dets = _detections()
    assert BoxTarget()(dets).tolist() == pytest.approx([0.9, 0.0])
    assert BoxTarget(top_k=2)(dets).tolist() == pytest.approx([1.7, 0.0])
    assert BoxTarget(classes=2, top_k=5)(dets).tolist() == pytest.approx([0.8, 0.0])
    # IoU([0,0,10,10], [0,0,9,10]) = 0.9: both match the given box
    box = torch.tensor([[0.0, 0, 10, 10]])
    assert BoxTarget(box)(dets).tolist() == pytest.approx([1.2, 0.0])
    assert BoxTarget(box, iou_threshold=0.95)(dets).tolist() == pytest.approx([0.9, 0.0])
    assert BoxTarget(box, classes=2)(dets).tolist() == pytest.approx([0.0, 0.0])
    per_image = [torch.tensor([[20.0, 20, 30, 30]]), torch.zeros(0, 4)]
    assert BoxTarget(per_image)(dets).tolist() == pytest.approx([0.8, 0.0])
    with pytest.raises(ValueError, match="one \\(K, 4\\) tensor per image"):
        BoxTarget(per_image[:1])(dets)
    with pytest.raises(ValueError, match="'top_k' parameter of BoxTarget"):
        BoxTarget(top_k=0)
    with pytest.raises(ValueError, match="BoxTarget reads detection outputs"):
        BoxTarget()(LOGITS)


def test_segmentation_and_similarity_targets_by_hand():
    out = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    assert SegmentationTarget(1)({"out": out}).tolist() == [4 + 5 + 6 + 7, 16 + 17 + 18 + 19]
    mask = torch.tensor([[True, False], [False, True]])
    assert SegmentationTarget(1, mask)(out).tolist() == [4 + 7, 16 + 19]
    with pytest.raises(ValueError, match="'mask' parameter of SegmentationTarget"):
        SegmentationTarget(1, torch.ones(3, 3))(out)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        SegmentationTarget(3)(out)
    emb = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert SimilarityTarget(torch.tensor([2.0, 0.0]))(emb).tolist() == pytest.approx([1.0, 2**-0.5])
    with pytest.raises(ValueError, match="embeddings of shape"):
        SimilarityTarget(torch.ones(2))(out)


def test_similarity_target_explains_an_embedding_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    x = torch.rand(2, 3, 8, 8)
    maps = grad_cam(model, x, "0", SimilarityTarget(model(x[0]).detach()))
    assert maps.shape == (2, 8, 8) and bool(torch.isfinite(maps).all())


tv = pytest.importorskip("torchvision")
X = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _check(maps, model_state, model):
    assert maps.shape == (2, 64, 64) and bool(torch.isfinite(maps).all())
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, model_state[key]), key


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"])
def test_detectors_in_three_lines(name):
    torch.manual_seed(0)
    thresh = {"box_score_thresh" if "rcnn" in name else "score_thresh": 0.0}
    make = getattr(tv.models.detection, name)
    detector = make(weights=None, weights_backbone=None, min_size=64, max_size=64, **thresh)
    state = {k: v.clone() for k, v in detector.state_dict().items()}
    cam = CAM(detector.eval(), "backbone.body.layer4")
    maps = cam(X, BoxTarget(top_k=3))
    _check(maps, state, detector)
    assert cam.scores_.shape == (2,) and bool((cam.scores_ > 0).all())
    assert float(maps.amax((1, 2)).min()) == 1.0  # a picture for each image


@pytest.mark.parametrize("name", ["deeplabv3_resnet50", "fcn_resnet50"])
def test_segmenters_in_three_lines(name):
    torch.manual_seed(0)
    make = getattr(tv.models.segmentation, name)
    model = make(weights=None, weights_backbone=None, num_classes=4).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[16:48, 16:48] = True
    cam = CAM(model, "backbone.layer4")
    maps = cam(X, SegmentationTarget(1, mask))
    _check(maps, state, model)
    with torch.no_grad():
        ref = model(X)["out"][:, 1][:, mask].sum(1)
    torch.testing.assert_close(cam.scores_, ref, rtol=1e-4, atol=1e-3)


def test_detector_auto_layer_gives_one_map_per_image():
    torch.manual_seed(0)
    detector = tv.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=64, max_size=64, box_score_thresh=0.0
    ).eval()
    cam = CAM(detector)
    with pytest.warns(UserWarning, match="backbone.fpn.layer_blocks.0"):
        maps = cam(X, BoxTarget(top_k=1))
    assert maps.shape == (2, 64, 64)


# ultralytics YOLO predictions, hand-built: (N, 4 + nc, A), boxes (cx, cy, w, h) in pixels
# then class probabilities. Image 0 (2 classes, 5 anchors):
#   a0 box (0, 0, 10, 10) probs (0.9, 0.1): class 0, 0.9
#   a1 box (0, 1, 10, 9)  probs (0.8, 0.2): class 0, 0.8, IoU 0.8 with a0 -> NMS drops it
#   a2 box (0, 0, 10, 10) probs (0.3, 0.7): class 1, 0.7 (another class: kept)
#   a3 box (20, 20, 30, 30) probs (0.6, 0.5): class 0, 0.6
#   a4 box (40, 40, 50, 50) probs (0.1, 0.2): class 1, 0.2, below the default 0.25
# Image 1: every anchor below 0.25; its best is a1, class 0, 0.2.
YOLO_ANCHORS = [
    [[5, 5, 10, 10, 0.9, 0.1], [5, 5, 10, 8, 0.8, 0.2], [5, 5, 10, 10, 0.3, 0.7],
     [25, 25, 10, 10, 0.6, 0.5], [45, 45, 10, 10, 0.1, 0.2]],
    [[5, 5, 10, 10, 0.1, 0.1], [25, 25, 10, 10, 0.2, 0.05], [45, 45, 10, 10, 0.0, 0.1],
     [5, 5, 4, 4, 0.05, 0.0], [9, 9, 2, 2, 0.0, 0.0]],
]  # fmt: skip


def _yolo_pred():
    return torch.tensor(YOLO_ANCHORS).transpose(1, 2).contiguous().requires_grad_()  # (2, 6, 5)


def _picked(target, pred, outputs):
    """The (image, row, anchor) entries the target's score depends on, and the scores."""
    scores = target(outputs)
    (grad,) = torch.autograd.grad(scores.sum(), pred)
    return sorted(map(tuple, grad.nonzero().tolist())), scores.detach().tolist()


def test_box_target_picks_yolo_detections_by_hand():
    pred = _yolo_pred()
    raw = {"scores": torch.zeros(2, 2, 5)}  # the model's raw dict: (N, nc, A) gives nc
    out = (pred, raw)
    assert _picked(BoxTarget(), pred, out) == ([(0, 4, 0)], pytest.approx([0.9, 0.0]))
    assert _picked(BoxTarget(top_k=5), pred, out) == (
        [(0, 4, 0), (0, 4, 3), (0, 5, 2)],
        pytest.approx([0.9 + 0.7 + 0.6, 0.0]),
    )
    assert _picked(BoxTarget(classes=1, top_k=5), pred, out) == (
        [(0, 5, 2)],
        pytest.approx([0.7, 0.0]),
    )
    # no threshold: a4 and every anchor of image 1 count; NMS still drops a1 of image 0
    assert _picked(BoxTarget(top_k=5, score_threshold=0.0), pred, out)[1] == pytest.approx(
        [0.9 + 0.7 + 0.6 + 0.2, 0.2 + 0.1 + 0.1 + 0.05]
    )
    assert _picked(BoxTarget(top_k=1, score_threshold=0.0), pred, out) == (
        [(0, 4, 0), (1, 4, 1)],
        pytest.approx([0.9, 0.2]),
    )
    # a looser NMS keeps a1 (IoU 0.8 <= 0.9)
    assert _picked(BoxTarget(top_k=5, nms_threshold=0.9), pred, out)[1] == pytest.approx(
        [0.9 + 0.8 + 0.7 + 0.6, 0.0]
    )


def test_box_target_matches_yolo_boxes_by_iou():
    pred = _yolo_pred()
    out = (pred, {"scores": torch.zeros(2, 2, 5)})
    box = torch.tensor([[0.0, 0, 10, 10]])
    # a0 and a2 (IoU 1, classes 0 and 1); a1 was dropped by NMS
    assert _picked(BoxTarget(box), pred, out) == ([(0, 4, 0), (0, 5, 2)], pytest.approx([1.6, 0]))
    assert _picked(BoxTarget(box, classes=1), pred, out)[1] == pytest.approx([0.7, 0.0])
    # [20, 20, 30, 30] vs a3: IoU 1; vs [22, 20, 30, 30] IoU 0.8
    near = torch.tensor([[22.0, 20, 30, 30]])
    assert _picked(BoxTarget(near), pred, out) == ([(0, 4, 3)], pytest.approx([0.6, 0.0]))
    assert _picked(BoxTarget(near, iou_threshold=0.85), pred, out)[0] == []
    per_image = [torch.zeros(0, 4), torch.tensor([[20.0, 20, 30, 30]])]
    low = BoxTarget(per_image, score_threshold=0.1)
    assert _picked(low, pred, out) == ([(1, 4, 1)], pytest.approx([0.0, 0.2]))


def test_box_target_reads_every_yolo_layout():
    pred = _yolo_pred()
    want = pytest.approx([0.9 + 0.7 + 0.6, 0.0])
    top = BoxTarget(top_k=5)
    # export mode: the predictions alone
    assert top(pred).tolist() == want
    # YOLOv10/YOLO26 heads: the raw dict holds "one2many" and "one2one"
    assert top((pred, {"one2many": {"scores": torch.zeros(2, 2, 5)}})).tolist() == want
    # segmentation: 3 mask coefficients after the classes, (pred, proto) in a tuple
    seg = torch.cat([pred, torch.full((2, 3, 5), 5.0)], 1)
    proto = torch.zeros(2, 3, 4, 4)
    assert top(((seg, proto), {"scores": torch.zeros(2, 2, 5)})).tolist() == want
    assert top((seg, proto)).tolist() == want  # export mode
    # end-to-end heads: (N, K, 6) x1, y1, x2, y2, score, class; already free of duplicates
    e2e = torch.tensor(
        [[[0.0, 0, 10, 10, 0.9, 0], [0, 1, 10, 9, 0.8, 0], [40, 40, 50, 50, 0.2, 1]]] * 2
    )
    raw = {"one2many": {"scores": torch.zeros(2, 2, 5)}}
    assert top((e2e, raw)).tolist() == pytest.approx([1.7, 1.7])
    assert BoxTarget(e2e[0, :1, :4], classes=0)((e2e, raw)).tolist() == pytest.approx([1.7] * 2)


def test_box_target_reads_the_layouts_of_ultralytics_8_3():
    # up to 8.3 the raw outputs are the per-level maps (N, 4 * 16 + nc, h, w): 1x5 here
    # gives A = 5 anchors; Segment and Pose add their per-anchor rows (N, c, A)
    pred = _yolo_pred()
    want = pytest.approx([0.9 + 0.7 + 0.6, 0.0])
    top = BoxTarget(top_k=5)
    maps = [torch.zeros(2, 66, 1, 3), torch.zeros(2, 66, 1, 2)]
    assert top((pred, maps)).tolist() == want
    coefficients, proto = torch.full((2, 3, 5), 5.0), torch.zeros(2, 3, 4, 4)
    seg = torch.cat([pred, coefficients], 1)
    assert top((seg, (maps, coefficients, proto))).tolist() == want
    keypoints = torch.full((2, 6, 5), 9.0)
    pose = torch.cat([pred, keypoints], 1)
    assert top((pose, (maps, keypoints))).tolist() == want
    e2e = torch.tensor([[[0.0, 0, 10, 10, 0.9, 0], [40, 40, 50, 50, 0.2, 1]]] * 2)
    assert top((e2e, {"one2many": maps, "one2one": maps})).tolist() == pytest.approx([0.9] * 2)
    angle = torch.zeros(2, 1, 5)
    with pytest.raises(ValueError, match="oriented"):
        top((torch.cat([pred, angle], 1), (maps, angle)))


def test_box_target_yolo_errors_name_the_problem():
    pred = _yolo_pred()
    with pytest.raises(ValueError, match="training-mode dict"):
        BoxTarget()({"boxes": torch.zeros(2, 64, 5), "scores": torch.zeros(2, 2, 5)})
    with pytest.raises(ValueError, match="oriented"):
        BoxTarget()((pred, {"scores": torch.zeros(2, 2, 5), "angle": torch.zeros(2, 1, 5)}))
    with pytest.raises(ValueError, match=r"'score_threshold' parameter of BoxTarget .* Got 2"):
        BoxTarget(score_threshold=2)
    with pytest.raises(ValueError, match=r"'nms_threshold' parameter of BoxTarget .* Got 0 "):
        BoxTarget(nms_threshold=0)
    with pytest.raises(ValueError, match=r"'iou_threshold' parameter of BoxTarget .*'a'"):
        BoxTarget(iou_threshold="a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N, 4 \+ classes, anchors\)"):
        BoxTarget()(torch.zeros(2, 4, 5))  # no class rows


def test_hugging_face_segformer_with_segmentation_target():
    transformers = pytest.importorskip("transformers")
    from featviz.cam import CAM
    from featviz.hooks import capture

    torch.manual_seed(0)
    config = transformers.SegformerConfig(
        num_labels=3,
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=16,
    )
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    target = SegmentationTarget(1)  # reads the ModelOutput's .logits (N, 3, H/4, W/4)
    cam = CAM(model)
    with pytest.warns(UserWarning, match="no layer given"):
        maps = cam(X, target)
    _check(maps, state, model)
    (layer,) = cam.layers_
    assert layer.endswith("stages.3.blocks.0.layernorm_before")
    # by hand: the (N, 4, 32) tokens of the last stage are a 2x2 grid (64 / 32)
    with capture(model, layer, detach=False) as cap:
        out = model(X)
    tokens = cap.activations[layer]
    (g,) = torch.autograd.grad(out.logits[:, 1].sum(), tokens)
    a, g = (t.transpose(1, 2).reshape(2, -1, 2, 2) for t in (tokens.detach(), g))
    raw = (g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True).clamp_min(0)
    up = torch.nn.functional.interpolate(raw, (64, 64), mode="bilinear")[:, 0]
    lo, hi = up.amin((1, 2), keepdim=True), up.amax((1, 2), keepdim=True)
    assert bool((hi > lo).all())
    torch.testing.assert_close(maps, (up - lo) / (hi - lo), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- DETR-style outputs
def _detr_outputs(logits, boxes):
    pytest.importorskip("transformers")
    from transformers.models.detr.modeling_detr import DetrObjectDetectionOutput

    return DetrObjectDetectionOutput(logits=logits, pred_boxes=boxes)


def test_box_target_reads_detr_outputs_exactly():
    # 2 images, 3 queries, 2 object classes + "no object"
    logits = torch.tensor(
        [
            [[4.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 5.0]],
            [[0.0, 0.0, 0.0], [1.0, 2.0, 0.0], [2.0, 0.0, 1.0]],
        ],
        requires_grad=True,
    )
    boxes = torch.tensor(
        [
            [[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]],
            [[0.5, 0.5, 0.2, 0.2], [0.25, 0.75, 0.5, 0.5], [0.75, 0.5, 0.5, 1.0]],
        ]
    )
    out = _detr_outputs(logits, boxes)
    probs = logits.softmax(-1)[..., :-1].max(-1).values  # (2, 3) each query's best class
    top2 = BoxTarget(top_k=2)(out)
    torch.testing.assert_close(top2, probs.topk(2, 1).values.sum(1))
    # a given box in pixels (64x32 images: W=64, H=32) matches query 0 of image 0 only
    given = torch.tensor([[0.0, 0.0, 32.0, 16.0]])
    matched = BoxTarget(boxes=given, image_size=(32, 64))(out)
    torch.testing.assert_close(matched, torch.stack([probs[0, 0], probs.new_zeros(())]))
    (g,) = torch.autograd.grad(matched.sum(), logits)
    assert bool(g[0, 0].ne(0).all()) and not bool(g[0, 1:].ne(0).any()) and not bool(g[1].any())
    with pytest.raises(ValueError, match=r"normalised to \[0, 1\].*image_size=\(H, W\)"):
        BoxTarget(boxes=given)(out)
    with pytest.raises(ValueError, match=r"'image_size' parameter of BoxTarget.*Got \(32,\)"):
        BoxTarget(image_size=(32,))


def test_detr_from_a_config_in_three_lines():
    transformers = pytest.importorskip("transformers")
    from featviz.cam import CAM

    torch.manual_seed(0)
    backbone = transformers.ResNetConfig(
        embedding_size=16,
        hidden_sizes=[16, 32, 48, 64],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage4"],
    )
    config = transformers.DetrConfig(
        use_timm_backbone=False,
        backbone_config=backbone,
        use_pretrained_backbone=False,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=10,
        num_labels=5,
    )
    detr = transformers.DetrForObjectDetection(config).eval()
    state = {k: v.clone() for k, v in detr.state_dict().items()}
    layer = "model.backbone.model.encoder.stages.3"  # the ResNet's last stage, 2x2 at 64x64
    cam = CAM(detr, layer)
    maps = cam(X, BoxTarget(top_k=3))
    _check(maps, state, detr)
    with torch.no_grad():
        out = detr(X)
    best = out.logits.softmax(-1)[..., :-1].amax(-1).topk(3, 1).values.sum(1)
    torch.testing.assert_close(cam.scores_, best)
    with pytest.raises(ValueError, match=r"DETR-style outputs .*BoxTarget\(top_k=1\)"):
        cam(X, 0)  # a class index: no per-image logits to read


# --------------------------------------------------------------------------------------
# issue 22: inputs each target accepts or refuses, in house wording
# --------------------------------------------------------------------------------------
import numpy as np  # noqa: E402


def test_box_target_reads_ultralytics_rows_by_their_first_four_columns():
    dets = _detections()
    boxes = torch.tensor([[0.0, 0, 10, 10]])
    rows = torch.tensor([[0.0, 0, 10, 10, 0.95, 1.0]])  # x1, y1, x2, y2, score, class
    assert BoxTarget(rows)(dets).tolist() == BoxTarget(boxes)(dets).tolist()
    assert BoxTarget(rows)(dets).tolist() == pytest.approx([1.2, 0.0])  # both 0, 0, 10, 10 hits
    assert BoxTarget(rows.numpy())(dets).tolist() == BoxTarget(boxes)(dets).tolist()
    assert BoxTarget([0.0, 0, 10, 10])(dets).tolist() == BoxTarget(boxes)(dets).tolist()


def test_box_target_refuses_bad_boxes_at_construction():
    with pytest.raises(ValueError, match=r"'boxes' parameter of BoxTarget .*Got shape \(1, 5\)"):
        BoxTarget(torch.ones(1, 5))
    with pytest.raises(ValueError, match=r"'boxes' .*x1 <= x2 and y1 <= y2.*\[10\.0, 0\.0, 0\.0"):
        BoxTarget(torch.tensor([[10.0, 0, 0, 10]]))
    with pytest.raises(ValueError, match=r"'boxes' .*y1 <= y2 \(entry 1: the boxes of image 1\)"):
        BoxTarget([torch.tensor([0.0, 0, 1, 1]), torch.tensor([0.0, 5, 1, 1])])
    with pytest.raises(TypeError, match=r"'boxes' parameter of BoxTarget must hold numbers"):
        BoxTarget("0 0 10 10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"'boxes' parameter of BoxTarget must hold numbers"):
        BoxTarget([["a", "b", "c", "d"]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"'classes' parameter of BoxTarget .*2 boxes.*Got 3"):
        BoxTarget(torch.tensor([[0.0, 0, 1, 1], [0, 0, 2, 2]]), classes=[1, 2, 3])


def test_box_target_nested_list_is_one_box_per_image():
    dets = _detections()  # two images
    two = BoxTarget([[0.0, 0, 10, 10], [20.0, 20, 30, 30]])
    assert two(dets).tolist() == pytest.approx([0.9 + 0.3, 0.0])
    three = BoxTarget([[0.0, 0, 10, 10], [20.0, 20, 30, 30], [0.0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"nested list of boxes is read as one box per image"):
        three(dets)


def test_box_target_image_size_must_be_the_images_size():
    class Detector(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1)

        def forward(self, x):
            s = self.conv(x).mean((1, 2, 3))
            return [
                {
                    "boxes": torch.tensor([[0.0, 0, 8, 8]]),
                    "labels": torch.tensor([1]),
                    "scores": v[None],
                }
                for v in s
            ]

    target = BoxTarget(torch.tensor([[0.0, 0, 8, 8]]), image_size=(32, 64))
    x = torch.rand(2, 1, 32, 32)
    with pytest.raises(
        ValueError, match=r"'image_size' parameter of BoxTarget .*\(32, 32\).*\(32, 64\)"
    ):
        grad_cam(Detector(), x, "conv", target)
    from featviz.metrics import deletion_auc

    with pytest.raises(ValueError, match=r"'image_size' parameter of BoxTarget"):
        deletion_auc(Detector(), x, torch.rand(2, 32, 32), target)
    ok = BoxTarget(torch.tensor([[0.0, 0, 8, 8]]), image_size=(32, 32))
    assert grad_cam(Detector(), x, "conv", ok, normalize=False).shape == (2, 32, 32)


def test_segmentation_target_accepts_numpy_and_refuses_wrong_masks():
    out = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    mask = np.array([[True, False], [False, True]])
    assert SegmentationTarget(1, mask=mask)(out).tolist() == [4 + 7, 16 + 19]
    assert SegmentationTarget(1, mask=np.ones((2, 2)))(out).tolist() == [22.0, 70.0]
    target = SegmentationTarget(np.int64(1))
    assert target.classes == 1 and type(target.classes) is int
    assert target(out).tolist() == [22.0, 70.0]
    with pytest.raises(
        ValueError, match=r"'mask' parameter of SegmentationTarget .*2 images.*3 masks"
    ):
        SegmentationTarget(1, mask=torch.ones(3, 2, 2))(out)
    with pytest.raises(ValueError, match=r"'mask' parameter of SegmentationTarget .*2 or 3 axes"):
        SegmentationTarget(1, mask=torch.ones(2))
    per_image = SegmentationTarget(1, mask=torch.tensor([[[1.0, 0], [0, 0]], [[0, 0], [0, 1]]]))
    assert per_image(out).tolist() == [4.0, 19.0]
    assert per_image.select(torch.tensor([1]))(out[1:]).tolist() == [19.0]


def test_similarity_target_accepts_numpy_and_refuses_wrong_sizes():
    emb = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert SimilarityTarget(np.array([2.0, 0.0]))(emb).tolist() == pytest.approx([1.0, 2**-0.5])
    with pytest.raises(
        ValueError, match=r"'embedding' parameter of SimilarityTarget .*D = 2.*\(5,\)"
    ):
        SimilarityTarget(np.ones(5))(emb)
    with pytest.raises(
        ValueError, match=r"'embedding' parameter of SimilarityTarget .*N = 2.*\(3, 2\)"
    ):
        SimilarityTarget(torch.ones(3, 2))(emb)
    with pytest.raises(ValueError, match=r"'embedding' parameter of SimilarityTarget"):
        SimilarityTarget(torch.ones(2, 2, 2))
    per_image = SimilarityTarget(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    assert per_image(emb).tolist() == pytest.approx([0.0, 1.0])
    assert per_image.select(torch.tensor([1]))(emb[1:]).tolist() == pytest.approx([1.0])
