"""Demo section: the built-in data and the model's accuracy."""

from __future__ import annotations

import torch

from featviz.demo_sections._context import DemoContext

ORDER = 10
TITLE = "Built-in data and model"


def run(ctx: DemoContext) -> None:
    """Draw a grid of Shapes images with their true boxes and predicted classes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    data = ctx.data
    images, labels = data.tensors()
    with torch.no_grad():
        pred = ctx.model(images.to(ctx.device)).argmax(1).cpu()
    acc = float((pred == labels).float().mean())
    n = min(16, len(data))
    fig, axes = plt.subplots(2, n // 2, figsize=(n // 2 * 1.6, 3.6), squeeze=False)
    for i, ax in enumerate(axes.flat[:n]):
        ax.imshow(data.images[i].permute(1, 2, 0).numpy())
        x0, y0, x1, y1 = data.boxes[i].tolist()
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="w", lw=1))
        ok = "" if pred[i] == labels[i] else " (wrong)"
        ax.set_title(f"{data.classes[int(pred[i])]}{ok}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Shapes (held-out), TinyCNN accuracy {acc:.1%} on {len(data)} images")
    ctx.save_figure(fig, "data_shapes.png", "Shapes images with true boxes and predicted class")
