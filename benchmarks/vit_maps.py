"""Judge the transformer-native maps on a trained ViT: the numbers of ``docs/trust.md``.

Model: `featviz.models_vit.pretrained_tiny_vit()` (trained on 64 px Shapes on first use,
then cached). Data: 256 held-out ``Shapes(256, size=64, random_state=1)``, target the
predicted class. Methods: ``rollout`` (mean head fusion, no discard), ``relevance``
(gradient-weighted attention relevance, Chefer et al. 2021) and ``gradcam`` on the
first norm of the last block (``blocks.2.norm1``, tokens read as the 8x8 grid).

Metrics, per method: the pointing game with the Shapes boxes (tolerance 0), deletion
AUC (lower is better) and insertion AUC (higher is better) with soft-max probabilities,
50 steps, zero baseline; and the class-sensitivity check: the mean over images of the
Spearman correlation between the map for the predicted class and the map for another
class (the next one, cyclically), at the token grid's 8x8 size. Near 1: the map does
not depend on the class (rollout is class-agnostic by construction).

Usage: ``python benchmarks/vit_maps.py [--n 256]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from scipy.stats import spearmanr

import featviz
from featviz.datasets import Shapes
from featviz.metrics import deletion_auc, insertion_auc, pointing_game
from featviz.models_vit import pretrained_tiny_vit

#: method -> CAM layers (None: every attention module)
METHODS: dict[str, str | None] = {
    "rollout": None,
    "relevance": None,
    "gradcam": "blocks.2.norm1",
}


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of the Spearman correlation of two (N, h, w) map batches."""
    values = []
    for x, y in zip(a.flatten(1).numpy(), b.flatten(1).numpy(), strict=True):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            values.append(float(np.array_equal(x, y)))
            continue
        values.append(float(spearmanr(x, y).statistic))
    return float(np.mean(values))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256, help="held-out images (default 256)")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    model = pretrained_tiny_vit()
    print(f"model ready in {time.perf_counter() - start:.1f} s (load {load:.1f})")
    data = Shapes(args.n, size=64, random_state=1)
    images, labels = data.tensors()
    with torch.no_grad():
        pred = model(images).argmax(1)
    other = (pred + 1) % len(data.classes)
    print(f"held-out accuracy {float((pred == labels).float().mean()):.3f} on {args.n} Shapes")
    print(
        "| method | pointing game | deletion AUC (lower better) | insertion AUC | "
        "Spearman(pred, other class) |"
    )
    print("|---|---|---|---|---|")
    for method, layers in METHODS.items():
        cam = featviz.CAM(model, layers, method=method, progress=False)
        maps = cam(images, pred)
        small = featviz.CAM(model, layers, method=method, size=None, progress=False)
        rho = spearman(small(images, pred), small(images, other))
        hit = pointing_game(maps, data.boxes)
        dele = deletion_auc(model, images, maps, pred).auc.mean()
        ins = insertion_auc(model, images, maps, pred).auc.mean()
        print(f"| {method} | {hit:.3f} | {float(dele):.3f} | {float(ins):.3f} | {rho:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
