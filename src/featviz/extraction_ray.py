"""`extract` on a Ray cluster: a pool of actors, one model each, writing into one store.

`extract_ray` splits a map-style dataset into the batches a ``DataLoader(dataset,
batch_size)`` would give (batch ``b`` holds samples ``b * batch_size`` up to the next
batch), hands their numbers to a Ray Data pipeline (``map_batches`` with a callable class
and ``concurrency=``: each actor builds the model once, with ``model_fn``, on its device)
and lets every actor run its batches with `extract`'s own per-batch code
(`featviz._batch.Step`) and write them through `extract`'s own sink (`featviz._store`)
into the store folder. The driver holds the store's lock, checks the store (a different
model, data or settings is refused as by `extract`: same fingerprints), skips the batches
already stored (resume), and merges at the end: the result is the store `extract` writes
for the same arguments, row for row and bit for bit.

Faults: each batch is written under its own number, the index shard last and every file
atomically, so writing a batch twice gives the same files. Ray restarts an actor that
died (``max_retries`` times) and runs its batch again; a worker skips a batch that is
already stored. A stopped job resumes with the same call: stored batches are not sent
again.

Ray is an optional dependency (``pip install featviz[ray]``); this module imports it only
when `extract_ray` is called. Every node must see the store folder at the same path (a
shared file system).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from featviz._batch import (
    Step,
    callable_name,
    input_device,
    reducer,
    run_config,
    split_batch,
    torch_dtype,
    transform_for,
)
from featviz._fingerprints import code_fingerprint
from featviz._ops import eval_mode
from featviz._store import open_sink
from featviz._store_zarr import split_location
from featviz._validation import renamed
from featviz.featureset import FeatureSet
from featviz.hooks import capture

if TYPE_CHECKING:
    from featviz.hooks import LayerSpec

__all__ = ["extract_ray"]


def _indices(b: int, batch_size: int, n: int) -> np.ndarray:
    """Dataset indices of batch ``b``: (B,) int64."""
    return np.arange(b * batch_size, min(n, (b + 1) * batch_size), dtype=np.int64)


def _collate(items: list[Any], collate_fn: Callable[[list[Any]], Any] | None) -> Any:
    if collate_fn is not None:
        return collate_fn(items)
    from torch.utils.data import default_collate

    return default_collate(items)


class _Worker:
    """One Ray actor: builds the model once; runs and writes the batches it is given."""

    def __init__(self, job: dict[str, Any]) -> None:
        torch.set_num_threads(max(1, int(job["threads"])))
        self.job = job
        self.model = job["model_fn"]()
        reduce_fn, _ = reducer(job["reduce"])
        layers = job["layers"]
        self.cap = (
            None
            if layers is None
            else capture(self.model, layers, transform=transform_for(reduce_fn, job["cast"]))
        )
        keys = [] if self.cap is None else list(self.cap.layers)
        dev = input_device(self.model, job["device"])
        self.step = Step(self.model, self.cap, keys, dev, job["cast"], job["outputs"])
        self.sink = open_sink(job["root"], job["config"], 0, locked=False)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run and store the batches numbered ``batch["batch"]``; their rows."""
        rows = [self._one(int(b)) for b in batch["batch"]]
        return {"batch": np.asarray(batch["batch"], np.int64), "rows": np.asarray(rows)}

    def _one(self, b: int) -> int:
        job = self.job
        idx = _indices(b, job["batch_size"], job["n"])
        done = self.sink.skip(b, idx, None)  # a retried task: already written
        if done is not None:
            return done
        data = _collate([job["dataset"][int(i)] for i in idx], job["collate_fn"])
        inputs, target = split_batch(data, b)
        with (
            eval_mode(self.model),
            torch.no_grad(),
            self.cap if self.cap is not None else _Null(),
        ):
            arrays = self.step.arrays(b, inputs, target, idx, 0)
        self.sink.write(b, arrays, inputs)
        return int(idx.shape[0])


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _check(dataset: Any, batch_size: Any, concurrency: Any, max_retries: Any) -> int:
    """``len(dataset)``, after checking the arguments."""
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(
            "The 'dataset' parameter of extract_ray must be a map-style dataset (with "
            f"__getitem__ and __len__). Got {type(dataset).__name__} instead."
        )
    for name, value in (
        ("batch_size", batch_size),
        ("concurrency", concurrency),
        ("max_retries", max_retries + 1 if isinstance(max_retries, int) else max_retries),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            shown = max_retries if name == "max_retries" else value
            low = 0 if name == "max_retries" else 1
            raise ValueError(
                f"The '{name}' parameter of extract_ray must be an int in the range "
                f"[{low}, inf). Got {shown!r} instead."
            )
    n = len(dataset)
    if n == 0:
        raise ValueError("The 'dataset' parameter of extract_ray is empty.")
    return n


@renamed(reduce="pool", outputs="output_transform")
def extract_ray(
    model_fn: Callable[[], nn.Module],
    dataset: Any,
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    *,
    store: str | os.PathLike[str],
    batch_size: int = 64,
    pool: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
    dtype: torch.dtype | str | np.dtype[Any] | type | None = None,
    device: str | torch.device | None = None,
    output_transform: Callable[[Any], torch.Tensor] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    concurrency: int = 1,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_retries: int = 3,
) -> FeatureSet:
    """Run `extract` over ``dataset`` on a Ray cluster; the same `FeatureSet`, stored.

    Call it in a process connected to Ray (``ray.init(address=...)``; without one, Ray
    starts a local cluster). The result equals ``extract(model_fn(), DataLoader(dataset,
    batch_size, collate_fn=collate_fn), layers, pool=..., dtype=..., store=...)``: same
    rows in dataset order, same reductions and dtypes, and the same store files, so either
    can resume the other's store.

    Args:
        model_fn: Builds the model, on its device, in each actor (and once in the driver,
            for the weights' fingerprint); it must build the same weights every time
            (load a checkpoint). Pickled to the actors (cloudpickle).
        dataset: A map-style dataset; ``dataset[i]`` is a tensor or ``(input, target,
            ...)``, as a DataLoader's items. Pickled to each actor.
        layers: Layers to keep, as for `featviz.extract`.
        store: The store folder; every node must see it at this path (shared storage).
        batch_size: Samples per batch (the last one may be shorter).
        pool: As for `featviz.extract`.
        dtype: As for `featviz.extract`.
        device: Where inputs go in each actor (default: the model's device there).
        output_transform: As for `featviz.extract`.
        collate_fn: Makes a batch of a list of items (default: torch's default_collate).
        concurrency: Actors (models) running at once.
        num_cpus: CPUs each actor reserves (its torch threads, at least 1).
        num_gpus: GPUs each actor reserves (e.g. 1: one model per GPU).
        max_retries: How often Ray restarts a dead actor and retries its batch.

    Returns:
        The `FeatureSet` of the store, memory-mapped (as `featviz.FeatureSet.open`).

    Raises:
        ImportError: Ray is not installed.
        TypeError: ``dataset`` is not a map-style dataset, or ``model_fn`` does not build
            a module.
        ValueError: Bad arguments; ``store`` holds a different run (other model weights,
            layers, settings or data size), foreign files, or batches of other samples.
        RuntimeError: Another call writes into ``store``, or a batch failed more than
            ``max_retries`` times (Ray's error; the same call resumes).
    """
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "extract_ray needs Ray: pip install 'featviz[ray]' (or pip install 'ray[data]')."
        ) from exc
    n = _check(dataset, batch_size, concurrency, max_retries)
    model = model_fn()
    if not isinstance(model, nn.Module):
        raise TypeError(
            "The 'model_fn' parameter of extract_ray must return a torch.nn.Module. Got "
            f"{type(model).__name__} instead."
        )
    job = _job(model, dataset, layers, n, store, batch_size, pool, dtype, device, output_transform)
    job.update(model_fn=model_fn, collate_fn=collate_fn, threads=num_cpus)
    del model
    sink = open_sink(job["root"], job["config"], 0)
    try:
        result = sink.open()
        if result is None:
            batches = math.ceil(n / batch_size)
            todo = [
                b for b in range(batches) if sink.skip(b, _indices(b, batch_size, n), None) is None
            ]
            if todo:
                _run(ray, job, todo, concurrency, num_cpus, num_gpus, max_retries)
            result = sink.finish(batches)
        return FeatureSet._from_parts(result)
    finally:
        sink.close()


