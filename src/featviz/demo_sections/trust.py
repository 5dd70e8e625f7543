"""Demo section: sanity checks of every CAM method, and baselines for a score."""

from __future__ import annotations

from featviz._io import atomic_path
from featviz.demo_sections._context import DemoContext

ORDER = 36
TITLE = "Can the maps be trusted?"
_LAYER = "features.13"


def run(ctx: DemoContext) -> None:
    """Cascading randomisation and the random-logit test of every method; baselines."""
    from matplotlib.figure import Figure

    from featviz.cam import METHODS, grad_cam
    from featviz.metrics import compare_baselines, pointing_game
    from featviz.sanity import plot_sanity_curves, plot_sanity_maps, sanity_check

    images, _ = ctx.data.tensors()
    n = ctx.sized(4, 8, 16)
    x = images[:n].to(ctx.device)
    report = sanity_check(
        ctx.model,
        x,
        methods=list(METHODS),
        cam_layers=_LAYER,
        tests=("cascading", "random_logit"),
        measures="spearman_abs",
        progress=False,
    )
    curves = plot_sanity_curves(report).figure
    assert isinstance(curves, Figure)  # a new figure of its own (no ax= given)
    ctx.save_figure(
        curves,
        "sanity_curves.png",
        f"Cascading randomisation of TinyCNN (from the logits down), {n} images: mean "
        "Spearman rank correlation (absolute values) between each method's maps of the "
        "trained and of the progressively randomised model; a method that explains the "
        "model falls towards 0",
    )
    ctx.save_figure(
        plot_sanity_maps(report, "gradcam"),
        "sanity_maps_gradcam.png",
        "Grad-CAM as the layers are randomised, from the logits down (rows: images)",
    )
    heat = grad_cam(ctx.model, images.to(ctx.device), _LAYER)
    baselines = compare_baselines(pointing_game, images, heat.cpu(), boxes=ctx.data.boxes)
    lines = [
        f"Sanity checks of every CAM method on TinyCNN ({n} held-out Shapes images, layer "
        f"{_LAYER}; threshold: mean Spearman(abs) < 0.5 passes, docs/trust.md):",
        "",
        "| method | verdict |",
        "| --- | --- |",
        *(f"| {m} | {v} |" for m, v in report.verdicts().items()),
        "",
        f"Grad-CAM's pointing game on {len(images)} images against baseline maps:",
        "",
        "| maps | pointing game | verdict |",
        "| --- | ---: | --- |",
        *(f"| {name} | {row.score:.3f} | {row.verdict} |" for name, row in baselines.iterrows()),
    ]
    path = ctx.note("sanity_checks.md", "Sanity-check verdicts of every method, and baselines")
    with atomic_path(path, overwrite=ctx.overwrite) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
