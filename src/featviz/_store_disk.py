"""The on-disk store backend and the file primitives every featviz store is written with.

`DiskStore` implements `featviz._store_base.Store` for a folder: one ``.npy`` per array,
one file per text, a JSON manifest, a lock file ``rank<r>.lock``. It is written with the
primitives here: `write_npy` / `write_json` (atomic, via `featviz._io.atomic_path`, errors
that name the file and the writer), `read_json` (refuses symbolic links), `load_npy` /
`npy_header` (never unpickle; errors name file and store), `StoreLock` and `base_name`
(recognises the temporary files of killed writes). `write_npz` is `FeatureSet.save_npz`'s.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import logging
import os
import re
import socket
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from featviz._io import atomic_path
from featviz._store_base import Store, StoreSpec

__all__ = [
    "DiskStore",
    "StoreLock",
    "base_name",
    "damaged",
    "load_npy",
    "missing",
    "npy_header",
    "read_json",
    "store_error",
    "write_json",
    "write_npy",
    "write_npz",
    "writing",
]

# atomic_path's temporary names: ".<stem>.<8 random chars>.tmp<suffix>"
_TEMP = re.compile(r"\.(.+)\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?")
logger = logging.getLogger(__name__)
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
    """A folder: ``<name>`` files (``.npy`` arrays, texts), the JSON manifest, a lock file.

    Names may hold one folder level (``data/index.npy``). See `StoreSpec` for the folder
    (``root``), the manifest's name, the names the store owns, the lock and the survey.
    """

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if spec.root is None:
            raise ValueError("A DiskStore needs a folder: StoreSpec.root is None.")
        self.root = Path(spec.root)
        self.home = spec.home or self.root
        self.manifest_path = self.root / spec.manifest
        self.owned = spec.owned
        lock_dir = spec.lock_dir or self.root
        self.lock = None if spec.lock is None else StoreLock(lock_dir, spec.lock, self.owner)

    @property
    def path(self) -> Path | None:
        """The store's folder."""
        return self.root

    def open(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """Survey, lock, delete temporary files, compare ``config``; the manifest or None."""
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(
                f"The 'store' parameter names a file, not a folder: {str(self.root)!r}."
            )
        (self.spec.survey or self._survey)(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_error(self.manifest_path, exc, self.owner) from None
        if self.lock is None:
            return self._compared(config)
        self.lock.acquire()
        try:
            for p in self.root.iterdir():  # temporary files of killed writes (ours: surveyed)
                if base_name(p.name)[1]:
                    p.unlink(missing_ok=True)
            return self._compared(config)
        except BaseException:
            self.lock.release()
            raise

    def _compared(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        manifest = self.load_manifest()
        if manifest is not None:
            where = f"{str(self.home)!r} ({self.manifest_path.relative_to(self.home)})"
            self._compare(manifest, config, where)
        return manifest

    def _survey(self, root: Path) -> None:
        """Refuse a folder holding anything this store does not write."""
        if not root.is_dir():
            return
        read_json(self.manifest_path)  # a link is refused by name, never followed
        ours = self.manifest_path.is_file()
        always = {self.manifest_path.name, *([self.lock.path.name] if self.lock else [])}
        foreign = []
        for p in root.iterdir():
            base, _ = base_name(p.name)
            known = base in always or (ours and self.owned(base))
            if not known or p.is_symlink() or not p.is_file():
                foreign.append(p.name)
        if foreign:
            raise ValueError(
                f"The 'store' parameter names {str(root)!r}, which holds files a "
                f"{self.owner} did not write ({sorted(foreign)[:5]}); featviz never touches "
                "them: choose a new or empty folder."
            )

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self.lock is not None:
            self.lock.release()

    def _file(self, name: str) -> Path:
        path = self.root / name
        if name != path.name:  # data/index.npy: the folder is ours, made on first write
            path.parent.mkdir(exist_ok=True)
        return path

    def write(self, name: str, arr: np.ndarray) -> None:
        """Write ``<root>/<name>`` atomically."""
        write_npy(self._file(name), arr, self.owner)

    def write_text(self, name: str, text: str) -> None:
        """Write ``<root>/<name>`` (UTF-8) atomically."""
        with writing(self._file(name), self.owner) as tmp:
            tmp.write_text(text, encoding="utf-8")

    def read(self, name: str) -> np.ndarray:
        """``<root>/<name>``, memory-mapped read-only (refused if it lies outside)."""
        path = self.root / name
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise damaged(path, self.home, ValueError("it lies outside the store"), self.owner)
        return load_npy(path, self.home, "r", self.owner)

    def read_text(self, name: str) -> str | None:
        """``<root>/<name>`` as text, or None when absent."""
        try:
            return (self.root / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def has(self, name: str) -> bool:
        """Whether ``<root>/<name>`` is a file."""
        return (self.root / name).is_file()

    def names(self) -> list[str]:
        """Files under ``root`` (one folder level), less the manifest, lock and temporaries."""
        if not self.root.is_dir():
            return []
        skip = {self.manifest_path, *([self.lock.path] if self.lock else [])}
        found = [p for p in self.root.iterdir() if p.is_file()]
        found += [p for d in self.root.iterdir() if d.is_dir() for p in d.iterdir()]
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in found
            if p not in skip and p.is_file() and not base_name(p.name)[1]
        )

    def delete(self, name: str) -> None:
        """Delete ``<root>/<name>`` (idempotent)."""
        (self.root / name).unlink(missing_ok=True)

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
        """Shape and dtype from the ``.npy`` header (the rows are not read)."""
        shape, dtype, _ = npy_header(self.root / name, self.home, self.owner)
        return shape, dtype

    def gather(
        self,
        name: str,
        sources: Sequence[tuple[Store, str]],
        rows: Sequence[np.ndarray],
        n: int,
    ) -> None:
        """As `Store.gather`, streamed: memory stays flat when every source is on disk.

        Source rows are read one shard at a time and written with plain file writes at
        their final offsets (no memory map, so no resident file pages); a whole shard
        that lands in one block is copied in the kernel. The caller holds the lock.
        """
        if not all(isinstance(src, DiskStore) for src, _ in sources):
            super().gather(name, sources, rows, n)
            return
        files = [src.root / key for src, key in sources]  # type: ignore[attr-defined]
        heads = [npy_header(f, self.home, self.owner) for f in files]
        row = heads[0][0][1:]
        dtype = np.result_type(*[h[1] for h in heads])
        rowbytes = int(np.prod(row, dtype=np.int64)) * dtype.itemsize
        out = self._file(name)
        for stale in out.parent.iterdir():  # temp files of an interrupted gather
            if base_name(stale.name) == (out.name, True):
                stale.unlink(missing_ok=True)
        with writing(out, self.owner) as tmp, open(tmp, "wb") as f:
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
            np.lib.format.write_array_header_2_0(f, {**header, "shape": (n, *row)})
            start = f.tell()
            for path, head, where in zip(files, heads, rows, strict=True):
                _place_rows(f, path, head, where, dtype, start, rowbytes)
            f.seek(start + n * rowbytes)
            f.truncate()

    def save_manifest(self, data: Mapping[str, Any]) -> None:
        """Write the manifest atomically."""
        write_json(self.manifest_path, self._stamp(data), self.owner)

    def load_manifest(self) -> dict[str, Any] | None:
        """The manifest, checked; None when the folder has none."""
        data = read_json(self.manifest_path)
        return None if data is None else self._checked(data, str(self.manifest_path))

    def remove(self) -> None:
        """Delete the manifest, then the folder (and its empty folders) if nothing is left."""
        self.manifest_path.unlink(missing_ok=True)
        try:
            for sub in self.root.iterdir():
                if sub.is_dir() and not sub.is_symlink() and not any(sub.iterdir()):
                    sub.rmdir()
            self.root.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            logger.warning(
                "%s: kept %s, which holds files featviz did not write", self.owner, self.root
            )


# ---------------------------------------------------------------------------------------
# .npy files read and copied without loading them whole
# ---------------------------------------------------------------------------------------
def npy_header(
    path: Path, root: Path, owner: str = "extract"
) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Shape, dtype and data offset of a ``.npy`` file (offset -1: not C-ordered).

    Raises:
        FileNotFoundError: No file (the message names it and the store ``root``).
        ValueError: Not a ``.npy`` file, holding Python objects, or truncated.
    """
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError as exc:
        raise missing(path, root, owner) from exc
    except (OSError, ValueError, EOFError) as exc:
        raise damaged(path, root, exc, owner) from exc
    if dtype.hasobject:
        raise damaged(path, root, ValueError("it holds Python objects"), owner)
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < need:
        raise damaged(path, root, ValueError(f"{size} bytes where {need} are needed"), owner)
    if fortran and len(shape) > 1:
        offset = -1  # not our own layout: take the slow path
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


def _place_rows(
    f: Any,
    path: Path,
    head: tuple[tuple[int, ...], np.dtype[Any], int],
    where: np.ndarray,
    dtype: np.dtype[Any],
    start: int,
    rowbytes: int,
) -> None:
    """Write ``path``'s rows at rows ``where`` (-1: dropped) of the open file ``f``."""
    m = int(where.shape[0])
    shard_shape, shard_dtype, shard_off = head
    if (
        m
        and shard_off >= 0
        and shard_dtype == dtype
        and shard_shape[0] == m
        and where[0] >= 0
        and np.array_equal(where, where[0] + np.arange(m))
    ):  # the common case: a whole shard lands in one block, copy as is
        _copy_bytes(path, shard_off, f, start + int(where[0]) * rowbytes, m * rowbytes)
        return
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
