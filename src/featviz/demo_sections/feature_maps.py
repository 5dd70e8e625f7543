"""Demo section: feature-map grids, channel sums and overlays, on Shapes and on photos."""

from __future__ import annotations

import numpy as np
import torch

from featviz.demo_sections._context import DemoContext

ORDER = 40
TITLE = "Feature maps and overlays"

_LAYERS = ["features.2", "features.6", "features.13"]


def run(ctx: DemoContext) -> None:
    """Channel grid of one image, channel-sum overlays per layer, overlays on photos."""
    import matplotlib.pyplot as plt

    from featviz.featuremaps import overlay, plot_feature_grid, plot_overlays, sum_channels
    from featviz.hooks import capture

    model = ctx.model
    n = 4 if ctx.fast else 6
    images = ctx.data.tensors()[0][:n].to(ctx.device)  # (n, 3, 64, 64)
    names = [ctx.data.classes[int(y)] for y in ctx.data.labels[:n]]
    with torch.no_grad(), capture(model, _LAYERS) as cap:
        model(images)

    fig = plot_feature_grid(cap.activations["features.13"][0], max_channels=64)
    ctx.save_figure(
        fig,
        "feature_grid_features13.png",
        f"Every channel of features.13 for one {names[0]}, and their sum (last panel)",
    )

    for layer in ("features.6", "features.13"):
        sums = sum_channels(cap.activations[layer])  # (n, h, w) on ctx.device
        fig = plot_overlays(images, sums, titles=names, alpha=0.5, colorbar=True)
        ctx.save_figure(
            fig,
            f"channel_sum_overlays_{layer.replace('.', '')}.png",
            f"Channel sums of {layer} over Shapes images: input | heatmap | overlay",
        )

    # how the summed maps sharpen with depth: one image, three layers, one call
    sums = torch.stack(
        [
            torch.nn.functional.interpolate(
                sum_channels(cap.activations[k])[:1, None], size=(16, 16), mode="area"
            )[0, 0]
            for k in _LAYERS
        ]
    )  # (3, 16, 16)
    strip = overlay(images[0], sums, alpha=0.5).cpu().numpy()  # (3, 64, 64, 3)
    fig, axes = plt.subplots(1, 3, figsize=(7, 2.6), layout="constrained")
    for ax, pic, layer in zip(axes, strip, _LAYERS, strict=True):
        ax.imshow(pic)
        ax.set_title(layer)
        ax.axis("off")
    ctx.save_figure(fig, "channel_sums_by_depth.png", "Channel sums of three layers, one image")

    # natural photos: the model sees them at reduced size, the overlay is full size
    photos = ctx.photos
    batch = np.stack(list(photos.values()))  # (2, 427, 640, 3) uint8
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255).to(ctx.device)
    x = torch.nn.functional.interpolate(x, size=(160, 240), mode="bilinear", antialias=True)
    with torch.no_grad(), capture(model, ["features.2", "features.13"]) as cap:
        model(x)
    for layer in ("features.2", "features.13"):
        sums = sum_channels(cap.activations[layer])
        fig = plot_overlays(batch, sums, titles=list(photos), alpha=0.45)
        ctx.save_figure(
            fig,
            f"photo_overlays_{layer.replace('.', '')}.png",
            f"Channel sums of {layer} on sample photos (model input 160x240, overlay at full size)",
        )
    pic = overlay(batch[0], sum_channels(cap.activations["features.13"])[0], alpha=0.45)
    ctx.save_image(pic, "photo_overlay.png", "One overlay at full photo resolution (427x640)")
