"""Tests for featviz._store: the pinned on-disk format, foreign folders, resume checks,
locking, damaged stores and file modes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import featviz._store as fstore
from featviz.extraction import FeatureSet, extract

# written by featviz 0.1.0 (before the store moved to featviz._store): a finished store
# and the store a run stopped during its third batch left behind
REFERENCE = Path(__file__).parent / "data" / "store_v1" / "complete"
PARTIAL = Path(__file__).parent / "data" / "store_v1" / "partial"
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


class _Images(TensorDataset):
    """A TensorDataset that fails to load sample ``broken`` (to interrupt a run)."""

    broken: int | None = None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        if i == self.broken:
            raise OSError("interrupted")
        return super().__getitem__(i)


def reference_loader(broken: int | None = None) -> DataLoader:
    """10 integer-valued 3x32x32 images in 3 batches (4, 4, 2) in REFERENCE_ORDER."""
    n = 10
    k = torch.arange(n * 3 * 32 * 32).reshape(n, 3, 32, 32)
    x = ((k * 7 + k // 97) % 11 - 5).float()
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    ds = _Images(x, y)
    ds.broken = broken
    return DataLoader(ds, batch_size=4, sampler=REFERENCE_ORDER)


def write_reference(path: Path, broken: int | None = None) -> None:
    """The store pinned under tests/data/store_v1/complete (2 layers, float16, 3 shards).

    With ``broken=8`` the run stops while loading the third batch: the interrupted store
    pinned under tests/data/store_v1/partial (rank00000/ with two batches' shards).
    """
    extract(
        reference_model(),
        reference_loader(broken),
        ["0", "1"],
        dtype=torch.float16,
        store=path,
        progress=False,
    )


# The v1 format gained one config key (issue 22): "weights", the SHA-256 of the model's
# parameters and buffers, so that resuming with other weights is refused. Stores without
# it (the pinned ones) still open and resume. This is the reference model's digest:
REFERENCE_WEIGHTS = "446d7d6722867f0784a994d9bbcb1982b9ecccf5db1fae3f48622a0230c0380a"


def _plus_weights(text: str) -> str:
    """A pinned v1 manifest's text with the ``weights`` key a new store adds."""
    old = '  "version": 1,\n  "world_size"'
    assert text.count(old) == 1
    return text.replace(
        old, f'  "version": 1,\n  "weights": "{REFERENCE_WEIGHTS}",\n  "world_size"'
    )


def _normalised_manifest(path: Path) -> dict:
    """The manifest with the fields that legitimately vary between runs blanked out.

    Only ``metadata.featviz_version`` varies (the store has no timestamps, host names
    or absolute paths); everything else must be equal. ``config.weights`` (absent from
    the pinned stores) is checked, then dropped.
    """
    man = json.loads(path.read_text(encoding="utf-8"))
    man["metadata"]["featviz_version"] = "<version>"
    assert man["config"].pop("weights", REFERENCE_WEIGHTS) == REFERENCE_WEIGHTS
    return man


def test_reference_weights_digest_is_sha256_of_the_parameters():
    h = hashlib.sha256()
    for name, t in reference_model().state_dict().items():
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().numpy().tobytes())
    assert h.hexdigest() == REFERENCE_WEIGHTS


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
            text = new.read_text().replace(json.dumps(ver), json.dumps(old))
            assert text == _plus_weights(ref.read_text())
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


def test_interrupted_store_bytes_match_the_pinned_v1_reference(tmp_path):
    with pytest.raises(OSError, match="interrupted"):
        write_reference(tmp_path / "s", broken=8)
    assert _files(tmp_path / "s") == _files(PARTIAL)
    assert len(_files(PARTIAL / "rank00000")) == 11  # manifest + 2 batches x 5 fields
    for name in _files(PARTIAL):
        if name.endswith("manifest.json"):  # the rank manifest holds no featviz version
            new = (tmp_path / "s" / name).read_text()
            assert new == _plus_weights((PARTIAL / name).read_text()), name
        elif (PARTIAL / name).is_file():
            assert (tmp_path / "s" / name).read_bytes() == (PARTIAL / name).read_bytes(), name


