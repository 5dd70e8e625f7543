"""The one store interface: where `extract` and the `Recorder` keep arrays and a manifest.

A store holds named arrays (e.g. ``000000200-outputs.npy``), a few short texts, and one
JSON manifest that lists them and records the *config* of the run that wrote them. Every
backend is a subclass of `Store`, built from one `StoreSpec` (format, owner, where it
lives, which names it writes), and implements:

``open(config) -> manifest | None``
    Prepare to write: refuse what the store did not write (the survey), take the lock
    (a lock left by a dead writer, or by an unreachable object of this process, is taken
    over; a live writer is refused), delete temporary files of killed writes, read the
    manifest (its format name and version checked by `check_version`) and compare its
    config with ``config`` (`compare_config`). Returns the stored manifest, or None for a
    new store.
``write(name, array)`` / ``write_text(name, text)``
    Store one array (one text) atomically: after a crash either the old state or the new
    value is there, never a torn file. Records are made durable by writing their arrays
    first and the manifest that lists them last.
``read(name) -> array`` / ``read_text(name) -> str | None``
    A value written before (arrays read-only; memory-mapped on disk).
``has(name)``, ``names()``, ``header(name) -> (shape, dtype)``, ``delete(name)``
    Whether ``name`` was written; every name written; an array's shape and dtype without
    reading its rows; delete one name (idempotent).
``gather(name, sources, rows, n)``
    Write one ``n``-row array under ``name`` from arrays of other stores of the same
    backend, each source row placed at its row in ``rows`` (-1: dropped): how `extract`
    merges its per-batch, per-rank shards into one array per field.
``save_manifest(data)`` / ``load_manifest() -> dict | None``
    Replace the manifest atomically (the store stamps ``format`` and ``version``); read it,
    checked, without locking (for readers).
``remove()``
    Delete the manifest, and the store itself when nothing else is left in it.
``close()``
    Release the lock (idempotent); what was written stays readable.

`extract` (`featviz._store`: one store per rank for its shards, one for the merged
result) and the `Recorder` (one store) use nothing but these methods, so every backend
serves both.

Backends (the registry `BACKENDS`, read by `backend`): ``"memory"`` is `MemoryStore` (here:
values in dicts; `extract` without ``store=`` and the `Recorder` without ``store=``) and
``"disk"`` is `featviz._store_disk.DiskStore` (a folder of ``.npy`` files, a lock file, a
JSON manifest; used for every ``store=PATH``); ``"zarr"`` is
`featviz._store_zarr.ZarrStore` (a Zarr v3 group, local or at an fsspec URL; used for a
``store=`` location ending in ``.zarr``).

How to add a backend (a Zarr or Parquet store, say): one new private module
``featviz/_store_<name>.py`` holding one subclass of `Store` that implements the abstract
methods above (``header`` and ``gather`` have working defaults built on ``read`` and
``write``; override them to stream), plus one row in `BACKENDS` naming it. That is two
files; `extract`, `FeatureSet` and the `Recorder` need no change, and
``tests/test_store.py::test_extract_and_recorder_accept_any_backend`` shows a backend
written in a test passing both. To make ``store=PATH`` use it, point the ``"disk"`` row
at it (a later issue may add a public choice that reads this registry).
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BACKENDS",
    "MemoryStore",
    "Store",
    "StoreSpec",
    "backend",
    "check_version",
    "compare_config",
]


def check_version(found: Any, where: str, fmt: str, newest: int) -> int:
    """The manifest's format version, checked.

    Args:
        found: The ``version`` value the manifest holds (None when missing).
        where: The manifest file (for the message).
        fmt: The format's name (for the message).
        newest: The newest version this featviz reads.

    Returns:
        The version as an int.

    Raises:
        ValueError: Missing, not an int in ``[1, newest]``; names ``where`` and ``found``.
    """
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise ValueError(
            f"The manifest {where!r} has no valid {fmt} format version (found {found!r}); "
            "it is damaged or was not written by featviz. Use another folder, or delete this "
            "one to start over."
        )
    if found > newest:
        raise ValueError(
            f"The manifest {where!r} has {fmt} format version {found}; this featviz reads "
            f"up to {newest}. Upgrade featviz."
        )
    return found


def compare_config(
    stored: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    where: str,
    owner: str,
    optional: tuple[str, ...] = (),
) -> list[str]:
    """Refuse a store written with another config; return the ``optional`` keys it lacks.

    Args:
        stored: The config in the store's manifest.
        config: This call's config.
        where: What wrote the manifest, for the message (e.g. ``"'/data/s' (manifest.json)"``).
        owner: Who writes such stores (``"extract"``, ``"Recorder"``).
        optional: Keys an older featviz did not write: missing in ``stored``, they are not
            compared (the caller warns).

    Raises:
        ValueError: A key differs; the message lists each key, stored and new value.
    """
    missing = [k for k in optional if k in config and k not in stored]
    keys = [*config, *(k for k in stored if k not in config)]
    diff = {
        k: (stored.get(k), config.get(k))
        for k in keys
        if k not in missing and stored.get(k) != config.get(k)
    }
    if diff:
        this = "this call" if owner == "extract" else f"this {owner}"
        text = "; ".join(f"{k}: stored {a!r}, {this} {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"The 'store' parameter names {where}, which was written by a different "
            f"{owner} call ({text}). Nothing was changed; use another folder, or delete this "
            "one to start over."
        )
    return missing


def _nothing(name: str) -> bool:
    return False


@dataclass(frozen=True)
class StoreSpec:
    """What a store is and where it lives; every backend is built from one.

    Attributes:
        format: The manifest's format name, e.g. ``"featviz.recorder"``.
        version: The newest format version this featviz writes and reads.
        owner: Who writes it (``"Recorder"``, ``"extract"``), for messages.
        root: Where a persistent backend keeps the store (a folder for `DiskStore`); None
            for a store in RAM. Backends that keep nothing on disk ignore it and the
            fields below marked *(on disk)*.
        manifest: The manifest's name (a file in ``root`` on disk).
        owned: Whether a name (other than the manifest and the lock) is one this store
            writes; anything else in its folder is refused by ``open``, never touched.
        versioned: The manifest key whose dict holds ``format`` and ``version`` (extract
            keeps them in ``config``); None: the manifest's top level.
        optional: Config keys an older featviz did not write: missing from the stored
            config, they are not compared (the caller warns).
        lock: The rank whose lock file ``rank<r>.lock`` guards the store; None: no lock
            (the caller holds one). *(on disk)*
        lock_dir: The folder holding the lock file (default ``root``). *(on disk)*
        home: The folder error messages name, file names relative to it (default
            ``root``). *(on disk)*
        survey: Replaces the flat survey of ``root`` (for layouts with sub-folders): raises
            ValueError for what the store did not write. *(on disk)*
        scheme: The fsspec scheme (``"s3"``, ``"gs"``, ...) of a store at a remote URL,
            ``root`` then being the path after ``scheme://``; None for a local path. Only
            backends that reach URLs (``"zarr"``) read it.
    """

    format: str
    version: int
    owner: str
    root: Path | None = None
    manifest: str = "manifest.json"
    owned: Callable[[str], bool] = _nothing
    versioned: str | None = None
    optional: tuple[str, ...] = ()
    lock: int | None = 0
    lock_dir: Path | None = None
    home: Path | None = None
    survey: Callable[[Path], None] | None = None
    scheme: str | None = None


class Store(abc.ABC):
    """Named arrays and texts plus one manifest; see the module docstring for the contract.

    Args:
        spec: What the store is and where it lives.

    Attributes:
        spec: As given.
        format, version, owner: ``spec``'s, for messages and the manifest's stamp.
    """

    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec
        self.format = spec.format
        self.version = spec.version
        self.owner = spec.owner

    @property
    def path(self) -> Path | None:
        """The folder holding the store, or None for one that keeps nothing on disk."""
        return None

    @abc.abstractmethod
    def open(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """Lock and check the store; the stored manifest, or None for a new store."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what `open` took (idempotent)."""

    @abc.abstractmethod
    def write(self, name: str, arr: np.ndarray) -> None:
        """Store ``arr`` under ``name`` atomically."""

    @abc.abstractmethod
    def read(self, name: str) -> np.ndarray:
        """The array stored under ``name`` (read-only; memory-mapped on disk)."""

    @abc.abstractmethod
    def has(self, name: str) -> bool:
        """Whether an array or a text is stored under ``name``."""

    @abc.abstractmethod
    def names(self) -> list[str]:
        """Every name stored (arrays and texts, not the manifest), sorted."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete what is stored under ``name`` (idempotent)."""

    @abc.abstractmethod
    def write_text(self, name: str, text: str) -> None:
        """Store the short text ``text`` under ``name`` atomically."""

    @abc.abstractmethod
    def read_text(self, name: str) -> str | None:
        """The text stored under ``name``, or None when there is none."""

    @abc.abstractmethod
    def save_manifest(self, data: Mapping[str, Any]) -> None:
        """Replace the manifest with ``data`` plus ``format`` and ``version``, atomically."""

    @abc.abstractmethod
    def load_manifest(self) -> dict[str, Any] | None:
        """The checked manifest, or None when there is none."""

    @abc.abstractmethod
    def remove(self) -> None:
        """Delete the manifest, and the store itself when nothing else is left in it."""

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
        """``(shape, dtype)`` of the array under ``name`` (on disk: without its rows)."""
        arr = self.read(name)
        return tuple(arr.shape), arr.dtype

    def gather(
        self,
        name: str,
        sources: Sequence[tuple[Store, str]],
        rows: Sequence[np.ndarray],
        n: int,
    ) -> None:
        """Write under ``name`` the ``(n, ...)`` array made of the rows of ``sources``.

        Args:
            name: The array to write.
            sources: ``(store, name)`` of each source array; all have rows of one shape.
            rows: For each source, ``(len(source),)`` int64: the row each of its rows goes
                to, -1 to drop it; every row in ``[0, n)`` is given once.
            n: Rows of the result; its dtype is the sources' common type.
        """
        heads = [src.header(key) for src, key in sources]
        dtype = np.result_type(*[h[1] for h in heads])
        out = np.empty((n, *heads[0][0][1:]), dtype=dtype)
        for (src, key), where in zip(sources, rows, strict=True):
            keep = where >= 0
            out[where[keep]] = np.asarray(src.read(key))[keep]
        self._adopt(name, out)

    def _adopt(self, name: str, arr: np.ndarray) -> None:
        """Store ``arr``, which nothing else references (a backend may keep it uncopied)."""
        self.write(name, arr)

    def _stamp(self, data: Mapping[str, Any]) -> dict[str, Any]:
        tag = {"format": self.format, "version": self.version}
        key = self.spec.versioned
        if key is None:
            return {**tag, **data}
        return {**data, key: {**tag, **(data.get(key) or {})}}

    def _checked(self, data: Any, where: str) -> dict[str, Any]:
        """``data`` if it is a manifest of this format with a version this featviz reads."""
        key = self.spec.versioned
        holder = data if key is None or not isinstance(data, dict) else data.get(key)
        if not isinstance(holder, dict) or holder.get("format") != self.format:
            raise ValueError(f"{where!r} is not a featviz {self.owner} manifest.")
        check_version(holder.get("version"), where, self.format, self.version)
        assert isinstance(data, dict)  # holder is data or one of its values
        return data

    def _compare(self, manifest: Mapping[str, Any], config: Mapping[str, Any], where: str) -> None:
        compare_config(
            manifest.get("config", {}),
            config,
            where=where,
            owner=self.owner,
            optional=self.spec.optional,
        )


