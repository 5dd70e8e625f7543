"""Whole-dataset extraction: layer activations, model outputs, labels and sample indices.

`extract` runs a model over a DataLoader (in eval mode, without gradients, restoring the
model's flags afterwards) and collects, for every sample, the chosen layers' activations,
the model output, the target the loader yields and the sample's dataset index. It
replaces the hand-written "hooks + ``.cpu().numpy()`` + ``np.append`` + ``pickle.dump``"
loop: the work is linear in the number of samples, reductions and down-casts happen on
the device before the transfer, and with ``store=PATH`` everything streams to ``.npy``
shards on disk (resumable, memory flat in N, no pickle) that `FeatureSet.open`
memory-maps back.

Example:
    >>> fs = featviz.extract(model, loader, ["features.13"], reduce="mean")  # doctest: +SKIP
    >>> fs.layers["features.13"].shape, fs.outputs.shape, fs.labels.shape  # doctest: +SKIP
    ((256, 64), (256, 4), (256,))
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from featviz._fingerprints import code_fingerprint, model_fingerprint
from featviz._ops import eval_mode, user_stacklevel
from featviz._outputs import find_logits
from featviz._store import FORMAT, FORMAT_VERSION, Sink, dist_info, open_sink
from featviz.featureset import FeatureSet
from featviz.hooks import capture, to_numpy, unwrap_model

if TYPE_CHECKING:
    from featviz.hooks import Capture, LayerSpec

__all__ = ["FeatureSet", "extract"]


# ---------------------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------------------
def _reducer(reduce: Any) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, Any]:
    """The reduce function and a JSON description of it (for the manifest)."""
    if reduce is None:
        return None, None
    if isinstance(reduce, str):
        if reduce == "flatten":
            return (lambda t: t.reshape(t.shape[0], -1)), reduce
        if reduce == "avg":
            warnings.warn(
                "reduce='avg' of extract is renamed reduce='mean'; 'avg' will be removed in "
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
        return reduce, _callable_name(reduce)
    raise ValueError(
        "The 'reduce' parameter of extract must be None, 'flatten', 'mean', 'max', 'cls' or a "
        f"callable. Got {reduce!r} instead."
    )


def _callable_name(fn: Callable[..., Any]) -> str:
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
            "reduce='cls' of extract keeps the class token of tokens (N, T, C). Got a "
            f"layer output of shape {tuple(t.shape)} instead; use 'mean' or 'flatten'."
        )
    return t[:, 0]


def _torch_dtype(dtype: Any) -> torch.dtype | None:
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


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _split_batch(batch: Any, b: int) -> tuple[torch.Tensor, Any]:
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


def _labels_array(target: Any, n: int, b: int) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------
# batches with their dataset indices
# ---------------------------------------------------------------------------------------
class _RecordingBatchSampler:
    """Wraps a batch sampler; remembers each batch's indices in the order it is drawn.

    The DataLoader draws batches of indices from this object in its main process (also
    with worker processes) and returns the batches in the same order (``in_order``), so
    a FIFO of (batch number, indices) matches the batches the loader yields.
    """

    def __init__(
        self,
        inner: Iterable[Sequence[int]],
        limit: int | None,
        skip: Callable[[int, list[int]], bool],
    ) -> None:
        self.inner = inner
        self.limit = limit
        self.skip = skip
        self.queue: collections.deque[tuple[int, list[int]]] = collections.deque()

    def __iter__(self) -> Iterator[list[int]]:
        for b, indices in enumerate(self.inner):
            if self.limit is not None and b >= self.limit:
                return
            idx = [int(i) for i in indices]
            if self.skip(b, idx):
                continue
            self.queue.append((b, idx))
            yield idx

    def __len__(self) -> int:
        n = len(self.inner)  # type: ignore[arg-type]
        return n if self.limit is None else min(n, self.limit)


def _can_track(loader: Any) -> bool:
    from torch.utils.data import DataLoader, IterableDataset

    return (
        type(loader) is DataLoader
        and loader.batch_sampler is not None
        and not isinstance(loader.dataset, IterableDataset)
    )


def _rebuild(loader: Any, batch_sampler: _RecordingBatchSampler) -> Any:
    from torch.utils.data import DataLoader

    accepted = inspect.signature(DataLoader.__init__).parameters
    kwargs: dict[str, Any] = {
        "batch_sampler": batch_sampler,
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "persistent_workers": loader.persistent_workers,
    }
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    for name in ("pin_memory_device", "in_order"):
        if name in accepted and hasattr(loader, name):
            kwargs[name] = getattr(loader, name)
    return DataLoader(loader.dataset, **kwargs)


def _batches(
    loader: Any, limit: int | None, sink: Sink
) -> Iterator[tuple[int, Any, np.ndarray | None, int]]:
    """Yield ``(batch number, batch, dataset indices or None, running row offset)``.

    Batches ``sink`` already holds are skipped (the sink checks that they hold the same
    samples: by dataset index, or by the inputs where the index is counted).
    """
    if _can_track(loader):

        def done(b: int, idx: list[int]) -> bool:
            return sink.skip(b, np.asarray(idx, dtype=np.int64), None) is not None

        rec = _RecordingBatchSampler(loader.batch_sampler, limit, done)
        for batch in _rebuild(loader, rec):
            b, idx = rec.queue.popleft()
            yield b, batch, np.asarray(idx, dtype=np.int64), 0
        return
    offset = 0
    for b, batch in enumerate(loader):
        if limit is not None and b >= limit:
            return
        inputs, _ = _split_batch(batch, b)
        rows = sink.skip(b, None, inputs)
        if rows is not None:
            offset += rows
            continue
        yield b, batch, None, offset
        offset += int(inputs.shape[0])


def _num_batches(loader: Any, limit: int | None) -> int | None:
    try:
        n = len(loader)
    except TypeError:
        return limit
    return n if limit is None else min(n, limit)


# ---------------------------------------------------------------------------------------
# extract
# ---------------------------------------------------------------------------------------
def extract(
    model: nn.Module,
    loader: Iterable[Any],
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    *,
    reduce: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
    dtype: torch.dtype | str | np.dtype[Any] | type | None = None,
    store: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    max_batches: int | None = None,
    outputs: Callable[[Any], torch.Tensor] | None = None,
) -> FeatureSet:
    """Run ``model`` over ``loader``; collect layer activations, outputs, labels and indices.

    The model runs in eval mode under ``torch.no_grad``; every module's train/eval flag
    is restored afterwards (also on errors) and hooks are always removed. Each batch is
    ``loader``'s item: a tensor (the input), or a sequence ``(input, target, ...)``
    such as ``(images, labels)`` or a `featviz.datasets.ShapesItem`; ``target`` may be a
    tensor or anything ``numpy.asarray`` turns into numbers or strings.

    Sample index: for a plain ``torch.utils.data.DataLoader`` over a map-style dataset,
    `extract` iterates a copy of the loader whose batch sampler records the dataset
    indices it draws, so every row knows its dataset index (also with shuffling, worker
    processes and ``DistributedSampler``); rows are returned in dataset order, each index
    once. For other iterables the index counts samples in the order they arrive.

    With ``store=PATH`` nothing accumulates in RAM: each batch becomes one ``.npy``
    shard per field (written to a temp file, then renamed) under ``PATH/rank<r>/``, with
    a JSON manifest. A run that stopped (crash, Ctrl-C, full disk) resumes with the same
    call: finished shards are skipped after checking that they hold the same samples
    (their recorded dataset indices, or for loaders without them a fingerprint of each
    batch's inputs), so the result is identical to an uninterrupted run. At the end the
    shards of all ranks are merged into ``PATH/data/<field>.npy`` in dataset order and
    opened with `FeatureSet.open` (memory-mapped). The store only writes files whose
    names its own manifests define: a non-empty folder that is not a featviz store is
    refused before the model runs. While a run writes, it holds the lock file
    ``PATH/rank<r>.lock``, so a second run into the same store is refused. Under
    ``torch.distributed`` every rank must call `extract` with the same arguments; each
    writes its own shards, rank 0 merges them (dropping ``DistributedSampler`` padding
    duplicates) between two barriers, and every rank gets the merged set.

    Args:
        model: The model; not moved, not modified.
        loader: A DataLoader or any iterable of batches (see above).
        layers: Layers whose activations to keep, as for `featviz.capture`
            (names, globs, types, modules; ``"name[0]"`` picks part of a tuple output).
            None keeps only outputs, labels and index.
        reduce: Applied to each layer's activation on the device before the transfer:
            None (keep (N, C, H, W)), ``"flatten"`` (N, C*H*W), ``"mean"`` or ``"max"``
            (pool the positions: (N, C, H, W) -> (N, C); a 3-D output is read as
            transformer tokens (N, T, C) and pooled over the tokens -> (N, C), never
            over the channels; pass a callable for (N, C, L) sequences), ``"cls"`` (the
            class token of (N, T, C) -> (N, C)), or a callable mapping a (B, ...)
            tensor to a (B, ...) tensor.
        dtype: Floating dtype (e.g. ``torch.float16``) that floating activations and
            outputs are cast to on the device. None keeps the model's dtype
            (bfloat16 becomes float32).
        store: Folder to stream to (created if missing); None keeps everything in RAM.
        device: Device the inputs are sent to; by default the device of the model's
            parameters. The model must already be there.
        progress: Show a tqdm progress bar.
        max_batches: Stop after this many batches (the first ones of the loader).
        outputs: What to keep of the model's output, a callable ``output -> (B, ...)``
            tensor with one row per sample, e.g. ``lambda o: o["out"].mean((2, 3))`` for
            a segmenter or ``lambda dets: torch.stack([d["scores"][:1].sum() for d in
            dets])`` for a torchvision detector (a list of dicts). None: a tensor output
            as it is, else its logits (``.logits``, a ``"logits"`` key or a tuple's
            first element, as Hugging Face models return them).

    Returns:
        A `FeatureSet`: ``layers[key]`` (N, ...) per layer, ``outputs`` (N, ...),
        ``labels`` (N, ...) or None when the loader yields no targets, ``index`` (N,).

    Raises:
        TypeError: ``model`` is not a module, the loader yields no input tensor, or a
            target holds Python objects.
        ValueError: Bad ``reduce``/``dtype``/``max_batches``/``device``; a layer
            produced no tensor with one row per sample; the loader yielded nothing;
            ``store`` holds a different run's manifest, a foreign folder or files
            featviz did not write; the samples of a batch being resumed differ from the
            interrupted run's.
        RuntimeError: Another `extract` call is writing into ``store``.
        OSError: Writing the store failed (e.g. disk full); shards written before are
            intact and the same call resumes.
    """
    _check_args(model, loader, max_batches)
    reduce_fn, reduce_name = _reducer(reduce)
    cast = _torch_dtype(dtype)
    dev = _input_device(model, device)
    cap = None if layers is None else capture(model, layers, transform=_transform(reduce_fn, cast))
    keys = [] if cap is None else list(cap.layers)
    rank, world = dist_info()
    config = _config(model, loader, keys, reduce_name, cast, max_batches, world)
    if outputs is not None:  # absent otherwise: stores written before it stay byte-equal
        config["outputs"] = _callable_name(outputs)
        config["outputs_code"] = code_fingerprint(outputs)
    sink = _sink(store, config, rank)
    try:
        result = sink.open()  # a finished store: opened without running the model
        if result is None:
            step = _Step(model, cap, keys, dev, cast, outputs)
            _run(step, loader, sink, max_batches, progress)
            tracked = config["index_source"] == "sampler"
            result = sink.finish(_num_batches(loader, max_batches) if tracked else None)
        return FeatureSet._from_parts(result)
    finally:
        sink.close()


def _check_args(model: Any, loader: Any, max_batches: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"The 'model' parameter of extract must be a torch.nn.Module. Got "
            f"{type(model).__name__} instead."
        )
    if isinstance(loader, (torch.Tensor, np.ndarray, str, bytes)) or not isinstance(
        loader, Iterable
    ):
        raise TypeError(
            "The 'loader' parameter of extract must be a DataLoader or an iterable of "
            f"batches. Got {type(loader).__name__} instead."
        )
    if max_batches is not None and (
        isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    ):
        raise ValueError(
            "The 'max_batches' parameter of extract must be an int in the range [1, inf) or "
            f"None. Got {max_batches!r} instead."
        )


def _input_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    model_device = _model_device(model)
    dev = model_device if device is None else torch.device(device)
    if device is not None and dev.type != model_device.type:
        raise ValueError(
            f"The 'device' parameter of extract is {str(dev)!r} but the model's parameters are "
            f"on {str(model_device)!r}; move the model there first (extract does not move it)."
        )
    return dev


def _transform(
    reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None, cast: torch.dtype | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the capture hooks apply to each layer output, on the device."""

    def transform(t: torch.Tensor) -> torch.Tensor:
        if reduce_fn is not None:
            t = reduce_fn(t)
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"The 'reduce' callable of extract must return a tensor. Got {type(t).__name__}."
            )
        return _cast(t, cast)

    return transform


