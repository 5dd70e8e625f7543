"""Where `extract` puts its rows: stores of the one store interface (`featviz._store_base`).

`ShardSink` is `extract`'s only sink (`Sink`: ``open()`` -> the finished result when a
finished store is already there, ``skip(b, ...)`` -> rows already stored for batch ``b``,
checked, ``write(b, arrays, inputs)``, ``finish(expected) -> Parts``, ``close()``). It
stands on two `Store` objects of one backend: one per rank for the shards (``<batch>-
<field>.npy``, ``<batch>-fingerprint.txt`` and a manifest, under ``rank<r>/`` on disk), and
one for the merged result (``data/<field>.npy`` and ``manifest.json``), so any backend
that implements `Store` serves `extract`. With ``store=PATH`` the backend is ``"disk"``
and a run is resumable; with ``store=None`` it is ``"memory"``, and each rank finishes
alone. `merge_store` merges the ranks' shards through ``Store.gather``; `read_store` opens
a folder again (merging finished ranks first). On disk a store only writes, replaces or
deletes files whose names its manifests define (see `survey`), and one lock file per
rank keeps two runs out of one store.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from featviz._fingerprints import fingerprint
from featviz._ops import user_stacklevel
from featviz._store_base import Store, StoreSpec, backend, check_version
from featviz._store_disk import DiskStore, StoreLock, base_name, read_json
from featviz._store_zarr import is_zarr, split_location
from featviz._version import __version__

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Parts",
    "ShardSink",
    "Sink",
    "Survey",
    "barrier",
    "dist_info",
    "fingerprint",
    "merge_store",
    "metadata_for",
    "open_sink",
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
_INDEX = re.compile(r"(\d{6})-index\.npy")
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
        # only where an output_transform= callable chose what to keep (older manifests lack it)
        **({"outputs": config["outputs"]} if "outputs" in config else {}),
    }


def _first_of_each(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique dataset indices and the position of each one's first occurrence."""
    uniq, first = np.unique(index, return_index=True)
    return uniq, first


