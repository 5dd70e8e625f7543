"""Class-correlation heatmap and per-image "attention" maps with threshold labels.

1. Run the built-in TinyCNN on held-out Shapes images, correlate its softmax scores
   across images (classes x classes) and draw the annotated heatmap.
2. Build one attention-like (K, K) map per image, as a label-graph attention layer
   would: row i is a softmax over classes j of the image's standardised logit for j
   plus the dataset-level correlation of classes i and j. `threshold_labels` (midpoint
   rule) then names the class each map singles out; `plot_correlation_maps` saves one
   image per map with those labels in its title.

Run: python examples/correlation.py [--fast] [--out correlation-out]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from featviz import correlation, plot_correlation, plot_correlation_maps, threshold_labels
from featviz.datasets import Shapes
from featviz.models import pretrained_tiny_cnn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("correlation-out"))
    parser.add_argument("--fast", action="store_true", help="fewer images and maps")
    parser.add_argument("--maps", type=int, default=None, help="number of per-image maps")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    model = pretrained_tiny_cnn()
    data = Shapes(64 if args.fast else 512, random_state=1)
    images, labels = data.tensors()
    with torch.no_grad():
        logits = model(images)
    scores = logits.softmax(1)  # (N, K)
    names = list(data.classes)

    # 1. class correlation of the softmax scores over the images
    corr = correlation(scores)  # (K, K) tensor
    # the midpoint rule selects nothing here: a trained classifier's classes correlate
    # about -1/3 with each other, so every column mean is near 0, far below the midpoint
    # (1 + -1/3) / 2. quantile=0.5 names the half of the classes most correlated with the
    # others (the ones the model mixes up most).
    picked = threshold_labels(corr, names, quantile=0.5)
    ax = plot_correlation(
        corr,
        names,
        annot=True,
        vmin=-1,
        vmax=1,
        cmap="RdBu_r",
        title=f"Softmax-score correlation ({len(data)} images)\n"
        f"most correlated with the others (top half): {', '.join(picked) or 'none'}",
    )
    heatmap = args.out / "class_correlation.png"
    ax.figure.savefig(heatmap, dpi=120, bbox_inches="tight")
    plt.close(ax.figure)
    print(f"class correlation -> {heatmap}; most correlated with the others: {picked}")

    # 2. one attention-like map per image: softmax_j(z_j (standardised) + corr_logits[i, j])
    prior = correlation(logits)  # (K, K)
    z = (logits - logits.mean(1, keepdim=True)) / logits.std(1, keepdim=True)
    maps = (z[:, None, :] + prior[None]).softmax(-1)  # (N, K, K), rows sum to 1
    singled = threshold_labels(maps, names)
    hits = sum(s == [names[int(y)]] for s, y in zip(singled, labels, strict=True))
    print(f"maps singling out exactly the true class: {hits}/{len(maps)}")
    n_maps = args.maps if args.maps is not None else (4 if args.fast else 16)
    paths = plot_correlation_maps(
        maps[:n_maps],
        names,
        args.out / "maps",
        overwrite=True,  # the example owns its --out folder: re-runs replace its files
        annot=True,
        vmin=0,
        vmax=1,
        title="Image",
        prefix="attention",
    )
    for path, label, y in zip(paths, singled[:n_maps], labels[:n_maps], strict=True):
        print(f"{path}: {label} (true: {names[int(y)]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
