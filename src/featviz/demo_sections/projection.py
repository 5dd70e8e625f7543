"""Demo section: PCA and t-SNE of the built-in model's penultimate features and raw images."""

from __future__ import annotations

import torch

from featviz.demo_sections._context import DemoContext

ORDER = 60
TITLE = "Projections (PCA, t-SNE)"


def run(ctx: DemoContext) -> None:
    """Project the model's 'flatten' features and the raw images, coloured by class."""
    import matplotlib.pyplot as plt

    from featviz.hooks import capture
    from featviz.projection import plot_projection, project

    data = ctx.data
    images, labels = data.tensors()
    names = [data.classes[i] for i in labels.tolist()]
    cls = list(data.classes)  # one colour per class, as in every figure of the demo
    parts = []
    with capture(ctx.model, ["flatten"]) as cap, torch.no_grad():
        for batch in images.split(256):
            ctx.model(batch.to(ctx.device))
            parts.append(cap.activations["flatten"])
    feats = torch.cat(parts)
    perplexity = min(30.0, (len(data) - 1) / 3)  # --fast has 64 images

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    plot_projection(
        project(feats, method="pca", labels=names, progress=False), ax=axes[0], class_names=cls
    )
    plot_projection(
        project(feats, labels=names, perplexity=perplexity, progress=False),
        ax=axes[1],
        class_names=cls,
    )
    fig.suptitle(f"TinyCNN penultimate features ('flatten', {feats.shape[1]}-d), by class")
    ctx.save_figure(
        fig,
        "projection_features.png",
        "PCA and t-SNE of the model's penultimate features, coloured by true class",
    )

    # raw pixels: the dataset is streamed; t-SNE runs on its PCA-50 reduction
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    plot_projection(
        project(data, method="pca", labels=names, progress=False), ax=axes[0], class_names=cls
    )
    plot_projection(
        project(data, labels=names, perplexity=perplexity, progress=False),
        ax=axes[1],
        class_names=cls,
    )
    fig.suptitle("Raw Shapes images (3x64x64 pixels), by class")
    ctx.save_figure(
        fig,
        "projection_raw_images.png",
        "PCA and t-SNE of the raw images: classes mix, unlike in the model's features",
    )