def _rows_mismatch(field: str, rows: Any) -> ValueError:
    return ValueError(
        f"extract: field {field!r} has rows of different shapes {sorted(rows)} in "
        "different batches; pool them with pool='mean' (or 'max'), or use inputs of one "
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
# the stores of one run
# ---------------------------------------------------------------------------------------
def _shard_name(b: int, field: str) -> str:
    return f"{b:06d}-{field}.npy"


def _print_name(b: int) -> str:
    return f"{b:06d}-fingerprint.txt"


def _shard_owned(name: str) -> bool:
    shard = _SHARD.fullmatch(name)
    return bool(shard and _FIELD.fullmatch(shard.group(1))) or bool(_CHECK.fullmatch(name))


def _surveyed_by_top(root: Path) -> None:
    """A rank folder is surveyed with the whole store, by the result's store (`survey`)."""


def _survey_folder(root: Path) -> None:
    """The result store's survey: refuse a folder holding what featviz did not write.

    A finished store is only read: files added to it since are left alone.
    """
    if not root.is_dir():
        return
    found = survey(root)
    if found.foreign and not (found.top and found.top.get("complete")):
        what = (
            "a featviz store that also holds files featviz did not write"
            if found.top is not None or found.ranks
            else "a non-empty folder that is not a featviz store"
        )
        raise _refuse_foreign(root, found.foreign, what)


def _top_spec(root: Path | None, scheme: str | None = None) -> StoreSpec:
    """The merged result: ``manifest.json`` and ``data/<field>.npy`` (rank 0's lock)."""
    return StoreSpec(
        FORMAT,
        FORMAT_VERSION,
        "extract",
        root=root,
        owned=lambda name: name.startswith("data/"),
        versioned="config",
        optional=UNCHECKED_BEFORE_V1_1,
        lock=None,  # written by rank 0 holding its own lock
        survey=_survey_folder,
        scheme=scheme,
    )


def _rank_spec(
    root: Path | None, rank: int, *, locked: bool = True, scheme: str | None = None
) -> StoreSpec:
    """One rank's shards: ``rank<r>/`` on disk, locked by ``rank<r>.lock`` beside it.

    ``locked=False``: a worker writing shards into a store whose lock another process (the
    driver of a Ray job) holds.
    """
    return StoreSpec(
        FORMAT,
        FORMAT_VERSION,
        "extract",
        root=None if root is None else root / f"rank{rank:05d}",
        owned=_shard_owned,
        versioned="config",
        optional=UNCHECKED_BEFORE_V1_1,
        lock=rank if locked else None,
        lock_dir=root,
        home=root,
        survey=_surveyed_by_top,
        scheme=scheme,
    )


def open_sink(
    store: str | os.PathLike[str] | None,
    config: Mapping[str, Any],
    rank: int,
    *,
    locked: bool = True,
) -> ShardSink:
    """`extract`'s sink over the backend ``store`` names.

    ``"memory"`` for None, ``"zarr"`` for a location ending in ``.zarr`` (a path or an
    fsspec URL), else ``"disk"`` (a folder).

    ``locked=False`` gives a worker's sink (`featviz.extraction_ray`): it only checks
    (``skip``) and writes (``write``) batches, idempotently (a batch written twice is
    the same files, replaced atomically), under the lock the driver's sink holds.
    """
    if store is None:
        return ShardSink(backend("memory"), None, config, rank, locked=locked)
    scheme, root = split_location(store)
    if not is_zarr(store) and scheme is not None:
        raise ValueError(
            f"The 'store' parameter is the URL {str(store)!r}; a store at a URL must be a "
            "Zarr store (a name ending in '.zarr'), e.g. 's3://bucket/features.zarr'."
        )
    cls = backend("zarr" if is_zarr(store) else "disk")
    return ShardSink(cls, root, config, rank, locked=locked, scheme=scheme)


class ShardSink:
    """`extract`'s sink over a backend: one `Store` for this rank's shards, one for the result.

    Args:
        cls: The backend (a `featviz._store_base.Store` subclass).
        root: The ``store=`` folder; None for a run in RAM (no input fingerprints, no
            resume, each rank finishes its own rows).
        config: The run's description (the manifests' ``config``).
        rank: This process's rank.
        locked: False for a worker that writes batches under another process's lock
            (see `open_sink`).
        scheme: The fsspec scheme of a store at a remote URL (``root`` is the path after
            ``scheme://``); None for a local one.
    """

    def __init__(
        self,
        cls: type[Store],
        root: Path | None,
        config: Mapping[str, Any],
        rank: int,
        *,
        locked: bool = True,
        scheme: str | None = None,
    ) -> None:
        self.cls = cls
        self.scheme = scheme
        self.root = root
        self.config = dict(config)
        self.rank = rank
        self.top = cls(_top_spec(root, scheme))
        self.store = cls(_rank_spec(root, rank, locked=locked, scheme=scheme))
        self.fields: dict[str, Any] = {}
        self.unverified: list[int] = []
        self.warned_unchecked = False

    def open(self) -> Parts | None:
        """Check the store (nothing written before); lock; the result if finished."""
        top = self.top.open(self.config)
        if top is not None and top.get("complete"):
            self._warn_lacking(top)
            logger.info("extract: %s is already complete; opening it", self.root)
            return self._result()
        self._check_other_ranks()
        mine = self.store.open(self.config)
        try:
            again = self.top.load_manifest()
            if again is not None and again.get("complete"):  # finished by another run
                self.store.close()
                return self._result()
            if mine is not None:
                self._warn_lacking(mine)
                self.fields = dict(mine.get("fields") or {})
            self._save(complete=False)
        except BaseException:
            self.store.close()
            raise
        return None

    def close(self) -> None:
        """Release the lock (idempotent)."""
        self.store.close()

    def _check_other_ranks(self) -> None:
        """Compare the configs of the other ranks' manifests (refuse another run's)."""
        if self.root is None:
            return
        for r in range(int(self.config["world_size"])):
            other = self.cls(_rank_spec(self.root, r, scheme=self.scheme))
            found = other.load_manifest() if r != self.rank else None
            if found is not None:
                where = f"{str(self.root)!r} (rank{r:05d}/manifest.json)"
                other._compare(found, self.config, where)
                self._warn_lacking(found)

    def _warn_lacking(self, manifest: Mapping[str, Any]) -> None:
        stored = manifest.get("config") or {}
        lacking = [k for k in UNCHECKED_BEFORE_V1_1 if k in self.config and k not in stored]
        if lacking and not self.warned_unchecked:
            self.warned_unchecked = True
            warnings.warn(
                f"extract: the store {str(self.root)!r} was written by an older featviz that "
                f"kept no {' or '.join(lacking)} fingerprint; resuming without checking that "
                "the model's weights (and output_transform= callable) are the same.",
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
        self.store.save_manifest(data)

    def skip(self, b: int, idx: np.ndarray | None, inputs: torch.Tensor | None) -> int | None:
        """Rows of batch ``b`` if it is stored and holds the same samples, else None.

        Raises:
            ValueError: The stored batch holds other dataset indices (``idx``) or other
                inputs (``inputs``, compared by `fingerprint`) than this one.
        """
        name = _shard_name(b, "index")
        if not self.store.has(name):
            return None
        stored = np.array(self.store.read(name))
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
        stored = self.store.read_text(_print_name(b))
        if stored is None:  # written by a featviz that kept no fingerprints
            if not self.unverified:
                warnings.warn(
                    f"extract: the store {str(self.root)!r} keeps no input fingerprints "
                    "(written by an older featviz); resumed batches are not checked.",
                    stacklevel=user_stacklevel(),
                )
            self.unverified.append(b)
            return True
        return stored.strip() == fingerprint(inputs)

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
                    f"but earlier batches gave rows of shape {tuple(old['shape'])}; pool them "
                    "with pool='mean' (or 'max'), or use inputs of one size."
                )
        if not self.fields:
            self.fields = new
            self._save(complete=False)
        if self.root is not None and self.config["index_source"] == "count":
            self.store.write_text(_print_name(b), fingerprint(inputs) + "\n")
        # the index shard goes last: its presence marks the whole shard as finished
        for name in sorted(arrays, key=lambda k: k == "index"):
            self.store.write(_shard_name(b, name), arrays[name])

    def finish(self, expected: int | None) -> Parts:
        """Mark this rank complete, merge every rank (rank 0, between barriers), reopen."""
        names = self.store.names()
        present = sorted(int(m.group(1)) for n in names if (m := _INDEX.fullmatch(n)))
        if not present and self.root is None:
            raise ValueError("The 'loader' parameter of extract yielded no batches.")
        expected = len(present) if expected is None or self.root is None else expected
        if not present or present != list(range(expected)):
            raise ValueError(
                f"extract: the store {str(self.root)!r} holds {len(present)} finished "
                f"batch(es) of rank {self.rank} where {expected} were expected; the loader "
                "yielded nothing or fewer batches than before. Delete the folder and start "
                "over."
            )
        if not self.fields:  # every batch was written by workers (featviz.extraction_ray)
            self.fields = dict((self.store.load_manifest() or {}).get("fields") or {})
        self._save(complete=True, num_shards=len(present))
        if self.config["world_size"] > 1 and self.root is not None:
            barrier()  # every rank's shards are final
            try:
                if self.rank == 0:
                    ranks = range(int(self.config["world_size"]))
                    specs = [_rank_spec(self.root, r, scheme=self.scheme) for r in ranks]
                    merge_store(self.top, [self.cls(spec) for spec in specs])
            finally:
                barrier()  # the merged files exist (or rank 0 failed and reading says so)
        else:
            merge_store(self.top, [self.store])
        return self._result()

    def _result(self) -> Parts:
        manifest = self.top.load_manifest()
        if manifest is None:
            raise ValueError(
                f"The store {str(self.root)!r} is incomplete (its merge failed on rank 0): "
                "repeat the same extract call to resume."
            )
        # a run in RAM hands out writable arrays of its own (the store is dropped)
        return parts_of(self.top, manifest, mmap=self.root is not None)


# ---------------------------------------------------------------------------------------
# merging and reading
# ---------------------------------------------------------------------------------------
def merge_store(top: Store, ranks: Sequence[Store]) -> dict[str, Any]:
    """Merge the finished ``ranks``' shards into ``top``: one array per field, dataset order.

    Each dataset index is kept once (its first occurrence); ``top`` gets ``data/<field>``
    arrays (`Store.gather`: streamed on disk, so memory stays flat) and, last, its
    manifest; then the shards are deleted. The caller holds rank 0's lock.

    Args:
        top: The result's store.
        ranks: Every rank's store (each with a complete manifest).

    Returns:
        The result's manifest.
    """
    parts = [(s, m) for s in ranks if (m := s.load_manifest())]
    config = parts[0][1]["config"]
    shards = [(s, b) for s, part in parts for b in range(int(part["num_shards"]))]
    indices = [np.array(s.read(_shard_name(b, "index"))) for s, b in shards]
    all_idx = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    uniq, first = _first_of_each(all_idx)
    dest = np.full(all_idx.shape[0], -1, dtype=np.int64)
    dest[first] = np.arange(uniq.shape[0])
    n = int(uniq.shape[0])
    bounds = np.cumsum([0] + [len(i) for i in indices])
    rows = [dest[bounds[k] : bounds[k + 1]] for k in range(len(shards))]
    fields_info = {}
    for field in parts[0][1]["fields"]:
        sources = [(s, _shard_name(b, field)) for s, b in shards]
        fields_info[field] = _merge_field(top, field, sources, rows, n)
    duplicates = int(all_idx.shape[0] - n)
    manifest = {
        "config": config,
        "complete": True,
        "n": n,
        "fields": fields_info,
        "metadata": metadata_for(config, duplicates),
    }
    top.save_manifest(manifest)
    for store, part in parts:  # shards are merged and the manifest is safe: free the space
        _remove_shards(store, part)
    logger.info(
        "extract: merged %d shard(s) into %s (%d duplicate(s) dropped)",
        len(shards),
        top.path or "RAM",
        duplicates,
    )
    return manifest


def _merge_field(
    top: Store,
    field: str,
    sources: list[tuple[Store, str]],
    rows: list[np.ndarray],
    n: int,
) -> dict[str, Any]:
    """Write ``data/<field>.npy`` from the shards ``sources``; return its manifest entry."""
    heads = [store.header(name) for store, name in sources]
    shapes = {h[0][1:] for h in heads}
    if len(shapes) != 1:
        raise _rows_mismatch(field, shapes)
    name = f"data/{field}.npy"
    top.gather(name, sources, rows, n)
    descr = np.lib.format.dtype_to_descr(np.result_type(*[h[1] for h in heads]))
    return {"file": name, "shape": [n, *shapes.pop()], "dtype": descr}


def _remove_shards(store: Store, part: Mapping[str, Any]) -> None:
    """Delete the shards ``part`` (a rank manifest) names, then the rank's store."""
    fields = list(part.get("fields") or {})
    for b in range(int(part.get("num_shards", 0))):
        for field in fields:
            store.delete(_shard_name(b, field))
        store.delete(_print_name(b))
    store.remove()


def _rank_parts(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    dirs = sorted(p for p in root.glob("rank*") if _RANK_DIR.fullmatch(p.name) and p.is_dir())
    return [(d, m) for d in dirs if (m := _featviz_manifest(d / "manifest.json"))]


def read_store(root: str | os.PathLike[str], *, mmap: bool = True) -> Parts:
    """Open a store folder (merging finished ranks first when needed), or a Zarr store.

    Raises:
        FileNotFoundError: No folder, no manifest, or a file the manifest names is missing.
        ValueError: Incomplete, not a featviz store, a damaged file, or a manifest naming
            a file outside the store.
    """
    if is_zarr(root):
        return _read_zarr(root, mmap)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"The 'path' parameter names no folder: {str(root)!r}.")
    manifest = read_json(root / "manifest.json")
    if manifest is None:
        manifest = _merge_finished(root)
    _check_format(manifest, root)
    return parts_of(DiskStore(_top_spec(root)), manifest, mmap=mmap)


def _read_zarr(location: str | os.PathLike[str], mmap: bool) -> Parts:
    """A finished Zarr store (`featviz._store_zarr`); its arrays are read into RAM."""
    scheme, root = split_location(location)
    top = backend("zarr")(_top_spec(root, scheme))
    manifest = top.load_manifest()
    if manifest is None:
        raise FileNotFoundError(
            f"The 'path' parameter names {str(location)!r}, which holds no finished featviz "
            "Zarr store; if an extract call into it stopped, repeat it to resume."
        )
    _check_format(manifest, root)
    return parts_of(top, manifest, mmap=mmap)


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
        ranks = [DiskStore(_rank_spec(root, int(d.name[4:]))) for d, _ in parts]
        return read_json(root / "manifest.json") or merge_store(DiskStore(_top_spec(root)), ranks)
    finally:
        lock.release()


def _check_format(manifest: Mapping[str, Any], root: Path) -> None:
    cfg = manifest.get("config", {})
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ValueError(f"{str(root)!r} holds a manifest.json that is not a featviz store.")
    check_version(cfg.get("version"), str(root / "manifest.json"), FORMAT, FORMAT_VERSION)


def parts_of(top: Store, manifest: Mapping[str, Any], *, mmap: bool = True) -> Parts:
    """The `Parts` of a result store ``top`` with the (checked) ``manifest``.

    Args:
        top: The result's store.
        manifest: Its manifest.
        mmap: Keep the arrays as ``top`` reads them (memory-mapped on disk), else copy
            them into RAM.

    Raises:
        ValueError: Incomplete, a damaged array, or a manifest naming a file outside.
    """
    where = repr(str(top.path)) if top.path is not None else "in RAM"
    if not manifest.get("complete"):
        raise ValueError(
            f"The store {where} is incomplete: repeat the same extract call to resume."
        )
    fields = {
        name: _open_field(top, where, name, info, mmap) for name, info in manifest["fields"].items()
    }
    fields["index"] = np.array(fields["index"])
    keys = list(manifest["config"]["layers"])
    return Parts(fields, keys, dict(manifest.get("metadata") or {}), top.path)


def _open_field(top: Store, where: str, name: str, info: Any, mmap: bool) -> np.ndarray:
    """Read the array the manifest names for ``name``, checked against its record."""
    rel = info.get("file") if isinstance(info, dict) else None
    path = PurePosixPath(rel if isinstance(rel, str) else "/")
    if not isinstance(rel, str) or not path.parts or path.is_absolute() or ".." in path.parts:
        raise ValueError(
            f"The store {where} has a manifest.json whose field {name!r} names the "
            f"file {rel!r}, which is not inside the store; refusing to read it."
        )
    arr = top.read(rel) if mmap else np.array(top.read(rel))
    want = (info.get("shape"), info.get("dtype"))
    got = (list(arr.shape), np.lib.format.dtype_to_descr(arr.dtype))
    if got != want:
        raise ValueError(
            f"The store {where} has a damaged file {rel!r} (ValueError: shape/dtype "
            f"{tuple(got)} where manifest.json says {want}). Delete the folder and run "
            "extract again."
        )
    return arr
