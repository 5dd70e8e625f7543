"""Tests for featviz.extraction: in-RAM and on-disk extraction, resume, errors, DDP."""

from __future__ import annotations

import errno
import json
import os
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import featviz._store as fstore
from conftest import assert_no_hooks, no_hooks
from featviz.extraction import FeatureSet, extract


# ------------------------------------------------------------------ fixed-weight models
class Lin(nn.Module):
    """fc1 (2 -> 3) with rows (1, 0), (0, 1), (1, 1); ReLU; fc2 (3 -> 2) rows (1, 1, 1), (1, -1, 0).

    For x = (i, -1): fc1 = (i, -1, i - 1); act = (i, 0, max(i - 1, 0));
    output = (i + max(i - 1, 0), i).
    """

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(3, 2, bias=False)
        self.unused = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            self.fc2.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0]]))
            self.unused.weight.zero_()  # fixed: a store refuses a model with other weights
            self.unused.bias.zero_()
        self.fail_at = fail_at
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("interrupted")
        return self.fc2(self.act(self.fc1(x)))


def lin_data(n: int = 7) -> TensorDataset:
    i = torch.arange(n, dtype=torch.float32)
    x = torch.stack([i, -torch.ones(n)], dim=1)
    return TensorDataset(x, torch.arange(n) % 3)


def lin_expected(n: int = 7) -> dict[str, np.ndarray]:
    i = np.arange(n, dtype=np.float32)
    act = np.stack([i, np.zeros(n, np.float32), np.maximum(i - 1, 0)], axis=1)
    return {
        "fc1": np.stack([i, -np.ones(n, np.float32), i - 1], axis=1),
        "act": act,
        "out": np.stack([i + np.maximum(i - 1, 0), i], axis=1),
        "labels": np.arange(n) % 3,
    }


