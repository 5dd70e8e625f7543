"""One colour per class, keyed by class index, for every figure and page.

`plot_projection`, `plot_layer_projections`, `compare_projections`, the Recorder's
projection timeline and `explore` all colour classes through `class_palette`, so a class
keeps its colour (and its legend position) in every figure and page of one call or demo:

- a value's class index is its position in ``class_names`` when it is one of them, the
  int itself for an int (or a string that is one, such as ``"3"``), and otherwise the
  next free index after those, in sorted order (numbers before text);
- class index ``i`` gets colour ``i`` of tab10 (up to 10 classes; matplotlib's and
  bokeh's Category10 are the same colours), of tab20 (up to 20), or an even sample of
  ``turbo`` beyond.

Nothing here imports matplotlib or bokeh at module level.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

__all__ = ["as_int", "class_colours", "class_index", "class_order", "class_palette", "named"]

TAB10 = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
TAB20 = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728",
    "#ff9896", "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2",
    "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
)  # fmt: skip
_INT = re.compile(r"-?[0-9]+")  # ASCII digits only: "²".isdigit() is True, int("²") fails


def as_int(value: object) -> int | None:
    """``value`` as an int when it is one (an int, or a string of ASCII digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value):
        return int(value)
    return None


def _natural(value: object) -> tuple[int, float, str]:
    """Sort key: numbers (and number strings) by value, then everything else as text."""
    i = as_int(value)
    if i is not None:
        return (0, float(i), "")
    if isinstance(value, float):
        return (0, value, "")
    return (1, 0.0, str(value))


def class_colours(n: int) -> list[str]:
    """Hex colours of class indices ``0 .. n-1``.

    Args:
        n: Number of classes.

    Returns:
        ``n`` colours such as ``"#1f77b4"``: tab10 for n <= 10, tab20 for n <= 20,
        an even sample of ``turbo`` beyond.
    """
    if n <= 10:
        return list(TAB10[:n])
    if n <= 20:
        return list(TAB20[:n])
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    turbo = colormaps["turbo"]
    return [to_hex(turbo(i / (n - 1))) for i in range(n)]


def class_index(
    values: Iterable[Hashable], class_names: Sequence[str] | None = None
) -> dict[Hashable, int]:
    """The class index of each distinct value (rules in the module docstring).

    Args:
        values: Labels: ints, class names or other strings, e.g. an (N,) array.
        class_names: Names of the class indices, when known.

    Returns:
        ``{value: index}`` for every distinct value.
    """
    names = {str(c): i for i, c in enumerate(class_names or ())}
    found: dict[Hashable, int] = {}
    rest = []
    for v in dict.fromkeys(values):
        i = names.get(v) if isinstance(v, str) else None
        i = as_int(v) if i is None else i
        if i is not None and i >= 0:
            found[v] = i
        else:
            rest.append(v)
    start = max([*found.values(), len(names) - 1], default=-1) + 1
    for j, v in enumerate(sorted(rest, key=_natural)):
        found[v] = start + j
    return found


def class_order(
    values: Iterable[Hashable], class_names: Sequence[str] | None = None
) -> list[Hashable]:
    """The distinct values in class-index order (the legend order).

    Args:
        values: Labels, as for `class_index`.
        class_names: Names of the class indices, when known.

    Returns:
        The distinct values, sorted by class index.
    """
    index = class_index(values, class_names)
    return sorted(index, key=lambda v: (index[v], _natural(v)))


def class_palette(
    values: Iterable[Hashable], class_names: Sequence[str] | None = None
) -> dict[Hashable, str]:
    """``{value: hex colour}``: class index ``i`` gets ``class_colours(k)[i]``.

    Args:
        values: Labels, as for `class_index`.
        class_names: Names of the class indices, when known; ``k`` is at least their
            number, so a figure showing a few classes colours them as one showing all.

    Returns:
        One colour per distinct value, in class-index order.
    """
    index = class_index(values, class_names)
    k = max([*index.values(), len(class_names or ()) - 1], default=-1) + 1
    colours = class_colours(k)
    return {v: colours[index[v]] for v in class_order(index, class_names)}


def named(values: Sequence[object], class_names: Sequence[str] | None) -> list[object]:
    """Int labels as their class names (when known and in range); others unchanged.

    Args:
        values: (N,) labels.
        class_names: Names of the class indices, or None.

    Returns:
        (N,) labels, names where an int label has one.
    """
    if not class_names:
        return list(values)
    out: list[object] = []
    for v in values:
        i = None if isinstance(v, str) else as_int(v)
        out.append(str(class_names[i]) if i is not None and 0 <= i < len(class_names) else v)
    return out
