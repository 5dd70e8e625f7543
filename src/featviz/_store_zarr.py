"""The Zarr v3 store backend: a store that other tools (zarr, xarray, dask, Ray) can read.

`ZarrStore` implements `featviz._store_base.Store` on one Zarr v3 group, local or at an
fsspec URL (``file://``, ``s3://``, ``gs://``, ... with the scheme's fsspec package
installed). Chosen by the location's suffix: ``extract(..., store="feats.zarr")`` or
``store="s3://bucket/feats.zarr"``; `FeatureSet.open` reads it the same way. Why Zarr
rather than Parquet: ``benchmarks/store.py`` (see ``docs/scale.md``).

Layout of a finished `extract` store::

    feats.zarr/zarr.json          group; attributes {"featviz": <the manifest>}
    feats.zarr/data/index         int64 (N,), dimension "sample"
    feats.zarr/data/outputs       (N, ...); labels, layer0, layer1, ... likewise

Each array's name is the store name without ``.npy`` (``data/index.npy`` ->
``data/index``); a text is a 1-D uint8 array with the attribute ``"text": true``. An
array counts as written once its attribute ``"complete"`` is set, which is done after
its chunks (so a killed write is rewritten, never read torn). The manifest is the
group's ``featviz`` attribute. On a local path the lock is the same ``rank<r>.lock``
file as for the ``.npy`` store (`featviz._store_disk.StoreLock`); at a remote URL there
is no lock: one writer per store is the user's promise.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from featviz._store_base import Store, StoreSpec
from featviz._store_disk import StoreLock

__all__ = ["SUFFIX", "ZarrStore", "is_zarr", "split_location"]

SUFFIX = ".zarr"
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)")
_ROWS = 1024  # rows per chunk


def split_location(store: Any) -> tuple[str | None, Path]:
    """``(scheme or None, path)`` of a store location (``file://`` gives a local path).

    Args:
        store: A path or an fsspec URL such as ``"s3://bucket/feats.zarr"``.
    """
    text = str(store)
    m = _URL.fullmatch(text)
    if m is None:
        return None, Path(text)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme == "file":
        return None, Path(rest)
    return scheme, Path(rest)


def is_zarr(store: Any) -> bool:
    """Whether ``store`` names a Zarr store (its name ends with ``.zarr``)."""
    return str(store).rstrip("/").endswith(SUFFIX)


def _key(name: str) -> str:
    return name[:-4] if name.endswith(".npy") else name


class ZarrStore(Store):
    """One Zarr v3 group; see the module docstring.

    ``spec.root`` is the group's path; ``spec.scheme`` an fsspec scheme for a remote
    one (None: local).
    """

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if spec.root is None:
            raise ValueError("A ZarrStore needs a location: StoreSpec.root is None.")
        self.root = Path(spec.root)
        self.scheme = spec.scheme
        self.lock = None
        if spec.lock is not None and self.scheme is None:
            self.lock = StoreLock(Path(spec.lock_dir or self.root), spec.lock, self.owner)

    @property
    def path(self) -> Path | None:
        """The group's local folder (None at a remote URL)."""
        return self.root if self.scheme is None else None

    @property
    def where(self) -> str:
        """The location, for messages."""
        return str(self.root) if self.scheme is None else f"{self.scheme}://{self.root}"

    def _store(self, mode: str = "a") -> Any:
        """A fresh zarr store object (zarr may turn one opened with ``mode="r"`` read-only)."""
        import zarr.storage

        read_only = mode == "r"
        if self.scheme is None:
            return zarr.storage.LocalStore(str(self.root), read_only=read_only)
        return zarr.storage.FsspecStore.from_url(self.where, read_only=read_only)

    def _group(self, mode: str = "r") -> Any:
        import zarr

        try:
            return zarr.open_group(self._store(mode), mode=mode)  # type: ignore[arg-type]
        except FileNotFoundError:
            if mode == "r":
                return None
            raise
        except Exception as exc:  # zarr raises its own "not found" types
            if mode == "r" and type(exc).__name__ in {"GroupNotFoundError", "NodeNotFoundError"}:
                return None
            raise

    def _array(self, name: str) -> Any:
        import zarr

        try:
            return zarr.open_array(self._store("r"), path=_key(name), mode="r")
        except Exception:
            return None

    # -- open / close ---------------------------------------------------------------
    def open(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """Refuse a group featviz did not write; lock (local); the manifest or None."""
        group = self._group()
        if group is not None and group.attrs.get("featviz") is None:
            members = [k for k in group.keys() if not re.fullmatch(r"rank\d{5}", k)]
            if members:
                raise ValueError(
                    f"The 'store' parameter names {self.where!r}, a Zarr group featviz did "
                    f"not write (it holds {sorted(members)[:5]}); choose a new location."
                )
        if self.scheme is None:
            self.root.mkdir(parents=True, exist_ok=True)
        if self.lock is not None:
            self.lock.acquire()
        try:
            manifest = self.load_manifest()
            if manifest is not None:
                self._compare(manifest, config, f"{self.where!r} (zarr.json)")
            return manifest
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self.lock is not None:
            self.lock.release()

    # -- arrays and texts -----------------------------------------------------------
    def write(self, name: str, arr: np.ndarray) -> None:
        """Write ``arr`` as the array ``name`` (chunks of 1,024 rows), then mark it complete."""
        import zarr

        arr = np.ascontiguousarray(arr)
        field = _key(name).rsplit("/", 1)[-1]
        dims = ["sample", *(f"{field}_{i}" for i in range(1, arr.ndim))] if arr.ndim else None
        chunks = (max(1, min(_ROWS, arr.shape[0])), *arr.shape[1:]) if arr.ndim else ()
        z = zarr.create_array(
            self._store(),
            name=_key(name),
            shape=arr.shape,
            dtype=arr.dtype,
            chunks=tuple(max(1, c) for c in chunks),
            compressors=None,
            dimension_names=dims,
            attributes={"complete": False},
            overwrite=True,
        )
        z[...] = arr
        z.update_attributes({"complete": True})

    def read(self, name: str) -> np.ndarray:
        """The array ``name``, read into RAM (read-only)."""
        z = self._array(name)
        if z is None or not z.attrs.get("complete"):
            raise FileNotFoundError(
                f"The {self.owner} store {self.where!r} has no complete array {_key(name)!r}; "
                "it is damaged or incomplete. Run the same call again to resume."
            )
        out = np.asarray(z[...])
        out.flags.writeable = False
        return out

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
        """Shape and dtype from the array's metadata (no chunk is read)."""
        z = self._array(name)
        if z is None:
            raise FileNotFoundError(f"The store {self.where!r} has no array {_key(name)!r}.")
        return tuple(z.shape), np.dtype(z.dtype)

    def has(self, name: str) -> bool:
        """Whether the array (or text) ``name`` was written completely."""
        z = self._array(name)
        return z is not None and bool(z.attrs.get("complete"))

    def names(self) -> list[str]:
        """Every complete array and text (arrays with ``.npy`` added back)."""
        group = self._group()
        if group is None:
            return []
        out = []
        with warnings.catch_warnings():  # the lock file is no zarr node
            warnings.filterwarnings("ignore", "Object at", category=UserWarning)
            members = list(group.members(max_depth=None))
        for path, node in members:
            if type(node).__name__ == "Array" and node.attrs.get("complete"):
                out.append(path if node.attrs.get("text") else f"{path}.npy")
        return sorted(out)

    def delete(self, name: str) -> None:
        """Delete the array ``name`` (idempotent)."""
        group = self._group("a")
        if _key(name) in group:
            del group[_key(name)]

    def write_text(self, name: str, text: str) -> None:
        """Write ``text`` (UTF-8) as a uint8 array marked ``"text": true``."""
        import zarr

        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        z = zarr.create_array(
            self._store(), name=name, shape=data.shape, dtype=np.uint8,
            chunks=(max(1, data.shape[0]),), compressors=None,
            attributes={"complete": False, "text": True}, overwrite=True,
        )  # fmt: skip
        if data.shape[0]:
            z[...] = data
        z.update_attributes({"complete": True})

    def read_text(self, name: str) -> str | None:
        """The text ``name``, or None when absent."""
        z = self._array(name)
        if z is None or not z.attrs.get("complete"):
            return None
        return bytes(np.asarray(z[...], dtype=np.uint8)).decode("utf-8")

    # -- manifest -------------------------------------------------------------------
    def save_manifest(self, data: Mapping[str, Any]) -> None:
        """Set the group's ``featviz`` attribute (creating the group)."""
        import json

        stamped = json.loads(json.dumps(self._stamp(data)))  # JSON types only
        self._group("a").update_attributes({"featviz": stamped})

    def load_manifest(self) -> dict[str, Any] | None:
        """The manifest, checked; None when there is none."""
        group = self._group()
        data = None if group is None else group.attrs.get("featviz")
        return None if data is None else self._checked(data, f"{self.where} (zarr.json)")

    def remove(self) -> None:
        """Delete the manifest; delete the group when no array is left in it."""
        if self._group() is None:
            return
        group = self._group("a")
        attrs = dict(group.attrs)
        attrs.pop("featviz", None)
        with warnings.catch_warnings():  # the lock file is no zarr node
            warnings.filterwarnings("ignore", "Object at", category=UserWarning)
            arrays = [p for p, n in group.members(max_depth=None) if type(n).__name__ == "Array"]
        if arrays or attrs:
            group.attrs.put(attrs)
            return
        if self.scheme is None:  # only what zarr wrote; a folder with other files stays
            for meta in self.root.rglob("zarr.json"):
                meta.unlink()
            for sub in sorted(self.root.rglob("*"), key=lambda p: -len(p.parts)):
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()
            if not any(self.root.iterdir()):
                self.root.rmdir()
        else:
            import fsspec  # type: ignore[import-untyped]

            fs, path = fsspec.core.url_to_fs(self.where)
            fs.rm(path, recursive=True)