def conv_net() -> nn.Sequential:
    """1x1 conv with channel weights 1 and 2 (no bias), then flatten."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 2.0]).reshape(2, 1, 1, 1))
    return nn.Sequential(conv, nn.Flatten())


def conv_data(n: int = 5) -> TensorDataset:
    base = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x = torch.stack([k * base for k in range(n)])[:, None]  # (n, 1, 2, 2)
    return TensorDataset(x, torch.arange(n))


def assert_same(a: FeatureSet, b: FeatureSet) -> None:
    assert list(a.layers) == list(b.layers)
    for k in a.layers:
        assert a.layers[k].dtype == b.layers[k].dtype
        np.testing.assert_array_equal(a.layers[k], b.layers[k])
    for name in ("outputs", "labels", "index"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------ in RAM
def test_values_by_hand_with_partial_last_batch():
    model = Lin()
    loader = DataLoader(lin_data(7), batch_size=3)
    fs = extract(model, loader, ["fc1", "act"], progress=False)
    exp = lin_expected(7)
    assert len(fs) == 7 and list(fs.layers) == ["fc1", "act"]
    np.testing.assert_array_equal(fs.layers["fc1"], exp["fc1"])
    np.testing.assert_array_equal(fs["act"], exp["act"])
    np.testing.assert_array_equal(fs.outputs, exp["out"])
    np.testing.assert_array_equal(fs.labels, exp["labels"])
    assert fs.labels.dtype == np.int64 and fs.outputs.dtype == np.float32
    np.testing.assert_array_equal(fs.index, np.arange(7))
    assert fs.metadata["model_class"].endswith("test_extraction.Lin")
    assert fs.metadata["layers"] == ["fc1", "act"] and fs.metadata["index_source"] == "sampler"
    assert model.calls == 3 and no_hooks(model)


def test_layers_none_keeps_outputs_labels_index():
    fs = extract(Lin(), DataLoader(lin_data(4), batch_size=4), progress=False)
    assert fs.layers == {}
    np.testing.assert_array_equal(fs.outputs, lin_expected(4)["out"])
    np.testing.assert_array_equal(fs.labels, [0, 1, 2, 0])


@pytest.mark.parametrize(
    ("reduce", "row"),
    [
        (None, lambda k: k * np.array([[[1, 2], [3, 4]], [[2, 4], [6, 8]]], np.float32)),
        ("flatten", lambda k: k * np.array([1, 2, 3, 4, 2, 4, 6, 8], np.float32)),
        ("mean", lambda k: k * np.array([2.5, 5.0], np.float32)),
        ("max", lambda k: k * np.array([4.0, 8.0], np.float32)),
        (lambda t: t[:, 1, 0, :], lambda k: k * np.array([2.0, 4.0], np.float32)),
    ],
    ids=["none", "flatten", "mean", "max", "callable"],
)
def test_reduce_on_device(reduce, row):
    fs = extract(
        conv_net(), DataLoader(conv_data(5), batch_size=2), "0", pool=reduce, progress=False
    )
    expected = np.stack([row(k) for k in range(5)])
    np.testing.assert_array_equal(fs.layers["0"], expected)
    # outputs are never reduced
    assert fs.outputs.shape == (5, 8)


def test_dtype_downcast_applies_to_layers_and_outputs_not_labels():
    fs = extract(
        conv_net(),
        DataLoader(conv_data(5), batch_size=2),
        ["0"],
        pool="mean",
        dtype=torch.float16,
        progress=False,
    )
    assert fs.layers["0"].dtype == np.float16 and fs.outputs.dtype == np.float16
    assert fs.labels.dtype == np.int64
    np.testing.assert_array_equal(fs.layers["0"][3], np.array([7.5, 15.0], np.float16))
    fs2 = extract(
        conv_net(), DataLoader(conv_data(5), batch_size=2), ["0"], dtype="float64", progress=False
    )
    assert fs2.layers["0"].dtype == np.float64


def test_mode_restored_and_hooks_removed_also_on_error():
    model = Lin(fail_at=2).train()
    model.fc2.eval()
    model.fc1.weight.requires_grad_(False)
    flags = [m.training for m in model.modules()]
    seen: list[tuple[bool, bool]] = []
    model.fc1.register_forward_pre_hook(
        lambda m, a: seen.append((m.training, torch.is_grad_enabled()))
    )
    with pytest.raises(RuntimeError, match="interrupted"):
        extract(model, DataLoader(lin_data(7), batch_size=3), ["fc1", "act"], progress=False)
    assert seen == [(False, False)]  # ran in eval mode without grad
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True]
    assert all(p.grad is None for p in model.parameters())
    model.fc1._forward_pre_hooks.clear()
    assert_no_hooks(model)


def test_shapes_namedtuple_batches_with_builtin_model(tiny_model, shapes_test):
    loader = DataLoader(shapes_test, batch_size=64)
    fs = extract(tiny_model, loader, ["features.13", "pool"], pool="flatten", progress=False)
    assert fs.layers["features.13"].shape == (256, 64 * 16 * 16)
    assert fs.layers["pool"].shape == (256, 64)
    np.testing.assert_array_equal(fs.labels, shapes_test.labels.numpy())
    # pooled features are the mean of the last feature maps
    last = fs.layers["features.13"].reshape(256, 64, -1).mean(axis=2)
    np.testing.assert_allclose(fs.layers["pool"], last, rtol=1e-5, atol=1e-6)
    acc = float((fs.outputs.argmax(1) == fs.labels).mean())
    assert acc > 0.8
    assert tiny_model.training is False


def test_shuffled_loader_with_workers_returns_dataset_order():
    ds = lin_data(9)
    ref = extract(Lin(), DataLoader(ds, batch_size=2), ["act"], progress=False)
    g = torch.Generator().manual_seed(3)
    shuffled = DataLoader(ds, batch_size=2, shuffle=True, generator=g, num_workers=1)
    fs = extract(Lin(), shuffled, ["act"], progress=False)
    assert_same(ref, fs)


def test_target_kinds_and_generic_iterables():
    x = lin_data(4).tensors[0]
    # plain list of (input, list-of-int target): counted index
    batches = [(x[:2], [5, 6]), (x[2:], [7, 8])]
    fs = extract(Lin(), batches, ["fc1"], progress=False)
    np.testing.assert_array_equal(fs.labels, [5, 6, 7, 8])
    np.testing.assert_array_equal(fs.index, [0, 1, 2, 3])
    assert fs.metadata["index_source"] == "count"
    # string targets and tensor-only batches
    fs = extract(Lin(), [(x[:2], ["a", "bb"]), (x[2:], ["ccc", "d"])], progress=False)
    np.testing.assert_array_equal(fs.labels, ["a", "bb", "ccc", "d"])
    fs = extract(Lin(), [x[:3], x[3:]], progress=False)
    assert fs.labels is None
    np.testing.assert_array_equal(fs.outputs, lin_expected(4)["out"])
    fs = extract(Lin(), DataLoader(lin_data(7), batch_size=2), max_batches=2, progress=False)
    np.testing.assert_array_equal(fs.index, [0, 1, 2, 3])


def test_bad_inputs_raise_clear_errors():
    loader = DataLoader(lin_data(4), batch_size=2)
    with pytest.raises(TypeError, match=r"Batch 0 is a list whose first element is a str"):
        extract(Lin(), [["a", "b"]], progress=False)
    with pytest.raises(TypeError, match="'loader'"):
        extract(Lin(), torch.zeros(3, 2), progress=False)
    with pytest.raises(TypeError, match="'model'"):
        extract("model", loader, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'unused' produced nothing for batch 0"):
        extract(Lin(), loader, ["unused"], progress=False)
    with pytest.raises(ValueError, match="Closest valid names"):
        extract(Lin(), loader, ["fc3"], progress=False)
    with pytest.raises(ValueError, match=r"'pool'.*Got 'median' instead"):
        extract(Lin(), loader, ["fc1"], pool="median", progress=False)
    with pytest.raises(ValueError, match="'dtype'"):
        extract(Lin(), loader, dtype=torch.int8, progress=False)
    with pytest.raises(ValueError, match=r"'max_batches'.*\[1, inf\).*Got 0 instead"):
        extract(Lin(), loader, max_batches=0, progress=False)
    with pytest.raises(ValueError, match=r"'device'.*move the model"):
        extract(Lin(), loader, device="meta", progress=False)
    with pytest.raises(ValueError, match="yielded no batches"):
        extract(Lin(), [], progress=False)
    with pytest.raises(ValueError, match="one row per sample"):
        extract(Lin(), loader, ["fc1"], pool=lambda t: t.sum(), progress=False)
    with pytest.raises(ValueError, match="target has shape"):
        extract(Lin(), [(lin_data(4).tensors[0], [1, 2])], progress=False)
    with pytest.raises(TypeError, match="Python objects"):
        extract(Lin(), [(lin_data(2).tensors[0], [{"a": 1}, None])], progress=False)


# ------------------------------------------------------------------ FeatureSet files
def test_npz_and_pickle_round_trips(tmp_path):
    fs = extract(Lin(), DataLoader(lin_data(5), batch_size=2), ["fc1", "act"], progress=False)
    path = fs.save_npz(tmp_path / "f.npz")
    assert path == tmp_path / "f.npz"
    with np.load(path, allow_pickle=False) as z:  # loads without pickle
        assert sorted(z.files) == ["__featviz__", "index", "labels", "layer0", "layer1", "outputs"]
    back = FeatureSet.load_npz(path)
    assert_same(fs, back)
    assert back.metadata == json.loads(json.dumps(fs.metadata))
    with pytest.raises(FileExistsError):
        fs.save_npz(path)
    fs.save_npz(path, overwrite=True, compress=True)
    assert_same(fs, FeatureSet.load_npz(path))

    pk = fs.save_pickle(tmp_path / "f.pkl")
    with pytest.raises(ValueError, match=r"trusted=True.*executes code"):
        FeatureSet.load_pickle(pk)
    assert_same(fs, FeatureSet.load_pickle(pk, trusted=True))
    with open(pk, "rb") as f:
        assert pickle.load(f)["format"] == "featviz.featureset"
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ValueError, match="not written by"):
        FeatureSet.load_pickle(other, trusted=True)
    with pytest.raises(FileNotFoundError):
        FeatureSet.load_npz(tmp_path / "missing.npz")


def test_featureset_validation():
    with pytest.raises(ValueError, match="same number of rows"):
        FeatureSet({"a": np.zeros((3, 2))}, outputs=np.zeros((4, 1)))
    fs = FeatureSet({"a": np.zeros((3, 2))})
    np.testing.assert_array_equal(fs.index, [0, 1, 2])
    with pytest.raises(KeyError, match="has no layer 'b'"):
        fs["b"]
    assert "a" in fs and len(fs) == 3


# ------------------------------------------------------------------ store
def test_store_matches_ram_and_is_memory_mapped(tmp_path):
    loader = DataLoader(lin_data(7), batch_size=3)
    ram = extract(Lin(), loader, ["fc1", "act"], progress=False)
    fs = extract(Lin(), loader, ["fc1", "act"], store=tmp_path / "s", progress=False)
    assert_same(ram, fs)
    assert isinstance(fs.layers["fc1"], np.memmap) and fs.path == tmp_path / "s"
    in_ram = [ram.index, ram.outputs, ram.labels, *ram.layers.values()]
    assert ram.path is None and all(a.flags.writeable and a.flags.owndata for a in in_ram)
    files = sorted(str(p.relative_to(tmp_path / "s")) for p in (tmp_path / "s").rglob("*"))
    assert files == [
        "data",
        "data/index.npy",
        "data/labels.npy",
        "data/layer0.npy",
        "data/layer1.npy",
        "data/outputs.npy",
        "manifest.json",
    ]
    # the merged files are plain .npy, readable without featviz
    np.testing.assert_array_equal(np.load(tmp_path / "s/data/layer1.npy"), lin_expected()["act"])
    man = json.loads((tmp_path / "s/manifest.json").read_text())
    assert man["complete"] is True and man["n"] == 7
    assert man["config"]["layers"] == ["fc1", "act"] and man["config"]["batch_size"] == 3
    assert man["fields"]["layer0"] == {"file": "data/layer0.npy", "shape": [7, 3], "dtype": "<f4"}
    assert_same(ram, FeatureSet.open(tmp_path / "s"))
    assert_same(ram, FeatureSet.open(tmp_path / "s", mmap=False))
    # the same call again opens the finished store without running the model
    again = Lin()
    assert_same(ram, extract(again, loader, ["fc1", "act"], store=tmp_path / "s", progress=False))
    assert again.calls == 0


def test_resume_after_interruption_is_exact(tmp_path):
    loader = DataLoader(lin_data(11), batch_size=2)  # 6 batches
    ref = extract(Lin(), loader, ["act"], store=tmp_path / "ref", progress=False)
    store = tmp_path / "s"
    with pytest.raises(RuntimeError, match="interrupted"):
        extract(Lin(fail_at=4), loader, ["act"], store=store, progress=False)
    shards = sorted(p.name for p in (store / "rank00000").glob("*-index.npy"))
    assert shards == ["000000-index.npy", "000001-index.npy", "000002-index.npy"]
    man = json.loads((store / "rank00000/manifest.json").read_text())
    assert man["complete"] is False
    with pytest.raises(ValueError, match="incomplete"):
        FeatureSet.open(store)
    resumed = Lin()
    fs = extract(resumed, loader, ["act"], store=store, progress=False)
    assert resumed.calls == 3  # only the 3 unfinished batches ran
    assert_same(ref, fs)
    assert not (store / "rank00000").exists()  # shards merged, then removed


def test_open_merges_finished_ranks_when_merge_was_interrupted(tmp_path, monkeypatch):
    loader = DataLoader(lin_data(5), batch_size=2)
    ref = extract(Lin(), loader, ["act"], progress=True)

    def broken(top, ranks):
        raise OSError(errno.EIO, "merge interrupted")

    with monkeypatch.context() as mp:
        mp.setattr(fstore, "merge_store", broken)
        with pytest.raises(OSError, match="merge interrupted"):
            extract(Lin(), loader, ["act"], store=tmp_path / "s", progress=False)
    assert not (tmp_path / "s/manifest.json").exists()
    assert_same(ref, FeatureSet.open(tmp_path / "s"))  # the reader merges the finished ranks


def test_resume_generic_iterable(tmp_path):
    x = lin_data(6).tensors[0]
    batches = [(x[i : i + 2], [i, i + 1]) for i in range(0, 6, 2)]
    ref = extract(Lin(), batches, ["fc1"], progress=False)
    with pytest.raises(RuntimeError):
        extract(Lin(fail_at=3), batches, ["fc1"], store=tmp_path / "s", progress=False)
    m = Lin()
    fs = extract(m, batches, ["fc1"], store=tmp_path / "s", progress=False)
    assert m.calls == 1
    assert_same(ref, fs)


def test_resume_with_other_sample_order_is_refused(tmp_path):
    ds = lin_data(8)
    with pytest.raises(RuntimeError):
        extract(Lin(fail_at=3), DataLoader(ds, batch_size=2), store=tmp_path / "s", progress=False)
    shuffled = DataLoader(
        ds, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(1)
    )
    with pytest.raises(ValueError, match="batch 0 of the loader now holds other samples"):
        extract(Lin(), shuffled, store=tmp_path / "s", progress=False)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_incompatible_store_is_refused_and_left_untouched(tmp_path):
    loader = DataLoader(lin_data(5), batch_size=2)
    store = tmp_path / "s"
    extract(Lin(), loader, ["fc1"], store=store, progress=False)
    before = _snapshot(store)
    with pytest.raises(ValueError, match=r"different extract call \(layers: stored \['fc1'\]"):
        extract(Lin(), loader, ["act"], store=store, progress=False)
    with pytest.raises(ValueError, match="reduce: stored None, this call 'mean'"):
        extract(Lin(), loader, ["fc1"], pool="mean", store=store, progress=False)
    assert _snapshot(store) == before
    # an interrupted store is protected the same way
    part = tmp_path / "p"
    with pytest.raises(RuntimeError):
        extract(Lin(fail_at=2), loader, ["fc1"], store=part, progress=False)
    before = _snapshot(part)
    with pytest.raises(ValueError, match="batch_size: stored 2, this call 3"):
        extract(Lin(), DataLoader(lin_data(5), batch_size=3), ["fc1"], store=part, progress=False)
    assert _snapshot(part) == before
    # a foreign non-empty folder and a file are refused
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a featviz store"):
        extract(Lin(), loader, store=tmp_path / "foreign", progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="names a file"):
        extract(Lin(), loader, store=tmp_path / "file", progress=False)
    with pytest.raises(FileNotFoundError, match="no featviz store"):
        FeatureSet.open(tmp_path / "foreign")


def test_full_disk_keeps_earlier_shards_and_resumes(tmp_path, monkeypatch):
    loader = DataLoader(lin_data(9), batch_size=2)  # 5 batches x 4 fields
    ref = extract(Lin(), loader, ["fc1"], progress=False)
    real_save = np.save
    calls = {"n": 0}

    def failing_save(file, arr, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 9:  # the 10th file: batch 2's second field
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(file, arr, *args, **kwargs)

    store = tmp_path / "s"
    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match=r"no space left on device.*intact.*resume") as exc:
        extract(Lin(), loader, ["fc1"], store=store, progress=False)
    assert exc.value.errno == errno.ENOSPC
    monkeypatch.setattr(np, "save", real_save)
    rank = store / "rank00000"
    assert not list(rank.glob(".*"))  # no temp files left behind
    assert sorted(p.name for p in rank.glob("*-index.npy")) == [
        "000000-index.npy",
        "000001-index.npy",
    ]
    for b in range(2):  # finished shards hold exactly the right rows
        np.testing.assert_array_equal(
            np.load(rank / f"000{b:03d}-layer0.npy"), ref.layers["fc1"][2 * b : 2 * b + 2]
        )
    fs = extract(Lin(), loader, ["fc1"], store=store, progress=False)
    assert_same(ref, fs)


def test_store_peak_memory_flat_in_n(tmp_path):
    row = 2048 * 2 * 4  # bytes per output row: (B, 4096) float32 = 16 KiB

    class Wide(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.repeat(1, 2048)

    def peak(n: int, store: Path | None) -> int:
        x = torch.ones(n, 2)
        loader = DataLoader(TensorDataset(x, torch.zeros(n)), batch_size=16)
        tracemalloc.start()
        try:
            extract(Wide(), loader, store=store, progress=False)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(64, tmp_path / "a"), peak(1024, tmp_path / "b")
    ram_large = peak(1024, None)
    assert ram_large > 1024 * row  # the RAM path holds every row (numpy allocations traced)
    # the store path only keeps an int64 index per sample for the merge: < 2 % of a row
    per_sample = (large - small) / (1024 - 64)
    assert per_sample < 0.02 * row, (small, large, per_sample)
    assert large < 16 * row * 8, large  # a few shards' worth, not N rows


_KILLED_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
from torch.utils.data import DataLoader
from test_extraction import Lin, extract, lin_data


class Stalling(type(lin_data())):
    def __getitem__(self, i):
        if i == 4:  # batch 2: batches 0 and 1 are stored, then the process is killed
            time.sleep(600)
        return super().__getitem__(i)


data = lin_data()
data.__class__ = Stalling
extract(Lin(), DataLoader(data, batch_size=2), ["fc1", "act"], store={store!r}, progress=False)
"""


