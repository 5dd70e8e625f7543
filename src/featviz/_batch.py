"""One batch through the model: what `extract` and its distributed entry points share.

`extract` (one process or ``torch.distributed`` ranks) and `featviz.extraction_ray`
(actors of a Ray Data pipeline) run each batch with the same code, so their rows,
reductions and dtypes are the same bit for bit: the argument parsers (`reducer`,
`torch_dtype`, `input_device`), what the capture hooks apply to each layer output
(`transform_for`), the `Step` that runs one batch and returns its arrays, the batch
splitter (`split_batch`) and the manifest's ``config`` (`run_config`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from featviz._fingerprints import model_fingerprint
from featviz._ops import user_stacklevel
from featviz._outputs import find_logits
from featviz._store import FORMAT, FORMAT_VERSION
from featviz.hooks import to_numpy, unwrap_model

if TYPE_CHECKING:
    from featviz.hooks import Capture

__all__ = [
    "Step",
    "callable_name",
    "cast_to",
    "input_device",
    "labels_array",
    "len_or_none",
    "model_device",
    "reducer",
    "run_config",
    "split_batch",
    "torch_dtype",
    "transform_for",
]


def reducer(reduce: Any) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, Any]:
    """The reduce function and a JSON description of it (for the manifest)."""
    if reduce is None:
        return None, None
    if isinstance(reduce, str):
        if reduce == "flatten":
            return (lambda t: t.reshape(t.shape[0], -1)), reduce
        if reduce == "avg":
            warnings.warn(
                "pool='avg' of extract is renamed pool='mean'; 'avg' will be removed in "
                "the next release.",
                FutureWarning,
                stacklevel=user_stacklevel(),
            )
            reduce = "mean"
        if reduce == "mean":
            return (lambda t: t.mean(dim=_pooled_axes(t)) if t.ndim > 2 else t), reduce
        if reduce == "max":
            return (lambda t: t.amax(dim=_pooled_axes(t)) if t.ndim > 2 else t), reduce
        if reduce == "cls":
            return _class_token, reduce
    elif callable(reduce):
        return reduce, callable_name(reduce)
    raise ValueError(
        "The 'pool' parameter of extract must be None, 'flatten', 'mean', 'max', 'cls' or a "
        f"callable. Got {reduce!r} instead."
    )


def callable_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function or callable object (for the manifest)."""
    name = getattr(fn, "__qualname__", type(fn).__qualname__)
    return f"{getattr(fn, '__module__', '')}.{name}"


def _pooled_axes(t: torch.Tensor) -> tuple[int, ...]:
    """Axes ``mean``/``max`` pool: the tokens of (N, T, C), else every axis after C."""
    return (1,) if t.ndim == 3 else tuple(range(2, t.ndim))


def _class_token(t: torch.Tensor) -> torch.Tensor:
    """The first token (N, C) of tokens (N, T, C)."""
    if t.ndim != 3:
        raise ValueError(
            "pool='cls' of extract keeps the class token of tokens (N, T, C). Got a "
            f"layer output of shape {tuple(t.shape)} instead; use 'mean' or 'flatten'."
        )
    return t[:, 0]


def torch_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        out = dtype
    else:
        try:
            out = getattr(torch, np.dtype(dtype).name)
        except (TypeError, AttributeError) as exc:
            raise ValueError(
                f"The 'dtype' parameter of extract must be a floating torch/numpy dtype such "
                f"as torch.float16. Got {dtype!r} instead."
            ) from exc
    if not out.is_floating_point or out == torch.bfloat16:
        raise ValueError(
            "The 'dtype' parameter of extract must be a floating dtype numpy can hold "
            f"(float16, float32, float64). Got {dtype!r} instead."
        )
    return out


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def split_batch(batch: Any, b: int) -> tuple[torch.Tensor, Any]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    first = type(batch[0]).__name__ if isinstance(batch, (tuple, list)) and batch else None
    raise TypeError(
        "The 'loader' parameter of extract must yield tensors or (input, target, ...) "
        f"sequences whose first element is a tensor. Batch {b} is a {type(batch).__name__}"
        + (f" whose first element is a {first}." if first else ".")
    )


def labels_array(target: Any, n: int, b: int) -> np.ndarray:
    if isinstance(target, torch.Tensor):
        arr = np.asarray(to_numpy(target.detach().cpu()))
    else:
        try:
            arr = np.asarray(target)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"extract: the target of batch {b} ({type(target).__name__}) cannot be "
                "turned into an array."
            ) from exc
    if arr.ndim == 0 or arr.shape[0] != n:
        raise ValueError(
            f"extract: batch {b} has {n} inputs but its target has shape {arr.shape}; "
            "targets must have one entry per sample."
        )
    if arr.dtype.hasobject:
        raise TypeError(
            f"extract: the target of batch {b} holds Python objects ({type(target).__name__} "
            "of mixed or non-numeric items); yield tensors, numbers or strings as targets."
        )
    return arr


def input_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    where = model_device(model)
    dev = where if device is None else torch.device(device)
    if device is not None and dev.type != where.type:
        raise ValueError(
            f"The 'device' parameter of extract is {str(dev)!r} but the model's parameters are "
            f"on {str(where)!r}; move the model there first (extract does not move it)."
        )
    return dev


