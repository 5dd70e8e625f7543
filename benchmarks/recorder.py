"""Overhead of a `featviz.Recorder` with its defaults on a CPU training loop.

Two models, each trained from the same initial weights with SGD on random batches:
the built-in `TinyCNN` on `Shapes` (64x64, batch 32) and a torchvision ``resnet18``
(``weights=None``, 64x64 random images, 10 classes, batch 32). Two copies of the model train
in lockstep, one with a Recorder holding the defaults (64 probe images, ``every=200``,
``gradcam``, records in RAM): each step runs both copies (alternating which goes first), and
each is timed, so a busy shared machine slows both alike. Printed per
model: the loop time without and with the Recorder, their ratio (target <= 1.02), the
ratio of process CPU times, and
the time spent inside ``rec.step`` as a share of the loop without it (the same overhead,
measured directly, so less noisy).

Usage: ``python benchmarks/recorder.py [--quick] [--steps N] [--repeats R]``
(``--quick``: 200 steps and 1 repeat; default 400 steps and 3 repeats).
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch
from torch import nn

from featviz.datasets import Shapes
from featviz.models import TinyCNN
from featviz.recorder import Recorder


def _paired(
    model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int, probe: Any
) -> list[float]:
    """Train two copies in lockstep, the second with a Recorder.

    Each step runs both copies, alternating which goes first, so a busy machine slows both
    alike. Returns wall seconds without, with, inside ``rec.step``, then the process CPU
    seconds without and with (CPU time counts less of the other jobs on the machine).
    """
    plain, recorded = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (plain, recorded)]
    rec = Recorder(recorded, probe[0], labels=probe[1], layers=probe[2])
    spent = [0.0] * 5
    for step in range(steps):
        x, y = batches[step % len(batches)]
        for k in (0, 1) if step % 2 else (1, 0):
            m, opt = (plain, recorded)[k], opts[k]
            start, cpu = time.perf_counter(), time.process_time()
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
            if k == 1:
                t = time.perf_counter()
                rec.step(step)
                spent[2] += time.perf_counter() - t
            spent[k] += time.perf_counter() - start
            spent[3 + k] += time.process_time() - cpu
    return spent


def measure(
    name: str, model: nn.Module, batches: Any, probe: Any, steps: int, repeats: int
) -> None:
    """Print the loop times without and with a Recorder, and the ratios."""
    _paired(model, batches, 3, probe)  # warm up
    runs = [_paired(model, batches, steps, probe) for _ in range(repeats)]
    a, b, inside, cpu_a, cpu_b = (sum(r[i] for r in runs) for i in range(5))
    print(
        f"{name:>9}: {steps} steps x {repeats}  without {a:7.2f} s  with {b:7.2f} s  "
        f"ratio {b / a:.3f}x  CPU-time ratio {cpu_b / cpu_a:.3f}x  (inside rec.step: "
        f"{inside:.2f} s = {inside / a:.2%} of the loop without)"
    )


def main() -> None:
    """Run both models."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="200 steps, 1 repeat")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args()
    steps = args.steps or (200 if args.quick else 400)
    repeats = args.repeats or (1 if args.quick else 3)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    images, labels = Shapes(64 + 8 * 32, random_state=0).tensors()
    batches = [
        (images[64 + 32 * i : 96 + 32 * i], labels[64 + 32 * i : 96 + 32 * i]) for i in range(8)
    ]
    measure(
        "TinyCNN", TinyCNN(), batches, (images[:64], labels[:64], "features.13"), steps, repeats
    )

    from torchvision.models import resnet18

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64 + 4 * 32, 3, 64, 64, generator=g)
    y = torch.randint(0, 10, (x.shape[0],), generator=g)
    batches = [(x[64 + 32 * i : 96 + 32 * i], y[64 + 32 * i : 96 + 32 * i]) for i in range(4)]
    measure(
        "resnet18", resnet18(num_classes=10), batches, (x[:64], y[:64], "layer4"), steps, repeats
    )


if __name__ == "__main__":
    main()
