"""The on-disk store backend and the file primitives every featviz store is written with.

`DiskStore` implements `featviz._store_base.Store` for a flat folder: one ``.npy`` per
array, a JSON manifest, the lock file ``rank00000.lock``. `extract`'s sharded store
(`featviz._store`) uses the same primitives: `write_npy` / `write_json` (atomic, via
`featviz._io.atomic_path`, errors that name the file and the writer), `read_json`
(refuses symbolic links), `load_npy` (never unpickles; errors name file and store),
`StoreLock` and `base_name` (recognises the temporary files of killed writes).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import re
import socket
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from featviz._io import atomic_path
from featviz._store_base import Store, compare_config

__all__ = [
    "DiskStore",
    "StoreLock",
    "base_name",
    "damaged",
    "load_npy",
    "missing",
    "read_json",
    "store_error",
    "write_json",
    "write_npy",
    "write_npz",
    "writing",
]

# atomic_path's temporary names: ".<stem>.<8 random chars>.tmp<suffix>"
_TEMP = re.compile(r"\.(.+)\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?")
_AGAIN = {"extract": "run extract again", "Recorder": "record again"}


def base_name(name: str) -> tuple[str, bool]:
    """``(final name, is a temporary file)`` for a name `atomic_path` may have made."""
    m = _TEMP.fullmatch(name)
    return (f"{m.group(1)}{m.group(2) or ''}", True) if m else (name, False)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``; None if absent; ``{}`` if it holds no object.

    Raises:
        ValueError: ``path`` is a symbolic link (never followed), unreadable, or not JSON.
    """
    if path.is_symlink():
        raise ValueError(
            f"{str(path)!r} is a symbolic link; featviz never writes links in a store and "
            "does not follow them. Use another folder, or replace the link by the file."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} cannot be read: {exc}.") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}.") from exc
    return data if isinstance(data, dict) else {}


def store_error(path: Path, exc: OSError, owner: str = "extract") -> OSError:
    """The error to raise when writing ``path`` failed (names ``path``, never a temp file)."""
    why = os.strerror(exc.errno) if exc.errno else str(exc)
    where = f"{owner}: could not write {path.name} in the {owner} store {str(path.parent)!r}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = f"The {owner}'s store must be a folder this process can write; choose another."
    elif owner == "extract":
        advice = (
            "Everything written before is intact: free space and repeat the same extract call "
            "to resume."
        )
    else:
        advice = (
            "Everything recorded before is intact: free space and create the Recorder again "
            "to resume."
        )
    if exc.errno == errno.ENOSPC:
        why = "no space left on device"
    return type(exc)(exc.errno or errno.EIO, f"{where}: {why}. {advice}")


@contextlib.contextmanager
def writing(path: Path, owner: str = "extract") -> Iterator[Path]:
    """`atomic_path` (umask mode, replace) with errors that name ``path``."""
    try:
        with atomic_path(path, overwrite=True) as tmp:
            yield tmp
    except OSError as exc:
        raise store_error(path, exc, owner) from None


def write_json(path: Path, data: Mapping[str, Any], owner: str = "extract") -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    text = json.dumps(data, indent=1, sort_keys=True, default=str)
    with writing(path, owner) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_npy(path: Path, arr: np.ndarray, owner: str = "extract") -> None:
    """Write ``arr`` as ``.npy`` (never pickled), atomically."""
    with writing(path, owner) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def damaged(path: Path, root: Path, exc: BaseException, owner: str = "extract") -> ValueError:
    """The error for a damaged file of the store ``root``."""
    return ValueError(
        f"The store {str(root)!r} has a damaged file {str(path.relative_to(root))!r} "
        f"({type(exc).__name__}: {exc}). Delete the folder and {_AGAIN[owner]}."
    )


def missing(path: Path, root: Path, owner: str = "extract") -> FileNotFoundError:
    """The error for a file the store ``root`` lists but lacks."""
    return FileNotFoundError(
        f"The store {str(root)!r} lacks its file {str(path.relative_to(root))!r}. Delete "
        f"the folder and {_AGAIN[owner]}."
    )


def load_npy(
    path: Path, root: Path, mmap: Literal["r"] | None = None, owner: str = "extract"
) -> np.ndarray:
    """``np.load`` (never unpickling) with errors that name the file and the store."""
    if path.is_symlink():
        raise damaged(path, root, ValueError("it is a symbolic link"), owner)
    try:
        return np.load(path, mmap_mode=mmap, allow_pickle=False)
    except FileNotFoundError as exc:
        raise missing(path, root, owner) from exc
    except (OSError, ValueError, EOFError) as exc:
        raise damaged(path, root, exc, owner) from exc


# ---------------------------------------------------------------------------------------
# locking
# ---------------------------------------------------------------------------------------
def _holder_text() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _drop(path: Path, fd: int) -> None:
    """Release a lock whose `StoreLock` was dropped without `StoreLock.release`."""
    try:
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            path.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        os.close(fd)


