"""One name, one meaning: every public signature against the glossary data.

The glossary is data (`docs/glossary.toml`); `docs/make_conventions.py` checks the code
against it and writes the tables of `docs/conventions.md`. These tests run that check, and
check that the check itself catches each kind of defect it is for.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
_spec = importlib.util.spec_from_file_location("make_conventions", DOCS / "make_conventions.py")
assert _spec is not None and _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
sys.modules["make_conventions"] = mc  # dataclasses look their module up there
_spec.loader.exec_module(mc)

GLOSSARY = mc.load()
USES = mc.collect(frozenset(GLOSSARY.get("records", [])))


def test_every_public_parameter_agrees_with_the_glossary():
    problems = mc.check(GLOSSARY, USES)
    assert not problems, "\n".join(problems)


def test_the_conventions_page_is_written_from_the_data():
    text = (DOCS / "conventions.md").read_text(encoding="utf-8")
    assert mc.page(GLOSSARY, text) == text, "run: python docs/make_conventions.py"


def test_the_walk_sees_functions_classes_and_methods():
    where = {u.where for uses in USES.values() for u in uses}
    assert {"featviz.grad_cam", "featviz.CAM", "featviz.ExploreView.save"} <= where
    assert {"featviz.metrics.road", "featviz.targets.BoxTarget", "featviz.Recorder.open"} <= where
    assert "featviz.FeatureSet" not in where  # a record: its fields are not parameters
    assert len(USES) > 150


def _use(where: str, annotation: str = "Any", default=inspect.Parameter.empty):
    return mc.Use(where, annotation, default)


def test_a_second_meaning_of_a_name_fails():
    uses = copy.deepcopy(USES)
    # a new function using `reduce` for something else must be listed (read by a reviewer)
    uses["reduce"].append(_use("featviz.new_function", "str"))
    problems = mc.check(GLOSSARY, uses)
    assert problems == [
        "featviz.new_function(reduce): not listed in reduce's used_in; if it means "
        f"{GLOSSARY['name']['reduce']['meaning']!r}, list it, else choose another name"
    ]


def test_an_incompatible_type_fails():
    uses = copy.deepcopy(USES)
    uses["progress"] = [
        u if u.where != "featviz.extract" else _use(u.where, "int", True) for u in uses["progress"]
    ]
    assert any(
        p.startswith("featviz.extract(progress: int): a type") for p in mc.check(GLOSSARY, uses)
    )


@pytest.mark.parametrize(("flag", "other"), [("progress", False), ("overwrite", True)])
def test_a_shared_flag_with_another_default_and_no_reason_fails(flag, other):
    uses = copy.deepcopy(USES)
    first = uses[flag][0]
    uses[flag][0] = _use(first.where, first.annotation, other)
    assert any(
        p.startswith(f"{first.where}({flag}={other!r}): the shared default")
        for p in mc.check(GLOSSARY, uses)
    )


def test_an_unknown_name_and_a_retired_old_name_fail():
    uses = copy.deepcopy(USES)
    uses["wibble"] = [_use("featviz.grad_cam")]
    uses["fmap"] = [_use("featviz.sum_channels")]
    problems = mc.check(GLOSSARY, uses)
    assert "wibble: used by ['featviz.grad_cam'] but not in the glossary" in problems
    assert "featviz.sum_channels(fmap): an old name; use 'activations'" in problems


def test_a_stale_entry_fails():
    uses = copy.deepcopy(USES)
    del uses["tolerance"]
    assert "tolerance: in the glossary but no public callable uses it" in mc.check(GLOSSARY, uses)


def test_shared_flags_have_one_default_and_reasons_for_the_rest():
    for flag in ("progress", "overwrite", "random_state", "eval_mode"):
        entry = GLOSSARY["name"][flag]
        assert "default" in entry, flag
        for where, reason in entry.get("default_reasons", {}).items():
            assert len(reason) > 20, (flag, where)  # a reason, not a placeholder
