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
    >>> fs = featviz.extract(model, loader, ["features.13"], pool="mean")  # doctest: +SKIP
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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from featviz._batch import Step as _Step
from featviz._batch import callable_name as _callable_name
from featviz._batch import input_device as _input_device
from featviz._batch import len_or_none as _len_or_none
from featviz._batch import reducer as _reducer
from featviz._batch import run_config
from featviz._batch import split_batch as _split_batch
from featviz._batch import torch_dtype as _torch_dtype
from featviz._batch import transform_for as _transform
from featviz._fingerprints import code_fingerprint
from featviz._ops import eval_mode, user_stacklevel
from featviz._store import Sink, dist_info, open_sink
from featviz._validation import renamed
from featviz.featureset import FeatureSet
from featviz.hooks import capture

if TYPE_CHECKING:
    from featviz.hooks import LayerSpec

__all__ = ["FeatureSet", "extract"]


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
@renamed(reduce="pool", outputs="output_transform")
def extract(
    model: nn.Module,
    loader: Iterable[Any],
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    *,
    pool: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
    dtype: torch.dtype | str | np.dtype[Any] | type | None = None,
    store: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    max_batches: int | None = None,
    output_transform: Callable[[Any], torch.Tensor] | None = None,
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
        pool: Applied to each layer's activation on the device before the transfer:
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
        output_transform: What to keep of the model's output, a callable
            ``output -> (B, ...)`` tensor with one row per sample, e.g.
            ``lambda o: o["out"].mean((2, 3))`` for a segmenter or
            ``lambda dets: torch.stack([d["scores"][:1].sum() for d in dets])`` for a
            torchvision detector (a list of dicts). None: a tensor output
            as it is, else its logits (``.logits``, a ``"logits"`` key or a tuple's
            first element, as Hugging Face models return them).

    Returns:
        A `FeatureSet`: ``layers[key]`` (N, ...) per layer, ``outputs`` (N, ...),
        ``labels`` (N, ...) or None when the loader yields no targets, ``index`` (N,).

    Raises:
        TypeError: ``model`` is not a module, the loader yields no input tensor, or a
            target holds Python objects.
        ValueError: Bad ``pool``/``dtype``/``max_batches``/``device``; a layer
            produced no tensor with one row per sample; the loader yielded nothing;
            ``store`` holds a different run's manifest, a foreign folder or files
            featviz did not write; the samples of a batch being resumed differ from the
            interrupted run's.
        RuntimeError: Another `extract` call is writing into ``store``.
        OSError: Writing the store failed (e.g. disk full); shards written before are
            intact and the same call resumes.
    """
    _check_args(model, loader, max_batches)
    reduce_fn, reduce_name = _reducer(pool)
    cast = _torch_dtype(dtype)
    dev = _input_device(model, device)
    cap = None if layers is None else capture(model, layers, transform=_transform(reduce_fn, cast))
    keys = [] if cap is None else list(cap.layers)
    rank, world = dist_info()
    config = _config(model, loader, keys, reduce_name, cast, max_batches, world)
    if output_transform is not None:  # absent otherwise: earlier stores stay byte-equal
        config["outputs"] = _callable_name(output_transform)
        config["outputs_code"] = code_fingerprint(output_transform)
    sink = _sink(store, config, rank)
    try:
        result = sink.open()  # a finished store: opened without running the model
        if result is None:
            step = _Step(model, cap, keys, dev, cast, output_transform)
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
    return run_config(
        model,
        keys,
        reduce_name,
        cast,
        batch_size=getattr(loader, "batch_size", None),
        num_batches=_num_batches(loader, None),
        dataset_length=_len_or_none(getattr(loader, "dataset", None)),
        max_batches=max_batches,
        world=world,
        index_source="sampler" if tracked else "count",
    )


def _sink(store: str | os.PathLike[str] | None, config: dict[str, Any], rank: int) -> Sink:
    if store is None and config["world_size"] > 1:
        warnings.warn(
            "extract: under torch.distributed with store=None each rank returns only its own "
            "samples; pass store=PATH to merge all ranks in dataset order.",
            stacklevel=user_stacklevel(),
        )
    return open_sink(store, config, rank)


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
