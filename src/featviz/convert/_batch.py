"""Converting many files: gather, screen, plan, run in workers, report."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featviz.convert._rules import (
    _INPUT_FORMATS,
    _INPUT_SUFFIXES,
    _check_bool,
    logger,
)
from featviz.convert._single import (
    _convert,
    _kept_message,
    _Options,
    _remove_source,
    _validate_common,
)

if TYPE_CHECKING:
    pass


# --------------------------------------------------------------------------- batches


@dataclass
class ConversionReport:
    """What `convert_images` did, file by file, in input order.

    Every input is in exactly one of ``converted``, ``skipped`` and ``failed``;
    ``kept`` is a subset of ``converted``.

    Attributes:
        converted: ``(source, output)`` pairs: the output was written (or, with
            ``remove_source``, found already holding exactly this conversion).
        skipped: ``(source, reason)`` for files left alone on purpose: not an image
            (by suffix), hidden, already in the target format, or the same file as an
            earlier input (a duplicate, a symlink, ``a/../a.png``).
        failed: ``(source, reason)`` for files that could not be converted (corrupt,
            unreadable, destination exists or collides, ...). Their sources are untouched.
        kept: ``(source, reason)`` for converted files whose source ``remove_source=True``
            did not delete: the output lacks part of the source (frames, transparency,
            bits, metadata), or the deletion failed (e.g. a read-only folder). The
            reason says which and what to do.
    """

    converted: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file failed and no source was kept against ``remove_source``.

        Skipped files do not count.
        """
        return not self.failed and not self.kept

    def summary(self) -> str:
        """One line such as ``'3 converted, 1 skipped, 0 failed'``.

        ``', 1 source kept'`` is added when ``kept`` is not empty.
        """
        text = (
            f"{len(self.converted)} converted, {len(self.skipped)} skipped, "
            f"{len(self.failed)} failed"
        )
        if self.kept:
            text += f", {len(self.kept)} source{'s' if len(self.kept) > 1 else ''} kept"
        return text


@dataclass
class _Outcome:
    """One input's line in the report: ``status`` is a `ConversionReport` list name."""

    status: str
    value: Any  # the output path for "converted", else the reason
    kept: str | None = None


def _iter_inputs(paths_or_folder: object) -> list[Path]:
    if isinstance(paths_or_folder, (str, os.PathLike)):
        return [Path(paths_or_folder)]
    if isinstance(paths_or_folder, Iterable) and not isinstance(paths_or_folder, bytes):
        items = list(paths_or_folder)
        bad = [p for p in items if not isinstance(p, (str, os.PathLike))]
        if not bad:
            return [Path(p) for p in items]
    raise TypeError(
        "The 'paths_or_folder' parameter of convert_images must be a path, a folder, or "
        f"an iterable of paths. Got {type(paths_or_folder).__name__} instead."
    )


def _sniff_format(path: Path) -> str | None:
    """Pillow's format name from the file header; None when it cannot tell (or read)."""
    from PIL import Image

    try:
        with Image.open(path, formats=list(_INPUT_FORMATS)) as im:
            return im.format
    except Exception:  # the conversion itself reports unreadable files
        return None