def transform_for(
    reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None, cast: torch.dtype | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the capture hooks apply to each layer output, on the device."""

    def transform(t: torch.Tensor) -> torch.Tensor:
        if reduce_fn is not None:
            t = reduce_fn(t)
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"The 'pool' callable of extract must return a tensor. Got {type(t).__name__}."
            )
        return cast_to(t, cast)

    return transform


@dataclass
class Step:
    """Runs one batch through the model and turns it into the rows of each field."""

    model: nn.Module
    cap: Capture | None
    keys: list[str]
    device: torch.device
    cast: torch.dtype | None
    select: Callable[[Any], torch.Tensor] | None = None
    warned: set[str] = field(default_factory=set)

    def arrays(
        self, b: int, inputs: torch.Tensor, target: Any, idx: np.ndarray | None, offset: int
    ) -> dict[str, np.ndarray]:
        """``{"index": (B,), "outputs": (B, ...), "labels": (B, ...), "layer<i>": ...}``."""
        n = int(inputs.shape[0]) if inputs.ndim else 0
        if self.cap is not None:
            self.cap.clear()
        out = self.model(inputs.to(self.device, non_blocking=True))
        if self.select is not None:
            out = self.select(out)
        elif not isinstance(out, torch.Tensor):
            found = find_logits(out)
            out = out if found is None else found
        index = idx if idx is not None else np.arange(offset, offset + n, dtype=np.int64)
        if index.shape[0] != n:
            raise ValueError(
                f"extract: batch {b} holds {n} inputs but its sampler drew {index.shape[0]} "
                "indices (a collate_fn that drops or adds samples?)."
            )
        if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != n:
            raise ValueError(
                f"extract: the model must return a tensor with one row per sample (N={n}); "
                f"for batch {b} it returned {_describe(out)}. Pass output_transform=callable to "
                "pick one tensor from it, e.g. output_transform=lambda o: o['out'].mean((2, 3))."
            )
        arrays = {"index": index, "outputs": to_numpy(cast_to(out, self.cast).cpu())}
        if target is not None:
            arrays["labels"] = labels_array(target, n, b)
        for i, key in enumerate(self.keys):
            arrays[f"layer{i}"] = _layer_array(self.cap, key, n, b, self.warned)
        return arrays


def cast_to(t: torch.Tensor, cast: torch.dtype | None) -> torch.Tensor:
    if cast is not None and t.is_floating_point():
        return t.to(cast)
    if t.dtype == torch.bfloat16:
        return t.float()
    return t


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _layer_array(cap: Any, key: str, n: int, b: int, warned: set[str]) -> np.ndarray:
    if key not in cap.activations:
        raise ValueError(
            f"extract: layer {key!r} produced nothing for batch {b}: the model's forward did "
            "not call it. Choose a layer on the forward path."
        )
    value = cap.activations[key]
    if not isinstance(value, torch.Tensor):
        raise ValueError(
            f"extract: layer {key!r} returned a {type(value).__name__}, not a tensor; pick "
            f"one element with a selector such as '{key}[0]'."
        )
    if value.ndim == 0 or value.shape[0] != n:
        raise ValueError(
            f"extract: layer {key!r} gave a tensor of shape {tuple(value.shape)} for a batch "
            f"of {n} samples; each layer (after 'pool') needs one row per sample."
        )
    calls = cap.calls.get(key, 0)
    if calls > 1 and key not in warned:
        warned.add(key)
        warnings.warn(
            f"extract: layer {key!r} ran {calls} times per forward pass; its last output is kept.",
            stacklevel=user_stacklevel(),
        )
    return np.asarray(to_numpy(value.cpu()))


def len_or_none(obj: Any) -> int | None:
    try:
        return len(obj) if obj is not None else None
    except TypeError:
        return None


def run_config(
    model: nn.Module,
    keys: list[str],
    reduce_name: Any,
    cast: torch.dtype | None,
    *,
    batch_size: int | None,
    num_batches: int | None,
    dataset_length: int | None,
    max_batches: int | None,
    world: int,
    index_source: str,
) -> dict[str, Any]:
    """The run's description: what a store's manifest records and compares on resume.

    Args:
        model: The model (its class and a digest of its weights are recorded).
        keys: The captured layers' keys.
        reduce_name: `reducer`'s description of ``reduce``.
        cast: `torch_dtype`'s dtype, or None.
        batch_size: The loader's batch size (None when unknown).
        num_batches: The loader's length in batches (None when unknown).
        dataset_length: The dataset's length (None when unknown).
        max_batches: ``extract``'s ``max_batches``.
        world: Processes writing the store (``torch.distributed`` world size).
        index_source: ``"sampler"`` (dataset indices known) or ``"count"``.

    Returns:
        The JSON-able config.
    """
    inner_cls = type(unwrap_model(model))
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_class": f"{inner_cls.__module__}.{inner_cls.__qualname__}",
        "layers": keys,
        "reduce": reduce_name,
        "dtype": None if cast is None else str(cast).replace("torch.", ""),
        "batch_size": batch_size,
        "num_batches": num_batches,
        "dataset_length": dataset_length,
        "max_batches": max_batches,
        "world_size": world,
        "index_source": index_source,
        # resuming with other weights (same class) would mix two models' rows
        "weights": model_fingerprint(unwrap_model(model)),
    }
