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
    >>> fs = featviz.extract(model, loader, ["features.13"], reduce="avg")  # doctest: +SKIP
    >>> fs.layers["features.13"].shape, fs.outputs.shape, fs.labels.shape  # doctest: +SKIP
    ((256, 64), (256, 4), (256,))
"""

from __future__ import annotations

import collections
import contextlib
import errno
import inspect
import json
import logging
import os
import pickle
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from featviz._io import atomic_path
from featviz._version import __version__
from featviz.hooks import capture, to_numpy, unwrap_model

if TYPE_CHECKING:
    from featviz.hooks import LayerSpec

__all__ = ["FeatureSet", "extract"]

logger = logging.getLogger(__name__)

_FORMAT = "featviz.featureset"
_FORMAT_VERSION = 1
_REDUCERS = ("flatten", "avg", "max")
_BUILTIN_FIELDS = ("index", "outputs", "labels")


# ---------------------------------------------------------------------------------------
# FeatureSet
# ---------------------------------------------------------------------------------------
class FeatureSet:
    """Per-sample arrays collected by `extract`: layer activations, outputs, labels, index.

    Every array has the samples along its first axis, in the same order (dataset order
    when the loader's sampler told `extract` each sample's dataset index).

    Args:
        layers: ``{layer key: array (N, ...)}``.
        outputs: Model outputs (N, ...) or None.
        labels: Targets (N, ...) or None.
        index: int64 (N,) dataset index of each row; ``arange(N)`` when None.
        metadata: Free-form JSON-compatible description (model class, layer names,
            reduce, dtype, ...).

    Attributes:
        layers: ``{layer key: numpy array (N, ...)}`` (``numpy.memmap`` when opened
            from a store).
        outputs: Model outputs (N, ...), e.g. logits (N, num_classes), or None.
        labels: What the loader yielded as targets, (N, ...), or None.
        index: int64 (N,) dataset index of each row.
        metadata: ``dict`` describing how the set was made.
        path: The store folder it was opened from, or None.

    Raises:
        ValueError: The arrays do not all have the same number of rows.
    """

    def __init__(
        self,
        layers: Mapping[str, np.ndarray] | None = None,
        outputs: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        index: np.ndarray | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.layers: dict[str, np.ndarray] = dict(layers or {})
        self.outputs = outputs
        self.labels = labels
        arrays = {**{f"layers[{k!r}]": v for k, v in self.layers.items()}}
        if outputs is not None:
            arrays["outputs"] = outputs
        if labels is not None:
            arrays["labels"] = labels
        rows = {name: int(np.shape(a)[0]) if np.ndim(a) else -1 for name, a in arrays.items()}
        if index is None:
            n = next(iter(rows.values()), 0)
            index = np.arange(max(n, 0), dtype=np.int64)
        self.index: np.ndarray = np.asarray(index, dtype=np.int64)
        rows["index"] = int(self.index.shape[0]) if self.index.ndim == 1 else -1
        if len(set(rows.values())) > 1 or min(rows.values()) < 0:
            raise ValueError(
                f"FeatureSet arrays must all have the same number of rows N. Got {rows}."
            )
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.path: Path | None = None

    # -- container protocol ------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, key: str) -> np.ndarray:
        """The activations of layer ``key`` (N, ...)."""
        try:
            return self.layers[key]
        except KeyError:
            raise KeyError(
                f"FeatureSet has no layer {key!r}; it has {list(self.layers)}."
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self.layers

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape) for k, v in self.layers.items()}
        out = None if self.outputs is None else tuple(self.outputs.shape)
        lab = None if self.labels is None else tuple(self.labels.shape)
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        return f"FeatureSet(n={len(self)}, layers={shapes}, outputs={out}, labels={lab}{where})"

    def _fields(self) -> dict[str, np.ndarray]:
        fields: dict[str, np.ndarray] = {"index": self.index}
        if self.outputs is not None:
            fields["outputs"] = np.asarray(self.outputs)
        if self.labels is not None:
            fields["labels"] = np.asarray(self.labels)
        for i, v in enumerate(self.layers.values()):
            fields[f"layer{i}"] = np.asarray(v)
        return fields

    # -- npz -----------------------------------------------------------------------
    def save_npz(
        self, path: str | os.PathLike[str], *, overwrite: bool = False, compress: bool = False
    ) -> Path:
        """Write everything to one ``.npz`` file (no pickle inside; atomic).

        Args:
            path: Destination file; written as given (no suffix added).
            overwrite: Replace an existing file.
            compress: Use ``numpy.savez_compressed``.

        Returns:
            The path written.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
            TypeError: An array holds Python objects (cannot be stored without pickle).
        """
        fields = self._fields()
        for name, arr in fields.items():
            _check_no_objects(arr, name)
        meta = {"format": _FORMAT, "version": _FORMAT_VERSION, "layers": list(self.layers)}
        meta["metadata"] = self.metadata
        fields["__featviz__"] = np.asarray(json.dumps(meta, default=str))
        with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
            if compress:
                np.savez_compressed(f, **fields)  # type: ignore[arg-type]
            else:
                np.savez(f, **fields)  # type: ignore[arg-type]
        return Path(path)

    @classmethod
    def load_npz(cls, path: str | os.PathLike[str]) -> FeatureSet:
        """Read a file written by `save_npz` (arrays loaded into memory, never unpickled).

        Args:
            path: The ``.npz`` file.

        Returns:
            The `FeatureSet`.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: The file was not written by `save_npz`.
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"The 'path' parameter names no file: {str(p)!r}.")
        with np.load(p, allow_pickle=False) as z:
            if "__featviz__" not in z.files:
                raise ValueError(
                    f"The 'path' parameter names {str(p)!r}, which was not written by "
                    "FeatureSet.save_npz."
                )
            meta = json.loads(str(z["__featviz__"]))
            keys = meta["layers"]
            layers = {k: z[f"layer{i}"] for i, k in enumerate(keys)}
            return cls(
                layers,
                z["outputs"] if "outputs" in z.files else None,
                z["labels"] if "labels" in z.files else None,
                z["index"],
                meta.get("metadata"),
            )

    # -- pickle (explicit request only) ------------------------------------------------
    def save_pickle(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write a pickle of the arrays (plain ndarrays) and metadata, atomically.

        Prefer `save_npz` or a ``store=``: a pickle can only be read back with
        ``load_pickle(path, trusted=True)``.

        Args:
            path: Destination file.
            overwrite: Replace an existing file.

        Returns:
            The path written.
        """
        payload = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "layers": {k: np.array(v) for k, v in self.layers.items()},
            "outputs": None if self.outputs is None else np.array(self.outputs),
            "labels": None if self.labels is None else np.array(self.labels),
            "index": np.array(self.index),
            "metadata": self.metadata,
        }
        with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        return Path(path)

    @classmethod
    def load_pickle(cls, path: str | os.PathLike[str], *, trusted: bool = False) -> FeatureSet:
        """Read a pickle written by `save_pickle`; refuses unless ``trusted=True``.

        Unpickling runs code chosen by whoever wrote the file, so a pickle from an
        untrusted source can take over your machine. Only pass ``trusted=True`` for files
        you wrote yourself; `save_npz`/`load_npz` and stores never unpickle.

        Args:
            path: The pickle file.
            trusted: Confirm that the file comes from a trusted source.

        Returns:
            The `FeatureSet`.

        Raises:
            ValueError: ``trusted`` is not True, or the file holds something else.
            FileNotFoundError: ``path`` does not exist.
        """
        if trusted is not True:
            raise ValueError(
                "FeatureSet.load_pickle refuses to unpickle without trusted=True: loading a "
                "pickle executes code embedded in the file, so a file from an untrusted "
                "source can run anything on this machine. Pass trusted=True only for files "
                "you wrote yourself, or use save_npz/load_npz or a store (no pickle)."
            )
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"The 'path' parameter names no file: {str(p)!r}.")
        with open(p, "rb") as f:
            payload = pickle.load(f)  # explicitly trusted by the caller
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(
                f"The 'path' parameter names {str(p)!r}, which was not written by "
                "FeatureSet.save_pickle."
            )
        return cls(
            payload["layers"],
            payload["outputs"],
            payload["labels"],
            payload["index"],
            payload["metadata"],
        )

    # -- stores --------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> FeatureSet:
        """Open a store written by ``extract(..., store=path)``, memory-mapped.

        If every rank of a run finished but the shards were not merged yet (e.g. the
        merge was interrupted), they are merged first: ranks combined, the duplicates
        ``DistributedSampler`` pads with dropped, rows put in dataset order.

        Args:
            path: The store folder.
            mmap: Memory-map the arrays read-only (default); False loads them into RAM.

        Returns:
            The `FeatureSet` (``.path`` set to the folder).

        Raises:
            FileNotFoundError: ``path`` is not a folder or holds no store.
            ValueError: The store is incomplete (interrupted run: repeat the same
                `extract` call to resume) or not a featviz store.
        """
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"The 'path' parameter names no folder: {str(root)!r}.")
        manifest = _read_json(root / "manifest.json")
        if manifest is None:
            ranks = sorted(root.glob("rank*/manifest.json"))
            if not ranks:
                raise FileNotFoundError(
                    f"The 'path' parameter names {str(root)!r}, which holds no featviz store "
                    "(no manifest.json)."
                )
            parts = [_read_json(r) or {} for r in ranks]
            world = {p.get("config", {}).get("world_size") for p in parts}
            if not all(p.get("complete") for p in parts) or world != {len(parts)}:
                done = sum(bool(p.get("complete")) for p in parts)
                raise ValueError(
                    f"The store {str(root)!r} is incomplete ({done} of "
                    f"{max(w or 0 for w in world)} ranks finished): repeat the same extract "
                    "call to resume it."
                )
            manifest = _merge_store(root)
        _check_format(manifest, root)
        if not manifest.get("complete"):
            raise ValueError(
                f"The store {str(root)!r} is incomplete: repeat the same extract call to resume."
            )
        mode: Literal["r"] | None = "r" if mmap else None
        fields = {
            name: np.load(root / info["file"], mmap_mode=mode, allow_pickle=False)
            for name, info in manifest["fields"].items()
        }
        keys = manifest["config"]["layers"]
        fs = cls(
            {k: fields[f"layer{i}"] for i, k in enumerate(keys)},
            fields.get("outputs"),
            fields.get("labels"),
            np.array(fields["index"]),
            manifest.get("metadata"),
        )
        fs.path = root
        return fs


def _check_no_objects(arr: np.ndarray, name: str) -> None:
    if arr.dtype.hasobject:
        raise TypeError(
            f"FeatureSet field {name!r} holds Python objects (dtype object), which cannot be "
            "stored without pickle; convert it to numbers or strings."
        )


def _check_format(manifest: Mapping[str, Any], root: Path) -> None:
    cfg = manifest.get("config", {})
    if cfg.get("format") != _FORMAT:
        raise ValueError(f"{str(root)!r} holds a manifest.json that is not a featviz store.")
    if cfg.get("version", 0) > _FORMAT_VERSION:
        raise ValueError(
            f"The store {str(root)!r} has format version {cfg.get('version')}; this featviz "
            f"reads up to {_FORMAT_VERSION}. Upgrade featviz."
        )


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
            return (lambda t: t.mean(dim=tuple(range(2, t.ndim))) if t.ndim > 2 else t), reduce
        if reduce == "max":
            return (lambda t: t.amax(dim=tuple(range(2, t.ndim))) if t.ndim > 2 else t), reduce
    elif callable(reduce):
        name = getattr(reduce, "__qualname__", type(reduce).__qualname__)
        return reduce, f"{getattr(reduce, '__module__', '')}.{name}"
    raise ValueError(
        "The 'reduce' parameter of extract must be None, 'flatten', 'avg', 'max' or a "
        f"callable. Got {reduce!r} instead."
    )


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


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


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
    loader: Any,
    limit: int | None,
    skip: Callable[[int, list[int] | None], bool],
    done_rows: Callable[[int], int],
) -> Iterator[tuple[int, Any, np.ndarray | None, int]]:
    """Yield ``(batch number, batch, dataset indices or None, running row offset)``."""
    if _can_track(loader):
        rec = _RecordingBatchSampler(loader.batch_sampler, limit, skip)
        for batch in _rebuild(loader, rec):
            b, idx = rec.queue.popleft()
            yield b, batch, np.asarray(idx, dtype=np.int64), 0
        return
    offset = 0
    for b, batch in enumerate(loader):
        if limit is not None and b >= limit:
            return
        if skip(b, None):
            offset += done_rows(b)
            continue
        yield b, batch, None, offset
        inputs, _ = _split_batch(batch, b)
        offset += int(inputs.shape[0])


def _num_batches(loader: Any, limit: int | None) -> int | None:
    try:
        n = len(loader)
    except TypeError:
        return limit
    return n if limit is None else min(n, limit)


# ---------------------------------------------------------------------------------------
# store files
# ---------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}.") from exc
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    text = json.dumps(data, indent=1, sort_keys=True, default=str)
    try:
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _store_error(path, exc) from exc


def _store_error(path: Path, exc: OSError) -> OSError:
    why = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno == errno.ENOSPC:
        why = "no space left on device"
    return type(exc)(
        exc.errno or errno.EIO,
        f"extract: could not write {path.name} in the store {str(path.parent)!r}: {why}. "
        "Everything written before is intact: free space and repeat the same extract call "
        "to resume.",
    )


def _write_npy(path: Path, arr: np.ndarray) -> None:
    try:
        with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    except OSError as exc:
        raise _store_error(path, exc) from exc


def _shard_name(b: int, field: str) -> str:
    return f"{b:06d}-{field}.npy"


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Shape, dtype and data offset of a C-ordered ``.npy`` file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    if fortran and len(shape) > 1:
        offset = -1  # not our own shard layout: take the slow path
    return tuple(shape), dtype, offset


def _copy_bytes(src: Path, src_off: int, dst: Any, dst_off: int, count: int) -> None:
    """Copy ``count`` bytes from ``src`` at ``src_off`` into open file ``dst`` at ``dst_off``.

    Uses ``os.copy_file_range`` (in-kernel, no user-space buffer) where available.
    """
    dst.flush()
    with open(src, "rb") as s:
        done = 0
        copy = getattr(os, "copy_file_range", None)
        while copy is not None and done < count:
            try:
                k = copy(s.fileno(), dst.fileno(), count - done, src_off + done, dst_off + done)
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    break
                raise
            if k == 0:
                break
            done += k
        if done < count:
            s.seek(src_off + done)
            dst.seek(dst_off + done)
            dst.write(s.read(count - done))


def _merge_store(root: Path) -> dict[str, Any]:
    """Merge all ranks' shards into one ``.npy`` per field, in dataset order; return manifest.

    Memory stays flat: shards are read one at a time and their rows written with plain
    file writes at their final offsets (no memory map, so no resident file pages).
    """
    rank_dirs = sorted(p.parent for p in root.glob("rank*/manifest.json"))
    parts = [(d, _read_json(d / "manifest.json") or {}) for d in rank_dirs]
    config = parts[0][1]["config"]
    shards: list[tuple[Path, int]] = []
    indices: list[np.ndarray] = []
    for d, part in parts:
        for b in range(int(part["num_shards"])):
            shards.append((d, b))
            indices.append(np.load(d / _shard_name(b, "index"), allow_pickle=False))
    all_idx = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    uniq, first = np.unique(all_idx, return_index=True)
    dest = np.full(all_idx.shape[0], -1, dtype=np.int64)
    dest[first] = np.arange(uniq.shape[0])
    n = int(uniq.shape[0])
    bounds = np.cumsum([0] + [len(i) for i in indices])
    data = root / "data"
    data.mkdir(exist_ok=True)
    fields_info: dict[str, Any] = {}
    for field in parts[0][1]["fields"]:
        files = [d / _shard_name(b, field) for d, b in shards]
        heads = [_npy_header(f) for f in files]
        rows = {h[0][1:] for h in heads}
        if len(rows) != 1:
            raise ValueError(
                f"extract: field {field!r} has rows of different shapes {sorted(rows)} in "
                "different batches; use reduce='avg' or inputs of one size."
            )
        row = rows.pop()
        dtype = np.result_type(*[h[1] for h in heads])
        out = data / f"{field}.npy"
        try:
            with atomic_path(out, overwrite=True) as tmp, open(tmp, "wb") as f:
                header = {
                    "descr": np.lib.format.dtype_to_descr(dtype),
                    "fortran_order": False,
                    "shape": (n, *row),
                }
                np.lib.format.write_array_header_2_0(f, header)
                start = f.tell()
                rowbytes = int(np.prod(row, dtype=np.int64)) * dtype.itemsize
                for k, path in enumerate(files):
                    where = dest[bounds[k] : bounds[k + 1]]
                    m = int(where.shape[0])
                    shard_shape, shard_dtype, shard_off = heads[k]
                    if (
                        m
                        and shard_off >= 0
                        and shard_dtype == dtype
                        and shard_shape[0] == m
                        and where[0] >= 0
                        and np.array_equal(where, where[0] + np.arange(m))
                    ):  # the common case: a whole shard lands in one block, copy as is
                        _copy_bytes(
                            path, shard_off, f, start + int(where[0]) * rowbytes, m * rowbytes
                        )
                        continue
                    arr = np.load(path, allow_pickle=False).astype(dtype, copy=False)
                    keep = where >= 0
                    pos, arr = where[keep], arr[keep]
                    order = np.argsort(pos, kind="stable")
                    pos, arr = pos[order], np.ascontiguousarray(arr[order])
                    cuts = np.flatnonzero(np.diff(pos) != 1) + 1
                    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, pos.shape[0]], strict=True):
                        if hi > lo:
                            f.seek(start + int(pos[lo]) * rowbytes)
                            f.write(arr[lo:hi].data)
                f.seek(start + n * rowbytes)
                f.truncate()
        except OSError as exc:
            raise _store_error(out, exc) from exc
        fields_info[field] = {
            "file": f"data/{field}.npy",
            "shape": [n, *row],
            "dtype": np.lib.format.dtype_to_descr(dtype),
        }
    duplicates = int(all_idx.shape[0] - n)
    metadata = {
        "model_class": config["model_class"],
        "layers": config["layers"],
        "reduce": config["reduce"],
        "dtype": config["dtype"],
        "world_size": config["world_size"],
        "batch_size": config["batch_size"],
        "index_source": config["index_source"],
        "duplicates_dropped": duplicates,
        "featviz_version": __version__,
    }
    manifest = {
        "config": config,
        "complete": True,
        "n": n,
        "fields": fields_info,
        "metadata": metadata,
    }
    _write_json(root / "manifest.json", manifest)
    for d, _ in parts:  # shards are merged and the manifest is safe: free the disk space
        shutil.rmtree(d, ignore_errors=True)
    logger.info(
        "extract: merged %d shard(s) into %s (%d duplicate(s) dropped)",
        len(shards),
        root,
        duplicates,
    )
    return manifest


class _Store:
    """One rank's side of a store: compatibility checks, shards, manifest."""

    def __init__(self, root: Path, config: dict[str, Any], rank: int) -> None:
        self.root = root
        self.config = config
        self.rank = rank
        self.dir = root / f"rank{rank:05d}"
        self.fields: dict[str, Any] = {}
        self.written = 0

    def prepare(self) -> bool:
        """Check the folder; return True when a finished, compatible store is already there."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise ValueError(f"The 'store' parameter names a file, not a folder: {str(root)!r}.")
        top = _read_json(root / "manifest.json") if root.is_dir() else None
        if top is not None:
            self._compare(top.get("config", {}), root / "manifest.json")
            if top.get("complete"):
                return True
        if root.is_dir() and top is None:
            present = {p.name for p in root.iterdir()}
            foreign = {n for n in present if not (n.startswith("rank") or n in ("data", ".lock"))}
            if foreign:
                raise ValueError(
                    f"The 'store' parameter names {str(root)!r}, a non-empty folder that is not "
                    f"a featviz store (it holds {sorted(foreign)[:5]}); choose a new or empty "
                    "folder."
                )
        for other in sorted(root.glob("rank*/manifest.json")) if root.is_dir() else []:
            self._compare((_read_json(other) or {}).get("config", {}), other)
        root.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(exist_ok=True)
        mine = _read_json(self.dir / "manifest.json")
        if mine is not None:
            self.fields = dict(mine.get("fields") or {})
            for stale in self.dir.glob(".*.tmp*"):  # temp files of a killed run
                stale.unlink(missing_ok=True)
        self._save(complete=False)
        return False

    def _compare(self, stored: Mapping[str, Any], where: Path) -> None:
        diff = {k: (stored.get(k), v) for k, v in self.config.items() if stored.get(k) != v}
        if diff:
            text = "; ".join(f"{k}: stored {a!r}, this call {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"The 'store' parameter names {str(self.root)!r}, whose manifest "
                f"({where.name}) was written by a different extract call ({text}). Nothing "
                "was changed; use another folder, or delete this one to start over."
            )

    def _save(self, *, complete: bool, num_shards: int | None = None) -> None:
        data = {
            "config": self.config,
            "rank": self.rank,
            "fields": self.fields,
            "complete": complete,
        }
        if num_shards is not None:
            data["num_shards"] = num_shards
        _write_json(self.dir / "manifest.json", data)

    def done(self, b: int) -> bool:
        return (self.dir / _shard_name(b, "index")).is_file()

    def stored_index(self, b: int) -> np.ndarray:
        return np.load(self.dir / _shard_name(b, "index"), allow_pickle=False)

    def write(self, b: int, arrays: Mapping[str, np.ndarray]) -> None:
        new = {
            name: {"shape": list(a.shape[1:]), "dtype": np.lib.format.dtype_to_descr(a.dtype)}
            for name, a in arrays.items()
        }
        for name, info in new.items():
            old = self.fields.get(name)
            if old is not None and old["shape"] != info["shape"] and name != "labels":
                raise ValueError(
                    f"extract: batch {b} gives {name!r} rows of shape {tuple(info['shape'])}, "
                    f"but the store holds rows of shape {tuple(old['shape'])}; use "
                    "reduce='avg' or inputs of one size."
                )
        # the index shard goes last: its presence marks the whole shard as finished
        for name in sorted(arrays, key=lambda k: k == "index"):
            _write_npy(self.dir / _shard_name(b, name), arrays[name])
        self.written += 1
        if not self.fields:
            self.fields = new
            self._save(complete=False)

    def finish(self, num_shards: int) -> None:
        self._save(complete=True, num_shards=num_shards)


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
    call: finished shards are skipped (their recorded indices are checked against the
    loader's order) and the result is identical to an uninterrupted run. At the end the
    shards of all ranks are merged into ``PATH/data/<field>.npy`` in dataset order and
    opened with `FeatureSet.open` (memory-mapped). Under ``torch.distributed`` every
    rank must call `extract` with the same arguments; each writes its own shards, rank 0
    merges them (dropping ``DistributedSampler`` padding duplicates) between two
    barriers, and every rank gets the merged set.

    Args:
        model: The model; not moved, not modified.
        loader: A DataLoader or any iterable of batches (see above).
        layers: Layers whose activations to keep, as for `featviz.capture`
            (names, globs, types, modules; ``"name[0]"`` picks part of a tuple output).
            None keeps only outputs, labels and index.
        reduce: Applied to each layer's activation on the device before the transfer:
            None (keep (N, C, H, W)), ``"flatten"`` (N, C*H*W), ``"avg"`` or ``"max"``
            (pool every axis after the second: (N, C, H, W) -> (N, C)), or a callable
            mapping a (B, ...) tensor to a (B, ...) tensor.
        dtype: Floating dtype (e.g. ``torch.float16``) that floating activations and
            outputs are cast to on the device. None keeps the model's dtype
            (bfloat16 becomes float32).
        store: Folder to stream to (created if missing); None keeps everything in RAM.
        device: Device the inputs are sent to; by default the device of the model's
            parameters. The model must already be there.
        progress: Show a tqdm progress bar.
        max_batches: Stop after this many batches (the first ones of the loader).

    Returns:
        A `FeatureSet`: ``layers[key]`` (N, ...) per layer, ``outputs`` (N, ...),
        ``labels`` (N, ...) or None when the loader yields no targets, ``index`` (N,).

    Raises:
        TypeError: ``model`` is not a module, the loader yields no input tensor, or a
            target holds Python objects.
        ValueError: Bad ``reduce``/``dtype``/``max_batches``/``device``; a layer
            produced no tensor with one row per sample; the loader yielded nothing;
            ``store`` holds a different run's manifest or a foreign folder; the loader's
            order differs from the interrupted run being resumed.
        OSError: Writing the store failed (e.g. disk full); shards written before are
            intact and the same call resumes.
    """
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
    reduce_fn, reduce_name = _reducer(reduce)
    cast = _torch_dtype(dtype)
    model_device = _model_device(model)
    dev = model_device if device is None else torch.device(device)
    if device is not None and dev.type != model_device.type:
        raise ValueError(
            f"The 'device' parameter of extract is {str(dev)!r} but the model's parameters are "
            f"on {str(model_device)!r}; move the model there first (extract does not move it)."
        )

    def transform(t: torch.Tensor) -> torch.Tensor:
        if reduce_fn is not None:
            t = reduce_fn(t)
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"The 'reduce' callable of extract must return a tensor. Got {type(t).__name__}."
            )
        return _cast(t, cast)

    keys: list[str] = []
    cap = None
    if layers is not None:
        cap = capture(model, layers, transform=transform)
        keys = list(cap.layers)

    rank, world = _dist_info()
    inner_cls = type(unwrap_model(model))
    tracked = _can_track(loader)
    if world > 1 and not tracked:
        raise ValueError(
            "extract under torch.distributed needs the 'loader' parameter to be a "
            "torch.utils.data.DataLoader over a map-style dataset (with a DistributedSampler), "
            f"so that each sample's dataset index is known. Got {type(loader).__name__}."
        )
    config = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
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
    }
    if world > 1 and store is None:
        warnings.warn(
            "extract: under torch.distributed with store=None each rank returns only its own "
            "samples; pass store=PATH to merge all ranks in dataset order.",
            stacklevel=2,
        )

    st: _Store | None = None
    if store is not None:
        st = _Store(Path(store), config, rank)
        if st.prepare():
            logger.info("extract: %s is already complete; opening it", st.root)
            return FeatureSet.open(st.root)

    def skip(b: int, idx: list[int] | None) -> bool:
        if st is None or not st.done(b):
            return False
        if idx is not None:
            stored = st.stored_index(b)
            if not np.array_equal(stored, np.asarray(idx, dtype=stored.dtype)):
                raise ValueError(
                    f"extract: resuming {str(st.root)!r}, but batch {b} of the loader now "
                    "holds other samples than in the interrupted run (a shuffling sampler "
                    "without a seeded generator?). Use the same sample order, or a new store."
                )
        return True

    def done_rows(b: int) -> int:
        return 0 if st is None else int(st.stored_index(b).shape[0])

    collected: dict[str, list[np.ndarray]] = collections.defaultdict(list)
    flags = [(m, m.training) for m in model.modules()]
    total = _num_batches(loader, max_batches)
    n_batches = 0
    warned_calls: set[str] = set()
    try:
        model.eval()
        with torch.no_grad(), cap if cap is not None else contextlib.nullcontext():
            bar = _progress(total, progress)
            try:
                for b, batch, idx, offset in _batches(loader, max_batches, skip, done_rows):
                    inputs, target = _split_batch(batch, b)
                    n = int(inputs.shape[0]) if inputs.ndim else 0
                    if cap is not None:
                        cap.clear()
                    out = model(inputs.to(dev, non_blocking=True))
                    arrays: dict[str, np.ndarray] = {}
                    arrays["index"] = (
                        idx if idx is not None else np.arange(offset, offset + n, dtype=np.int64)
                    )
                    if arrays["index"].shape[0] != n:
                        raise ValueError(
                            f"extract: batch {b} holds {n} inputs but its sampler drew "
                            f"{arrays['index'].shape[0]} indices (a collate_fn that drops "
                            "or adds samples?)."
                        )
                    if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != n:
                        raise ValueError(
                            f"extract: the model must return a tensor with one row per sample "
                            f"(N={n}); for batch {b} it returned "
                            f"{_describe(out)}. Wrap the model so that it returns one tensor."
                        )
                    arrays["outputs"] = to_numpy(_cast(out, cast).cpu())
                    if target is not None:
                        arrays["labels"] = _labels_array(target, n, b)
                    for i, key in enumerate(keys):
                        arrays[f"layer{i}"] = _layer_array(cap, key, n, b, warned_calls)
                    if st is not None:
                        st.write(b, arrays)
                    else:
                        for name, arr in arrays.items():
                            collected[name].append(np.array(arr) if name == "outputs" else arr)
                    n_batches += 1
                    bar.update(1)
            finally:
                bar.close()
    finally:
        for m, flag in flags:
            m.training = flag

    metadata = {
        "model_class": config["model_class"],
        "layers": keys,
        "reduce": reduce_name,
        "dtype": config["dtype"],
        "world_size": world,
        "batch_size": config["batch_size"],
        "index_source": config["index_source"],
        "featviz_version": __version__,
    }
    if st is not None:
        present = sorted(int(p.name[:6]) for p in st.dir.glob("*-index.npy"))
        expected = _num_batches(loader, max_batches) if tracked else None
        expected = len(present) if expected is None else expected
        if not present or present != list(range(expected)):
            raise ValueError(
                f"extract: the store {str(st.root)!r} holds {len(present)} finished batch(es) "
                f"of rank {rank} where {expected} were expected; the loader yielded nothing "
                "or fewer batches than before. Delete the folder and start over."
            )
        st.finish(len(present))
        if world > 1:
            _barrier()  # every rank's shards are final
            try:
                if rank == 0:
                    _merge_store(st.root)
            finally:
                _barrier()  # the merged files exist (or rank 0 failed and open() says so)
        else:
            _merge_store(st.root)
        return FeatureSet.open(st.root)

    if not n_batches:
        raise ValueError("The 'loader' parameter of extract yielded no batches.")
    fields = {name: _concat(name, parts) for name, parts in collected.items()}
    index = fields.pop("index")
    order = np.argsort(index, kind="stable")
    if not np.array_equal(order, np.arange(order.shape[0])) or np.any(np.diff(index) == 0):
        uniq, first = np.unique(index, return_index=True)
        metadata["duplicates_dropped"] = int(index.shape[0] - uniq.shape[0])
        fields = {name: arr[first] for name, arr in fields.items()}
        index = uniq
    return FeatureSet(
        {k: fields[f"layer{i}"] for i, k in enumerate(keys)},
        fields.get("outputs"),
        fields.get("labels"),
        index,
        metadata,
    )


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
            stacklevel=3,
        )
    return np.asarray(to_numpy(value.cpu()))


def _concat(name: str, parts: list[np.ndarray]) -> np.ndarray:
    rows = {p.shape[1:] for p in parts}
    if len(rows) > 1 and name != "labels":
        raise ValueError(
            f"extract: field {name!r} has rows of different shapes {sorted(rows)} in "
            "different batches; use reduce='avg' or inputs of one size."
        )
    return np.concatenate(parts, axis=0)


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
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="extract", unit="batch")
