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

    return Shapes(256, seed=1)
