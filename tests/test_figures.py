"""featviz._figures: figures made through pyplot that Jupyter shows exactly once."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from featviz._figures import new_axes, new_figure


def test_new_figure_is_a_pyplot_figure_of_the_size_asked():
    before = set(plt.get_fignums())
    fig = new_figure((4.0, 3.0), layout="constrained")
    try:
        assert isinstance(fig, Figure)
        assert tuple(fig.get_size_inches()) == (4.0, 3.0)
        # pyplot holds it, so plt.show() and plt.savefig() in a script work as usual
        assert set(plt.get_fignums()) - before == {fig.number}
        assert fig.get_layout_engine() is not None
    finally:
        plt.close(fig)


def test_new_axes_returns_the_callers_axes_untouched():
    fig, ax = plt.subplots()
    try:
        n = len(plt.get_fignums())
        assert new_axes(ax, (9.0, 9.0)) is ax
        assert len(plt.get_fignums()) == n  # no figure made
    finally:
        plt.close(fig)


def test_new_axes_without_axes_makes_one_figure():
    ax = new_axes(None, (2.0, 2.0))
    try:
        assert len(ax.figure.axes) == 1 and tuple(ax.figure.get_size_inches()) == (2.0, 2.0)
    finally:
        plt.close(ax.figure)


def test_shown_once_outside_jupyter_is_a_plain_figure():
    fig = new_figure((1.0, 1.0))
    try:
        # only IPython calls _ipython_display_; elsewhere the class adds nothing
        assert hasattr(fig, "_ipython_display_")
        assert [c for c in type(fig).__mro__ if c is Figure]
    finally:
        plt.close(fig)
