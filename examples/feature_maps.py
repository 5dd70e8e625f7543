"""Feature maps of the built-in TinyCNN: channel grids, channel sums and overlays.

1. Capture the outputs of ``features.2`` (first block, full resolution), ``features.6``
   (second block, 1/2) and ``features.13`` (last block, 1/4) for held-out Shapes images.
2. Draw every channel of one image's ``features.13`` map plus the channel-sum panel.
3. Sum the channels of each layer, and overlay the sums on the images (batched: one
   call for all images), as input | heatmap | overlay rows and as plain PNG files.
4. Save the last layer's channel-sum maps as grayscale PNGs with `save_image`, and
   check that `load_image` reads one back.

Run: python examples/feature_maps.py [--fast] [--out feature_maps-out]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from featviz.datasets import Shapes
from featviz.featuremaps import (
    normalize,
    overlay,
    plot_feature_grid,
    plot_overlays,
    sum_channels,
)
from featviz.hooks import capture
from featviz.imageio import load_image, save_image
from featviz.models import pretrained_tiny_cnn

LAYERS = ["features.2", "features.6", "features.13"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("feature_maps-out"))
    parser.add_argument("--fast", action="store_true", help="fewer images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    n = 4 if args.fast else 8

    model = pretrained_tiny_cnn()
    data = Shapes(n, random_state=1)
    images, labels = data.tensors()  # (n, 3, 64, 64) in [0, 1]
    with torch.no_grad(), capture(model, LAYERS) as cap:
        pred = model(images).argmax(1)
    for name, act in cap.activations.items():
        print(f"{name}: {tuple(act.shape)}")

    # 2. every channel of the last conv block for image 0, plus their sum
    fig = plot_feature_grid(cap.activations["features.13"][0], max_channels=64)
    fig.savefig(args.out / "grid_features13.png", dpi=100)
    print("wrote", args.out / "grid_features13.png")

    # 3. channel sums of each layer over the images, batched
    titles = [
        f"{data.classes[int(y)]} (pred {data.classes[int(p)]})"
        for y, p in zip(labels, pred, strict=True)
    ]
    for name in LAYERS:
        sums = sum_channels(cap.activations[name])  # (n, h, w)
        fig = plot_overlays(images, sums, titles=titles, alpha=0.5, colorbar=True)
        path = args.out / f"overlays_{name.replace('.', '')}.png"
        fig.savefig(path, dpi=80)
        print("wrote", path)

    sums = sum_channels(cap.activations["features.13"])  # (n, 16, 16)
    pictures = overlay(images, sums, alpha=0.5)  # (n, 64, 64, 3) uint8 tensor
    strip = pictures.permute(1, 0, 2, 3).reshape(64, -1, 3)  # side by side
    save_image(strip.numpy(), args.out / "overlay_strip.png", overwrite=True)

    # 4. maps as grayscale PNGs (min -> black, max -> white), read back
    maps = normalize(sums)  # (n, 16, 16) in [0, 1]
    for i in range(len(maps)):
        save_image(maps[i], args.out / f"sum_{i}.png", overwrite=True)
    tensor, original = load_image(args.out / "sum_0.png", size=None, mean=None, std=None)
    expected = np.floor(maps[0].numpy() * 255 + 0.5).astype(np.uint8)  # to_image's bytes
    exact = np.array_equal(original[..., 0], expected)
    print(f"wrote {len(maps)} channel-sum PNGs; read back {tuple(tensor.shape)}, exact: {exact}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