def _location(store: str | os.PathLike[str]) -> str:
    """``store`` as every node reads it: a URL as given, a local path made absolute."""
    scheme, path = split_location(store)
    return str(store) if scheme is not None else str(path.resolve())


def _job(
    model: nn.Module,
    dataset: Any,
    layers: Any,
    n: int,
    store: str | os.PathLike[str],
    batch_size: int,
    reduce: Any,
    dtype: Any,
    device: Any,
    outputs: Any,
) -> dict[str, Any]:
    """What every actor needs, and the run's config (as `extract` records it)."""
    _, reduce_name = reducer(reduce)
    cast = torch_dtype(dtype)
    input_device(model, device)  # checked here, once
    keys = [] if layers is None else list(capture(model, layers).layers)
    config = run_config(
        model,
        keys,
        reduce_name,
        cast,
        batch_size=batch_size,
        num_batches=math.ceil(n / batch_size),
        dataset_length=n,
        max_batches=None,
        world=1,
        index_source="sampler",
    )
    if outputs is not None:
        config["outputs"] = callable_name(outputs)
        config["outputs_code"] = code_fingerprint(outputs)
    return {
        "dataset": dataset,
        "layers": layers,
        "n": n,
        "root": _location(store),
        "batch_size": batch_size,
        "reduce": reduce,
        "cast": cast,
        "device": device,
        "outputs": outputs,
        "config": config,
    }


def _run(
    ray: Any,
    job: dict[str, Any],
    todo: list[int],
    concurrency: int,
    num_cpus: float,
    num_gpus: float,
    max_retries: int,
) -> None:
    """Every batch in ``todo`` through a pool of ``concurrency`` actors."""
    # a few blocks per actor, each a run of batch numbers: few Ray tasks (each costs
    # scheduling), yet work to steal at the end; a retried block skips what it wrote
    blocks = min(len(todo), 4 * concurrency)
    items = ray.data.from_items([{"batch": b} for b in todo], override_num_blocks=blocks)
    out = items.map_batches(
        _Worker,
        fn_constructor_kwargs={"job": job},
        batch_size=None,  # a whole block per call
        concurrency=min(concurrency, blocks),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        max_restarts=max_retries,
        max_task_retries=max_retries,
    )
    done = sorted(int(b) for row in out.iter_rows() for b in np.atleast_1d(row["batch"]))
    if done != sorted(todo):  # Ray lost or repeated a batch: never merge such a store
        raise RuntimeError(
            f"extract_ray: Ray returned batches {done[:10]} for the batches {todo[:10]} it "
            "was given; repeat the same call to resume."
        )
