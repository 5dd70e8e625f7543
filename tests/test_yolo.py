"""featviz.targets.BoxTarget on ultralytics YOLO models built from their configs.

Random weights. The documented example runs on the model exactly as built; the other
tests use a "calibrated" random model: YOLO's untrained activations shrink to ~1e-9 by
the last neck layer and its class biases start at -11.5 (probabilities ~1e-5), so
`_yolo` sets the BatchNorm statistics from the test images, sets the class biases to 0
and scales the class convolutions to logits of std 1 on those images, which gives varied
class probabilities around 0.5, many above ultralytics' 0.25 threshold, none saturated.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from featviz.cam import CAM
from featviz.targets import BoxTarget

_PIL_OPEN, _TORCH_SAVE = Image.open, torch.save
ultralytics = pytest.importorskip("ultralytics")
# importing ultralytics replaces PIL's Image.open (an unreadable file then tries to
# pip-install pi-heif) and torch.save for the whole process; the rest of the suite
# tests featviz with PIL's and torch's own (see docs/models.md)
Image.open, torch.save = _PIL_OPEN, _TORCH_SAVE

SIZE = 64
X = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def _yolo(config: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = ultralytics.YOLO(config, verbose=False).model
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a cumulative average: one batch sets the statistics
            m.reset_running_stats()
    head = net.model[-1]
    classes = [branch[-1] for branch in [*head.cv3, *(getattr(head, "one2one_cv3", None) or [])]]
    with torch.no_grad():
        net.train()(X)  # the statistics of the test images (noise: others differ a lot)
        for conv in classes:
            conv.bias.zero_()
        raw = net.eval()(X)[1]
        spread = raw.get("one2many", raw)["scores"].std()
        for conv in classes:  # logits of std 1: no saturated probability (zero gradient)
            conv.weight /= spread
    return net


@pytest.fixture(scope="module")
def yolov8n() -> torch.nn.Module:
    return _yolo("yolov8n.yaml")


def _detect_inputs(net: torch.nn.Module) -> list[str]:
    """The layers feeding the Detect head (the three neck outputs), e.g. model.15/18/21."""
    return [f"model.{i}" for i in net.model[-1].f]


def _grad_cam_by_hand(net, images, layers, target):
    """Grad-CAM of several layers, fused, on an in-place-free copy of the model."""
    ref = copy.deepcopy(net)
    for m in ref.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    acts = {}
    hooks = [
        ref.get_submodule(k).register_forward_hook(lambda m, i, o, k=k: acts.__setitem__(k, o))
        for k in layers
    ]
    scores = target(ref(images.clone()))
    for h in hooks:
        h.remove()
    grads = torch.autograd.grad(scores.sum(), [acts[k] for k in layers])

    def minmax(m):
        lo, hi = m.amin((1, 2), keepdim=True), m.amax((1, 2), keepdim=True)
        return (m - lo) / (hi - lo)

    maps = []
    for k, g in zip(layers, grads, strict=True):
        m = F.relu((g.mean((2, 3), keepdim=True) * acts[k]).sum(1, keepdim=True))
        m = F.interpolate(m, size=images.shape[-2:], mode="bilinear", align_corners=False)
        maps.append(minmax(m[:, 0]))
    return minmax(torch.stack(maps).mean(0)).detach(), scores.detach()


def test_the_documented_example_on_untouched_random_weights():
    net = ultralytics.YOLO("yolov8n.yaml", verbose=False).model.eval()
    cam = CAM(net, layers=[f"model.{i}" for i in net.model[-1].f], method="gradcam")
    maps = cam(X, target=BoxTarget(top_k=3, score_threshold=0.0))
    assert maps.shape == (2, SIZE, SIZE) and float(maps.amax((1, 2)).min()) == 1.0
    assert bool((cam.scores_ > 0).all())
    # with ultralytics' default threshold nothing of an untrained head is a detection
    assert cam(X, BoxTarget()).abs().max() == 0 and cam.scores_.tolist() == [0.0, 0.0]


def test_yolo_grad_cam_in_three_lines_equals_the_hand_computed_one(yolov8n):
    net = yolov8n
    state = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [p.requires_grad for p in net.parameters()]
    layers = _detect_inputs(net)
    assert layers == ["model.15", "model.18", "model.21"]
    target = BoxTarget(top_k=3)

    cam = CAM(net, layers, method="gradcam")
    maps = cam(X, target)

    assert maps.shape == (2, SIZE, SIZE) and bool(torch.isfinite(maps).all())
    assert float(maps.min()) >= 0 and float(maps.amax((1, 2)).min()) == 1.0
    ref, scores = _grad_cam_by_hand(net, X, layers, target)
    torch.testing.assert_close(cam.scores_, scores)
    assert bool((scores > 3 * 0.25).all())  # three detections above ultralytics' threshold
    torch.testing.assert_close(maps, ref, rtol=0, atol=1e-5)
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert [p.requires_grad for p in net.parameters()] == flags
    assert not net.training and all(p.grad is None for p in net.parameters())


def test_yolo_box_matching_and_no_detection(yolov8n):
    with torch.no_grad():
        pred = yolov8n(X)[0]  # (2, 4 + 80, A): cx, cy, w, h, class probabilities
    probs = pred[:, 4:].amax(1)  # (2, A)
    best = probs.argmax(1)
    cx, cy, w, h = pred[[0, 1], :4, best].T
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)  # (2, 4)
    cam = CAM(yolov8n, "model.15")
    # each image's best anchor, found again by its box alone (IoU 1)
    maps = cam(X, BoxTarget([boxes[:1], boxes[1:]], iou_threshold=1.0))
    assert maps.shape == (2, SIZE, SIZE) and float(maps.amax((1, 2)).min()) == 1.0
    assert cam.scores_.tolist() == probs.amax(1).tolist()
    # nothing above the threshold: a zero score and an all-zero map, never NaN
    maps = cam(X, BoxTarget(score_threshold=1.0))
    assert cam.scores_.tolist() == [0.0, 0.0] and float(maps.abs().max()) == 0.0


def _best_probability(net, nc=80):
    with torch.no_grad():
        pred = net(X)[0]
    pred = pred[0] if isinstance(pred, tuple) else pred  # segmentation: (pred, proto)
    return pred[:, 4 : 4 + nc].amax((1, 2))  # rows after the classes: mask coefficients


@pytest.mark.parametrize("config", ["yolov5nu.yaml", "yolo11n.yaml", "yolov8n-seg.yaml"])
def test_other_yolo_versions_and_segmentation(config):
    net = _yolo(config)
    cam = CAM(net, _detect_inputs(net))
    maps = cam(X, BoxTarget())
    assert maps.shape == (2, SIZE, SIZE) and float(maps.amax((1, 2)).min()) == 1.0
    assert cam.scores_.tolist() == _best_probability(net).tolist()
    eigen = CAM(net, _detect_inputs(net), method="eigencam")(X)
    assert eigen.shape == (2, SIZE, SIZE) and bool(torch.isfinite(eigen).all())


def test_yolo26_both_heads():
    net = _yolo("yolo26n.yaml")  # its raw dict holds "one2many" and "one2one"
    cam = CAM(net, _detect_inputs(net))
    cam(X, BoxTarget())
    assert cam.scores_.tolist() == _best_probability(net).tolist()
    net.model[-1].end2end = True  # (N, 300, 6) x1, y1, x2, y2, score, class
    maps = cam(X, BoxTarget(top_k=2))
    with torch.no_grad():
        top = net(X)[0][:, :2, 4].sum(1)  # the head sorts its detections by score
    torch.testing.assert_close(cam.scores_, top)
    assert float(maps.amax((1, 2)).min()) == 1.0


def test_yolo_in_training_mode_is_refused_with_a_reason(yolov8n):
    net = copy.deepcopy(yolov8n).train()
    with pytest.raises(ValueError, match=r"training-mode dict .* eval_mode=True"):
        CAM(net, "model.15", eval_mode=False)(X, BoxTarget())
    assert net.training


@pytest.mark.parametrize(
    ("config", "layer"),
    [("yolov8n.yaml", "model.21"), ("yolo11n.yaml", "model.22"), ("yolov8n-seg.yaml", "model.21")],
)
def test_auto_layer_is_the_last_neck_layer_before_the_head(config, layer):
    net = _yolo(config)
    cam = CAM(net)
    with pytest.warns(UserWarning, match=f"using '{layer}'"):
        maps = cam(X, BoxTarget(top_k=3))
    assert cam.layers_ == [layer] and net.model[-1].f[-1] == int(layer.split(".")[1])
    assert maps.shape == (2, SIZE, SIZE) and float(maps.amax()) == 1.0
