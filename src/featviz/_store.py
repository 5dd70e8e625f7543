"""Where `extract` puts its rows: in RAM, or a folder of ``.npy`` shards (a store).

Both sinks share one small interface (`Sink`): ``open()`` (the finished result when a
finished store is already there), ``skip(b, ...)`` (rows already stored for batch ``b``, checked),
``write(b, arrays, inputs)`` and ``finish(expected) -> Parts``; ``close()`` releases
what ``open()`` took. `ShardStore` writes one ``.npy`` per field per batch under
``rank<r>/``, merges all ranks into ``data/<field>.npy`` and writes ``manifest.json``;
`read_store` opens that folder again. A store only writes, replaces or deletes files
whose names its manifests define (see `survey`), and one lock file per rank keeps two
runs out of one store.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch

from featviz._fingerprints import fingerprint
from featviz._ops import user_stacklevel
from featviz._store_base import check_version, compare_config
from featviz._store_disk import (
    StoreLock,
    base_name,
    damaged,
    load_npy,
    missing,
    read_json,
    write_json,
    write_npy,
    writing,
)
from featviz._version import __version__

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MemorySink",
    "Parts",
    "ShardStore",
    "Sink",
    "StoreLock",
    "Survey",
    "barrier",
    "dist_info",
    "fingerprint",
    "merge_store",
    "metadata_for",
    "read_store",
    "survey",
]

logger = logging.getLogger(__name__)

FORMAT = "featviz.featureset"
FORMAT_VERSION = 1
# config keys a store written before featviz recorded them lacks: not compared on resume
UNCHECKED_BEFORE_V1_1 = ("weights", "outputs_code")
_RANK_DIR = re.compile(r"rank(\d{5})")
_SHARD = re.compile(r"\d{6}-(.+)\.npy")
_CHECK = re.compile(r"\d{6}-fingerprint\.txt")
_LOCK = re.compile(r"rank\d{5}\.lock")
_FIELD = re.compile(r"index|outputs|labels|layer\d+")


class Parts(NamedTuple):
    """What a sink finishes into; `featviz.extraction.FeatureSet` is built from it.

    Attributes:
        fields: ``{"index": (N,), "outputs": (N, ...), "labels": (N, ...),
            "layer0": (N, ...), ...}`` (``outputs``/``labels`` may be absent).
        keys: Layer keys, in the order of ``layer0``, ``layer1``, ...
        metadata: The set's metadata.
        path: The store folder, or None for a set in RAM.
    """

    fields: dict[str, np.ndarray]
    keys: list[str]
    metadata: dict[str, Any]
    path: Path | None


class Sink(Protocol):
    """Where `extract` writes each batch; see the module docstring."""

    def open(self) -> Parts | None:
        """Prepare; the result if a finished, compatible one is already there."""
        ...

    def close(self) -> None:
        """Release what `open` took (idempotent)."""
        ...

    def skip(self, b: int, idx: np.ndarray | None, inputs: torch.Tensor | None) -> int | None:
        """Rows already stored for batch ``b`` (after checking it), or None to run it."""
        ...

    def write(self, b: int, arrays: Mapping[str, np.ndarray], inputs: torch.Tensor) -> None:
        """Keep batch ``b``'s arrays (``index``, ``outputs``, ``labels``, ``layer<i>``)."""
        ...

    def finish(self, expected: int | None) -> Parts:
        """Everything written, rows in dataset order, each index once."""
        ...


def metadata_for(config: Mapping[str, Any], duplicates: int) -> dict[str, Any]:
    """The `FeatureSet` metadata of a run with manifest ``config``."""
    return {
        "model_class": config["model_class"],
        "layers": config["layers"],
        "reduce": config["reduce"],
        "dtype": config["dtype"],
        "world_size": config["world_size"],
        "batch_size": config["batch_size"],
        "index_source": config["index_source"],
        "duplicates_dropped": duplicates,
        "featviz_version": __version__,
        # only where an outputs= callable chose what to keep (older manifests lack it)
        **({"outputs": config["outputs"]} if "outputs" in config else {}),
    }


