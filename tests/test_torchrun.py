"""Multi-node `extract`: two torchrun "nodes" of two processes each, on the loopback.

Both node agents (``torchrun --nnodes=2 --nproc-per-node=2 --node-rank=0/1
--master-addr=127.0.0.1``, static rendezvous: this checks the shared store's merge, not
torchrun's elastic rendezvous, whose c10d store raced once on a loaded 2-core CI machine)
run as separate process groups, gloo, and write into one shared
folder (the shared file system every node must see). Rank 0 merges; the store must equal
a one-process `extract` bit for bit. The agents are killed by process group in a
finally, also when the test fails or times out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader, TensorDataset

from _procs import free_port, kill_group
from featviz.extraction import extract
from featviz.featureset import FeatureSet

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parent.parent / "src"

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler
    from featviz.extraction import extract

    def data():
        g = torch.Generator().manual_seed(1)
        return TensorDataset(torch.randn(23, 1, 3, 3, generator=g), torch.arange(23) % 5)

    def model():
        conv = torch.nn.Conv2d(1, 2, 1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([1.0, -2.0]).reshape(2, 1, 1, 1))
        return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.Flatten())

    if __name__ == "__main__":
        dist.init_process_group("gloo")
        ds = data()
        sampler = DistributedSampler(ds, shuffle=True, seed=3)  # 23 on 4 ranks: 1 padded
        loader = DataLoader(ds, batch_size=3, sampler=sampler)
        fs = extract(model(), loader, ["0", "1"], store=sys.argv[1], progress=False)
        assert len(fs) == 23, len(fs)
        dist.barrier()
        dist.destroy_process_group()
    """
)


def test_two_nodes_of_two_ranks_equal_one_process(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    shared = tmp_path / "shared"
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    env.pop("TORCHELASTIC_RUN_ID", None)
    agents = []
    try:
        for node in (0, 1):
            cmd = [
                sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                "--nproc-per-node=2", f"--node-rank={node}", "--rdzv-backend=static",
                "--master-addr=127.0.0.1", f"--master-port={port}",
                "--max-restarts=0", str(script), str(shared),
            ]  # fmt: skip
            log = open(tmp_path / f"node{node}.log", "w")
            agents.append(
                subprocess.Popen(
                    cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        deadline = time.monotonic() + 120
        while any(a.poll() is None for a in agents) and time.monotonic() < deadline:
            time.sleep(0.5)
        codes = [a.poll() for a in agents]
        # the ranks' own tracebacks come first in the logs: keep their errors, not the agents'
        logs = "\n".join(
            line
            for k in (0, 1)
            for line in (tmp_path / f"node{k}.log").read_text().splitlines()
            if "Error" in line or "error" in line or line.startswith("[rank")
        )[-6000:]
        assert codes == [0, 0], logs
    finally:
        for a in agents:
            kill_group(a)

    # the one-process reference (same code as the script, imported from it)
    ns: dict = {}
    exec(compile(SCRIPT.split("if __name__")[0], "job", "exec"), ns)
    ds: TensorDataset = ns["data"]()
    ref = extract(ns["model"](), DataLoader(ds, batch_size=3), ["0", "1"], progress=False)
    got = FeatureSet.open(shared)
    assert got.index.tolist() == list(range(23))  # every sample once, in dataset order
    assert got.metadata["world_size"] == 4 and got.metadata["duplicates_dropped"] == 1
    for key in ("0", "1"):
        assert np.array_equal(got.layers[key], ref.layers[key])
        assert got.layers[key].dtype == ref.layers[key].dtype == np.float32
    assert np.array_equal(got.outputs, ref.outputs) and np.array_equal(got.labels, ref.labels)
    assert sorted(p.name for p in shared.iterdir()) == ["data", "manifest.json"]
