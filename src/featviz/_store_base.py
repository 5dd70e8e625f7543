"""The one store interface: where `extract` and the `Recorder` keep arrays and a manifest.

A store holds named arrays (one per record field, e.g. ``000000200-outputs.npy``) and one
JSON manifest that lists them and records the *config* of the run that wrote them. Every
backend implements `Store`:

``open(config) -> manifest | None``
    Prepare to write: refuse what the store did not write (`survey`), take the lock
    (a lock left by a dead writer, or by an unreachable object of this process, is taken
    over; a live writer is refused), delete temporary files of killed writes, read the
    manifest (its format name and version checked by `check_version`) and compare its
    config with ``config`` (`compare_config`). Returns the stored manifest, or None for a
    new store.
``write(name, array)``
    Store one array atomically: after a crash either the old state or the new array is
    there, never a torn file. Records are made durable by writing their arrays first and
    the manifest that lists them last.
``save_manifest(data)``
    Replace the manifest atomically (the store adds ``format`` and ``version``).
``load_manifest() -> dict | None``
    The manifest, checked (format and version), without locking: for readers.
``read(name) -> array``
    An array written before (memory-mapped read-only on disk).
``has(name) -> bool``
    Whether ``name`` was written.
``close()``
    Release the lock (idempotent); what was written stays readable.

Backends: `MemoryStore` (here: arrays in RAM) and `featviz._store_disk.DiskStore` (a folder
of ``.npy`` files, a lock file, a JSON manifest). A third backend (Zarr, Parquet, ...) is
one new subclass of `Store` in its own private module, picked where the caller builds its
store (``Recorder._open_records``); nothing else changes. `extract`'s sharded, multi-rank
store (`featviz._store`) is built on the disk backend's primitives.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["MemoryStore", "Store", "check_version", "compare_config"]


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


class Store(abc.ABC):
    """Named arrays plus one manifest; see the module docstring for the contract.

    Attributes:
        format: The manifest's format name, e.g. ``"featviz.recorder"``.
        version: The newest format version this featviz writes and reads.
        owner: Who writes it (``"Recorder"``, ``"extract"``), for messages.
    """

    def __init__(self, format: str, version: int, owner: str) -> None:
        self.format = format
        self.version = version
        self.owner = owner

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
        """Whether an array is stored under ``name``."""

    @abc.abstractmethod
    def save_manifest(self, data: Mapping[str, Any]) -> None:
        """Replace the manifest with ``data`` plus ``format`` and ``version``, atomically."""

    @abc.abstractmethod
    def load_manifest(self) -> dict[str, Any] | None:
        """The checked manifest, or None when there is none."""

    def _stamp(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"format": self.format, "version": self.version, **data}

    def _checked(self, data: Any, where: str) -> dict[str, Any]:
        """``data`` if it is a manifest of this format with a version this featviz reads."""
        if not isinstance(data, dict) or data.get("format") != self.format:
            raise ValueError(f"{where!r} is not a featviz {self.owner} manifest.")
        check_version(data.get("version"), where, self.format, self.version)
        return data


class MemoryStore(Store):
    """A store in RAM: arrays in a dict, the manifest a dict (no lock: one owner)."""

    def __init__(self, format: str, version: int, owner: str) -> None:
        super().__init__(format, version, owner)
        self.arrays: dict[str, np.ndarray] = {}
        self.manifest: dict[str, Any] | None = None

    def open(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The manifest written before into this object, compared with ``config``."""
        if self.manifest is not None:
            compare_config(
                self.manifest.get("config", {}), config, where="a store in RAM", owner=self.owner
            )
        return self.manifest

    def close(self) -> None:
        """Nothing to release."""

    def write(self, name: str, arr: np.ndarray) -> None:
        """Keep a read-only copy of ``arr``."""
        kept = np.array(arr)
        kept.flags.writeable = False
        self.arrays[name] = kept

    def read(self, name: str) -> np.ndarray:
        """The array kept under ``name``."""
        return self.arrays[name]

    def has(self, name: str) -> bool:
        """Whether ``name`` was written."""
        return name in self.arrays

    def save_manifest(self, data: Mapping[str, Any]) -> None:
        """Keep ``data`` (stamped with the format and version)."""
        self.manifest = self._stamp(data)

    def load_manifest(self) -> dict[str, Any] | None:
        """The manifest kept, or None."""
        return self.manifest
