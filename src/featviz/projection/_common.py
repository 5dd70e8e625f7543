"""What the parts of `featviz.projection` share: checked settings, records, errors, memory.

`_Settings` (the checked arguments of `project`), `_Reduced` (the features after the PCA
step) and `_Embedding` (what a method returns) are the records passed between reading
(`_sources`), the method table (`_methods`), scoring (`_quality`) and the public functions.
"""

from __future__ import annotations

import math
import mmap
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from featviz._ops import user_stacklevel
from featviz._validation import check_choice, check_int

if TYPE_CHECKING:
    from featviz.projection._methods import _Method

#: Trustworthiness is computed on a seeded subsample of at most this many points.
TRUSTWORTHINESS_MAX_POINTS = 2000
#: A memory-mapped input larger than this fraction of available memory (or than
#: ``max_memory``) is reduced by ``IncrementalPCA`` in row chunks.
DEFAULT_MEMORY_FRACTION = 0.25


def _warn(message: str) -> None:
    """``UserWarning`` attributed to the user's line (the first frame outside featviz)."""
    warnings.warn(message, stacklevel=user_stacklevel())


# -- arguments -----------------------------------------------------------------------------


def _check_int(value: Any, name: str, low: int, fn: str = "project") -> int:
    return check_int(value, name, fn, low)


def _check_choice(value: Any, name: str, choices: Sequence[str], fn: str = "project") -> str:
    return check_choice(value, name, fn, choices, ignore_case=True)


def _check_perplexity(value: Any, fn: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 and math.isfinite(value))
    ):
        raise ValueError(
            f"The 'perplexity' parameter of {fn} must be a float in the range (0, inf). "
            f"Got {value!r} instead."
        )
    return float(value)


def _check_seed(value: Any, fn: str) -> int | None:
    return None if value is None else _check_int(value, "random_state", 0, fn)


def _check_n_jobs(value: Any, fn: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value == 0:
        raise ValueError(
            f"The 'n_jobs' parameter of {fn} must be None or a non-zero int (-1: all cores). "
            f"Got {value!r} instead."
        )
    return int(value)


@dataclass(frozen=True)
class _Settings:
    """`project`'s checked arguments, and the names its error messages use."""

    method: str
    row: _Method  # the method's row of the table `_methods._METHODS`
    k: int
    pca_dims: int | None
    engine: str
    perplexity: float
    random_state: int | None
    n_jobs: int | None
    batch_size: int
    budget: int  # bytes a memory map may take when read at once
    normalize: bool
    progress: bool
    score: bool
    fn: str = "project"  # the public function named in messages
    name: str = "features"  # how messages name the features parameter


@dataclass
class _Reduced:
    """Features ready for the embedding step, plus what the PCA step (if any) produced."""

    data: np.ndarray
    evr: np.ndarray | None
    incremental: bool
    rows: np.ndarray | None  # the raw (N, D) rows (array or memmap) when available
    labels: np.ndarray | None = None
    n_features: int = 0
    sub_rows: np.ndarray | None = None  # raw rows at _subsample(N) (streams only)
    rows_fit: bool = True  # the raw rows fit the memory budget (kNN accuracy on them)


@dataclass
class _Embedding:
    """What a method's embedding function returns."""

    embedding: np.ndarray
    engine: str  # what computed it (Projection.engine)
    params: dict[str, Any] = field(default_factory=dict)  # settings it adjusted


# -- errors ----------------------------------------------------------------------------------


def _refuse_non_finite(values: np.ndarray | None, what: str, s: _Settings) -> None:
    """Never return a result that holds NaN or inf: refuse it with a ValueError."""
    if values is not None and not np.isfinite(values).all():
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} gave a {what} with NaN or inf values, so it "
            "is refused. The features are probably (nearly) constant or extreme in scale: "
            "standardise them, or try another method."
        )


@contextmanager
def _library_errors(s: _Settings, library: str) -> Iterator[None]:
    """Re-raise an error of a third-party library as a ValueError that names the features."""
    try:
        yield
    except (ImportError, MemoryError, Warning):
        raise
    except Exception as exc:
        raise ValueError(
            f"The {s.name!r} parameter of {s.fn} could not be projected: {library} failed "
            f"({type(exc).__name__}: {exc}). Check that the features vary and are moderate "
            "in scale (standardise them), or try another method or engine."
        ) from exc


@contextmanager
def _pca_errors(s: _Settings, library: str) -> Iterator[None]:
    """`_library_errors` for a PCA step, with its 0/0 warnings silenced.

    They come from (nearly) constant rows, and the explained variance ratio is checked
    right after the step (`_refuse_non_finite`), so they would only repeat that error.
    """
    with _library_errors(s, library), np.errstate(divide="ignore", invalid="ignore"):
        yield


# -- memory and rows -------------------------------------------------------------------------


def _available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def _release_pages(arr: np.ndarray) -> None:
    """Drop the resident pages of a read-only/shared memory map from this process's RSS.

    The data stays in the OS page cache; later reads fault it back in. Copy-on-write maps
    (mode ``"c"``) are left alone, since that would discard private changes.
    """
    mm = getattr(arr, "_mmap", None)
    if not isinstance(mm, mmap.mmap) or getattr(arr, "mode", "c") not in ("r", "r+"):
        return
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None or not hasattr(mm, "madvise"):  # pragma: no cover - non-Linux
        return
    try:
        mm.madvise(advice)
    except (OSError, ValueError):  # pragma: no cover - closed map or odd platform
        pass


def _as_float(chunk: np.ndarray) -> np.ndarray:
    if chunk.dtype in (np.float32, np.float64):
        return chunk
    return chunk.astype(np.float32)


def _bad_rows(chunk: np.ndarray) -> np.ndarray:
    """Indices of rows of a 2-D chunk holding NaN or inf."""
    if chunk.dtype.kind not in "fc":
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(chunk).all(axis=1))


def _first_rows(rows: np.ndarray) -> str:
    more = ", ..." if rows.size > 5 else ""
    return ", ".join(str(int(r)) for r in rows[:5]) + more


def _subsample(n: int, random_state: int | None) -> np.ndarray:
    """Sorted indices of the seeded subsample (at most TRUSTWORTHINESS_MAX_POINTS rows)."""
    m = min(n, TRUSTWORTHINESS_MAX_POINTS)
    return np.sort(np.random.default_rng(random_state).choice(n, m, replace=False))


def _chunks(n: int, rows: int) -> Iterator[slice]:
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))
