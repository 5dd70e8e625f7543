"""Compare what three layers of the built-in model see, with PCA of their features.

``plot_layer_projections`` projects each layer separately to 2-D and overlays them:
with ``sample=i`` one image's (C, H, W) feature map becomes H*W points (one per spatial
position) of dimension C; with ``sample=None`` each image is one point. Writes PNGs
into --out.

Usage: python examples/pca_layers.py [--out DIR] [--fast]
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

LAYERS = ["features.6", "features.10", "features.13"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="pca_layers-out", help="output folder (default: %(default)s)")
    ap.add_argument("--fast", action="store_true", help="fewer images")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = pretrained_tiny_cnn()
    data = Shapes(64 if args.fast else 400, random_state=1)
    images, labels = data.tensors()
    with featviz.capture(model, LAYERS) as cap, torch.no_grad():
        model(images)
    feats = {name: cap.activations[name] for name in LAYERS}
    for name, value in feats.items():
        print(f"{name}: {tuple(value.shape)}")

    # one image: every spatial position of each layer is a point of dimension C
    fig, (ax_img, ax) = plt.subplots(1, 2, figsize=(12, 5.5), width_ratios=[1, 2])
    ax_img.imshow(images[0].permute(1, 2, 0).numpy())
    ax_img.set_title(f"image 0: {data.classes[int(labels[0])]}")
    ax_img.axis("off")
    featviz.plot_layer_projections(feats, sample=0, ax=ax)
    fig.savefig(out / "pca_layers_one_image.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    # across images: each image is one point per layer, marker = class
    names = [data.classes[i] for i in labels.tolist()]
    ax = featviz.plot_layer_projections(feats, labels=names, class_names=data.classes)
    ax.figure.savefig(out / "pca_layers_images.png", dpi=110, bbox_inches="tight")
    plt.close(ax.figure)
    print(f"wrote {out / 'pca_layers_one_image.png'} and {out / 'pca_layers_images.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