def test_resuming_the_pinned_v1_interrupted_store_gives_the_pinned_result(tmp_path):
    shutil.copytree(PARTIAL, tmp_path / "s")
    model = reference_model()
    calls: list[int] = []
    model.register_forward_pre_hook(lambda m, a: calls.append(int(a[0].shape[0])))
    with pytest.warns(UserWarning, match="kept no weights fingerprint"):  # v1: not checked
        extract(
            model,
            reference_loader(),
            ["0", "1"],
            dtype=torch.float16,
            store=tmp_path / "s",
            progress=False,
        )
    assert calls == [2]  # only the third batch ran
    assert _files(tmp_path / "s") == _files(REFERENCE)
    for name in _files(REFERENCE):
        ref, new = REFERENCE / name, tmp_path / "s" / name
        if name == "manifest.json":
            assert _normalised_manifest(new) == _normalised_manifest(ref)
        elif ref.is_file():
            assert new.read_bytes() == ref.read_bytes(), name


# ------------------------------------------------------------------ helpers
class Counting(nn.Module):
    """fc (2 -> 2, weights (1, 0), (1, 1), no bias); counts forward calls; may block or fail.

    For x = (a, b): output = (a, a + b).
    """

    def __init__(self, fail_at: int | None = None, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        self.fail_at, self.gate = fail_at, gate
        self.entered = threading.Event()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("interrupted")
        return self.fc(x)


def pairs(n: int, label0: int = 0) -> TensorDataset:
    """x = (i, 10 i), labels label0 + i."""
    i = torch.arange(n, dtype=torch.float32)
    return TensorDataset(torch.stack([i, 10 * i], 1), label0 + torch.arange(n))


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def interrupted(store: Path, n: int = 6, fail_at: int = 3) -> None:
    """A store left by a run stopped at forward call ``fail_at`` (batches of 2)."""
    with pytest.raises(RuntimeError, match="interrupted"):
        extract(
            Counting(fail_at),
            DataLoader(pairs(n), batch_size=2),
            ["fc"],
            store=store,
            progress=False,
        )


# ------------------------------------------------------------------ foreign files
@pytest.mark.parametrize(
    "user_files",
    [
        {"data/outputs.npy": None},  # issue 14: was overwritten
        {"data/outputs.npy": None, "rank00000/manifest.json": b'{"a": 1}'},
        {"rank00000/notes.txt": b"mine"},
        {"rank_notes.txt": b"mine"},
        {".lock": b""},
        {"manifest.json": b'{"name": "my project"}'},
        {"data/index.npy": None, "data/labels.npy": None},
    ],
    ids=[
        "data",
        "data+rank-manifest",
        "rank-folder",
        "rank-name",
        "dot-lock",
        "manifest",
        "two-data",
    ],
)
def test_foreign_folder_is_refused_before_the_model_runs(tmp_path, user_files):
    root = tmp_path / "mine"
    for name, content in user_files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            np.save(root / name, np.arange(3.0))
        else:
            (root / name).write_bytes(content)
    before = snapshot(root)
    model = Counting()
    with pytest.raises(ValueError, match=r"not a featviz store.*never touches files"):
        extract(model, DataLoader(pairs(4), batch_size=2), ["fc"], store=root, progress=False)
    assert model.calls == 0
    assert snapshot(root) == before
    assert sorted(p.name for p in root.rglob("*")) == sorted(
        {Path(n).name for n in user_files} | {Path(n).parent.name for n in user_files} - {""}
    )


def test_store_with_extra_user_files_is_refused_and_untouched(tmp_path):
    for extra in ("data/notes.txt", "rank00000/notes.txt", "notes.txt", "data/layer7.npy"):
        store = tmp_path / extra.replace("/", "_")
        interrupted(store)
        (store / extra).parent.mkdir(exist_ok=True)
        (store / extra).write_text("mine")
        before = snapshot(store)
        model = Counting()
        with pytest.raises(ValueError, match=rf"also holds files featviz did not write.*{extra}"):
            extract(model, DataLoader(pairs(6), batch_size=2), ["fc"], store=store, progress=False)
        assert model.calls == 0 and snapshot(store) == before


def test_rank_manifest_with_field_names_that_are_paths_is_not_trusted(tmp_path):
    store = tmp_path / "a" / "s"
    interrupted(store)
    path = store / "rank00000" / "manifest.json"
    man = json.loads(path.read_text())
    man["fields"]["../../../evil"] = man["fields"]["outputs"]
    path.write_text(json.dumps(man))
    before = snapshot(tmp_path)
    model = Counting()
    with pytest.raises(ValueError, match="not a featviz store"):
        extract(model, DataLoader(pairs(6), batch_size=2), ["fc"], store=store, progress=False)
    with pytest.raises(FileNotFoundError, match="holds no featviz store"):
        FeatureSet.open(store)
    assert model.calls == 0 and snapshot(tmp_path) == before


def test_finished_store_with_added_files_still_opens_without_writing(tmp_path):
    store = _finished(tmp_path)
    (store / "notes.txt").write_text("mine")
    before = snapshot(store)
    model = Counting()
    fs = extract(model, DataLoader(pairs(6), batch_size=2), ["fc"], store=store, progress=False)
    assert model.calls == 0 and snapshot(store) == before
    np.testing.assert_array_equal(fs.labels, np.arange(6))


def test_merge_deletes_only_the_shards_it_wrote(tmp_path, monkeypatch):
    store = tmp_path / "s"

    def broken(top, ranks):
        raise OSError(5, "merge interrupted")

    with monkeypatch.context() as mp:
        mp.setattr(fstore, "merge_store", broken)
        with pytest.raises(OSError, match="merge interrupted"):
            extract(
                Counting(), DataLoader(pairs(5), batch_size=2), ["fc"], store=store, progress=False
            )
    (store / "rank00000" / "mine.txt").write_text("keep me")
    fs = FeatureSet.open(store)  # merges; the user's file stays
    np.testing.assert_array_equal(fs.labels, np.arange(5))
    assert (store / "rank00000" / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in (store / "rank00000").iterdir()) == ["mine.txt"]


# ------------------------------------------------------------------ resume checks
def _batches(order: list[int], labels: bool = True) -> list:
    ds = pairs(8)
    x, y = ds.tensors
    out = []
    for b in order:
        sl = slice(2 * b, 2 * b + 2)
        out.append((x[sl], y[sl]) if labels else x[sl])
    return out


@pytest.mark.parametrize(
    ("order", "labels", "bad"),
    [
        ([3, 2, 1, 0], True, 0),  # reversed: batch 0 already differs
        ([0, 2, 1, 3], True, 1),  # batch 0 is the same, batch 1 differs
        ([1, 0, 2, 3], False, 0),  # no labels: the inputs are what is compared
    ],
    ids=["reversed", "swapped-later", "inputs-only"],
)
def test_resume_plain_iterable_in_another_order_is_refused(tmp_path, order, labels, bad):
    store = tmp_path / "s"
    with pytest.raises(RuntimeError, match="interrupted"):
        extract(
            Counting(fail_at=3), _batches([0, 1, 2, 3], labels), ["fc"], store=store, progress=False
        )
    before = snapshot(store)
    model = Counting()
    with pytest.raises(ValueError, match=rf"batch {bad} of the loader now holds other samples"):
        extract(model, _batches(order, labels), ["fc"], store=store, progress=False)
    assert model.calls == 0 and snapshot(store) == before
    # the same order resumes and equals an uninterrupted run, row for row
    fs = extract(model, _batches([0, 1, 2, 3], labels), ["fc"], store=store, progress=False)
    assert model.calls == 2
    x = pairs(8).tensors[0].numpy()
    np.testing.assert_array_equal(fs.outputs, np.stack([x[:, 0], x[:, 0] + x[:, 1]], 1))
    np.testing.assert_array_equal(fs.index, np.arange(8))
    if labels:
        np.testing.assert_array_equal(fs.labels, np.arange(8))


def test_resume_same_labels_other_inputs_is_refused(tmp_path):
    store = tmp_path / "s"
    x = pairs(4).tensors[0]
    with pytest.raises(RuntimeError):
        extract(
            Counting(fail_at=2), [(x[:2], [0, 0]), (x[2:], [0, 0])], store=store, progress=False
        )
    with pytest.raises(ValueError, match="batch 0 of the loader now holds other samples"):
        extract(Counting(), [(x[2:], [0, 0]), (x[:2], [0, 0])], store=store, progress=False)


def test_resume_of_a_store_without_fingerprints_warns(tmp_path):
    store = tmp_path / "s"
    with pytest.raises(RuntimeError):
        extract(Counting(fail_at=3), _batches([0, 1, 2, 3]), store=store, progress=False)
    prints = sorted((store / "rank00000").glob("*-fingerprint.txt"))
    assert [p.name for p in prints] == ["000000-fingerprint.txt", "000001-fingerprint.txt"]
    for p in prints:  # as an older featviz left it
        p.unlink()
    with pytest.warns(UserWarning, match="keeps no input fingerprints"):
        fs = extract(Counting(), _batches([0, 1, 2, 3]), store=store, progress=False)
    np.testing.assert_array_equal(fs.labels, np.arange(8))


# ------------------------------------------------------------------ locking
def test_second_run_into_a_busy_store_is_refused_threads(tmp_path):
    store = tmp_path / "s"
    gate = threading.Event()
    first = Counting(gate=gate)
    result: dict[str, object] = {}

    def run_first() -> None:
        try:
            result["fs"] = extract(
                first, DataLoader(pairs(4), batch_size=2), ["fc"], store=store, progress=False
            )
        except BaseException as exc:  # reported below
            result["error"] = exc

    t = threading.Thread(target=run_first)
    t.start()
    try:
        assert first.entered.wait(30)  # the first run is inside its first forward pass
        second = Counting()
        with pytest.raises(
            RuntimeError, match=rf"being written by another extract call.*{os.getpid()}"
        ):
            extract(
                second,
                DataLoader(pairs(4, label0=100), batch_size=2),
                ["fc"],
                store=store,
                progress=False,
            )
        assert second.calls == 0
    finally:
        gate.set()
        t.join(60)
    assert "error" not in result, result.get("error")
    fs = result["fs"]
    np.testing.assert_array_equal(fs.labels, [0, 1, 2, 3])  # the first run's rows only
    assert sorted(os.listdir(store)) == ["data", "manifest.json"]  # lock released
    # afterwards the store is free: the same call opens it
    np.testing.assert_array_equal(
        extract(
            Counting(), DataLoader(pairs(4), batch_size=2), ["fc"], store=store, progress=False
        ).labels,
        [0, 1, 2, 3],
    )


_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, f"otherhost {os.getpid()}\\n".encode())
print("locked", flush=True)
sys.stdin.readline()
"""


def test_lock_held_by_another_process_and_stale_lock(tmp_path):
    pytest.importorskip("fcntl")
    store = tmp_path / "s"
    interrupted(store)
    lock = store / "rank00000.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(store)
        model = Counting()
        with pytest.raises(RuntimeError, match=rf"otherhost {holder.pid}.*rank00000.lock"):
            extract(model, DataLoader(pairs(6), batch_size=2), ["fc"], store=store, progress=False)
        assert model.calls == 0 and snapshot(store) == before
    finally:
        holder.communicate("\n", timeout=30)
    # the holder died without deleting its lock file: the lock is stale, a run takes it
    assert lock.is_file()
    model = Counting()
    fs = extract(model, DataLoader(pairs(6), batch_size=2), ["fc"], store=store, progress=False)
    assert model.calls == 1  # resumed: 2 of 3 batches were done
    np.testing.assert_array_equal(fs.labels, np.arange(6))
    assert not lock.exists()


# ------------------------------------------------------------------ damaged stores
def _finished(tmp_path: Path) -> Path:
    store = tmp_path / "s"
    extract(Counting(), DataLoader(pairs(6), batch_size=2), ["fc"], store=store, progress=False)
    return store


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-8]), ValueError, "damaged file"),
        (lambda p: p.write_bytes(p.read_bytes()[:40]), ValueError, "damaged file"),
        (lambda p: p.write_bytes(b""), ValueError, "damaged file"),
        (lambda p: p.write_bytes(b"garbage " * 20), ValueError, "damaged file"),
        (lambda p: p.unlink(), FileNotFoundError, "lacks its file"),
    ],
    ids=["truncated-data", "truncated-header", "empty", "garbage", "missing"],
)
def test_open_damaged_store_names_file_and_store(tmp_path, mmap, damage, error, match):
    store = _finished(tmp_path)
    damage(store / "data" / "layer0.npy")
    with pytest.raises(error, match=match) as exc:
        FeatureSet.open(store, mmap=mmap)
    assert "'data/layer0.npy'" in str(exc.value) and repr(str(store)) in str(exc.value)


def test_open_damaged_shard_during_merge_names_it(tmp_path, monkeypatch):
    store = tmp_path / "s"
    with monkeypatch.context() as mp:
        mp.setattr(fstore, "merge_store", lambda top, ranks: (_ for _ in ()).throw(OSError("x")))
        with pytest.raises(OSError):
            extract(
                Counting(), DataLoader(pairs(6), batch_size=2), ["fc"], store=store, progress=False
            )
    shard = store / "rank00000" / "000001-outputs.npy"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(ValueError, match=r"damaged file 'rank00000/000001-outputs.npy'"):
        FeatureSet.open(store)
    (store / "rank00000" / "000002-index.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks its file 'rank00000/000002-index.npy'"):
        FeatureSet.open(store)


@pytest.mark.parametrize("where", ["../../x.npy", "../x.npy", "ABS", "data/../../x.npy", "."])
def test_open_refuses_manifest_paths_outside_the_store(tmp_path, where):
    store = _finished(tmp_path / "in")
    outside = tmp_path / "x.npy"
    np.save(outside, np.arange(6, dtype=np.int64))
    man = json.loads((store / "manifest.json").read_text())
    man["fields"]["labels"]["file"] = str(outside) if where == "ABS" else where
    (store / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match=r"field 'labels' names the file .* not inside the store"):
        FeatureSet.open(store)


def test_write_errors_never_name_temporary_files(tmp_path, monkeypatch):
    real_save = np.save

    def full(file, arr, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(getattr(file, "name", file)))

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(OSError) as exc:
        extract(
            Counting(), DataLoader(pairs(4), batch_size=2), store=tmp_path / "s", progress=False
        )
    monkeypatch.setattr(np, "save", real_save)
    text = str(exc.value)
    assert "000000-outputs.npy" in text and ".tmp" not in text
    assert exc.value.filename is None and exc.value.__cause__ is None
    assert not [p for p in (tmp_path / "s").rglob("*") if ".tmp" in p.name]


# ------------------------------------------------------------------ file modes
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_files_get_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        store = tmp_path / "s"
        interrupted(store)  # shards, rank manifest
        modes = {p.name: p.stat().st_mode & 0o777 for p in store.rglob("*")}
        extract(Counting(), DataLoader(pairs(6), batch_size=2), ["fc"], store=store, progress=False)
        modes.update({p.name: p.stat().st_mode & 0o777 for p in store.rglob("*")})
    finally:
        os.umask(old)
    assert {"000000-index.npy", "data", "layer0.npy", "manifest.json"} <= set(modes)
    for name, mode in modes.items():
        want = 0o777 & ~umask if name in ("data", "rank00000") else 0o666 & ~umask
        assert mode == want, (name, oct(mode))


# ------------------------------------------------------------------ issue 22: manifests
@pytest.mark.parametrize(
    ("version", "found"), [("1", "'1'"), (None, "None"), (2, "version 2"), (0, "found 0")]
)
def test_open_manifest_with_bad_version_names_file_and_version(tmp_path, version, found):
    store = _finished(tmp_path)
    man = json.loads((store / "manifest.json").read_text())
    if version is None:
        del man["config"]["version"]
    else:
        man["config"]["version"] = version
    (store / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match=r"manifest\.json") as exc:
        FeatureSet.open(store)
    assert found in str(exc.value)
    with pytest.raises(ValueError, match=r"manifest\.json"):  # extract refuses it too
        extract(Counting(), DataLoader(pairs(6), batch_size=2), ["fc"], store=store)


def test_symlinked_manifest_is_refused_not_decoded(tmp_path):
    store = _finished(tmp_path)
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(bytes(range(256)))
    (store / "manifest.json").unlink()
    (store / "manifest.json").symlink_to(target)
    with pytest.raises(ValueError, match=r"manifest\.json' is a symbolic link"):
        FeatureSet.open(store)
    assert target.read_bytes() == bytes(range(256))


# ------------------------------------------------------------------ the store interface
def _backends(tmp_path: Path) -> list:
    from featviz._store_base import MemoryStore, StoreSpec
    from featviz._store_disk import DiskStore

    spec = StoreSpec(
        "test.format",
        1,
        "Recorder",
        root=tmp_path / "d",
        manifest="m.json",
        owned=lambda name: name.endswith(".npy"),
    )
    return [MemoryStore(spec), DiskStore(spec)]


def test_both_backends_keep_the_same_contract(tmp_path):
    for store in _backends(tmp_path):
        assert store.open({"a": 1}) is None and store.load_manifest() is None
        store.write("x.npy", np.arange(3))
        store.save_manifest({"config": {"a": 1}, "records": ["x.npy"]})
        assert store.has("x.npy") and not store.has("y.npy")
        np.testing.assert_array_equal(store.read("x.npy"), [0, 1, 2])
        assert not store.read("x.npy").flags.writeable
        man = {"config": {"a": 1}, "format": "test.format", "records": ["x.npy"], "version": 1}
        assert store.load_manifest() == man
        store.close()
        assert store.open({"a": 1}) == man  # resumed
        store.close()
        with pytest.raises(ValueError, match=r"different Recorder call \(a: stored 1, this"):
            store.open({"a": 2})
    disk = _backends(tmp_path)[1]
    assert isinstance(disk.read("x.npy"), np.memmap)
    assert sorted(os.listdir(tmp_path / "d")) == ["m.json", "x.npy"]  # lock released


def test_every_backend_lists_deletes_texts_headers_and_gathers(tmp_path):
    from featviz._store_base import MemoryStore, StoreSpec

    spec = StoreSpec("t", 1, "extract", root=tmp_path / "g", owned=lambda name: True)
    mem = MemoryStore(spec)
    for cls in (*map(type, _backends(tmp_path)), _bytes_backend({}, [])):
        store = cls(spec)
        store.open({})
        store.write("b.npy", np.arange(6, dtype=np.int16).reshape(3, 2))
        mem.write("a.npy", np.full((2, 2), 9, dtype=np.int32))
        store.write_text("p.txt", "fp\n")
        assert store.names() == ["b.npy", "p.txt"] and store.read_text("p.txt") == "fp\n"
        assert store.read_text("q.txt") is None
        assert store.header("b.npy") == ((3, 2), np.dtype(np.int16))
        # row j of source k goes to row rows[k][j]; -1 drops it (here: a's second row)
        store.gather("data/c.npy", [(store, "b.npy"), (mem, "a.npy")], [np.array([3, 0, 1]),
                     np.array([2, -1])], 4)  # fmt: skip
        got = store.read("data/c.npy")
        assert got.dtype == np.int32 and got.tolist() == [[2, 3], [4, 5], [9, 9], [0, 1]]
        for name in ("b.npy", "p.txt", "data/c.npy", "b.npy"):  # twice: idempotent
            store.delete(name)
        store.save_manifest({"config": {}})
        store.close()
        store.remove()
        assert store.names() == [] and store.load_manifest() is None
    assert not (tmp_path / "g").exists()  # the disk store removed its emptied folders


def test_fingerprints_tell_weights_and_code_apart():
    from featviz._fingerprints import code_fingerprint, model_fingerprint

    a, b = reference_model(), reference_model()
    assert model_fingerprint(a) == model_fingerprint(b) == REFERENCE_WEIGHTS
    with torch.no_grad():
        b[4].weight[0, 0] += 1
    assert model_fingerprint(b) != model_fingerprint(a)
    k = 2
    same = [lambda o: o * 2, lambda o: o * 2]
    other = [lambda o: o * 3, lambda o: o + 2, lambda o: o * k]
    digests = {code_fingerprint(f) for f in other} | {code_fingerprint(same[0])}
    assert code_fingerprint(same[0]) == code_fingerprint(same[1]) and len(digests) == 4


# ------------------------------------------------------------------ any backend
def _bytes_backend(files: dict[tuple[str, str], bytes], calls: list[str]) -> type:
    """A third backend, written here from the `Store` contract alone: every array, text
    and manifest is a ``bytes`` value of ``files`` (keyed by the spec's root and the
    name), so a store outlives its object as a folder does, and nothing touches the disk.
    ``calls`` records the methods used."""
    import io

    from featviz._store_base import Store, compare_config

    class BytesStore(Store):
        def _key(self, name: str) -> tuple[str, str]:
            calls.append(name)
            return (str(self.spec.root), name)

        def open(self, config):
            calls.append("open")
            found = self.load_manifest()
            if found is not None:
                compare_config(
                    found["config"], config, where="bytes", owner=self.owner,
                    optional=self.spec.optional,
                )  # fmt: skip
            return found

        def close(self):
            calls.append("close")

        def write(self, name, arr):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            files[self._key(name)] = buf.getvalue()

        def read(self, name):
            arr = np.lib.format.read_array(io.BytesIO(files[self._key(name)]))
            arr.flags.writeable = False
            return arr

        def has(self, name):
            return self._key(name) in files

        def names(self):
            return sorted(n for r, n in files if r == str(self.spec.root) and n != "/manifest")

        def delete(self, name):
            files.pop(self._key(name), None)

        def write_text(self, name, text):
            files[self._key(name)] = text.encode()

        def read_text(self, name):
            data = files.get(self._key(name))
            return None if data is None else data.decode()

        def save_manifest(self, data):
            files[self._key("/manifest")] = json.dumps(self._stamp(data)).encode()

        def load_manifest(self):
            data = files.get(self._key("/manifest"))
            return None if data is None else self._checked(json.loads(data), "bytes")

        def remove(self):
            files.pop(self._key("/manifest"), None)

    return BytesStore


def _record_through(store: Path) -> tuple[np.ndarray, ...]:
    """Two Recorder records of the reference model (its last layer changed in between)."""
    from featviz.recorder import Recorder

    model = reference_model()
    images = reference_loader().dataset.tensors[0][:3]
    rec = Recorder(model, images, labels=[0, 1, 2], layers="0", every=1, store=store)
    for step in (0, 1):
        rec.step(step)
        with torch.no_grad():
            model[4].weight.add_(0.5)
    rec.close()
    return rec.outputs_, rec.features_, rec.heatmaps_["gradcam"], rec.steps_


def test_extract_and_recorder_accept_any_backend(tmp_path, monkeypatch):
    """A backend is one class: through the disk store, the memory store and a backend
    written in this test, extract (fresh, interrupted and resumed, finished and reopened)
    and the Recorder give the same rows."""
    from featviz import _store_base

    files: dict[tuple[str, str], bytes] = {}
    calls: list[str] = []
    backends = {
        "disk": _store_base.backend("disk"),
        "memory": _store_base.MemoryStore,
        "bytes": _bytes_backend(files, calls),
    }
    got, recorded = {}, {}
    for name, cls in backends.items():
        monkeypatch.setitem(_store_base.BACKENDS, "disk", cls)  # the class store=PATH uses
        store = tmp_path / name
        if name == "bytes":  # stopped in batch 3 of 3: batches 0 and 1 are kept
            with pytest.raises(OSError, match="interrupted"):
                write_reference(store, broken=8)
            kept = {n for r, n in files if r == str(store / "rank00000")}
            assert {"000000-index.npy", "000001-index.npy", "/manifest"} <= kept
            assert "000002-index.npy" not in kept
        model, runs = reference_model(), []
        model.register_forward_hook(lambda *args, runs=runs: runs.append(1))
        fs = extract(
            model, reference_loader(), ["0", "1"], dtype=torch.float16, store=store, progress=False
        )
        assert len(runs) == (1 if name == "bytes" else 3)  # resumed: only batch 2 ran
        if name != "memory":  # a finished store is reopened, the model does not run
            again = extract(
                model, reference_loader(), ["0", "1"], dtype=torch.float16, store=store,
                progress=False,
            )  # fmt: skip
            assert len(runs) == (1 if name == "bytes" else 3)
            np.testing.assert_array_equal(again.outputs, fs.outputs)
        got[name] = fs
        recorded[name] = _record_through(tmp_path / f"rec-{name}")
    assert not (tmp_path / "bytes").exists() and not (tmp_path / "rec-bytes").exists()
    ref = got["disk"]
    assert ref.path == tmp_path / "disk" and ref.index.tolist() == list(range(10))
    for name in ("memory", "bytes"):
        fs = got[name]
        assert fs.path is None and list(fs.layers) == list(ref.layers) == ["0", "1"]
        np.testing.assert_array_equal(fs.index, ref.index)
        np.testing.assert_array_equal(fs.labels, ref.labels)
        np.testing.assert_array_equal(fs.outputs, ref.outputs)
        for key in ref.layers:
            assert fs[key].dtype == ref[key].dtype == np.float16
            np.testing.assert_array_equal(fs[key], ref[key])
        assert fs.metadata == ref.metadata
        for a, b in zip(recorded[name], recorded["disk"], strict=True):
            np.testing.assert_array_equal(a, b)
    assert recorded["disk"][3].tolist() == [0, 1]
    # the bytes store keeps the merged result only: the shards and rank manifest are gone
    top = sorted(n for r, n in files if r == str(tmp_path / "bytes"))
    fields = ["data/index.npy", "data/labels.npy", "data/layer0.npy", "data/layer1.npy"]
    assert top == ["/manifest", *fields, "data/outputs.npy"]
    assert not any(r == str(tmp_path / "bytes" / "rank00000") for r, _ in files)
    assert {"open", "close", "000000001-outputs.npy", "probe-images.npy"} <= set(calls)