class StoreLock:
    """An exclusive lock on one rank of a store: the file ``<root>/rank<r>.lock``.

    Taken with ``fcntl.flock`` on the open file (released by the kernel when the process
    ends, so a crash leaves no stale lock: the next run takes it over). A lock whose
    `StoreLock` object became unreachable in this process (a Recorder dropped without
    ``close()``, e.g. by re-running a notebook cell) is released when the object is
    collected; a busy lock held by this process triggers one garbage collection before
    it is refused, so only a live holder is refused. The file holds the holder's host
    and pid, for the error message, and is deleted on release. Where ``fcntl`` is missing
    (Windows) the file is created with ``O_EXCL`` instead; a file left by a crashed run
    must then be deleted by hand (the error says which).
    """

    def __init__(self, root: Path, rank: int, owner: str = "extract") -> None:
        self.path = root / f"rank{rank:05d}.lock"
        self.root = root
        self.owner = owner  # who writes such stores, for the error message
        self.fd: int | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def acquire(self) -> None:
        """Take the lock or raise RuntimeError naming its holder."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None  # type: ignore[assignment]
        collected = False
        while self.fd is None:
            flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if fcntl is None else 0)
            try:
                fd = os.open(self.path, flags, 0o666)
            except FileExistsError:  # pragma: no cover - Windows
                raise self._busy() from None
            except OSError as exc:
                raise store_error(self.path, exc, self.owner) from None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    if not collected and self._holder() == _holder_text():
                        collected = True  # held here: by a live object, or a dropped one?
                        gc.collect()
                        continue
                    raise self._busy() from None
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:  # the holder deleted the file as we opened it: retry
                    os.close(fd)
                    continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{_holder_text()}\n".encode())
            self.fd = fd
            self._finalizer = weakref.finalize(self, _drop, self.path, fd)

    def _holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip() or "unknown"
        except (OSError, UnicodeDecodeError):
            return "unknown"

    def _busy(self) -> RuntimeError:
        return RuntimeError(
            f"The store {str(self.root)!r} is being written by another {self.owner} call "
            f"(host and pid: {self._holder()}; lock file {self.path.name}). Wait for it to "
            "finish (or close() it), or use another folder. Two writers into one store would "
            "mix their records."
        )

    def release(self) -> None:
        """Delete the lock file and let go (idempotent)."""
        if self.fd is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None


# ---------------------------------------------------------------------------------------
# the backend
# ---------------------------------------------------------------------------------------
class DiskStore(Store):
    """A flat folder: ``<name>`` ``.npy`` files, the JSON manifest, ``rank00000.lock``.

    Args:
        root: The folder (created by `open`).
        format: The manifest's format name.
        version: The newest format version.
        owner: Who writes it, for messages (``"Recorder"``).
        manifest: The manifest's file name.
        owned: Whether a file name (other than the manifest and lock) is one the store
            writes; anything else in the folder is refused by `open`, never touched.
    """

    def __init__(
        self,
        root: Path,
        *,
        format: str,
        version: int,
        owner: str,
        manifest: str,
        owned: Callable[[str], bool],
    ) -> None:
        super().__init__(format, version, owner)
        self.root = root
        self.manifest_path = root / manifest
        self.owned = owned
        self.lock = StoreLock(root, 0, owner)

    def open(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """Survey, lock, delete temporary files, compare ``config``; the manifest or None."""
        self._survey()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_error(self.root / self.manifest_path.name, exc, self.owner) from None
        self.lock.acquire()
        try:
            for p in self.root.iterdir():  # temporary files of killed writes (ours: surveyed)
                if base_name(p.name)[1]:
                    p.unlink(missing_ok=True)
            manifest = self.load_manifest()
            if manifest is not None:
                where = f"{str(self.root)!r} ({self.manifest_path.name})"
                compare_config(manifest.get("config", {}), config, where=where, owner=self.owner)
        except BaseException:
            self.lock.release()
            raise
        return manifest

    def _survey(self) -> None:
        """Refuse a file, or a folder holding anything this store does not write."""
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(
                f"The 'store' parameter names a file, not a folder: {str(self.root)!r}."
            )
        if not self.root.is_dir():
            return
        read_json(self.manifest_path)  # a link is refused by name, never followed
        ours = self.manifest_path.is_file()
        always = {self.manifest_path.name, self.lock.path.name}
        foreign = []
        for p in self.root.iterdir():
            base, _ = base_name(p.name)
            known = base in always or (ours and self.owned(base))
            if not known or p.is_symlink() or not p.is_file():
                foreign.append(p.name)
        if foreign:
            raise ValueError(
                f"The 'store' parameter names {str(self.root)!r}, which holds files a "
                f"{self.owner} did not write ({sorted(foreign)[:5]}); featviz never touches "
                "them: choose a new or empty folder."
            )

    def close(self) -> None:
        """Release the lock (idempotent)."""
        self.lock.release()

    def write(self, name: str, arr: np.ndarray) -> None:
        """Write ``<root>/<name>`` atomically."""
        write_npy(self.root / name, arr, self.owner)

    def read(self, name: str) -> np.ndarray:
        """``<root>/<name>``, memory-mapped read-only."""
        return load_npy(self.root / name, self.root, "r", self.owner)

    def has(self, name: str) -> bool:
        """Whether ``<root>/<name>`` is a file."""
        return (self.root / name).is_file()

    def save_manifest(self, data: Mapping[str, Any]) -> None:
        """Write the manifest atomically."""
        write_json(self.manifest_path, self._stamp(data), self.owner)

    def load_manifest(self) -> dict[str, Any] | None:
        """The manifest, checked; None when the folder has none."""
        data = read_json(self.manifest_path)
        return None if data is None else self._checked(data, str(self.manifest_path))


def write_npz(
    path: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    *,
    overwrite: bool,
    compress: bool,
) -> Path:
    """Write ``arrays`` and ``meta`` (JSON, as the array ``__featviz__``) to one ``.npz``.

    Atomic (`featviz._io.atomic_path`); nothing is pickled.

    Args:
        path: Destination file; written as given (no suffix added).
        arrays: ``{name: array}``; none may hold Python objects.
        meta: JSON-compatible description.
        overwrite: Replace an existing file.
        compress: Use ``numpy.savez_compressed``.

    Returns:
        ``path`` as a `Path`.
    """
    fields = {**arrays, "__featviz__": np.asarray(json.dumps(meta, default=str))}
    save = np.savez_compressed if compress else np.savez
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        save(f, **fields)  # type: ignore[arg-type]
    return Path(path)
