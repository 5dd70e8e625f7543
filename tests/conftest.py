"""Shared fixtures: seeded RNGs, Agg backend, figures closed after each test.

Also marks as ``slow`` every test listed in ``tests/slow_tests.txt`` (measured), so that
``pytest -m "not slow"`` is a quick subset (README: under a minute on 2 idle cores).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch

SLOW_LIST = Path(__file__).with_name("slow_tests.txt")


def slow_tests() -> set[str]:
    """Node ids (``tests/test_x.py::test_y[param]``, or without ``[param]`` for every
    parameter) listed in ``slow_tests.txt``: one per line after its measured seconds."""
    if not SLOW_LIST.is_file():
        return set()
    ids = set()
    for line in SLOW_LIST.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.add(line.split()[-1])
    return ids


def pytest_collection_modifyitems(config, items):
    """Add the ``slow`` marker to the tests measured slow (see `slow_tests`)."""
    listed = slow_tests()
    for item in items:
        rel = Path(str(item.path)).relative_to(Path(__file__).parent.parent).as_posix()
        name = f"{rel}::{item.name}"
        base = f"{rel}::{getattr(item, 'originalname', item.name)}"
        if name in listed or base in listed or rel in listed:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - code under test may use the legacy global RNG
    torch.manual_seed(0)
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        plt.close("all")


@pytest.fixture(scope="session")
def tiny_model():
    """The built-in trained TinyCNN (trained once, then loaded from the user cache)."""
    from featviz.models import pretrained_tiny_cnn

    return pretrained_tiny_cnn()


@pytest.fixture(scope="session")
def shapes_test():
    """Held-out Shapes images (seed 1), the set the model's accuracy is quoted on."""
    from featviz.datasets import Shapes

    return Shapes(256, random_state=1)


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def no_hooks(model: torch.nn.Module) -> bool:
    """Whether no module of ``model`` carries a forward, pre-forward or backward hook."""
    return all(not getattr(m, d, None) for m in model.modules() for d in _HOOK_DICTS)


def assert_no_hooks(model: torch.nn.Module) -> None:
    """Fail naming every module of ``model`` that still carries a hook."""
    left = [
        f"{name or '<model>'}.{d}"
        for name, m in model.named_modules()
        for d in _HOOK_DICTS
        if getattr(m, d, None)
    ]
    assert not left, f"hooks left on the model: {left}"
