"""The one place plot functions create a figure when the caller gives none.

Every ``plot_*``/``compare_*`` function that must make its own figure calls
:func:`new_figure` (or :func:`new_axes`). The figure is created through pyplot, so a
script's ``plt.show()`` shows it and ``fig.savefig`` works as usual, but it is an
instance of :class:`_ShownOnceFigure`: in Jupyter's inline backend a figure that is
displayed as a cell's result (or by ``display(fig)``) is released from pyplot at that
moment, so the backend does not draw it a second time at the end of the cell. A figure
that is not displayed (a function that returns an ``Axes``, or ``fig = plot_...(...)``)
stays with pyplot and the inline backend shows it once, as for any pyplot figure.

This module imports matplotlib: plot functions import it inside their body, so
``import featviz`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _is_inline_backend() -> bool:
    import matplotlib

    return "inline" in str(matplotlib.get_backend()).lower()


def _display_once(fig: Figure) -> None:
    """``_ipython_display_`` of featviz figures: show ``fig`` and release it from pyplot.

    Outside the inline backend (a Qt window, a terminal) nothing is released: the
    figure is formatted as IPython would format any other object.
    """
    from IPython import get_ipython
    from IPython.display import publish_display_data

    shell = get_ipython()
    if shell is None:  # pragma: no cover - only called by IPython
        return
    if _is_inline_backend():
        import matplotlib.pyplot as plt

        plt.close(fig)  # the inline backend shows what pyplot still holds: not this one again
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    # each formatter once, without the _ipython_display_ step that led here
    for mime, formatter in shell.display_formatter.formatters.items():
        result = formatter(fig)
        if isinstance(result, tuple) and len(result) == 2:
            result, md = result
            if md is not None:
                metadata[mime] = md
        if result is not None:
            data[mime] = result
    publish_display_data(data, metadata=metadata)


class _ShownOnceFigure(Figure):
    """A matplotlib Figure that Jupyter's inline backend shows exactly once."""

    def _ipython_display_(self) -> None:
        _display_once(self)


def new_figure(figsize: tuple[float, float], **kwargs: Any) -> Figure:
    """A new pyplot-managed figure that Jupyter shows exactly once.

    Args:
        figsize: ``(width, height)`` in inches.
        **kwargs: Passed to ``plt.figure`` (e.g. ``layout="constrained"``).

    Returns:
        The new :class:`matplotlib.figure.Figure` (a private subclass).
    """
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, FigureClass=_ShownOnceFigure, **kwargs)


def new_axes(ax: Axes | None, figsize: tuple[float, float], **kwargs: Any) -> Axes:
    """``ax`` itself, or the one Axes of a new figure from :func:`new_figure`.

    Args:
        ax: The caller's Axes, or ``None`` to make a figure.
        figsize: ``(width, height)`` in inches of the new figure.
        **kwargs: Passed to :func:`new_figure`.

    Returns:
        The Axes to draw on.
    """
    if ax is not None:
        return ax
    return new_figure(figsize, **kwargs).add_subplot()
