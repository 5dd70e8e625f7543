"""Atomic file writing shared by every function that writes files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "check_destination"]


def _umask() -> int:
    """The process umask, read without changing it (Linux); 0o022 elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def check_destination(
    path: str | os.PathLike[str], *, overwrite: bool, param: str = "path"
) -> Path:
    """Validate a destination file path before writing.

    Args:
        path: Where the file will go.
        overwrite: Whether an existing file may be replaced.
        param: Parameter name used in error messages.

    Returns:
        ``path`` as a `Path`.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        IsADirectoryError: ``path`` is a directory.
        FileNotFoundError: The parent directory does not exist.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"The {param!r} parameter names a directory: {str(p)!r}.")
    if p.exists() and not overwrite:
        raise FileExistsError(
            f"The {param!r} parameter names an existing file {str(p)!r}; "
            "pass overwrite=True to replace it."
        )
    if not p.parent.is_dir():
        raise FileNotFoundError(
            f"The {param!r} parameter's folder does not exist: {str(p.parent)!r}."
        )
    return p


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, overwrite: bool = False, param: str = "path"
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically.

    The temporary file has the same suffix as ``path`` (so writers that infer the format
    from the name work). If the body raises, the temporary file is deleted and ``path``
    is untouched. Without ``overwrite``, an existing ``path`` is never replaced, also
    when it appears while the body runs.

    Raises:
        FileExistsError, IsADirectoryError, FileNotFoundError: see `check_destination`.
    """
    final = check_destination(path, overwrite=overwrite, param=param)
    fd, tmp_name = tempfile.mkstemp(
        dir=final.parent, prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}"
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; give the result the mode a plain open() would
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, final)
        else:
            # link() fails if the destination appeared meanwhile: never clobber
            os.link(tmp, final)
            tmp.unlink()
    finally:
        tmp.unlink(missing_ok=True)
