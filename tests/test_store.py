"""Tests for featviz._store: the pinned on-disk format, foreign folders, resume checks,
locking, damaged stores and file modes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from featviz.extraction import extract

REFERENCE = Path(__file__).parent / "data" / "store_v1"
# the order the reference loader draws samples in (a fixed list: no RNG whose algorithm
# could change between torch versions); batch 0 is one block of the result, the others
# are scattered, so the merge's copy and scatter paths are both pinned
REFERENCE_ORDER = [0, 1, 2, 3, 9, 4, 7, 5, 8, 6]


def reference_model() -> nn.Sequential:
    """Conv (3 -> 2, 3x3, stride 4, integer weights), ReLU, max-pool, flatten, linear (8 -> 4).

    Inputs and weights are small integers, so every sum is exact in float32 and the bytes
    do not depend on the CPU's summation order.
    """
    conv = nn.Conv2d(3, 2, 3, stride=4, bias=False)
    fc = nn.Linear(8, 4, bias=False)
    with torch.no_grad():
        conv.weight.copy_((torch.arange(54.0).reshape(2, 3, 3, 3) % 5) - 2)
        fc.weight.copy_((torch.arange(32.0).reshape(4, 8) % 3) - 1)
    return nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), fc)


def reference_loader() -> DataLoader:
    """10 integer-valued 3x32x32 images in 3 batches (4, 4, 2) in REFERENCE_ORDER."""
    n = 10
    k = torch.arange(n * 3 * 32 * 32).reshape(n, 3, 32, 32)
    x = ((k * 7 + k // 97) % 11 - 5).float()
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    return DataLoader(TensorDataset(x, y), batch_size=4, sampler=REFERENCE_ORDER)


def write_reference(path: Path) -> None:
    """The store pinned under tests/data/store_v1 (two layers, float16, 3 shards merged)."""
    extract(
        reference_model(),
        reference_loader(),
        ["0", "1"],
        dtype=torch.float16,
        store=path,
        progress=False,
    )


def _normalised_manifest(path: Path) -> dict:
    """The manifest with the fields that legitimately vary between runs blanked out.

    Only ``metadata.featviz_version`` varies (the store has no timestamps, host names
    or absolute paths); everything else must be equal.
    """
    man = json.loads(path.read_text(encoding="utf-8"))
    man["metadata"]["featviz_version"] = "<version>"
    return man


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ------------------------------------------------------------------ pinned format
def test_store_bytes_match_the_pinned_v1_reference(tmp_path):
    write_reference(tmp_path / "s")
    assert _files(tmp_path / "s") == _files(REFERENCE)
    assert _files(REFERENCE) == [
        "data",
        "data/index.npy",
        "data/labels.npy",
        "data/layer0.npy",
        "data/layer1.npy",
        "data/outputs.npy",
        "manifest.json",
    ]
    for name in _files(REFERENCE):
        ref, new = REFERENCE / name, tmp_path / "s" / name
        if name == "manifest.json":
            assert _normalised_manifest(new) == _normalised_manifest(ref)
            # same JSON layout too (indent, key order), once the version is blanked
            ver = json.loads(new.read_text())["metadata"]["featviz_version"]
            old = json.loads(ref.read_text())["metadata"]["featviz_version"]
            assert new.read_text().replace(json.dumps(ver), json.dumps(old)) == ref.read_text()
        elif ref.is_file():
            assert new.read_bytes() == ref.read_bytes(), name
    # the reference holds the numbers worked out independently of the store code
    model, x = reference_model(), reference_loader().dataset.tensors[0]
    with torch.no_grad():
        conv, out = model[0](x).half().numpy(), model(x).half().numpy()
    np.testing.assert_array_equal(np.load(REFERENCE / "data/index.npy"), np.arange(10))
    np.testing.assert_array_equal(np.load(REFERENCE / "data/layer0.npy"), conv)
    np.testing.assert_array_equal(np.load(REFERENCE / "data/layer1.npy"), np.maximum(conv, 0))
    np.testing.assert_array_equal(np.load(REFERENCE / "data/outputs.npy"), out)
    np.testing.assert_array_equal(
        np.load(REFERENCE / "data/labels.npy"), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    )