def _first_of_each(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique dataset indices and the position of each one's first occurrence."""
    uniq, first = np.unique(index, return_index=True)
    return uniq, first


def _rows_mismatch(field: str, rows: Any) -> ValueError:
    return ValueError(
        f"extract: field {field!r} has rows of different shapes {sorted(rows)} in "
        "different batches; pool them with reduce='mean' (or 'max'), or use inputs of one "
        "size."
    )


def dist_info() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """``torch.distributed.barrier()`` when a process group is initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------------------
# in RAM
# ---------------------------------------------------------------------------------------
class MemorySink:
    """Keeps each batch's arrays in lists; concatenates once at the end."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)
        self.batches = 0

    def open(self) -> Parts | None:
        """Nothing to prepare."""
        return None

    def close(self) -> None:
        """Nothing to release."""

    def skip(self, b: int, idx: np.ndarray | None, inputs: torch.Tensor | None) -> int | None:
        """Every batch runs."""
        return None

    def write(self, b: int, arrays: Mapping[str, np.ndarray], inputs: torch.Tensor) -> None:
        """Keep the arrays (outputs copied: they may share memory with a tensor)."""
        for name, arr in arrays.items():
            self.parts[name].append(np.array(arr) if name == "outputs" else arr)
        self.batches += 1

    def finish(self, expected: int | None) -> Parts:
        """Concatenate; sort by dataset index and drop repeats when needed."""
        if not self.batches:
            raise ValueError("The 'loader' parameter of extract yielded no batches.")
        fields = {name: _concat(name, parts) for name, parts in self.parts.items()}
        index = fields["index"]
        order = np.argsort(index, kind="stable")
        duplicates = 0
        if not np.array_equal(order, np.arange(order.shape[0])) or np.any(np.diff(index) == 0):
            uniq, first = _first_of_each(index)
            duplicates = int(index.shape[0] - uniq.shape[0])
            fields = {name: arr[first] for name, arr in fields.items()}
        keys = list(self.config["layers"])
        return Parts(fields, keys, metadata_for(self.config, duplicates), None)


def _concat(name: str, parts: list[np.ndarray]) -> np.ndarray:
    rows = {p.shape[1:] for p in parts}
    if len(rows) > 1 and name != "labels":
        raise _rows_mismatch(name, rows)
    return np.concatenate(parts, axis=0)


# ---------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------
def _shard_name(b: int, field: str) -> str:
    return f"{b:06d}-{field}.npy"


def _npy_header(path: Path, root: Path) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Shape, dtype and data offset of a C-ordered ``.npy`` shard (-1: not C-ordered)."""
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
        raise missing(path, root) from exc
    except (OSError, ValueError, EOFError) as exc:
        raise damaged(path, root, exc) from exc
    if dtype.hasobject:
        raise damaged(path, root, ValueError("it holds Python objects"))
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < need:
        raise damaged(path, root, ValueError(f"{size} bytes where {need} are needed"))
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


# ---------------------------------------------------------------------------------------
# what a folder holds
# ---------------------------------------------------------------------------------------
class Survey(NamedTuple):
    """A store folder's manifests and the entries featviz did not write."""

    top: dict[str, Any] | None
    ranks: dict[Path, dict[str, Any]]
    foreign: list[str]


def _temp_of(name: str, owned: set[str]) -> bool:
    base, temp = base_name(name)
    return temp and base in owned


def _owned(base: str, owned: set[str], shard_fields: set[str] | None) -> bool:
    if base in owned:
        return True
    if shard_fields is None:
        return False
    shard = _SHARD.fullmatch(base)
    return bool(shard and shard.group(1) in shard_fields) or bool(_CHECK.fullmatch(base))


def _featviz_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path`` if it is a featviz one; None if absent; {} if foreign.

    Field names must be featviz's own (``index``, ``outputs``, ``labels``, ``layer<i>``),
    since file names are made from them.
    """
    data = read_json(path)
    if data is None:
        return None
    cfg, fields = data.get("config"), data.get("fields") or {}
    ours = isinstance(cfg, dict) and cfg.get("format") == FORMAT and isinstance(fields, dict)
    if not ours or not all(isinstance(f, str) and _FIELD.fullmatch(f) for f in fields):
        return {}
    assert isinstance(cfg, dict)  # checked by `ours`
    check_version(cfg.get("version"), str(path), FORMAT, FORMAT_VERSION)
    return data


def survey(root: Path) -> Survey:
    """Read ``root``'s manifests and list what featviz did not write there.

    featviz owns ``manifest.json``, ``rank<r>.lock``, folders ``rank<r>/`` holding
    ``manifest.json`` and the shards ``<batch>-<field>.npy`` / ``<batch>-fingerprint.txt``
    of the fields its manifest names, and ``data/<field>.npy`` for the fields of any
    manifest (plus the temporary files `atomic_path` makes for these names). Anything
    else, and any symbolic link, is foreign.
    """
    top = _featviz_manifest(root / "manifest.json")
    ranks: dict[Path, dict[str, Any]] = {}
    foreign: list[str] = ["manifest.json"] if top == {} else []
    for p in sorted(root.iterdir()):
        plain_dir = p.is_dir() and not p.is_symlink()
        if _RANK_DIR.fullmatch(p.name) and plain_dir:
            part = _featviz_manifest(p / "manifest.json")
            if part:
                ranks[p] = part
            else:
                foreign += _foreign_files(p, set(), None, only_temps=True)
        elif p.name == "manifest.json" or (p.name == "data" and plain_dir):
            continue
        elif _temp_of(p.name, {"manifest.json"}):
            continue  # being written (it may vanish while we look)
        elif not _LOCK.fullmatch(p.name) or p.is_symlink() or not p.is_file():
            foreign.append(p.name)
    fields = set((top or {}).get("fields") or {})
    for d, part in ranks.items():
        known = set(part.get("fields") or {})
        fields |= known
        foreign += _foreign_files(d, {"manifest.json"}, known)
    if (root / "data").is_dir() and not (root / "data").is_symlink():
        foreign += _foreign_files(root / "data", {f"{f}.npy" for f in fields}, None)
    return Survey(top or None, ranks, foreign)


def _foreign_files(
    folder: Path, owned: set[str], shard_fields: set[str] | None, *, only_temps: bool = False
) -> list[str]:
    """Entries of ``folder`` other than ``owned`` files, shards of ``shard_fields``, temps.

    ``only_temps``: ``folder`` is a rank folder without a featviz manifest; only the
    temporary file of a manifest being written is fine there.
    """
    out = []
    for p in sorted(folder.iterdir()):
        base, temp = base_name(p.name)
        ok = base == "manifest.json" if only_temps else _owned(base, owned, shard_fields)
        if temp and ok:
            continue  # a temporary file of ours (it may vanish while we look)
        if not ok or only_temps or p.is_symlink() or not p.is_file():
            out.append(f"{folder.name}/{p.name}")
    return out


def _refuse_foreign(root: Path, foreign: list[str], what: str) -> ValueError:
    return ValueError(
        f"The 'store' parameter names {str(root)!r}, {what} (it holds {foreign[:5]}"
        f"{' ...' if len(foreign) > 5 else ''}); featviz never touches files it did not "
        "write: choose a new or empty folder."
    )


# ---------------------------------------------------------------------------------------
# on disk
# ---------------------------------------------------------------------------------------
class ShardStore:
    """One rank's side of a store: checks, lock, shards, manifest, merge, reopening."""

    def __init__(self, root: Path, config: Mapping[str, Any], rank: int) -> None:
        self.root = root
        self.config = dict(config)
        self.rank = rank
        self.dir = root / f"rank{rank:05d}"
        self.fields: dict[str, Any] = {}
        self.lock = StoreLock(root, rank)
        self.unverified: list[int] = []
        self.warned_unchecked = False

    def open(self) -> Parts | None:
        """Check the folder (nothing written before); lock; the result if finished."""
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(
                f"The 'store' parameter names a file, not a folder: {str(self.root)!r}."
            )
        if self._check():
            logger.info("extract: %s is already complete; opening it", self.root)
            return read_store(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            if self._check():  # another run finished it meanwhile
                self.lock.release()
                return read_store(self.root)
            self.dir.mkdir(exist_ok=True)
            mine = read_json(self.dir / "manifest.json")
            if mine is not None:
                self.fields = dict(mine.get("fields") or {})
            for stale in self.dir.iterdir():  # temp files of a killed run (all ours: checked)
                if base_name(stale.name)[1]:
                    stale.unlink(missing_ok=True)
            self._save(complete=False)
        except BaseException:
            self.lock.release()
            raise
        return None

    def close(self) -> None:
        """Release the lock (idempotent)."""
        self.lock.release()

    def _check(self) -> bool:
        if not self.root.is_dir():
            return False
        found = survey(self.root)
        if found.top is not None:
            self._compare(found.top.get("config", {}), self.root / "manifest.json")
            if found.top.get("complete"):
                return True
        if found.foreign:
            what = (
                "a featviz store that also holds files featviz did not write"
                if found.top is not None or found.ranks
                else "a non-empty folder that is not a featviz store"
            )
            raise _refuse_foreign(self.root, found.foreign, what)
        for d, part in found.ranks.items():
            self._compare(part.get("config", {}), d / "manifest.json")
        return False

    def _compare(self, stored: Mapping[str, Any], where: Path) -> None:
        lacking = compare_config(
            stored,
            self.config,
            where=f"{str(self.root)!r}, whose manifest ({where.name})",
            owner="extract",
            optional=UNCHECKED_BEFORE_V1_1,
        )
        if lacking and not self.warned_unchecked:
            self.warned_unchecked = True
            warnings.warn(
                f"extract: the store {str(self.root)!r} was written by an older featviz that "
                f"kept no {' or '.join(lacking)} fingerprint; resuming without checking that "
                "the model's weights (and outputs= callable) are the same.",
                stacklevel=user_stacklevel(),
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
        write_json(self.dir / "manifest.json", data)

    def skip(self, b: int, idx: np.ndarray | None, inputs: torch.Tensor | None) -> int | None:
        """Rows of batch ``b`` if it is stored and holds the same samples, else None.

        Raises:
            ValueError: The stored batch holds other dataset indices (``idx``) or other
                inputs (``inputs``, compared by `fingerprint`) than this one.
        """
        path = self.dir / _shard_name(b, "index")
        if not path.is_file():
            return None
        stored = load_npy(path, self.root)
        same = idx is None or np.array_equal(stored, np.asarray(idx, dtype=stored.dtype))
        if same and inputs is not None:
            same = self._same_inputs(b, inputs)
        if not same:
            what = "samples" if idx is not None else "inputs"
            raise ValueError(
                f"extract: resuming {str(self.root)!r}, but batch {b} of the loader now "
                f"holds other samples than in the interrupted run (its {what} differ: a "
                "shuffling loader without a seeded generator?). Use the same sample order, "
                "or a new store."
            )
        return int(stored.shape[0])

    def _same_inputs(self, b: int, inputs: torch.Tensor) -> bool:
        path = self.dir / f"{b:06d}-fingerprint.txt"
        try:
            stored = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:  # written by a featviz that kept no fingerprints
            if not self.unverified:
                warnings.warn(
                    f"extract: the store {str(self.root)!r} keeps no input fingerprints "
                    "(written by an older featviz); resumed batches are not checked.",
                    stacklevel=user_stacklevel(),
                )
            self.unverified.append(b)
            return True
        return stored == fingerprint(inputs)

    def write(self, b: int, arrays: Mapping[str, np.ndarray], inputs: torch.Tensor) -> None:
        """Write batch ``b``: the manifest names every file before it is written."""
        new = {
            name: {"shape": list(a.shape[1:]), "dtype": np.lib.format.dtype_to_descr(a.dtype)}
            for name, a in arrays.items()
        }
        if self.fields and set(new) != set(self.fields):
            raise ValueError(
                f"extract: batch {b} has the fields {sorted(new)}, earlier batches had "
                f"{sorted(self.fields)} (a loader that yields targets only sometimes?)."
            )
        for name, info in new.items():
            old = self.fields.get(name)
            if old is not None and old["shape"] != info["shape"] and name != "labels":
                raise ValueError(
                    f"extract: batch {b} gives {name!r} rows of shape {tuple(info['shape'])}, "
                    f"but the store holds rows of shape {tuple(old['shape'])}; pool them "
                    "with reduce='mean' (or 'max'), or use inputs of one size."
                )
        if not self.fields:
            self.fields = new
            self._save(complete=False)
        if self.config["index_source"] == "count":  # no dataset index: recognise inputs
            with writing(self.dir / f"{b:06d}-fingerprint.txt") as tmp:
                tmp.write_text(fingerprint(inputs) + "\n", encoding="ascii")
        # the index shard goes last: its presence marks the whole shard as finished
        for name in sorted(arrays, key=lambda k: k == "index"):
            write_npy(self.dir / _shard_name(b, name), arrays[name])

    def finish(self, expected: int | None) -> Parts:
        """Mark this rank complete, merge every rank (rank 0, between barriers), reopen."""
        present = sorted(int(p.name[:6]) for p in self.dir.glob("[0-9]*-index.npy"))
        expected = len(present) if expected is None else expected
        if not present or present != list(range(expected)):
            raise ValueError(
                f"extract: the store {str(self.root)!r} holds {len(present)} finished "
                f"batch(es) of rank {self.rank} where {expected} were expected; the loader "
                "yielded nothing or fewer batches than before. Delete the folder and start "
                "over."
            )
        self._save(complete=True, num_shards=len(present))
        if self.config["world_size"] > 1:
            barrier()  # every rank's shards are final
            try:
                if self.rank == 0:
                    merge_store(self.root)
            finally:
                barrier()  # the merged files exist (or rank 0 failed and reading says so)
        else:
            merge_store(self.root)
        return read_store(self.root)


def _rank_parts(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    dirs = sorted(p for p in root.glob("rank*") if _RANK_DIR.fullmatch(p.name) and p.is_dir())
    return [(d, m) for d in dirs if (m := _featviz_manifest(d / "manifest.json"))]


def merge_store(root: Path) -> dict[str, Any]:
    """Merge all ranks' shards into one ``.npy`` per field, in dataset order; return manifest.

    Memory stays flat: shards are read one at a time and their rows written with plain
    file writes at their final offsets (no memory map, so no resident file pages). The
    caller holds rank 0's lock.
    """
    parts = _rank_parts(root)
    config = parts[0][1]["config"]
    shards = [(d, b) for d, part in parts for b in range(int(part["num_shards"]))]
    indices = [load_npy(d / _shard_name(b, "index"), root) for d, b in shards]
    all_idx = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    uniq, first = _first_of_each(all_idx)
    dest = np.full(all_idx.shape[0], -1, dtype=np.int64)
    dest[first] = np.arange(uniq.shape[0])
    n = int(uniq.shape[0])
    bounds = np.cumsum([0] + [len(i) for i in indices])
    (root / "data").mkdir(exist_ok=True)
    for stale in (root / "data").iterdir():  # temp files of an interrupted merge
        if _temp_of(stale.name, {f"{f}.npy" for f in parts[0][1]["fields"]}):
            stale.unlink(missing_ok=True)
    fields_info = {}
    for field in parts[0][1]["fields"]:
        files = [d / _shard_name(b, field) for d, b in shards]
        fields_info[field] = _merge_field(root, field, files, dest, bounds, n)
    duplicates = int(all_idx.shape[0] - n)
    manifest = {
        "config": config,
        "complete": True,
        "n": n,
        "fields": fields_info,
        "metadata": metadata_for(config, duplicates),
    }
    write_json(root / "manifest.json", manifest)
    for d, part in parts:  # shards are merged and the manifest is safe: free the disk space
        _remove_shards(d, part)
    logger.info(
        "extract: merged %d shard(s) into %s (%d duplicate(s) dropped)",
        len(shards),
        root,
        duplicates,
    )
    return manifest


def _merge_field(
    root: Path, field: str, files: list[Path], dest: np.ndarray, bounds: np.ndarray, n: int
) -> dict[str, Any]:
    """Write ``data/<field>.npy`` from the shards ``files``; return its manifest entry."""
    heads = [_npy_header(f, root) for f in files]
    rows = {h[0][1:] for h in heads}
    if len(rows) != 1:
        raise _rows_mismatch(field, rows)
    row = rows.pop()
    dtype = np.result_type(*[h[1] for h in heads])
    rowbytes = int(np.prod(row, dtype=np.int64)) * dtype.itemsize
    out = root / "data" / f"{field}.npy"
    with writing(out) as tmp, open(tmp, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
        np.lib.format.write_array_header_2_0(f, {**header, "shape": (n, *row)})
        start = f.tell()
        for k, path in enumerate(files):
            where = dest[bounds[k] : bounds[k + 1]]
            _place_rows(f, path, heads[k], where, dtype, start, rowbytes)
        f.seek(start + n * rowbytes)
        f.truncate()
    return {"file": f"data/{field}.npy", "shape": [n, *row], "dtype": header["descr"]}


def _place_rows(
    f: Any,
    path: Path,
    head: tuple[tuple[int, ...], np.dtype[Any], int],
    where: np.ndarray,
    dtype: np.dtype[Any],
    start: int,
    rowbytes: int,
) -> None:
    """Write shard ``path``'s rows at rows ``where`` (-1: dropped) of the open file ``f``."""
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


def _remove_shards(folder: Path, part: Mapping[str, Any]) -> None:
    """Delete the files ``part`` (a rank manifest) names, then the folder if empty."""
    fields = list(part.get("fields") or {})
    for b in range(int(part.get("num_shards", 0))):
        for field in fields:
            (folder / _shard_name(b, field)).unlink(missing_ok=True)
        (folder / f"{b:06d}-fingerprint.txt").unlink(missing_ok=True)
    (folder / "manifest.json").unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        logger.warning("extract: kept %s, which holds files featviz did not write", folder)


# ---------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------
def read_store(root: Path, *, mmap: bool = True) -> Parts:
    """Open a store folder (merging finished ranks first when needed).

    Raises:
        FileNotFoundError: No folder, no manifest, or a file the manifest names is missing.
        ValueError: Incomplete, not a featviz store, a damaged file, or a manifest naming
            a file outside the store.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"The 'path' parameter names no folder: {str(root)!r}.")
    manifest = read_json(root / "manifest.json")
    if manifest is None:
        manifest = _merge_finished(root)
    _check_format(manifest, root)
    if not manifest.get("complete"):
        raise ValueError(
            f"The store {str(root)!r} is incomplete: repeat the same extract call to resume."
        )
    mode: Literal["r"] | None = "r" if mmap else None
    fields = {
        name: _open_field(root, name, info, mode) for name, info in manifest["fields"].items()
    }
    fields["index"] = np.array(fields["index"])
    keys = list(manifest["config"]["layers"])
    return Parts(fields, keys, dict(manifest.get("metadata") or {}), root)


def _merge_finished(root: Path) -> dict[str, Any]:
    parts = _rank_parts(root)
    if not parts:
        raise FileNotFoundError(
            f"The 'path' parameter names {str(root)!r}, which holds no featviz store "
            "(no manifest.json)."
        )
    world = {p.get("config", {}).get("world_size") for _, p in parts}
    if not all(p.get("complete") for _, p in parts) or world != {len(parts)}:
        done = sum(bool(p.get("complete")) for _, p in parts)
        raise ValueError(
            f"The store {str(root)!r} is incomplete ({done} of "
            f"{max(w or 0 for w in world)} ranks finished): repeat the same extract "
            "call to resume it."
        )
    lock = StoreLock(root, 0)
    lock.acquire()
    try:
        return read_json(root / "manifest.json") or merge_store(root)
    finally:
        lock.release()


def _check_format(manifest: Mapping[str, Any], root: Path) -> None:
    cfg = manifest.get("config", {})
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ValueError(f"{str(root)!r} holds a manifest.json that is not a featviz store.")
    check_version(cfg.get("version"), str(root / "manifest.json"), FORMAT, FORMAT_VERSION)


def _open_field(root: Path, name: str, info: Any, mode: Literal["r"] | None) -> np.ndarray:
    """Load the file the manifest names for ``name``, checked against its record."""
    rel = info.get("file") if isinstance(info, dict) else None
    path = root / rel if isinstance(rel, str) else root
    inside = isinstance(rel, str) and not os.path.isabs(rel)
    if inside and not path.resolve().is_relative_to(root.resolve()):
        inside = False
    if not inside or path.resolve() == root.resolve():
        raise ValueError(
            f"The store {str(root)!r} has a manifest.json whose field {name!r} names the "
            f"file {rel!r}, which is not inside the store; refusing to read it."
        )
    arr = load_npy(path, root, mode)
    want = (info.get("shape"), info.get("dtype"))
    got = (list(arr.shape), np.lib.format.dtype_to_descr(arr.dtype))
    if got != want:
        raise damaged(
            path, root, ValueError(f"shape/dtype {tuple(got)} where manifest.json says {want}")
        )
    return arr
