"""t-SNE (and PCA) of the built-in model's penultimate features, and of the raw images.

Captures the output of ``flatten`` (the 64-d vector the classifier sees) for held-out
Shapes images, projects it with `featviz.project`, colours points by class, and does
the same for the raw pixels (streamed from the dataset). Writes PNGs into --out.

Usage: python examples/tsne.py [--out DIR] [--fast]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch

import featviz
from featviz.datasets import Shapes
from featviz.models import pretrained_tiny_cnn


def penultimate_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, 64) inputs of the final linear layer, computed in batches."""
    parts = []
    with featviz.capture(model, ["flatten"]) as cap, torch.no_grad():
        for batch in images.split(256):
            model(batch)
            parts.append(cap.activations["flatten"])
    return torch.cat(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tsne-out", help="output folder (default: %(default)s)")
    ap.add_argument("--fast", action="store_true", help="fewer images")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = pretrained_tiny_cnn()
    data = Shapes(256 if args.fast else 2000, random_state=1)
    images, labels = data.tensors()
    names = [data.classes[i] for i in labels.tolist()]
    feats = penultimate_features(model, images)

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    pca = featviz.project(feats, method="pca", labels=names, progress=False)
    featviz.plot_projection(pca, class_names=data.classes, ax=axes[0])
    tsne = featviz.project(feats, labels=names, progress=False)
    featviz.plot_projection(tsne, class_names=data.classes, ax=axes[1])
    fig.suptitle("TinyCNN penultimate features ('flatten', 64-d) of held-out Shapes")
    fig.savefig(out / "tsne_features.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"features: {tsne}")

    # the dataset itself: raw pixels (3*64*64 = 12,288-d), streamed in batches,
    # reduced by IncrementalPCA to 50 dims, then t-SNE; labels come from the items
    raw = featviz.project(data, labels=names, progress=False)
    ax = featviz.plot_projection(raw, class_names=data.classes)
    ax.figure.savefig(out / "tsne_raw_images.png", dpi=110, bbox_inches="tight")
    plt.close(ax.figure)
    print(f"raw images: {raw}")
    print(f"wrote {out / 'tsne_features.png'} and {out / 'tsne_raw_images.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
