"""``featviz convert``: convert image files and folders to another format, safely.

Exit status: 0 when no file failed (files skipped on purpose, e.g. already in the
target format or not images, do not count as failures); 1 when at least one file
failed or, with ``--remove-source``, a source was kept (its output lacks part of it,
or it could not be deleted); 2 for invalid arguments. Every problem is one line on
stderr (``failed: ...``, ``kept: ...``, ``featviz convert: error: ...``), never a
traceback; the last line on stdout is the summary, e.g.
``featviz convert: 12 converted, 1 skipped, 0 failed``.
"""

from __future__ import annotations

import argparse
import re
import sys

_FORMATS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff")
#: convert_images parameter -> the option that sets it, for error messages.
OPTIONS = {
    "paths_or_folder": "SRC",
    "to": "--to",
    "out_dir": "--out",
    "quality": "--quality",
    "background": "--background",
    "workers": "--workers",
    "remove_source": "--remove-source",
    "overwrite": "--overwrite",
}


def _one_line(text: str) -> str:
    r"""``text`` on one line: line breaks (e.g. inside a quoted path) written as ``\n``."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _error_line(exc: BaseException) -> str:
    """A library error as the CLI says it, on one line.

    ``The 'quality' parameter of convert_images must be ...`` becomes
    ``featviz convert: error: --quality must be ...``.
    """
    text = re.sub(
        r"The '(\w+)' parameter of convert_images",
        lambda m: OPTIONS.get(m[1], m[1]),
        _one_line(str(exc)),
    )
    return f"featviz convert: error: {text}"


def _format(text: str) -> str:
    key = text.strip().lower().lstrip(".")
    if key not in _FORMATS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(_FORMATS)}; got {text!r}")
    return key


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` sub-command."""
    p = subparsers.add_parser(
        "convert",
        help="convert images (files or folders) to JPEG/PNG/WebP/BMP/TIFF, safely",
        description="Convert PNG/JPEG/WebP/BMP/TIFF/GIF files to another format. "
        "Transparency is blended onto --background for JPEG/BMP; 16-bit, float, CMYK "
        "and palette images are handled; EXIF orientation is applied. Files are written "
        "atomically, existing files are never replaced without --overwrite, and sources "
        "are deleted only with --remove-source after the output re-opened correctly and "
        "only when it holds everything the source held (else the source is kept and "
        "listed). Exit status: 0 when nothing failed (skipped files are fine), 1 when a "
        "file failed or a source was kept, 2 for bad arguments.",
    )
    p.add_argument("src", nargs="+", metavar="SRC", help="image files and/or folders")
    p.add_argument(
        "--to", type=_format, default="jpg", help=f"target format: {', '.join(_FORMATS)}"
    )
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: beside)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (95)")
    p.add_argument(
        "--background",
        default="white",
        help="colour transparent pixels are blended onto for JPEG/BMP (name or #rrggbb)",
    )
    p.add_argument("--recursive", action="store_true", help="also convert sub-folders")
    p.add_argument(
        "--remove-source",
        action="store_true",
        help="delete each source once its output verified and lacks nothing of it",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--workers", type=int, default=None, help="threads (default: min(4, CPUs))")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, options=OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Convert the files; print failures to stderr and a summary line to stdout."""
    from featviz.convert import convert_images

    try:
        report = convert_images(
            args.src,
            args.to,
            out_dir=args.out,
            recursive=args.recursive,
            workers=args.workers,
            quality=args.quality,
            background=args.background,
            overwrite=args.overwrite,
            remove_source=args.remove_source,
            progress=not args.no_progress,
        )
    except (TypeError, ValueError, OSError) as exc:
        sys.stderr.write(_error_line(exc) + "\n")
        return 2
    lines = [("failed", report.failed), ("kept", report.kept)]
    if getattr(args, "verbose", False):
        lines.append(("skipped", report.skipped))
    for label, entries in lines:
        for src, reason in entries:
            sys.stderr.write(_one_line(f"{label}: {src}: {reason}") + "\n")
    sys.stdout.write(f"featviz convert: {report.summary()}\n")
    return 0 if report.ok else 1
