"""Demo section: Grad-CAM of an object detector's best detections (featviz.targets.BoxTarget)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from featviz.demo_sections._context import DemoContext

ORDER = 34
TITLE = "Object detector (random weights)"

_LAYER = "backbone.body.16"  # the last MobileNetV3 stage (stride 32)
_TOP_K = 3


def run(ctx: DemoContext) -> None:
    """Grad-CAM of a Faster R-CNN's top detections on the sample photos, boxes drawn on top."""
    from matplotlib.patches import Rectangle
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    from featviz.cam import NearZeroMapWarning, grad_cam
    from featviz.featuremaps import plot_overlays
    from featviz.targets import BoxTarget

    photos = ctx.photos
    batch = np.stack(list(photos.values()))  # (2, 427, 640, 3) uint8
    images = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255).to(ctx.device)

    # random weights, seeded without touching the global RNG; box_score_thresh=0.0 keeps
    # the detections of an untrained head; 50 region proposals per image instead of 150
    # halve the section's time (inputs are resized to 320 on the short side)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        detector = fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, box_score_thresh=0.0, rpn_post_nms_top_n_test=50
        )
    detector = detector.eval().to(ctx.device)
    # the user's code: one line for the model (above), one for the target, one for the maps
    target = BoxTarget(top_k=_TOP_K)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", NearZeroMapWarning)
        maps = grad_cam(detector, images, _LAYER, target)  # (2, 427, 640)
    # random weights: the scores hardly depend on the image, and featviz says so; the
    # caption reports it instead of a warning in the middle of the demo's output
    noise = any(issubclass(w.category, NearZeroMapWarning) for w in record)
    for w in record:
        if not issubclass(w.category, NearZeroMapWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    with torch.no_grad():
        detections = detector(list(images))
    fig = plot_overlays(batch, maps, titles=list(photos), alpha=0.5)
    for row, det in enumerate(detections):
        ax = fig.axes[3 * row + 2]  # the overlay column
        best = det["scores"].topk(_TOP_K).indices  # the detections BoxTarget sums
        for x0, y0, x1, y1 in det["boxes"][best].tolist():
            corner = (x0 - 0.5, y0 - 0.5)  # box coordinates are pixel edges, imshow's centres
            ax.add_patch(Rectangle(corner, x1 - x0, y1 - y0, fill=False, ec="w", lw=1.2))
    fig.suptitle(
        "Grad-CAM of a Faster R-CNN (MobileNetV3-Large 320 FPN), random weights\n"
        f"layer {_LAYER}, target BoxTarget(top_k={_TOP_K}) (its boxes in white)",
        fontsize=10,
    )
    ctx.save_figure(
        fig,
        "detector_gradcam.png",
        f"Grad-CAM of a torchvision Faster R-CNN (MobileNetV3-Large 320 FPN), layer {_LAYER}, "
        f"for the sum of its {_TOP_K} best detections per photo (BoxTarget). The weights are "
        "random, so the maps and boxes show the pipeline, not what a trained detector finds"
        + (
            "; featviz flags these maps as noise-level (NearZeroMapWarning): with random "
            "weights the detection scores hardly depend on the image"
            if noise
            else ""
        ),
    )