def test_sigkill_mid_run_leaves_a_store_that_resumes_exactly(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    store = tmp_path / "s"
    code = _KILLED_RUN.format(tests=str(Path(__file__).parent), store=str(store))
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 120
        while not (store / "rank00000" / "000001-index.npy").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (store / "rank00000.lock").exists()  # left behind by the killed writer
    assert not (store / "manifest.json").exists()
    loader, model, runs = DataLoader(lin_data(), batch_size=2), Lin(), []
    model.register_forward_hook(lambda *args: runs.append(1))
    fs = extract(model, loader, ["fc1", "act"], store=store, progress=False)
    assert len(runs) == 2  # batches 2 and 3 of 4: the two stored ones are kept
    assert_same(fs, extract(Lin(), loader, ["fc1", "act"], progress=False))
    assert sorted(p.name for p in store.iterdir()) == ["data", "manifest.json"]


# ------------------------------------------------------------------ distributed
def _ddp_worker(rank: int, world: int, tmp: str, shuffle: bool) -> None:
    import torch.distributed as dist
    from torch.utils.data.distributed import DistributedSampler

    dist.init_process_group("gloo", init_method=f"file://{tmp}/rdzv", rank=rank, world_size=world)
    try:
        listing: dict[str, list[str]] = {}
        real_merge = fstore.merge_store

        def spy(top, ranks) -> dict:
            root = top.path
            listing["files"] = sorted(str(p.relative_to(root)) for p in root.rglob("*.npy"))
            return real_merge(top, ranks)

        fstore.merge_store = spy
        ds = lin_data(7)  # 7 samples on 2 ranks: DistributedSampler pads one duplicate
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=shuffle, seed=5)
        loader = DataLoader(ds, batch_size=2, sampler=sampler)
        fs = extract(Lin(), loader, ["act"], store=f"{tmp}/store", progress=False)
        fs.save_npz(f"{tmp}/rank{rank}.npz")
        Path(f"{tmp}/listing{rank}.json").write_text(json.dumps(listing))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("shuffle", [True])
