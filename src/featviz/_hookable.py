"""TorchScript models made hookable: a scripted chain unrolled into eager children.

A private module; `featviz.hooks` re-exports `hookable`.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from featviz._resolve import _SELECTOR, _closest, _tensors

__all__ = ["hookable"]


class _ScriptLeaf(nn.Module):
    """Python wrapper of a TorchScript submodule, so that hooks can be attached to it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any) -> Any:
        return self.inner(*args)


class _ScriptChain(nn.Sequential):
    """Runs its children in order, flattening before a Linear (as torchvision models do)."""

    def forward(self, x: Any) -> Any:
        for child in self:
            inner = child.inner if isinstance(child, _ScriptLeaf) else child
            if getattr(inner, "original_name", "") == "Linear" and x.ndim > 2:
                x = x.flatten(1)
            x = child(x)
        return x


class _Hookable(_ScriptChain):
    """The top of a `hookable` model: checks its first eval-mode call against TorchScript."""

    _script: nn.Module
    _checked: bool

    def __init__(self, children: OrderedDict[str, nn.Module], script: nn.Module) -> None:
        super().__init__(children)
        # not registered as a submodule: its modules are already this chain's descendants
        self.__dict__["_script"] = script
        self.__dict__["_checked"] = False

    def forward(self, x: Any) -> Any:
        if self._checked:
            return super().forward(x)
        try:
            out = super().forward(x)
        except Exception as exc:
            with torch.no_grad():
                self._script(x)  # a bad input fails here too, with its own error
            raise self._not_a_chain() from exc
        if not any(m.training for m in self.modules()):
            with torch.no_grad():
                ref = self._script(x)
            if not _same_outputs(out, ref):
                raise self._not_a_chain()
            self.__dict__["_checked"] = True
        return out

    def _not_a_chain(self) -> ValueError:
        return ValueError(
            "The 'model' given to featviz.hooks.hookable computes something other than a "
            f"plain chain of its submodules ({getattr(self._script, 'original_name', '?')}: skip "
            "connections, several inputs, ...), so its layers cannot be run one by one. Name "
            "the layers in hookable's 'layers' parameter, so that only their parents are "
            "unrolled, or pass the eager model."
        )


def _same_outputs(out: Any, ref: Any) -> bool:
    a, b = _tensors(out), _tensors(ref)
    return (
        len(a) == len(b) > 0
        and all(x.shape == y.shape for x, y in zip(a, b, strict=True))
        and all(
            torch.allclose(x.detach(), y, rtol=1e-4, atol=1e-5) for x, y in zip(a, b, strict=True)
        )
    )


def _unroll(module: nn.Module, paths: list[list[str]] | None) -> nn.Module:
    """A chain of ``module``'s children, unrolled along ``paths`` (None: everywhere)."""
    children = list(module.named_children())
    deeper = None if paths is None else [p for p in paths if p]
    if not children or deeper == []:
        return _ScriptLeaf(module)
    return _ScriptChain(
        OrderedDict(
            (
                name,
                _unroll(child, None if deeper is None else [p[1:] for p in deeper if p[0] == name]),
            )
            for name, child in children
        )
    )


def _script_names(spec: Any, names: Mapping[str, nn.Module]) -> list[str]:
    """The module names a name, glob or ``name[selector]`` spec matches (no root)."""
    if not isinstance(spec, str):
        return []
    base = spec.strip()
    m = _SELECTOR.match(base)
    if m and m.group("name") in names:
        base = m.group("name")
    if any(ch in base for ch in "*?["):
        return [n for n in names if n and fnmatch.fnmatchcase(n, base)]
    return [base] if base and base in names else []


def hookable(model: nn.Module, layers: str | Sequence[str] | None = None) -> nn.Module:
    """Make a TorchScript model's layers hookable, for `capture` and CAMs.

    PyTorch cannot attach hooks to the modules of a ``torch.jit.script`` model (or one
    loaded with ``torch.jit.load``). This returns an eager module that runs the same
    TorchScript submodules one after another, with the same dotted names, so hooks on
    the named layers fire. It assumes that each unrolled module's forward calls its
    children in order (flattening before a ``Linear``), as in ``Sequential`` models,
    VGG-like and ResNet-like classifiers when only the path down to a stage is unrolled.
    The first call in eval mode is checked against the TorchScript model's own output;
    a mismatch raises ``ValueError`` instead of returning wrong results.

    Example:
        >>> model = featviz.hooks.hookable(torch.jit.load("m.pt"), "features.13")  # doctest: +SKIP
        >>> maps = featviz.grad_cam(model, images, "features.13")  # doctest: +SKIP

    Args:
        model: A TorchScript module (``torch.jit.script`` result or ``torch.jit.load``
            archive, also of a saved trace). Move it to its device first.
        layers: Names or globs of the layers to hook (dotted, as in
            ``model.named_modules()``, optionally with a ``[selector]``); only their
            parents are unrolled, the rest runs as TorchScript. None unrolls every module.

    Returns:
        An ``nn.Module`` whose forward takes the model's (N, ...) input and returns its
        output; the named layers are Python modules that can carry hooks.

    Raises:
        TypeError: ``model`` is not a TorchScript module, or is an in-memory
            ``torch.jit.trace`` result (its submodules cannot be called one by one).
        ValueError: A name in ``layers`` is not a module of the model.
    """
    if isinstance(model, torch.jit.TracedModule):
        raise TypeError(
            "The 'model' parameter of hookable is an in-memory torch.jit.trace result, whose "
            "submodules cannot be called one by one. Pass the eager model to capture, or "
            "save the trace with torch.jit.save and pass torch.jit.load(path)."
        )
    if not isinstance(model, torch.jit.ScriptModule):
        raise TypeError(
            "The 'model' parameter of hookable must be a TorchScript module (torch.jit.script "
            f"or torch.jit.load). Got {type(model).__name__} instead; eager models take hooks "
            "as they are."
        )
    paths: list[list[str]] | None = None
    if layers is not None:
        names = dict(model.named_modules())
        paths = []
        for spec in [layers] if isinstance(layers, str) else list(layers):
            hits = _script_names(spec, names)
            if not hits:
                raise ValueError(
                    f"The 'layers' parameter of hookable must name modules of the model. "
                    f"Got {spec!r} instead. {_closest(str(spec), names)}"
                )
            paths.extend(name.split(".") for name in hits)
    chain = _unroll(model, paths)
    children = OrderedDict(chain.named_children()) if isinstance(chain, _ScriptChain) else None
    if children is None:
        raise ValueError(
            "The 'model' parameter of hookable has no submodules to hook. "
            f"Got {type(model).__name__} instead; capture its output from the forward call."
        )
    return _Hookable(children, model)
