"""Demo section: a fresh TinyCNN trained briefly with a Recorder, played back."""

from __future__ import annotations

from featviz.demo_sections._context import DemoContext

ORDER = 75
TITLE = "Watching a model learn"


def run(ctx: DemoContext) -> None:
    """Train a TinyCNN from scratch on small Shapes with a Recorder; timeline and GIF."""
    import torch
    from torch import nn

    from featviz.datasets import Shapes
    from featviz.models import TinyCNN
    from featviz.recorder import Recorder

    steps = ctx.sized(48, 96, 240)
    data = Shapes(ctx.sized(256, 512, 1024), size=32, random_state=2)
    images, labels = data.tensors()
    images, labels = images.to(ctx.device), labels.to(ctx.device)
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG stays as it was
        torch.manual_seed(0)
        model = TinyCNN(width=8).to(ctx.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    probe = (images[:16], labels[:16])
    g = torch.Generator().manual_seed(0)
    rec = Recorder(model, *probe, layers="features.13", every=steps // 6)
    for step in range(steps + 1):
        idx = torch.randint(16, images.shape[0], (32,), generator=g).to(ctx.device)
        opt.zero_grad()
        nn.functional.cross_entropy(model(images[idx]), labels[idx]).backward()
        opt.step()
        rec.step(step)

    shown = [0, 1, 2, 3]
    fig = rec.plot_timeline(index=shown)
    ctx.save_figure(
        fig,
        "recorder_timeline.png",
        f"Grad-CAM of four probe images while a fresh TinyCNN trains ({steps} steps)",
    )
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
    rec.plot_metrics(ax=ax)
    ax.set_title("probe batch (16 images)", fontsize=9)
    ctx.save_figure(fig, "recorder_metrics.png", "Probe accuracy and confidence per step")
    fig = rec.plot_projection_timeline(class_names=list(ctx.data.classes))
    ctx.save_figure(fig, "recorder_projections.png", "Probe features (PCA), aligned across steps")
    path = ctx.note("recorder.gif", "The same Grad-CAMs as an animation, one frame per record")
    rec.animate(path, overwrite=ctx.overwrite, index=shown)
