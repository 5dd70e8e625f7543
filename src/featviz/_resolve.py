"""Layer specs resolved to modules: dotted names, globs, types, selectors of outputs.

A private module every featviz module may import; `featviz.hooks` re-exports the public names
(`LayerSpec`, `resolve_layers`, `unwrap_model`).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["LayerSpec", "resolve_layers", "unwrap_model"]

#: What names a layer: a dotted name or glob (optionally with a ``[index]`` or ``[key]``
#: selector for tuple/list/dict outputs), a module type, or a module object.
LayerSpec = str | type | nn.Module

_SELECTOR = re.compile(r"^(?P<name>[^\[\]]*)(?P<sel>(?:\[[^\[\]]+\])+)$")


@dataclass(frozen=True)
class _Target:
    """A resolved layer: the key used in result dicts, the module, and an output selector."""

    key: str
    name: str
    module: nn.Module
    selector: tuple[int | str, ...] = ()
    explicit: bool = True  # named one by one (not a glob or type hit): must run when called


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the module that holds the layers of a wrapped model.

    Unwraps ``DataParallel``, ``DistributedDataParallel`` (``.module``) and
    ``torch.compile`` results (``._orig_mod``), repeatedly.

    Args:
        model: Any ``nn.Module``.

    Returns:
        The innermost wrapped module (``model`` itself when not wrapped).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"The 'model' parameter must be a torch.nn.Module. Got {type(model).__name__}."
        )
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _parse_selector(text: str) -> tuple[int | str, ...]:
    parts: list[int | str] = []
    for raw in re.findall(r"\[([^\[\]]+)\]", text):
        raw = raw.strip()
        if re.fullmatch(r"-?\d+", raw):
            parts.append(int(raw))
        else:
            parts.append(raw.strip("'\""))
    return tuple(parts)


def _strip_prefixes(name: str, names: Mapping[str, nn.Module]) -> str:
    for prefix in ("module.", "_orig_mod."):
        while name not in names and name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def resolve_layers(
    model: nn.Module, layers: LayerSpec | Sequence[LayerSpec]
) -> dict[str, nn.Module]:
    """Find the modules that ``layers`` names.

    Args:
        model: The model; DataParallel/DDP/``torch.compile`` wrappers are unwrapped and a
            leading ``module.`` in names is accepted or not.
        layers: One spec or a sequence of specs. A spec is a dotted name
            (``"layer4.1.conv2"``), a glob (``"layer*.0.relu"``), a module type
            (``nn.Conv2d``: every module of that type), or a module object of the model.
            A name may end in a selector (``"encoder[0]"``, ``"head['logits']"``) that
            picks one element of a tuple/list/dict output; the selector is kept in the key.

    Returns:
        ``{key: module}`` in the order the specs were given (model order within a glob or
        type). Keys are the unwrapped model's dotted names, plus any selector.

    Raises:
        ValueError: A name or glob matches nothing (the message lists the closest valid
            names), a type matches no module, a module is not part of the model, a
            spec is the model itself (``""``, ``model``), a glob or type matches only
            TorchScript modules, or ``layers`` is empty.
        TypeError: A spec is of another type.
    """
    return {t.key: t.module for t in _resolve(model, layers)}


def _resolve(model: nn.Module, layers: LayerSpec | Sequence[LayerSpec]) -> list[_Target]:
    inner = unwrap_model(model)
    names: dict[str, nn.Module] = dict(inner.named_modules())
    specs: list[Any]
    if isinstance(layers, (str, type, nn.Module)):
        specs = [layers]
    elif isinstance(layers, Iterable):
        specs = list(layers)
    else:
        raise TypeError(
            "The 'layers' parameter must be a name, glob, module type, module, or a sequence "
            f"of those. Got {type(layers).__name__} instead."
        )
    if not specs:
        raise ValueError(
            "The 'layers' parameter is empty. Got [] instead; name at least one layer, "
            f"e.g. {_example(names)}."
        )
    found: dict[str, _Target] = {}
    for spec in specs:
        for target in _resolve_one(inner, names, spec):
            found.setdefault(target.key, target)
    return list(found.values())


def _example(names: Mapping[str, nn.Module]) -> str:
    valid = [n for n in names if n]
    return repr(valid[-1]) if valid else "a submodule's name"


def _hookable_hits(spec: Any, hits: list[str], names: Mapping[str, nn.Module]) -> list[str]:
    """Drop TorchScript modules from the hits of a glob or type (they cannot carry hooks)."""
    kept = [n for n in hits if not isinstance(names[n], torch.jit.ScriptModule)]
    if hits and not kept:
        raise ValueError(
            f"The 'layers' entry {spec!r} matches only TorchScript modules, which cannot carry "
            "hooks. Make the model hookable first with featviz.hooks.hookable(model) (for "
            "torch.jit.script models), or pass the eager model."
        )
    return kept


def _resolve_name(inner: nn.Module, names: dict[str, nn.Module], spec: str) -> list[_Target]:
    selector: tuple[int | str, ...] = ()
    base = spec.strip()
    m = _SELECTOR.match(base)
    if m:
        base, selector = m.group("name"), _parse_selector(m.group("sel"))
    base = _strip_prefixes(base, names)
    model_name = type(inner).__name__
    if not base:
        raise ValueError(
            f"The 'layers' parameter must name a submodule of {model_name}. Got {spec!r}, "
            "the model itself, instead: its output is what the forward call returns; name a "
            f"layer such as {_example(names)}."
        )
    suffix = "".join(f"[{s!r}]" if isinstance(s, str) else f"[{s}]" for s in selector)
    if any(ch in base for ch in "*?["):
        hits = [n for n in names if n and fnmatch.fnmatchcase(n, base)]
        if not hits:
            raise ValueError(
                f"The 'layers' pattern {spec!r} matches no module of {model_name}. "
                f"{_closest(base, names)}"
            )
        return [
            _Target(n + suffix, n, names[n], selector, explicit=False)
            for n in _hookable_hits(spec, hits, names)
        ]
    if base not in names:
        raise ValueError(
            f"The 'layers' name {spec!r} is not a module of {model_name}. {_closest(base, names)}"
        )
    return [_Target(base + suffix, base, names[base], selector)]


def _resolve_one(inner: nn.Module, names: dict[str, nn.Module], spec: Any) -> list[_Target]:
    model_name = type(inner).__name__
    if isinstance(spec, str):
        return _resolve_name(inner, names, spec)
    if isinstance(spec, type):
        if not issubclass(spec, nn.Module):
            raise TypeError(
                f"The 'layers' type {spec.__name__} is not a subclass of torch.nn.Module; "
                "pass a module type such as nn.Conv2d, or a layer name."
            )
        hits = [n for n, mod in names.items() if n and isinstance(mod, spec)]
        if not hits:
            raise ValueError(
                f"The 'layers' type {spec.__name__} matches no module of {model_name}; "
                f"name a layer instead, e.g. {_example(names)}."
            )
        return [_Target(n, n, names[n], explicit=False) for n in _hookable_hits(spec, hits, names)]
    if isinstance(spec, nn.Module):
        if spec is inner:
            raise ValueError(
                f"The 'layers' parameter must be a submodule of {model_name}. Got the model "
                "itself instead: its output is what the forward call returns; pass a layer "
                f"such as {_example(names)}."
            )
        for n, mod in names.items():
            if mod is spec:
                return [_Target(n, n, mod)]
        raise ValueError(
            f"The 'layers' parameter got a {type(spec).__name__} module that is not part "
            f"of {model_name}; pass one of model.modules() or its name, e.g. "
            f"{_example(names)}."
        )
    raise TypeError(
        "The 'layers' parameter takes names, globs, module types or modules. "
        f"Got {type(spec).__name__} instead."
    )


def _closest(name: str, names: Iterable[str]) -> str:
    valid = [n for n in names if n]
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
    if not close:
        close = [n for n in valid if name and (name in n or n in name)][:5]
    if close:
        return "Closest valid names: " + ", ".join(repr(c) for c in close) + "."
    return "Valid names include: " + ", ".join(repr(c) for c in valid[:8]) + "."


def _select(value: Any, selector: tuple[int | str, ...], key: str) -> Any:
    for s in selector:
        if isinstance(value, torch.Tensor):
            raise ValueError(
                f"The 'layers' entry {key!r} selects [{s!r}], but the layer returns a tensor, "
                "not a tuple, list or dict; name the layer without the selector."
            )
        try:
            value = value[s]
        except (IndexError, KeyError, TypeError) as exc:
            raise ValueError(
                f"The 'layers' entry {key!r} cannot select [{s!r}] from the layer's output of "
                f"type {type(value).__name__}; {_selector_hint(value, key)}"
            ) from exc
    return value


def _selector_hint(value: Any, key: str) -> str:
    base = key[: key.index("[")] if "[" in key else key
    if isinstance(value, Mapping):
        keys = list(value)
        if keys:
            return f'its keys are {keys}: select one as "{base}[{keys[0]!r}]".'
        return "the dict is empty."
    if isinstance(value, (list, tuple)):
        if value:
            return f"use an index in [0, {len(value) - 1}], e.g. '{base}[0]'."
        return f"the {type(value).__name__} is empty."
    return "name the layer without the selector."


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, Mapping):
        return type(value)({k: _map_tensors(v, fn) for k, v in value.items()})  # type: ignore[call-arg]
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple
        return type(value)(*(_map_tensors(v, fn) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn) for v in value)
    return value


def _replace(value: Any, selector: tuple[int | str, ...], new: Any) -> Any:
    """``value`` with the part that ``selector`` picks replaced by ``new`` (copies, not edits)."""
    if not selector:
        return new
    head, rest = selector[0], selector[1:]
    if isinstance(value, Mapping):
        items = dict(value.items())
        items[head] = _replace(value[head], rest, new)
        try:
            return type(value)(items)  # type: ignore[call-arg]
        except TypeError:  # a mapping type without a dict constructor: edit a plain copy
            return items
    parts = list(value)
    parts[head] = _replace(parts[head], rest, new)  # type: ignore[index]
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple
        return type(value)(*parts)
    return type(value)(parts)


def _tensors(value: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    _map_tensors(value, lambda t: out.append(t))
    return out
