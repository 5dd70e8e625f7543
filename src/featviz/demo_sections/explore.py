"""Demo section: the interactive explorer (``explore.html``) on the built-in data."""

from __future__ import annotations

import torch

from featviz.demo_sections._context import DemoContext

ORDER = 65
TITLE = "Interactive explorer"

_LAYER = "features.13"


def run(ctx: DemoContext) -> None:
    """t-SNE of the penultimate features, with thumbnails, predictions and Grad-CAMs."""
    from featviz.cam import grad_cam
    from featviz.explorer import explore
    from featviz.hooks import capture
    from featviz.projection import project

    data = ctx.data
    images, labels = data.tensors()
    images = images.to(ctx.device)
    with capture(ctx.model, ["flatten"]) as cap, torch.no_grad():
        logits = ctx.model(images)
        feats = cap.activations["flatten"]
    cams = grad_cam(ctx.model, images, _LAYER, target=logits.argmax(1), size=None)
    perplexity = min(30.0, (len(data) - 1) / 3)  # --fast has 64 images
    proj = project(feats, labels=labels, perplexity=perplexity, progress=False, score=False)
    view = explore(
        proj,
        images=images,
        predictions=logits,
        heatmaps={"grad-cam": cams},
        class_names=list(data.classes),
        title=f"TinyCNN penultimate features, t-SNE ({len(data)} Shapes images)",
    )
    path = ctx.note(
        "explore.html",
        "Interactive t-SNE of the model's features: hover for the image, click for its "
        "Grad-CAM, box-select to copy indices (opens offline)",
    )
    view.save(path, overwrite=ctx.overwrite)
