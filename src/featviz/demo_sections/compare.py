"""Demo section: before/after comparison of an under-trained and the trained model."""

from __future__ import annotations

from featviz.demo_sections._context import DemoContext

ORDER = 70
TITLE = "Before/after comparisons"


def run(ctx: DemoContext) -> None:
    """Compare CAMs, feature maps and projections of an under-trained vs the trained model."""
    from torch.utils.data import DataLoader

    from featviz.compare import compare_cams, compare_feature_maps, compare_projections
    from featviz.extraction import extract
    from featviz.models import pretrained_tiny_cnn

    under = pretrained_tiny_cnn(epochs=1, n_train=256).to(ctx.device)
    models = {"under-trained (1 epoch, 256 images)": under, "trained": ctx.model}
    images = ctx.data.tensors()[0][:4].to(ctx.device)
    fig = compare_cams(models, images, layers="features.13")
    ctx.save_figure(fig, "compare_cams.png", "Grad-CAM of an under-trained vs the trained model")
    fig = compare_feature_maps(models, images, layers="features.13")
    ctx.save_figure(
        fig, "compare_feature_maps.png", "Channel-summed features.13, under-trained vs trained"
    )
    loader = DataLoader(ctx.data, batch_size=128)
    feats = {
        name: extract(m, loader, ["flatten"], device=ctx.device, progress=False).layers["flatten"]
        for name, m in models.items()
    }
    fig = compare_projections(
        feats,
        ctx.data.labels,
        method="pca" if ctx.fast else "tsne",
        class_names=list(ctx.data.classes),
    )
    ctx.save_figure(
        fig, "compare_projections.png", "Penultimate features projected, with quality in titles"
    )