class MemoryStore(Store):
    """A store in RAM: arrays and texts in dicts, the manifest a dict (no lock: one owner)."""

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        self.arrays: dict[str, np.ndarray] = {}
        self.texts: dict[str, str] = {}
        self.manifest: dict[str, Any] | None = None

    def open(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The manifest written before into this object, compared with ``config``."""
        if self.manifest is not None:
            self._compare(self.manifest, config, "a store in RAM")
        return self.manifest

    def close(self) -> None:
        """Nothing to release."""

    def write(self, name: str, arr: np.ndarray) -> None:
        """Keep a read-only copy of ``arr``."""
        self._adopt(name, np.array(arr))

    def _adopt(self, name: str, arr: np.ndarray) -> None:
        arr.flags.writeable = False
        self.arrays[name] = arr

    def read(self, name: str) -> np.ndarray:
        """The array kept under ``name``."""
        return self.arrays[name]

    def has(self, name: str) -> bool:
        """Whether ``name`` was written."""
        return name in self.arrays or name in self.texts

    def names(self) -> list[str]:
        """The names kept."""
        return sorted({*self.arrays, *self.texts})

    def delete(self, name: str) -> None:
        """Forget ``name``."""
        self.arrays.pop(name, None)
        self.texts.pop(name, None)

    def write_text(self, name: str, text: str) -> None:
        """Keep ``text``."""
        self.texts[name] = text

    def read_text(self, name: str) -> str | None:
        """The text kept under ``name``, or None."""
        return self.texts.get(name)

    def save_manifest(self, data: Mapping[str, Any]) -> None:
        """Keep ``data`` (stamped with the format and version)."""
        self.manifest = self._stamp(data)

    def load_manifest(self) -> dict[str, Any] | None:
        """The manifest kept, or None."""
        return self.manifest

    def remove(self) -> None:
        """Forget the manifest."""
        self.manifest = None


# name -> the backend class, or "module:Class" (imported when first asked for)
BACKENDS: dict[str, str | type[Store]] = {
    "disk": "featviz._store_disk:DiskStore",
    "memory": "featviz._store_base:MemoryStore",
    "zarr": "featviz._store_zarr:ZarrStore",
}


def backend(name: str) -> type[Store]:
    """The `Store` subclass registered in `BACKENDS` under ``name``.

    Args:
        name: ``"disk"`` (what ``store=PATH`` uses), ``"zarr"`` (``store="x.zarr"``) or
            ``"memory"`` (``store=None``).

    Returns:
        The class; build a store with ``backend(name)(spec)``.
    """
    row = BACKENDS[name]
    if isinstance(row, str):
        module, _, cls = row.partition(":")
        row = getattr(importlib.import_module(module), cls)
    assert isinstance(row, type) and issubclass(row, Store)
    return row
