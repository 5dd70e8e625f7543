"""Tests for featviz.extraction_ray on a local two-node Ray cluster (loopback only).

The cluster (a head and a worker node, one CPU each, dashboard off, no usage stats) is
started once per module as two ``ray start --block`` process groups and killed by group
in a finally. Models and data are fixed (1x1 convolutions), so `extract` on one process
gives the exact rows to compare against.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _procs import free_port, kill_group
from featviz.extraction import extract

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


class Net(nn.Module):
    """conv 1x1 (1 -> 2 channels, weights 1 and ``w2``), ReLU, global mean, linear 2 -> 3.

    ``log``: a file that gets one line per forward call; ``kill``: a marker file: on the
    second forward call of a process, if the marker is absent, create it and SIGKILL the
    process (a worker dying mid-run); ``fail_after``: raise on that forward call.
    """

    def __init__(
        self, w2: float = 2.0, log: str | None = None, kill: str | None = None, fail_after=None
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, w2]).reshape(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
        self.log, self.kill, self.fail_after, self.calls = log, kill, fail_after, 0
        self.pause = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()}\n")
        if self.kill and self.calls == 2 and not os.path.exists(self.kill):
            Path(self.kill).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("stopped")
        time.sleep(self.pause)
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def data(n: int = 37) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 1, 3, 3, generator=g), torch.arange(n) % 4)


class Builder:
    """A picklable ``model_fn``."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def __call__(self) -> Net:
        pause = self.kwargs.pop("pause", 0.0)
        net = Net(**self.kwargs)
        net.pause, self.kwargs["pause"] = pause, pause
        return net


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node on 127.0.0.1, killed (process groups) even on failure."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    temp = tempfile.mkdtemp(prefix="fvray", dir="/tmp")  # short: Unix socket paths
    # no token authentication on this private loopback cluster, whatever ~/.ray holds
    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]),
    }
    port = free_port()
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--block", "--disable-usage-stats"]
    procs = []
    try:
        head = [ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false"]
        head += [f"--temp-dir={temp}", *common]
        procs.append(
            subprocess.Popen(
                head,
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, _temp_dir=temp) if _wait_gcs(
            port
        ) else pytest.fail("the Ray head did not start in 60 s")
        worker = [ray_bin, "start", f"--address=127.0.0.1:{port}", *common]
        procs.append(
            subprocess.Popen(
                worker,
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 60
        while ray.cluster_resources().get("CPU", 0) < 2:
            if time.monotonic() > deadline:
                pytest.fail("the Ray worker node did not join in 60 s")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(procs):
            kill_group(proc, timeout=6)
        if auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth


def _wait_gcs(port: int) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.5)
    return False


def _reference(tmp_path: Path, batch_size: int, **kwargs) -> dict[str, np.ndarray]:
    fs = extract(
        Net(),
        DataLoader(data(), batch_size=batch_size),
        ["conv", "act"],
        store=tmp_path / "ref",
        progress=False,
        **kwargs,
    )
    return {k: np.array(v) for k, v in _fields(fs).items()}


def _fields(fs) -> dict[str, np.ndarray]:
    return {"index": fs.index, "outputs": fs.outputs, "labels": fs.labels, **fs.layers}


def _assert_same(fs, ref: dict[str, np.ndarray]) -> None:
    got_all = _fields(fs)
    assert sorted(got_all) == sorted(ref)
    for key, want in ref.items():
        got = np.asarray(got_all[key])
        assert got.dtype == want.dtype and got.shape == want.shape, key
        assert np.array_equal(got, want), key  # bit for bit


def _shards(store: Path) -> int:
    """Finished batches: ``.npy`` index files, or Zarr index arrays marked complete."""
    n = 0
    for p in (store / "rank00000").glob("*-index*"):
        try:
            n += p.is_file() or json.loads((p / "zarr.json").read_text())["attributes"]["complete"]
        except (OSError, ValueError, KeyError):
            continue  # being written
    return n


def test_two_workers_with_one_killed_equal_extract(cluster, tmp_path):
    from featviz.extraction_ray import extract_ray

    ref = _reference(tmp_path, 4, pool="mean", dtype=torch.float16)
    marker = tmp_path / "killed"
    fs = extract_ray(
        Builder(kill=str(marker)),
        data(),
        ["conv", "act"],
        store=tmp_path / "ray",
        batch_size=4,
        pool="mean",
        dtype=torch.float16,
        concurrency=2,
        max_retries=3,
    )
    assert marker.exists()  # a worker process was SIGKILLed mid-run
    _assert_same(fs, ref)
    assert fs.index.tolist() == list(range(37))  # no row missing, none twice
    assert fs.metadata["duplicates_dropped"] == 0
    ref_files = sorted(p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*"))
    assert (
        sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*")) == ref_files
    )
    for name in ("data/layer0.npy", "data/layer1.npy", "data/outputs.npy", "data/index.npy"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()


def test_stopped_job_resumes_skipping_stored_batches(cluster, tmp_path):
    """Into a Zarr store at a file:// URL (the other test writes a .npy folder)."""
    from featviz.extraction_ray import extract_ray

    zarr = pytest.importorskip("zarr")
    ref = _reference(tmp_path, 5)
    local, log = tmp_path / "ray.zarr", tmp_path / "calls.txt"
    store = f"file://{local}"
    # the driver is SIGKILLed mid-run (its actors die with it)
    job = (
        "import ray, sys; from test_ray import Builder, data; "
        "from featviz.extraction_ray import extract_ray; ray.init(address=sys.argv[1]); "
        "extract_ray(Builder(log=sys.argv[3], pause=0.5), data(), ['conv', 'act'], "
        "store=sys.argv[2], batch_size=5, concurrency=1)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)])}
    driver = subprocess.Popen([sys.executable, "-c", job, cluster, store, str(log)], env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while _shards(local) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert driver.poll() is None, "the driver ended before it was killed"
    finally:
        kill_group(driver, timeout=6)
    time.sleep(5)  # the job's actors are gone
    stored = _shards(local)
    assert 1 <= stored < 8 and not (local / "data").exists()
    # a different model, batch size or layer list is refused; nothing is changed
    for kwargs, what in (
        ({"model_fn": Builder(w2=3.0), "batch_size": 5}, "weights"),
        ({"model_fn": Builder(), "batch_size": 4}, "batch_size"),
    ):
        with pytest.raises(ValueError, match=what):
            extract_ray(dataset=data(), layers=["conv", "act"], store=store, **kwargs)
    assert _shards(local) == stored
    log.unlink()
    fs = extract_ray(
        Builder(log=str(log)), data(), ["conv", "act"], store=store, batch_size=5, concurrency=2
    )
    assert len(log.read_text().splitlines()) == 8 - stored  # stored batches were skipped
    _assert_same(fs, ref)
    again = extract_ray(Builder(log=str(log)), data(), ["conv", "act"], store=store, batch_size=5)
    assert len(log.read_text().splitlines()) == 8 - stored  # finished: opened, not run
    _assert_same(again, ref)
    assert np.array_equal(zarr.open_group(local, mode="r")["data/layer0"][:], ref["conv"])
