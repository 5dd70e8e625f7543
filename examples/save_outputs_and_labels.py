"""Save a model's outputs, labels and penultimate features over a dataset, then reopen them.

The seed workflow "run the validation set, keep all outputs and labels" without hooks left
behind, ``np.append`` loops or pickles: `featviz.extract` streams everything into a store
(``.npy`` shards + JSON manifest, resumable) and `FeatureSet.open` memory-maps it back.

    python examples/save_outputs_and_labels.py            # 1024 images
    python examples/save_outputs_and_labels.py --fast     # 128 images
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from featviz.datasets import Shapes
from featviz.extraction import FeatureSet, extract
from featviz.models import pretrained_tiny_cnn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("save_outputs_and_labels-out"))
    parser.add_argument("--fast", action="store_true", help="few samples")
    args = parser.parse_args(argv)

    n = 128 if args.fast else 1024
    model = pretrained_tiny_cnn()
    data = Shapes(n, random_state=1)  # held-out images (the model was trained on seed 0)
    loader = DataLoader(data, batch_size=64)  # yields ShapesItem(image, label, box, mask)

    store = args.out / f"features-{n}"  # one store per run size: a rerun reopens it
    # "pool" is the penultimate layer: global-average-pooled features (N, 64, 1, 1)
    fs = extract(model, loader, ["pool"], pool="flatten", store=store, progress=False)

    reopened = FeatureSet.open(store)  # memory-mapped, no pickle involved
    pred = np.asarray(reopened.outputs).argmax(axis=1)
    acc = float((pred == np.asarray(reopened.labels)).mean())
    print(f"extracted {len(fs)} samples into {store}")
    print(f"  outputs {reopened.outputs.shape} {reopened.outputs.dtype}")
    print(f"  labels  {reopened.labels.shape} {reopened.labels.dtype}")
    print(f"  pool    {reopened.layers['pool'].shape} {reopened.layers['pool'].dtype}")
    print(f"accuracy: {acc:.3f}")
    per_class = {
        name: float((pred[reopened.labels == k] == k).mean()) for k, name in enumerate(data.classes)
    }
    summary = {"n": len(reopened), "accuracy": acc, "per_class_accuracy": per_class}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
