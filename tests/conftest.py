"""Shared fixtures: seeded RNGs, Agg backend, figures closed after each test."""

from __future__ import annotations

import os
import random

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch


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
