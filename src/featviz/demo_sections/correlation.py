"""Demo section: class-correlation heatmap of the model's scores, with threshold labels."""

from __future__ import annotations

import torch

from featviz.demo_sections._context import DemoContext

ORDER = 50
TITLE = "Correlation heatmaps"


def run(ctx: DemoContext) -> None:
    """Correlate the softmax scores over ``ctx.data`` and draw one attention-like map."""
    import matplotlib.pyplot as plt

    from featviz.correlations import correlation, plot_correlation, threshold_labels

    data = ctx.data
    names = list(data.classes)
    images, labels = data.tensors()
    with torch.no_grad():
        logits = ctx.model(images.to(ctx.device))
    scores = logits.softmax(1)
    corr = correlation(scores)  # (K, K), on ctx.device
    picked = threshold_labels(corr, names)

    # one image's label-attention map: softmax_j(standardised logit_j + corr_logits[i, j])
    prior = correlation(logits)
    z = (logits - logits.mean(1, keepdim=True)) / logits.std(1, keepdim=True)
    maps = (z[:, None, :] + prior[None]).softmax(-1)  # (N, K, K)
    singled = threshold_labels(maps, names)
    hits = sum(s == [names[int(y)]] for s, y in zip(singled, labels, strict=True))

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    plot_correlation(
        corr,
        names,
        annot=True,
        vmin=-1,
        vmax=1,
        cmap="RdBu_r",
        ax=left,
        title=f"Softmax-score correlation ({len(data)} images)\n"
        f"labels above the midpoint: {', '.join(picked) or 'none'}",
    )
    plot_correlation(
        maps[0],
        names,
        annot=True,
        vmin=0,
        vmax=1,
        ax=right,
        title=f"Label attention, image 0 (true: {names[int(labels[0])]})\n"
        f"labels above the midpoint: {', '.join(singled[0]) or 'none'}",
    )
    ctx.save_figure(
        fig,
        "correlation_classes.png",
        "Left: correlation of TinyCNN softmax scores between classes over the held-out "
        f"images; labels above the midpoint (max + min) / 2: {picked or 'none'}. Right: an "
        "attention-like map softmax_j(z_j + corr(logits)[i, j]) for one image; its column "
        f"means single out exactly the true class for {hits}/{len(maps)} images.",
    )