def test_ddp_two_processes_gloo(tmp_path, shuffle):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path), shuffle), nprocs=2, join=True)
    ref = extract(Lin(), DataLoader(lin_data(7), batch_size=2), ["act"], progress=False)
    merged = FeatureSet.open(tmp_path / "store")
    assert_same(ref, merged)
    np.testing.assert_array_equal(merged.index, np.arange(7))
    assert merged.metadata["world_size"] == 2 and merged.metadata["duplicates_dropped"] == 1
    for r in range(2):  # every rank got the merged set
        assert_same(ref, FeatureSet.load_npz(tmp_path / f"rank{r}.npz"))
    # rank 0 merged shards that each rank had written under its own folder (2 batches each)
    files = json.loads((tmp_path / "listing0.json").read_text())["files"]
    for r in range(2):
        mine = [f for f in files if f.startswith(f"rank{r:05d}/")]
        assert sorted(mine) == sorted(
            f"rank{r:05d}/{b:06d}-{k}.npy"
            for b in range(2)
            for k in ("index", "labels", "layer0", "outputs")
        )
    assert json.loads((tmp_path / "listing1.json").read_text()) == {}
    assert sorted(os.listdir(tmp_path / "store")) == ["data", "manifest.json"]


def test_reduce_avg_is_a_deprecated_alias_of_mean():
    loader = [(torch.ones(2, 2), torch.tensor([0, 1]))]
    model = torch.nn.Sequential(torch.nn.Unflatten(1, (2, 1, 1)))
    with pytest.warns(FutureWarning, match="pool='mean'"):
        old = extract(model, loader, ["0"], pool="avg", progress=False)
    # `reduce` was the old name of `pool` (it sums channels in sum_channels)
    with pytest.warns(FutureWarning, match="'reduce' parameter of extract is renamed 'pool'"):
        renamed = extract(model, loader, ["0"], reduce="mean", progress=False)
    assert np.array_equal(renamed.layers["0"], old.layers["0"])
    new = extract(model, loader, ["0"], pool="mean", progress=False)
    assert np.array_equal(old.layers["0"], new.layers["0"])
    assert old.layers["0"].shape == (2, 2)


