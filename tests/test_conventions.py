"""Every public signature uses the glossary in docs/conventions.md, and no old synonym."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import featviz

DOC = Path(__file__).parent.parent / "docs" / "conventions.md"
MODULES = sorted(
    {m for m in featviz._EXPORTS.values()} | {f"featviz.{m}" for m in featviz._SUBMODULES}
)


def _glossary() -> tuple[set[str], set[str]]:
    """(allowed names, old names) read from the doc's tables."""
    allowed: set[str] = set()
    old: set[str] = set()
    section = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line
            continue
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        names = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", first))
        if section.startswith("## Renamed"):
            old |= {n for n in names if n not in ("reduce",)}
            continue
        allowed |= names
    return allowed, old


def _callables():
    seen = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                if issubclass(obj, (Exception, Warning)) or (
                    issubclass(obj, tuple) and hasattr(obj, "_fields")
                ):
                    continue  # exceptions and result records take no user parameters
                members = [("__init__", obj.__init__)]
                members += [
                    (a, v)
                    for a, v in vars(obj).items()
                    if not a.startswith("_") and inspect.isfunction(v)
                ]
                members += [
                    (a, v.__func__)
                    for a, v in vars(obj).items()
                    if isinstance(v, (classmethod, staticmethod)) and not a.startswith("_")
                ]
                if dataclasses.is_dataclass(obj) and module_name != "featviz.targets":
                    # records that featviz builds (results, contexts): their fields are
                    # attributes, not parameters users pass (targets are built by users)
                    members = [m for m in members if m[0] != "__init__"]
                for attr, fn in members:
                    key = f"{module_name}.{name}.{attr}"
                    if key not in seen:
                        seen.add(key)
                        yield key, fn
            elif callable(obj):
                key = f"{module_name}.{name}"
                if key not in seen:
                    seen.add(key)
                    yield key, obj


def test_glossary_reads_names_and_old_names():
    allowed, old = _glossary()
    assert {"layers", "heatmaps", "random_state", "overwrite", "ax", "fig"} <= allowed
    assert {"layer", "map", "fmap", "saliency", "reduction", "seed", "force"} <= old
    assert not allowed & old


def test_every_public_parameter_is_in_the_glossary():
    allowed, old = _glossary()
    unknown, synonyms = [], []
    for key, fn in _callables():
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            continue
        for p in params:
            if p.name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name in old:
                synonyms.append(f"{key}({p.name})")
            elif p.name not in allowed:
                unknown.append(f"{key}({p.name})")
    assert not synonyms, f"old names still in signatures: {synonyms}"
    assert not unknown, f"names missing from docs/conventions.md: {unknown}"
