"""Demo section: class activation maps of every method, on Shapes and on photos."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from featviz._io import atomic_path
from featviz.demo_sections._context import DemoContext

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ORDER = 30
TITLE = "Class activation maps"

_LAYER = "features.13"


def _grid(
    images: torch.Tensor, maps: dict[str, torch.Tensor], row_titles: list[str], title: str
) -> Figure:
    """Rows of images: the input, then each method's map blended over it."""
    import matplotlib.pyplot as plt

    from featviz.featuremaps import overlay

    n = images.shape[0]
    cols = len(maps) + 1
    aspect = images.shape[-1] / images.shape[-2]
    fig, axes = plt.subplots(
        n, cols, figsize=(1.5 * cols * aspect, 1.6 * n), squeeze=False, layout="constrained"
    )
    for r in range(n):
        axes[r, 0].imshow(images[r].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
        axes[r, 0].set_ylabel(row_titles[r], fontsize=8)
        for c, m in enumerate(maps.values(), start=1):
            axes[r, c].imshow(overlay(images[r], m[r]).cpu().numpy())
    for c, name in enumerate(["input", *maps]):
        axes[0, c].set_title(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return fig


def run(ctx: DemoContext) -> None:
    """Grids of all CAM methods on Shapes and on the sample photos, and a score table."""
    from featviz.cam import CAM, METHODS

    model = ctx.model
    data = ctx.data
    images, _ = data.tensors()
    images = images.to(ctx.device)
    n_eval = min(len(images), ctx.sized(32, 64, 256))
    shown = 4 if ctx.fast else 6
    maps: dict[str, torch.Tensor] = {}
    for method in METHODS:
        cam = CAM(model, _LAYER, method=method, progress=False)
        maps[method] = cam(images[:n_eval])
    with torch.no_grad():
        pred = model(images[:shown]).argmax(1).tolist()
    fig = _grid(
        images[:shown],
        {k: v[:shown] for k, v in maps.items()},
        [data.classes[p] for p in pred],
        "CAM methods on held-out Shapes (TinyCNN, layer features.13, predicted class)",
    )
    ctx.save_figure(fig, "cam_methods_shapes.png", "Every CAM method on Shapes images")

    _photos(ctx)
    _scores(ctx, images, maps, n_eval)


def _photos(ctx: DemoContext) -> None:
    """Every CAM method on the sample photos (the pipeline on real images)."""
    from featviz.cam import CAM

    model, data = ctx.model, ctx.data
    # photos: TinyCNN never saw photographs; this only shows the pipeline on real images
    photos = ctx.photos
    x = torch.stack(
        [torch.tensor(p).permute(2, 0, 1).float().div(255) for p in photos.values()]
    ).to(ctx.device)
    x = F.interpolate(x, size=(128, 192), mode="bilinear", antialias=True, align_corners=False)
    photo_maps = {
        m: CAM(model, _LAYER, method=m, progress=False)(x)
        for m in ("cam", "gradcam", "gradcam++", "layercam", "scorecam", "eigencam")
    }
    with torch.no_grad():
        guess = model(x).argmax(1).tolist()
    fig = _grid(
        x,
        photo_maps,
        [f"{name}\n(\u2192 {data.classes[g]}?)" for name, g in zip(photos, guess, strict=True)],
        "Sample photos through TinyCNN (trained on Shapes only: the maps show the pipeline "
        "works on real images, not a meaningful explanation)",
    )
    ctx.save_figure(
        fig,
        "cam_methods_photos.png",
        "CAM methods on the sample photos (TinyCNN is not trained on photos)",
    )


def _scores(
    ctx: DemoContext, images: torch.Tensor, maps: dict[str, torch.Tensor], n_eval: int
) -> None:
    """The localisation and faithfulness table of every method, as ``cam_scores.md``."""
    from featviz import metrics

    model, data = ctx.model, ctx.data
    # localisation and faithfulness scores
    boxes = data.boxes[:n_eval]
    # deletion/insertion need steps + 1 forward passes per image and method: a subset
    n_faith = min(n_eval, ctx.sized(32, 32, 64))
    steps = ctx.sized(8, 8, 16)
    lines = [
        f"Pointing game and energy in box on {n_eval} held-out Shapes images; deletion, "
        f"insertion ({steps} steps) and Average Drop on the first {n_faith} "
        "(targets: predicted classes)."
        + ("" if ctx.full else " `featviz demo --full` scores 256 images, 64 of them at 16 steps."),
        "",
        "| method | pointing game | energy in box | deletion AUC (lower is better) "
        "| insertion AUC (higher is better) | Average Drop % |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    sub = images[:n_faith]
    for method, all_maps in maps.items():
        m = all_maps[:n_faith]
        dele = float(metrics.deletion_auc(model, sub, m, steps=steps).auc.mean())
        ins = float(metrics.insertion_auc(model, sub, m, steps=steps).auc.mean())
        lines.append(
            f"| {method} | {metrics.pointing_game(all_maps.cpu(), boxes):.1%} "
            f"| {metrics.energy_in_box(all_maps.cpu(), boxes):.3f} | {dele:.3f} | {ins:.3f} "
            f"| {metrics.average_drop(model, sub, m):.1f} |"
        )
    path = ctx.note("cam_scores.md", "Localisation and faithfulness scores of every CAM method")
    with atomic_path(path, overwrite=ctx.overwrite) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
