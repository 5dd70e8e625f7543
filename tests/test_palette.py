"""featviz._palette: one colour per class index, for every figure and page."""

from __future__ import annotations

import numpy as np

from featviz._palette import (
    TAB10,
    as_int,
    class_colours,
    class_index,
    class_order,
    class_palette,
    named,
)


def test_as_int_takes_ascii_digits_only():
    assert as_int(3) == 3 and as_int(np.int64(2)) == 2 and as_int("12") == 12
    assert as_int("-1") == -1
    # the explorer's crash: "²".isdigit() is True but int("²") fails
    assert as_int("\u00b2") is None and as_int("--1") is None and as_int("1.5") is None


def test_class_index_by_name_then_int_then_sorted_rest():
    names = ["circle", "square", "triangle", "cross"]
    assert class_index(["cross", "circle"], names) == {"cross": 3, "circle": 0}
    assert class_index([2, 0, 1]) == {2: 2, 0: 0, 1: 1}
    assert class_index(["3", "1"]) == {"3": 3, "1": 1}
    # unknown values take the next free indices after the named ones, numbers first
    assert class_index(["zebra", "ant", "10"], ["a", "b"]) == {"10": 10, "ant": 11, "zebra": 12}


def test_class_order_is_the_legend_order():
    names = ["circle", "square", "triangle", "cross"]
    assert class_order(["cross", "square", "circle"], names) == ["circle", "square", "cross"]
    assert class_order(["\u00b2", "1", "2"]) == ["1", "2", "\u00b2"]


def test_a_class_keeps_its_colour_whatever_else_is_shown():
    names = ["circle", "square", "triangle", "cross"]
    few = class_palette(["cross"], names)
    every = class_palette(names, names)
    assert few == {"cross": TAB10[3]} and every["cross"] == TAB10[3]
    assert list(every.values()) == list(TAB10[:4])
    # the same class as an int, a number string or a name gets the same colour
    assert class_palette([3], names)[3] == class_palette(["3"], names)["3"] == TAB10[3]


def test_class_colours_tab10_tab20_then_turbo():
    assert class_colours(4) == list(TAB10[:4])
    assert len(class_colours(15)) == 15 and class_colours(15)[1] == "#aec7e8"
    many = class_colours(30)
    assert len(set(many)) == 30 and all(c.startswith("#") and len(c) == 7 for c in many)


def test_named_maps_ints_in_range_only():
    assert named([0, 3, 7, "x"], ["a", "b", "c", "d"]) == ["a", "d", 7, "x"]
    assert named([0, 1], None) == [0, 1]