def _is_within(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _check_workers(workers: object) -> int:
    if workers is None:
        return min(4, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(
            "The 'workers' parameter of convert_images must be an int in the range [1, inf) "
            f"or None. Got {workers!r} instead."
        )
    return workers


def _check_out_dir(out_dir: object) -> Path | None:
    if out_dir is None:
        return None
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(
            "The 'out_dir' parameter of convert_images must be None, a str or os.PathLike. "
            f"Got {type(out_dir).__name__} instead."
        )
    out_path = Path(out_dir)
    if out_path.exists() and not out_path.is_dir():
        raise NotADirectoryError(
            f"The 'out_dir' parameter of convert_images names a file: {str(out_path)!r}; "
            "pass a folder (it is created if missing)."
        )
    return out_path


@dataclass(frozen=True)
class _Input:
    """One input file.

    ``root`` is the folder it was found in (None: given directly); ``problem`` says why
    it cannot even be looked at (None: fine).
    """

    path: Path
    root: Path | None = None
    problem: str | None = None


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # unreadable parent, NUL byte: reported later
        return False


def _gather(inputs: list[Path], recursive: bool, out_path: Path | None) -> list[_Input]:
    """Inputs -> files, folders expanded (sorted), in input order.

    Files inside ``out_path`` are left out of folder listings. Duplicates stay (`_plan`
    reports them); a folder that cannot be listed becomes one input with a problem.
    """
    found: list[_Input] = []
    for item in inputs:
        if not _is_folder(item):
            found.append(_Input(item))
            continue
        try:  # every entry but folders: a pipe or a broken link is reported, not dropped
            files = sorted(
                p for p in (item.rglob("*") if recursive else item.iterdir()) if not _is_folder(p)
            )
        except OSError as exc:
            found.append(
                _Input(item, problem=f"cannot list the folder {str(item)!r}: {exc.strerror}")
            )
            continue
        found += [_Input(f, item) for f in files if not _is_within(f, out_path)]
    return found


def _identity(path: Path) -> Path:
    """The key two spellings of one file share (symlinks and ``..`` resolved)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes
        return Path(os.path.abspath(path))


def _destination(src: Path, root: Path | None, out_path: Path | None, suffix: str) -> Path:
    if out_path is None:
        return src.with_suffix(suffix)
    if root is not None:
        return out_path / src.relative_to(root).with_suffix(suffix)
    return out_path / src.with_suffix(suffix).name


def _screen(src: Path, fmt: str) -> _Outcome | None:
    """Why ``src`` is not converted (missing, hidden, not an image, already ``fmt``), or None.

    Every input gets an outcome here or later: a named pipe, a device or a socket
    (also behind a symbolic link) is skipped unread, a broken link fails.
    """
    try:
        mode = src.stat().st_mode
    except FileNotFoundError:
        if src.is_symlink():
            return _Outcome("failed", f"a symbolic link to a missing file: {str(src)!r}")
        return _Outcome("failed", f"no such file or folder: {str(src)!r}")
    except (OSError, ValueError) as exc:
        return _Outcome(
            "failed", f"cannot access {str(src)!r}: {getattr(exc, 'strerror', None) or exc}"
        )
    if not stat.S_ISREG(mode):
        return _Outcome("skipped", f"not a regular file ({_kind(mode)}); never read")
    if src.name.startswith("."):
        return _Outcome("skipped", "hidden file")
    if src.suffix.lower() not in _INPUT_SUFFIXES:
        return _Outcome("skipped", f"not an image file (suffix {src.suffix!r})")
    if _sniff_format(src) in (fmt, "MPO" if fmt == "JPEG" else fmt):
        return _Outcome("skipped", f"already {fmt}")
    return None


def _kind(mode: int) -> str:
    kinds = [(stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device")]
    kinds += [(stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a file")


def _screen_all(found: list[_Input], fmt: str) -> tuple[dict[int, _Outcome], list[int]]:
    """Sort inputs into those not to convert and the candidates.

    Returns:
        Outcomes of the inputs not to convert (a problem, a duplicate, `_screen`), by
        index, and the indices of the rest, in order.
    """
    results: dict[int, _Outcome] = {}
    candidates: list[int] = []
    first: dict[Path, Path] = {}  # identity -> first spelling
    for i, item in enumerate(found):
        key = _identity(item.path)
        if item.problem is not None:
            results[i] = _Outcome("failed", item.problem)
        elif key in first:
            results[i] = _Outcome(
                "skipped", f"the same file as {str(first[key])!r} (converted once)"
            )
        else:
            first[key] = item.path
            screened = _screen(item.path, fmt)
            if screened is None:
                candidates.append(i)
            else:
                results[i] = screened
    return results, candidates


def _plan(
    found: list[_Input], out_path: Path | None, opts: _Options
) -> tuple[dict[int, _Outcome], list[tuple[int, Path, Path]]]:
    """Decide each input's fate before writing anything.

    A destination that is another input to convert fails; one that is an input left
    alone (e.g. already in the target format: an earlier run's output) is an ordinary
    existing destination, except with ``overwrite``, where it fails rather than be
    replaced.

    Returns:
        Outcomes already known (skipped or failed), by input index, and the
        ``(index, source, destination)`` jobs to run.
    """
    results, candidates = _screen_all(found, opts.fmt)
    converting = {_identity(found[i].path) for i in candidates}
    left_alone = {_identity(found[i].path) for i in results}
    jobs: list[tuple[int, Path, Path]] = []
    planned: dict[Path, Path] = {}  # destination identity -> its source
    for i in candidates:
        src = found[i].path
        dst = _destination(src, found[i].root, out_path, opts.suffix)
        target = _identity(dst)
        if target in converting or (opts.overwrite and target in left_alone):
            reason = f"the destination {str(dst)!r} is one of the input files"
            results[i] = _Outcome("failed", reason)
        elif target in planned:
            reason = f"the destination {str(dst)!r} is also that of {str(planned[target])!r}"
            results[i] = _Outcome("failed", reason)
        else:
            planned[target] = src
            jobs.append((i, src, dst))
    return results, jobs


def _convert_one(src: Path, dst: Path, opts: _Options) -> _Outcome:
    """Convert one planned file; never raises (the outcome says what happened)."""
    try:
        losses = _convert(src, dst, opts)
    except Exception as exc:
        logger.info("convert failed: %s: %s", src, exc)
        return _Outcome("failed", f"{type(exc).__name__}: {exc}")
    if not opts.remove_source:
        return _Outcome("converted", dst)
    if losses:
        return _Outcome("converted", dst, kept=_kept_message(src, dst, opts.fmt, losses))
    try:
        _remove_source(src, dst)
    except OSError as exc:
        return _Outcome("converted", dst, kept=f"{type(exc).__name__}: {exc}")
    return _Outcome("converted", dst)


def _build_report(found: list[_Input], results: dict[int, _Outcome]) -> ConversionReport:
    report = ConversionReport()
    for i, item in enumerate(found):
        outcome = results[i]
        getattr(report, outcome.status).append((item.path, outcome.value))
        if outcome.kept is not None:
            report.kept.append((item.path, outcome.kept))
    return report


def convert_images(
    paths_or_folder: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    to: str = "jpg",
    *,
    out_dir: str | os.PathLike[str] | None = None,
    recursive: bool = False,
    workers: int | None = None,
    quality: int = 95,
    background: tuple[int, int, int] | str | int = (255, 255, 255),
    overwrite: bool = False,
    remove_source: bool = False,
    progress: bool = True,
) -> ConversionReport:
    """Convert many image files, continuing past the ones that cannot be converted.

    Folders are expanded to the files they hold (sorted; sub-folders too with
    ``recursive``; files inside ``out_dir`` are left out). Every file then ends up in
    exactly one list of the report:

    * **skipped**: the suffix is not an image suffix (``.png``, ``.jpg``, ``.jpeg``,
      ``.webp``, ``.bmp``, ``.tif``, ``.tiff``, ``.gif``, ...), the name is hidden
      (starts with ``.``), the file is already in the target format (by content), or
      it is the same file as an earlier input (listed twice, a symlink, ``a/../a.png``);
    * **failed**: missing, unreadable, corrupt or truncated, its destination exists
      (without ``overwrite``), or two inputs would write the same destination, or the
      destination is itself one of the inputs;
    * **converted**: written as with `convert_image`. With ``remove_source``, a source
      that was not deleted (the output lacks part of it, or the deletion failed) is
      also listed in **kept** with the reason.

    Files are converted on a thread pool: Pillow releases the GIL while decoding and
    encoding, so threads scale like processes here without the start-up and pickling
    cost (see ``benchmarks/convert.py``).

    Args:
        paths_or_folder: A file, a folder, or an iterable of files and folders.
        to: Target format, as in `convert_image`.
        out_dir: Folder for the outputs (created if missing); default: beside each
            source. Files found in a folder keep their path relative to that folder.
        recursive: Also convert the files in sub-folders of the given folders.
        workers: Threads; None -> ``min(4, os.cpu_count())``; 1 converts serially.
        quality: JPEG/WebP quality in [1, 100].
        background: Colour transparent pixels are blended onto (JPEG, BMP).
        overwrite: Replace existing destinations.
        remove_source: Delete each source after its output verified and only if the
            output holds everything the source held (see `convert_image`).
        progress: Show a ``tqdm`` progress bar.

    Returns:
        A `ConversionReport`; ``report.ok`` is True when nothing failed and no source
        was kept against ``remove_source``.

    Raises:
        TypeError, ValueError: An argument is invalid (checked before any file is
            touched). Problems with individual files never raise; they are reported.
        NotADirectoryError: ``out_dir`` names a file.
    """
    opts = _validate_common("convert_images", to, quality, background, overwrite, remove_source)
    for name, value in (("recursive", recursive), ("progress", progress)):
        _check_bool(value, name, "convert_images")
    n_workers = _check_workers(workers)
    out_path = _check_out_dir(out_dir)
    opts = replace(opts, make_parents=out_path is not None)

    found = _gather(_iter_inputs(paths_or_folder), recursive, out_path)
    results, jobs = _plan(found, out_path, opts)
    _run_jobs(jobs, opts, results, workers=n_workers, progress=progress)
    return _build_report(found, results)


def _run_jobs(
    jobs: list[tuple[int, Path, Path]],
    opts: _Options,
    results: dict[int, _Outcome],
    *,
    workers: int,
    progress: bool,
) -> None:
    """Run `_convert_one` on every job (serially or on threads), storing outcomes by index."""
    from featviz._ops import progress_bar

    with progress_bar(enabled=progress, total=len(jobs), desc="convert", unit="file") as bar:
        if workers == 1 or len(jobs) <= 1:
            for i, src, dst in jobs:
                results[i] = _convert_one(src, dst, opts)
                bar.update()
            return
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = {pool.submit(_convert_one, src, dst, opts): i for i, src, dst in jobs}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update()
