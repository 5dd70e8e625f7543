"""Tests for the Zarr v3 store backend (featviz._store_zarr): the store contract, extract
into ``store="x.zarr"`` and ``file://`` URLs, resume, refusal, and reading the result with
zarr alone (no featviz), as another tool would."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from featviz.extraction import extract
from featviz.featureset import FeatureSet

zarr = pytest.importorskip("zarr")


class Net(nn.Module):
    """conv 1x1 (1 -> 2, weights 1 and ``w2``), ReLU, flatten, linear 18 -> 3 (fixed)."""

    def __init__(self, w2: float = 2.0, fail_at: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(18, 3, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, w2]).reshape(2, 1, 1, 1))
            self.fc.weight.copy_(torch.arange(54, dtype=torch.float32).reshape(3, 18) / 50)
        self.fail_at, self.calls = fail_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("interrupted")
        return self.fc(self.act(self.conv(x)).flatten(1))


def data(n: int = 11) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 1, 3, 3, generator=g), torch.arange(n) % 3)


def run(store=None, model=None, **kwargs) -> FeatureSet:
    loader = DataLoader(data(), batch_size=4)
    return extract(model or Net(), loader, ["conv", "act"], store=store, progress=False, **kwargs)


def same(a: FeatureSet, b: FeatureSet) -> None:
    assert np.array_equal(a.index, b.index)
    for x, y in [(a.outputs, b.outputs), (a.labels, b.labels)] + [
        (a.layers[k], b.layers[k]) for k in ("conv", "act")
    ]:
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)


def test_zarr_store_keeps_the_store_contract(tmp_path):
    from featviz._store_base import MemoryStore, StoreSpec, backend

    spec = StoreSpec("t", 1, "extract", root=tmp_path / "g.zarr", owned=lambda name: True)
    store, mem = backend("zarr")(spec), MemoryStore(spec)
    assert store.open({"a": 1}) is None and store.load_manifest() is None
    store.write("b.npy", np.arange(6, dtype=np.int16).reshape(3, 2))
    store.write_text("p.txt", "fp\n")
    assert store.names() == ["b.npy", "p.txt"] and store.read_text("p.txt") == "fp\n"
    assert store.read_text("q.txt") is None and store.has("b.npy") and not store.has("c.npy")
    assert store.header("b.npy") == ((3, 2), np.dtype(np.int16))
    assert not store.read("b.npy").flags.writeable
    mem.write("a.npy", np.full((2, 2), 9, dtype=np.int32))
    store.gather("data/c.npy", [(store, "b.npy"), (mem, "a.npy")], [np.array([3, 0, 1]),
                 np.array([2, -1])], 4)  # fmt: skip
    got = store.read("data/c.npy")
    assert got.dtype == np.int32 and got.tolist() == [[2, 3], [4, 5], [9, 9], [0, 1]]
    store.save_manifest({"config": {"a": 1}})
    assert store.load_manifest() == {"config": {"a": 1}, "format": "t", "version": 1}
    store.close()
    assert store.open({"a": 1}) is not None  # the lock was released: resumable
    store.close()
    with pytest.raises(ValueError, match=r"different extract call \(a: stored 1, this call 2"):
        store.open({"a": 2})
    for name in ("b.npy", "p.txt", "data/c.npy", "b.npy"):  # twice: idempotent
        store.delete(name)
    store.remove()
    assert store.names() == [] and store.load_manifest() is None
    assert not (tmp_path / "g.zarr").exists()


def test_a_torn_array_counts_as_not_written(tmp_path):
    from featviz._store_base import StoreSpec, backend

    store = backend("zarr")(StoreSpec("t", 1, "extract", root=tmp_path / "t.zarr"))
    store.write("x.npy", np.arange(4))
    zarr.open_array(tmp_path / "t.zarr" / "x", mode="r+").update_attributes({"complete": False})
    assert not store.has("x.npy") and store.names() == []  # a killed write: rewritten
    with pytest.raises(FileNotFoundError, match="no complete array 'x'"):
        store.read("x.npy")


@pytest.mark.parametrize("url", [False, True])
def test_extract_into_zarr_equals_extract_in_ram(tmp_path, url):
    where = f"file://{tmp_path}/f.zarr" if url else tmp_path / "f.zarr"
    ref = run()
    fs = run(where, pool=None)
    same(fs, ref)
    same(FeatureSet.open(where), ref)
    assert sorted(os.listdir(tmp_path / "f.zarr")) == ["data", "zarr.json"]  # shards merged
    # read without featviz: plain zarr, named dimensions, the manifest as attributes
    g = zarr.open_group(tmp_path / "f.zarr", mode="r")
    assert np.array_equal(g["data/layer0"][:], ref.layers["conv"])
    assert np.array_equal(g["data/index"][:], np.arange(11))
    assert g["data/layer0"].metadata.dimension_names == ("sample", "layer0_1", "layer0_2",
                                                         "layer0_3")  # fmt: skip
    assert g.attrs["featviz"]["config"]["layers"] == ["conv", "act"]


def test_zarr_store_resumes_and_refuses_another_model(tmp_path):
    where = tmp_path / "r.zarr"
    with pytest.raises(RuntimeError, match="interrupted"):
        run(where, model=Net(fail_at=3))
    stored = sorted(p.name for p in (where / "rank00000").iterdir())
    assert "000001-index" in stored and "000002-index" not in stored
    with pytest.raises(ValueError, match="weights"):
        run(where, model=Net(w2=3.0))
    model = Net()
    fs = run(where, model=model)
    assert model.calls == 1  # batches 0 and 1 were skipped
    same(fs, run())


def test_a_foreign_zarr_group_and_a_url_without_zarr_are_refused(tmp_path):
    zarr.create_array(tmp_path / "user.zarr", name="mine", shape=(2,), dtype="int8")
    with pytest.raises(ValueError, match="featviz did not write"):
        run(tmp_path / "user.zarr")
    assert np.array_equal(zarr.open_array(tmp_path / "user.zarr" / "mine")[:], [0, 0])
    with pytest.raises(ValueError, match="must be a Zarr store"):
        run("s3://bucket/features")


def test_npy_stores_stay_readable_beside_zarr(tmp_path):
    same(FeatureSet.open(run(tmp_path / "old").path), run())


def test_the_docs_readers_pandas_and_xarray(tmp_path):
    """The snippets of docs/scale.md ("Reading the result without featviz")."""
    xr = pytest.importorskip("xarray")
    pd = pytest.importorskip("pandas")
    ref = run(tmp_path / "feats.zarr")
    path = str(tmp_path / "feats.zarr")
    # --- docs/scale.md: xarray
    ds = xr.open_zarr(path, group="data", consolidated=False)
    # --- docs/scale.md: pandas
    g = zarr.open_group(path, mode="r")
    df = pd.DataFrame(g["data/outputs"][:], index=g["data/index"][:])
    df["label"] = g["data/labels"][:]
    names = g.attrs["featviz"]["config"]["layers"]  # layer0 -> "conv", layer1 -> "act"
    # ---
    assert names == ["conv", "act"] and ds.sizes["sample"] == 11
    assert np.array_equal(ds["layer1"].values, ref.layers["act"])
    assert ds["layer1"].dims == ("sample", "layer1_1", "layer1_2", "layer1_3")
    assert np.array_equal(df.to_numpy()[:, :3], ref.outputs) and df["label"].tolist() == [
        i % 3 for i in range(11)
    ]


def test_recorder_writes_and_reopens_a_zarr_store(tmp_path):
    from featviz.recorder import Recorder

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3),
    )  # fmt: skip
    x = torch.rand(4, 3, 8, 8)
    store = tmp_path / "rec.zarr"
    rec = Recorder(model, x, layers="1", every=1, store=store)
    for step in (0, 1):
        rec.step(step)
        with torch.no_grad():
            model[-1].weight.add_(0.5)
    rec.close()
    back = Recorder.open(store)
    assert back.steps_.tolist() == [0, 1]
    np.testing.assert_array_equal(back.heatmaps_["gradcam"], rec.heatmaps_["gradcam"])
    np.testing.assert_array_equal(back.outputs_, rec.outputs_)
    # the same store read by zarr itself, without featviz
    group = zarr.open_group(str(store), mode="r")
    assert len(list(group.array_keys())) >= 4
