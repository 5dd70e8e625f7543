"""`FeatureSet`: the per-sample arrays `featviz.extract` collects, and their files.

A set lives in RAM, or memory-mapped from a store folder (`FeatureSet.open`); it can be
exported to one ``.npz`` (`FeatureSet.save_npz`) or, on explicit request, a pickle.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from featviz._io import atomic_path
from featviz._store import FORMAT, FORMAT_VERSION, Parts, read_store
from featviz._store_disk import write_npz

__all__ = ["FeatureSet"]


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
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "layers": list(self.layers)}
        meta["metadata"] = self.metadata
        return write_npz(path, fields, meta, overwrite=overwrite, compress=compress)

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
            "format": FORMAT,
            "version": FORMAT_VERSION,
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
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
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
        ``DistributedSampler`` pads with dropped, rows put in dataset order (holding the
        store's lock meanwhile). Every file is checked against the shape and dtype the
        manifest records; only files inside ``path`` are read, never unpickled.

        A Zarr store (``path`` ending in ``.zarr``, also an fsspec URL such as
        ``"s3://bucket/feats.zarr"``) is read the same way, its arrays loaded into RAM.

        Args:
            path: The store folder, or a Zarr store's path or URL.
            mmap: Memory-map the arrays read-only (default); False loads them into RAM.

        Returns:
            The `FeatureSet` (``.path`` set to the folder).

        Raises:
            FileNotFoundError: ``path`` is not a folder or holds no store, or a file the
                manifest names is missing (the message names the file and the store).
            ValueError: The store is incomplete (interrupted run: repeat the same
                `extract` call to resume) or not a featviz store; a file is truncated or
                damaged; the manifest names a file outside ``path``.
            RuntimeError: The shards need merging but an `extract` call holds the lock.
        """
        return cls._from_parts(read_store(os.fspath(path), mmap=mmap))

    @classmethod
    def _from_parts(cls, parts: Parts) -> FeatureSet:
        """The set a sink finished into (see `featviz._store.Parts`)."""
        fields = parts.fields
        fs = cls(
            {k: fields[f"layer{i}"] for i, k in enumerate(parts.keys)},
            fields.get("outputs"),
            fields.get("labels"),
            fields["index"],
            parts.metadata,
        )
        fs.path = parts.path
        return fs


def _check_no_objects(arr: np.ndarray, name: str) -> None:
    if arr.dtype.hasobject:
        raise TypeError(
            f"FeatureSet field {name!r} holds Python objects (dtype object), which cannot be "
            "stored without pickle; convert it to numbers or strings."
        )