# --------------------------------------------------------------------------------------
# transformer tokens and outputs that are not one tensor (issue 15)
# --------------------------------------------------------------------------------------
class _Tokens(nn.Module):
    """(N, 2) -> tokens (N, T=3, C=4) with known values -> logits (N, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(2, 12)
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor):
        tokens = self.embed(x).view(-1, 3, 4)
        return self.head(tokens[:, 0])


def test_reduce_pools_tokens_never_channels():
    torch.manual_seed(0)
    model = _Tokens()
    x = torch.randn(6, 2)
    tokens = model.embed(x).detach().view(6, 3, 4)
    loader = DataLoader(TensorDataset(x), batch_size=4)

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model
            self.tok = nn.Identity()

        def forward(self, x):
            return self.inner.head(self.tok(self.inner.embed(x).view(-1, 3, 4))[:, 0])

    wrapped = Wrapped()
    for reduce, ref in [
        ("mean", tokens.mean(1)),
        ("max", tokens.amax(1)),
        ("cls", tokens[:, 0]),
    ]:
        fs = extract(wrapped, loader, "tok", pool=reduce, progress=False)
        assert fs.layers["tok"].shape == (6, 4)  # (N, C): never (N, T)
        np.testing.assert_allclose(fs.layers["tok"], ref.numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"pool='cls'.*\(4, 12\)"):
        extract(wrapped, loader, "inner.embed", pool="cls", progress=False)


def test_reduce_mean_on_vit_gives_one_vector_per_image():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    vit = tv.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16
    )
    x = torch.rand(3, 3, 32, 32)
    layer = "encoder.layers.encoder_layer_0"
    fs = extract(vit, [x], layer, pool="mean", progress=False)
    assert fs.layers[layer].shape == (3, 8)  # hidden size, not the 5 tokens


class _Dicts(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.kind = kind

    def forward(self, x: torch.Tensor):
        y = self.fc(x)
        if self.kind == "dict":
            return {"out": y, "aux": y * 2}
        if self.kind == "logits":
            return {"logits": y, "hidden": y[:, :1]}
        return [{"scores": row.softmax(0), "labels": torch.arange(3)} for row in y]


def test_outputs_picks_what_to_keep():
    torch.manual_seed(0)
    x = torch.randn(5, 2)
    loader = DataLoader(TensorDataset(x), batch_size=2)
    ref = _Dicts("dict").fc
    for kind in ("dict", "logits", "detections"):
        model = _Dicts(kind)
        model.fc = ref
        with torch.no_grad():
            y = ref(x)
        if kind == "logits":  # logits are found without a callable
            fs = extract(model, loader, progress=False)
            np.testing.assert_allclose(fs.outputs, y.numpy(), rtol=1e-6)
        elif kind == "dict":
            with pytest.raises(ValueError, match=r"Pass output_transform=callable"):
                extract(model, loader, progress=False)
            fs = extract(model, loader, output_transform=lambda o: o["aux"], progress=False)
            np.testing.assert_allclose(fs.outputs, 2 * y.numpy(), rtol=1e-6)
        else:
            fs = extract(
                model,
                loader,
                output_transform=lambda dets: torch.stack([d["scores"].max() for d in dets]),
                progress=False,
            )
            np.testing.assert_allclose(fs.outputs, y.softmax(1).amax(1).numpy(), rtol=1e-6)


def _aux(o):
    return o["aux"]


def _out(o):
    return o["out"]


def test_outputs_callable_is_recorded_and_checked_on_resume(tmp_path):
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    model = _Dicts("dict")
    store = tmp_path / "store"
    fs = extract(model, loader, output_transform=_aux, store=store, progress=False)
    name = f"{__name__}._aux"
    assert fs.metadata["outputs"] == name
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["config"]["outputs"] == name
    assert manifest["metadata"]["outputs"] == name
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    # another callable, or none: refused, nothing changed
    for other in ({"output_transform": _out}, {}):
        with pytest.raises(ValueError, match=r"outputs: stored '.*_aux', this call"):
            extract(model, loader, store=store, progress=False, **other)
        assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before
    # the same callable: reopened
    again = extract(model, loader, output_transform=_aux, store=store, progress=False)
    np.testing.assert_array_equal(again.outputs, fs.outputs)
    plain = extract(_Dicts("logits"), loader, progress=False)  # no callable: no entry
    assert "outputs" not in plain.metadata


# ------------------------------------------------------------------ issue 22: resume checks
def test_resume_with_other_weights_is_refused(tmp_path):
    loader = DataLoader(lin_data(6), batch_size=2)
    store = tmp_path / "s"
    with pytest.raises(RuntimeError, match="interrupted"):
        extract(Lin(fail_at=2), loader, ["act"], store=store, progress=False)
    other = Lin()
    with torch.no_grad():
        other.fc2.weight[0, 0] = 2.0  # the same class, other weights
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    with pytest.raises(
        ValueError, match=r"different extract call \(weights: stored '[0-9a-f]{64}'"
    ):
        extract(other, loader, ["act"], store=store, progress=False)
    assert other.calls == 0
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before
    done = extract(Lin(), loader, ["act"], store=store, progress=False)  # same weights: resumed
    with pytest.raises(ValueError, match=r"\(weights: stored"):  # a finished store too
        extract(other, loader, ["act"], store=store, progress=False)
    np.testing.assert_array_equal(done.outputs, extract(Lin(), loader, progress=False).outputs)


def test_resume_with_another_outputs_lambda_is_refused(tmp_path):
    loader = DataLoader(lin_data(4), batch_size=2)
    first, second = (lambda o: o[:, :1]), (lambda o: o[:, 1:])  # both __qualname__ <lambda>
    assert first.__qualname__ == second.__qualname__
    store = tmp_path / "s"
    fs = extract(Lin(), loader, output_transform=first, store=store, progress=False)
    with pytest.raises(ValueError, match=r"\(outputs_code: stored '[0-9a-f]{32}', this call"):
        extract(Lin(), loader, output_transform=second, store=store, progress=False)
    again = extract(Lin(), loader, output_transform=lambda o: o[:, :1], store=store, progress=False)
    np.testing.assert_array_equal(again.outputs, fs.outputs)  # the same code: reopened


def test_rows_of_different_shapes_error_names_mean_not_avg(tmp_path):
    conv = nn.Conv2d(1, 1, 1)
    batches = [torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 3, 3)]
    for store in (None, tmp_path / "s"):
        with pytest.raises(ValueError, match="rows of") as exc:
            extract(conv, batches, store=store, progress=False)
        assert "pool='mean'" in str(exc.value) and "avg" not in str(exc.value)