def _config(
    model: nn.Module,
    loader: Any,
    keys: list[str],
    reduce_name: Any,
    cast: torch.dtype | None,
    max_batches: int | None,
    world: int,
) -> dict[str, Any]:
    """The run's description: what a store's manifest records and compares on resume."""
    tracked = _can_track(loader)
    if world > 1 and not tracked:
        raise ValueError(
            "extract under torch.distributed needs the 'loader' parameter to be a "
            "torch.utils.data.DataLoader over a map-style dataset (with a DistributedSampler), "
            f"so that each sample's dataset index is known. Got {type(loader).__name__}."
        )
    inner_cls = type(unwrap_model(model))
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_class": f"{inner_cls.__module__}.{inner_cls.__qualname__}",
        "layers": keys,
        "reduce": reduce_name,
        "dtype": None if cast is None else str(cast).replace("torch.", ""),
        "batch_size": getattr(loader, "batch_size", None),
        "num_batches": _num_batches(loader, None),
        "dataset_length": _len_or_none(getattr(loader, "dataset", None)),
        "max_batches": max_batches,
        "world_size": world,
        "index_source": "sampler" if tracked else "count",
        # resuming with other weights (same class) would mix two models' rows
        "weights": model_fingerprint(unwrap_model(model)),
    }


def _sink(store: str | os.PathLike[str] | None, config: dict[str, Any], rank: int) -> Sink:
    if store is None and config["world_size"] > 1:
        warnings.warn(
            "extract: under torch.distributed with store=None each rank returns only its own "
            "samples; pass store=PATH to merge all ranks in dataset order.",
            stacklevel=user_stacklevel(),
        )
    return open_sink(None if store is None else Path(store), config, rank)


