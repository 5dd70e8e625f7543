"""Atomic file writing shared by every function that writes files."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DestinationAppeared", "atomic_path", "check_destination", "write_error"]


class DestinationAppeared(FileExistsError):
    """The destination appeared while `atomic_path` was writing (it is left as it is)."""


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
    if os.path.lexists(p) and not overwrite:  # a dangling symbolic link exists too
        raise FileExistsError(
            f"The {param!r} parameter names an existing file {str(p)!r}; "
            "pass overwrite=True to replace it."
        )
    if not p.parent.is_dir():
        raise FileNotFoundError(
            f"The {param!r} parameter's folder does not exist: {str(p.parent)!r}."
        )
    return p


def write_error(exc: OSError, final: Path) -> OSError:
    """``exc`` (a failed write) as an error of its class and errno that names ``final``.

    ``"Cannot write '<final>': Permission denied."``: the message names the destination,
    never the temporary file the error came from.
    """
    new = type(exc)(f"Cannot write {str(final)!r}: {exc.strerror or exc}.")
    new.errno = exc.errno
    return new


def _temp_pattern(final: Path) -> re.Pattern[str]:
    """Matches the temporary names `atomic_path` makes for ``final``, with their folder."""
    name = rf"\.{re.escape(final.stem)}\.[A-Za-z0-9_]+\.tmp{re.escape(final.suffix)}"
    return re.compile(rf"(?:{re.escape(str(final.parent) + os.sep)})?{name}")


def _names_temp(exc: BaseException, temp: re.Pattern[str]) -> bool:
    names = (getattr(exc, "filename", None), getattr(exc, "filename2", None), str(exc))
    return any(temp.search(str(n)) for n in names if n is not None)


def _translated(exc: BaseException, final: Path, param: str) -> BaseException:
    """What to raise instead of ``exc``: ``exc`` itself unless it names a temporary file."""
    temp = _temp_pattern(final)
    if not _names_temp(exc, temp):
        return exc
    if isinstance(exc, FileExistsError) and exc.filename2 is not None:  # os.link's race
        appeared = DestinationAppeared(
            f"The {param!r} parameter names an existing file {str(final)!r} (it appeared "
            "while writing); it was left as it is. Pass overwrite=True to replace it."
        )
        appeared.errno = exc.errno
        return appeared
    if isinstance(exc, OSError):
        return write_error(exc, final)
    # another error (a writer's ValueError quoting its file): the name replaced in place
    exc.args = tuple(temp.sub(str(final), a) if isinstance(a, str) else a for a in exc.args)
    return exc


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, overwrite: bool = False, param: str = "path"
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically.

    The temporary file has the same suffix as ``path`` (so writers that infer the format
    from the name work). If the body raises, the temporary file is deleted and ``path``
    is untouched. Without ``overwrite``, an existing ``path`` (a dangling symbolic link
    too) is never replaced, also when it appears while the body runs.

    No error that leaves this context names the temporary file: an `OSError` about it
    (no permission to create it, a full disk, a failed move) becomes one of the same
    class and errno saying ``Cannot write '<path>': <reason>.`` (`write_error`), and the
    temporary name in any other error's message is replaced by ``path``.

    Raises:
        FileExistsError, IsADirectoryError, FileNotFoundError: see `check_destination`.
        DestinationAppeared: ``path`` appeared while writing, without ``overwrite``.
        OSError: Writing failed; the message names ``path``.
    """
    final = check_destination(path, overwrite=overwrite, param=param)
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(
            dir=final.parent, prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}"
        )
        os.close(fd)
        tmp = Path(tmp_name)
        # mkstemp creates 0600 files; give the result the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        if overwrite:
            os.replace(tmp, final)
        else:
            # link() fails if the destination appeared meanwhile: never clobber
            os.link(tmp, final)
            tmp.unlink()
    except Exception as exc:
        new = _translated(exc, final, param)
        if new is exc:
            raise
        raise new from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
