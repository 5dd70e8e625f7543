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
