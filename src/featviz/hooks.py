"""Capture a model's layer inputs, outputs and gradients with hooks, and convert to numpy.

`capture` is a context manager: hooks exist only inside the ``with`` block and are
removed on exit, also when the block raises. Layers are chosen by dotted name, glob,
module type or module object (see `resolve_layers`). TorchScript models take hooks
only through `hookable`.

Example:
    >>> with featviz.capture(model, ["features.13", "fc"]) as cap:  # doctest: +SKIP
    ...     logits = model(images)
    >>> cap.activations["features.13"].shape  # doctest: +SKIP
    torch.Size([8, 64, 16, 16])
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn

from featviz._hookable import hookable
from featviz._ops import user_stacklevel
from featviz._resolve import (
    LayerSpec,
    _map_tensors,
    _replace,
    _resolve,
    _select,
    _Target,
    _tensors,
    resolve_layers,
    unwrap_model,
)

__all__ = [
    "Capture",
    "LayerSpec",
    "capture",
    "hookable",
    "resolve_layers",
    "to_numpy",
    "unwrap_model",
]


def _is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` (or a wrapper on the way in) is a ``torch.compile`` result."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            return True
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return False


def _shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # pragma: no cover - exotic tensor types
        return True


def _check_inference_mode() -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "capture(..., gradients=True) cannot record gradients inside "
            "torch.inference_mode(): PyTorch builds no autograd graph there, not even under "
            "torch.enable_grad(). Run the forward and backward pass outside inference_mode "
            "(torch.no_grad() is fine around other code), or pass gradients=False."
        )


def _check_not_script(model: nn.Module, caller: str) -> None:
    """Refuse TorchScript models, whose layers never run Python hooks."""
    inner = unwrap_model(model)
    if isinstance(inner, torch.jit.TracedModule):
        raise TypeError(
            f"The 'model' parameter of {caller} is a traced TorchScript module "
            f"({type(inner).__name__}, from torch.jit.trace): hooks on its layers never run. "
            "Pass the eager model, or save the traced model (torch.jit.save), load it with "
            "torch.jit.load and wrap it: featviz.hooks.hookable(model)."
        )
    if isinstance(inner, torch.jit.ScriptModule):
        raise TypeError(
            f"The 'model' parameter of {caller} is a TorchScript module "
            f"({type(inner).__name__}): hooks cannot be attached to its layers. Wrap it once, "
            "model = featviz.hooks.hookable(model), and call the returned module, or pass "
            "the eager model."
        )


def _check_graph_module(model: nn.Module, targets: Sequence[Any], caller: str) -> None:
    """Refuse torch.fx/torch.export graphs in which none of the layers is called as a module.

    ``torch.export.export(...).module()`` and ``torch.fx`` traces inline submodules into
    one graph; hooks on an inlined module never run.
    """
    inner = unwrap_model(model)
    if not isinstance(inner, torch.fx.GraphModule) or not targets:
        return
    called = {
        id(inner.get_submodule(str(n.target))) for n in inner.graph.nodes if n.op == "call_module"
    }
    if any(id(t.module) in called for t in targets):
        return
    raise TypeError(
        f"The 'model' parameter of {caller} is a torch.fx GraphModule "
        f"({type(inner).__name__}) in which the layers {[t.key for t in targets][:4]} are "
        "inlined into one graph, so hooks on them never run. For a torch.export program "
        "pass torch.export.unflatten(program), which keeps the module calls, or pass the "
        "eager model."
    )


class Capture:
    """Hooks that record layer inputs, outputs and output gradients; see `capture`.

    Attributes:
        activations: ``{key: output}`` of each layer from its latest call (a tensor, or
            the tuple/list/dict the layer returned, unless a selector picked one part).
        inputs: ``{key: positional inputs}``, recorded before the layer runs, as a tensor
            when the layer took one tensor, else a tuple. Only with ``inputs=True``.
        gradients: ``{key: d(loss)/d(output)}`` of each layer, filled during backward.
            Only with ``gradients=True``.
        layers: ``{key: module}`` that the hooks are attached to.
        calls: ``{key: number of forward calls seen}``.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        outputs: bool = True,
        inputs: bool = False,
        gradients: bool = False,
        detach: bool = True,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if transform is not None and not callable(transform):
            raise TypeError(
                "The 'transform' parameter of capture must be a callable or None. "
                f"Got {type(transform).__name__}."
            )
        _check_not_script(model, "capture")
        self._model = model
        self._compiled = _is_compiled(model)
        self._transform = transform
        self._targets = _resolve(model, layers)
        for target in self._targets:
            if isinstance(target.module, torch.jit.ScriptModule):
                raise ValueError(
                    f"The 'layers' entry {target.key!r} is a TorchScript module "
                    f"({type(target.module).__name__}), which cannot carry hooks. Pass the "
                    "eager model, or name the layer when making the model hookable: "
                    f"featviz.hooks.hookable(model, [{target.name!r}])."
                )
        _check_graph_module(model, self._targets, "capture")
        self.layers: dict[str, nn.Module] = {t.key: t.module for t in self._targets}
        self._outputs = outputs
        self._inputs = inputs
        self._gradients = gradients
        self._detach = detach
        self.activations: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}
        self.gradients: dict[str, Any] = {}
        self.calls: dict[str, int] = {}
        self._handles: list[Any] = []
        self._warned = False
        self._calls_before: dict[str, int] = {}
        # the thread whose forward passes are recorded (set by attach); None: any thread,
        # for DataParallel over several devices, whose replicas run in worker threads
        self._owner: int | None = None
        self._foreign = 0  # layer calls seen from other threads
        self._any_thread = isinstance(model, nn.DataParallel) and len(model.device_ids) > 1

    # -- hook bodies -------------------------------------------------------------------
    def _mine(self) -> bool:
        """Whether the running forward pass belongs to the thread that attached the hooks.

        Hooks live on modules, which other threads may be running at the same time (one
        model shared by several threads); their passes are not this capture's business.
        """
        return (
            self._owner is None
            or torch.compiler.is_compiling()
            or threading.get_ident() == self._owner
        )

    def _keep(self, t: torch.Tensor) -> torch.Tensor:
        # detached copies: later in-place ops (ReLU(inplace=True), +=) cannot alter them
        src = t.detach() if self._detach else t
        if self._transform is None:
            return src.clone() if self._detach else src
        out = self._transform(src)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"capture: the 'transform' callable must return a tensor. Got {type(out).__name__}."
            )
        if self._detach and (torch.compiler.is_compiling() or _shares_storage(out, t)):
            out = out.clone()  # a view of the live output: copy before in-place ops alter it
        return out

    def _make_pre_hook(self, target: _Target) -> Callable[..., None]:
        def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not self._mine():
                return
            value = args[0] if len(args) == 1 else args
            self.inputs[target.key] = _map_tensors(value, lambda t: t.detach().clone())

        return pre_hook

    def _make_hook(self, target: _Target) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if not self._mine():
                self._foreign += 1
                return None
            self.calls[target.key] = self.calls.get(target.key, 0) + 1
            value = _select(output, target.selector, target.key)
            if self._gradients:
                self._hook_gradients(target.key, value)
            if not self._outputs:
                return None
            self.activations[target.key] = _map_tensors(value, self._keep)
            if self._detach:
                return None  # the kept tensors are copies already
            # live tensors are kept: the rest of the model gets clones, so that in-place
            # ops after the layer (ReLU(inplace=True), `out += identity`) change the clones
            # and the kept tensors stay the layer's output, with gradients w.r.t. them right
            return _replace(output, target.selector, _map_tensors(value, torch.Tensor.clone))

        return hook

    def _hook_gradients(self, key: str, value: Any) -> None:
        _check_inference_mode()
        tensors = [t for t in _tensors(value) if t.requires_grad]
        if not tensors:
            if not self._warned:
                self._warned = True
                why = (
                    "grad mode is off (torch.no_grad / inference_mode)"
                    if not torch.is_grad_enabled()
                    else "its output does not require grad (frozen parameters and inputs?)"
                )
                warnings.warn(
                    f"capture: gradients were requested for {key!r} but {why}; "
                    "no gradient will be recorded.",
                    stacklevel=user_stacklevel(),
                )
            return
        if len(tensors) == 1 and isinstance(value, torch.Tensor):
            tensors[0].register_hook(self._grad_setter(key, None))
            return
        for i, t in enumerate(tensors):
            t.register_hook(self._grad_setter(key, i))

    def _grad_setter(self, key: str, index: int | None) -> Callable[[torch.Tensor], None]:
        def setter(grad: torch.Tensor) -> None:
            g = grad.detach() if self._detach else grad
            if index is None:
                self.gradients[key] = g
            else:
                current = self.gradients.get(key)
                parts = list(current) if isinstance(current, tuple) else []
                parts.extend([None] * (index + 1 - len(parts)))
                parts[index] = g
                self.gradients[key] = tuple(parts)

        return setter

    # -- lifecycle ---------------------------------------------------------------------
    def attach(self) -> Capture:
        """Register the hooks (done by ``__enter__``); calling it twice is an error."""
        if self._handles:
            raise RuntimeError("capture: hooks are already attached")
        if self._gradients:
            _check_inference_mode()
        self._owner = None if self._any_thread else threading.get_ident()
        try:
            for target in self._targets:
                if self._inputs:
                    self._handles.append(
                        target.module.register_forward_pre_hook(self._make_pre_hook(target))
                    )
                self._handles.append(target.module.register_forward_hook(self._make_hook(target)))
            # run around each call of the model itself (eagerly, also when it is compiled):
            # detect requested layers that did not run during that call
            self._handles.append(self._model.register_forward_pre_hook(self._model_pre))
            self._handles.append(self._model.register_forward_hook(self._model_post))
        except BaseException:
            self.remove()
            raise
        return self

    def _model_pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._mine():
            self._calls_before = dict(self.calls)

    def _model_post(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._mine():
            return
        missing = [k for k in self.layers if self.calls.get(k, 0) == self._calls_before.get(k, 0)]
        if self._compiled and len(missing) == len(self.layers):
            raise RuntimeError(
                "capture: none of the hooks on "
                f"{list(self.layers)} ran during this call of the torch.compile'd model. "
                "Compiled code ignores hooks added after it was compiled. Either enter "
                "capture(...) before the compiled model's first call (or before "
                "torch.compile), call torch._dynamo.reset() first, or capture on the "
                "uncompiled module (model._orig_mod) and call that one."
            )
        explicit = {t.key for t in self._targets if t.explicit}
        missing = [k for k in missing if k in explicit]
        if not missing:
            return
        warnings.warn(
            f"capture: the layers {missing} did not run during this call of "
            f"{type(module).__name__}, so .activations has nothing new for them. Check the "
            "'layers' names against the forward pass (a branch the input did not take?).",
            stacklevel=user_stacklevel(),  # the line that called the model
        )

    def remove(self) -> None:
        """Remove every hook this object registered. Safe to call any number of times."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def clear(self) -> None:
        """Forget recorded tensors (hooks stay attached)."""
        self.activations.clear()
        self.inputs.clear()
        self.gradients.clear()
        self.calls.clear()

    @property
    def attached(self) -> bool:
        """Whether hooks are currently registered."""
        return bool(self._handles)

    def __enter__(self) -> Capture:
        return self.attach()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
        if exc_type is None and self._foreign and not self.calls:
            warnings.warn(
                f"capture: the layers {list(self.layers)} ran {self._foreign} time(s), but only "
                "in other threads than the one that entered capture(...), and capture records "
                "only that thread's forward passes (so that threads sharing a model do not "
                "mix results). Run the model in the thread that enters the with block.",
                stacklevel=user_stacklevel(),
            )

    def __repr__(self) -> str:
        return f"Capture(layers={list(self.layers)}, attached={self.attached})"


def capture(
    model: nn.Module,
    layers: LayerSpec | Sequence[LayerSpec],
    *,
    outputs: bool = True,
    inputs: bool = False,
    gradients: bool = False,
    detach: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Capture:
    """Record layer outputs (and optionally inputs and gradients) inside a ``with`` block.

    Hooks are registered on ``__enter__`` and all removed on ``__exit__``, also when the
    block raises; leaving twice is harmless. The model's train/eval flags,
    ``requires_grad`` flags and ``.grad`` fields are never touched.

    ``torch.compile``: compiled code runs the hooks that existed when it was compiled
    and silently skips hooks added later. So enter ``capture`` before the compiled
    model's first call (or before ``torch.compile``). When ``model`` is a compiled
    module and none of the hooks ran during a call, that call raises ``RuntimeError``
    saying so, instead of returning empty results. Gradient capture needs a graph break
    (``fullgraph=True`` fails inside PyTorch).

    TorchScript: hooks cannot run on the layers of ``torch.jit.script`` or
    ``torch.jit.trace`` models, so they are refused (``TypeError``); wrap a scripted or
    loaded model with `hookable` and call the wrapper.

    Threads: the hooks record only the forward passes run by the thread that entered
    the block, so several threads may capture from one shared model at once (except
    ``nn.DataParallel`` over several devices, whose replicas run in worker threads: all
    of its passes are recorded). A block whose layers ran only in other threads warns
    on exit.

    Nothing is recorded silently: each time ``model`` itself is called inside the block,
    layers named one by one (not by glob or type) that did not run during that call
    are reported with a ``UserWarning``.

    Args:
        model: The model (DataParallel/DDP/``torch.compile`` wrappers are unwrapped).
        layers: Which layers; see `resolve_layers`.
        outputs: Record each layer's output in ``.activations``.
        inputs: Record each layer's positional inputs in ``.inputs``, before the layer
            runs (a copy, so in-place layers cannot alter it).
        gradients: Record the gradient of each layer's output in ``.gradients`` when a
            backward pass runs through it; uses tensor hooks, so in-place ops after the
            layer (ReLU(inplace=True)) are fine. Warns when grad mode is off or the
            output does not require grad.
        detach: Store detached copies (default). ``False`` stores the live tensors, still
            attached to the autograd graph (for computing gradients w.r.t. them); the
            rest of the model then runs on clones of them, so in-place ops after the
            layer (``ReLU(inplace=True)``, ``out += identity``) cannot change what is
            stored, and gradients w.r.t. the stored tensors are those of the layer's output.
        transform: Optional function applied to each recorded output tensor inside the
            hook, on its device, before it is stored (e.g. global average pooling
            (N, C, H, W) -> (N, C), or ``.half()``), so the full tensor is never kept.
            A result that is a view of the live output is copied.

    Returns:
        A `Capture`, to be used as a context manager.

    Raises:
        TypeError: ``model`` is not a module, or is a TorchScript module; ``transform``
            is not callable.
        ValueError: ``layers`` names nothing, the model itself or a TorchScript layer
            (see `resolve_layers`); during the forward pass, a selector does not fit
            the layer's output.
        RuntimeError: ``gradients=True`` inside ``torch.inference_mode()``.

    Shapes:
        Each recorded tensor has the shape the layer produced, e.g. (N, C, H, W).
    """
    return Capture(
        model,
        layers,
        outputs=outputs,
        inputs=inputs,
        gradients=gradients,
        detach=detach,
        transform=transform,
    )


def to_numpy(x: Any) -> Any:
    """Convert tensors (on any device, with grad, any float type) to numpy arrays.

    bfloat16 becomes float32 (numpy has no bfloat16); float16 stays float16. Nested
    dicts, lists and tuples are converted element by element; numpy arrays and other
    objects are returned as they are. A contiguous CPU tensor shares memory with the
    returned array (no copy); convert with ``.copy()`` to own the data.

    Args:
        x: A tensor, an array, or a nested dict/list/tuple of them.

    Returns:
        The same structure with every tensor replaced by a ``numpy.ndarray``.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        if t.is_conj():
            t = t.resolve_conj()
        if t.is_neg():
            t = t.resolve_neg()
        return t.cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    return _map_tensors(x, to_numpy) if isinstance(x, (Mapping, list, tuple)) else x