@dataclass
class _Step:
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
                f"for batch {b} it returned {_describe(out)}. Pass outputs=callable to "
                "pick one tensor from it, e.g. outputs=lambda o: o['out'].mean((2, 3))."
            )
        arrays = {"index": index, "outputs": to_numpy(_cast(out, self.cast).cpu())}
        if target is not None:
            arrays["labels"] = _labels_array(target, n, b)
        for i, key in enumerate(self.keys):
            arrays[f"layer{i}"] = _layer_array(self.cap, key, n, b, self.warned)
        return arrays


def _run(step: _Step, loader: Any, sink: Sink, max_batches: int | None, progress: bool) -> None:
    """Every batch the sink has not stored yet, in eval mode without grad, into the sink."""
    with (
        eval_mode(step.model),
        torch.no_grad(),
        step.cap if step.cap is not None else contextlib.nullcontext(),
    ):
        bar = _progress(_num_batches(loader, max_batches), progress)
        try:
            for b, batch, idx, offset in _batches(loader, max_batches, sink):
                inputs, target = _split_batch(batch, b)
                sink.write(b, step.arrays(b, inputs, target, idx, offset), inputs)
                bar.update(1)
        finally:
            bar.close()


def _cast(t: torch.Tensor, cast: torch.dtype | None) -> torch.Tensor:
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
            f"of {n} samples; each layer (after 'reduce') needs one row per sample."
        )
    calls = cap.calls.get(key, 0)
    if calls > 1 and key not in warned:
        warned.add(key)
        warnings.warn(
            f"extract: layer {key!r} ran {calls} times per forward pass; its last output is kept.",
            stacklevel=user_stacklevel(),
        )
    return np.asarray(to_numpy(value.cpu()))


def _len_or_none(obj: Any) -> int | None:
    try:
        return len(obj) if obj is not None else None
    except TypeError:
        return None


class _NoBar:
    def update(self, n: int) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""


def _progress(total: int | None, progress: bool) -> Any:
    if not progress:
        return _NoBar()
    from featviz._ops import progress_bar

    return progress_bar(total=total, desc="extract", unit="batch")
