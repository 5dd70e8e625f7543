"""Converting one file, in steps: decode, encode, write atomically, verify, remove."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from featviz._images import bomb_error
from featviz._io import DestinationAppeared, atomic_path, check_destination
from featviz._ops import user_stacklevel
from featviz.convert._rules import (
    _INPUT_FORMATS,
    SourceKeptWarning,
    _check_bool,
    _check_dst,
    _check_quality,
    _check_source,
    _fsync_dir,
    _is_fs_error,
    _metadata_kinds,
    _metadata_lost,
    _os_error,
    _parse_background,
    _parse_target,
    _prepare,
    _Prepared,
    _refuse_truncated_loading,
    _save_options,
    _verify_written,
    _VerifyError,
    logger,
)

if TYPE_CHECKING:
    pass


# --------------------------------------------------------------------------- one file, in steps


@dataclass(frozen=True)
class _Options:
    """The settings shared by every file of one call (already validated)."""

    fmt: str
    suffix: str
    quality: int
    background: tuple[int, int, int]
    overwrite: bool
    remove_source: bool
    make_parents: bool = False


def _decode(src: Path, opts: _Options) -> _Prepared:
    """Read ``src`` (first frame) and prepare it for ``opts.fmt``.

    Raises:
        ValueError: ``src`` is not a readable image in a supported format (corrupt,
            truncated, a decompression bomb, ...), naming the file.
        OSError: ``src`` cannot be read (permissions, ...).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(src, formats=list(_INPUT_FORMATS)) as im:
            n_frames = getattr(im, "n_frames", 1)
            wide = im.mode in ("L", "LA", "RGB", "RGBA") and any(
                ";16" in str(tile.args) for tile in im.tile
            )
            im.load()
            prepared = _prepare(im, opts.fmt, opts.background)
            prepared.image.load()
            if opts.remove_source:  # compared with the output's only then
                prepared.metadata = _metadata_kinds(im)
    except UnidentifiedImageError as exc:
        raise ValueError(
            f"{str(src)!r} is not an image in a supported format (PNG, JPEG, WebP, BMP, TIFF, GIF)."
        ) from exc
    except Image.DecompressionBombError as exc:
        raise bomb_error(src, exc) from exc
    except Exception as exc:
        if _is_fs_error(exc) or isinstance(exc, MemoryError):
            raise
        # decoder errors, truncation ("image file is truncated"), bad headers
        raise ValueError(f"Cannot read the image {str(src)!r}: {exc}") from exc
    if n_frames > 1:
        logger.info("%s has %d frames; converting the first", src, n_frames)
        rest = "frame (page) 2" if n_frames == 2 else f"frames (pages) 2 to {n_frames}"
        prepared.losses.insert(0, f"{rest} (only the first is converted)")
    if wide:
        prepared.losses.append("its 16-bit colour samples (decoded as 8 bits)")
    return prepared


def _encode(prepared: _Prepared, src: Path, dst: Path, opts: _Options) -> bytes:
    """The bytes of the output file, encoded in memory."""
    buf = io.BytesIO()
    try:
        prepared.image.save(
            buf, **_save_options(opts.fmt, opts.quality, prepared.icc, prepared.exif)
        )
    except MemoryError:
        raise
    except Exception as exc:
        raise ValueError(f"Cannot write {str(src)!r} as {opts.fmt} to {str(dst)!r}: {exc}") from exc
    return buf.getvalue()


def _write(data: bytes, src: Path, dst: Path, opts: _Options, size: tuple[int, int]) -> None:
    """Write ``data`` to ``dst`` atomically; with ``remove_source``, fsync and verify it.

    Error messages name ``dst``, never the temporary file.
    """
    if opts.make_parents:
        dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dst, overwrite=opts.overwrite, param="dst") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(data)
                if opts.remove_source:
                    fh.flush()
                    os.fsync(fh.fileno())
            if opts.remove_source:
                try:
                    _verify_written(tmp, opts.fmt, size)
                except _VerifyError as exc:
                    raise _VerifyError(str(exc).replace(str(tmp), str(dst))) from exc
    except _VerifyError as exc:
        raise OSError(f"{exc} The source {str(src)!r} was kept; nothing was written.") from exc
    except DestinationAppeared as exc:  # check_destination's own message passes as it is
        raise _os_error(
            exc,
            f"The 'dst' parameter names an existing file {str(dst)!r} (it appeared while "
            "converting); it was left as it is. Pass overwrite=True to replace it.",
        ) from exc
    # any other OSError comes from atomic_path already naming dst ("Cannot write ...")


def _accept_existing(
    data: bytes, src: Path, dst: Path, opts: _Options, size: tuple[int, int]
) -> None:
    """An existing ``dst`` is accepted when it holds exactly ``data`` (an earlier run's output).

    Raises:
        FileExistsError: ``dst`` holds anything else; it is left as it is.
    """
    try:
        with open(dst, "rb") as fh:
            same = fh.read(len(data) + 1) == data
            if same:
                os.fsync(fh.fileno())
    except OSError as exc:
        raise _os_error(exc, f"Cannot read the existing {str(dst)!r}: {exc.strerror}.") from exc
    if not same:
        raise FileExistsError(
            f"The 'dst' parameter names an existing file {str(dst)!r} that is not this "
            f"conversion of {str(src)!r} (its bytes differ); it was left as it is. Pass "
            "overwrite=True to replace it, or move it away."
        )
    try:
        _verify_written(dst, opts.fmt, size)
    except _VerifyError as exc:
        raise OSError(f"{exc} The source {str(src)!r} was kept.") from exc
    logger.info("%s already holds this conversion of %s", dst, src)


def _convert(src: Path, dst: Path, opts: _Options) -> list[str]:
    """Decode ``src`` and write ``dst`` (verified when ``opts.remove_source``).

    The source is never deleted here (see `_remove_source`). With ``remove_source``
    and no ``overwrite``, an existing ``dst`` that already holds exactly this conversion
    (an earlier run whose removal failed) is accepted instead of raising.

    Returns:
        What the output lacks compared with the source (empty: nothing), as phrases
        for `_kept_message`. Metadata is compared only with ``remove_source``.
    """
    if not opts.remove_source and (dst.exists() or dst.parent.is_dir()):
        check_destination(dst, overwrite=opts.overwrite, param="dst")  # fail before decoding
    prepared = _decode(src, opts)
    data = _encode(prepared, src, dst, opts)
    size = prepared.image.size
    if not opts.remove_source:
        _write(data, src, dst, opts, size)
        return prepared.losses
    if not opts.overwrite and dst.exists() and not dst.is_dir():
        _accept_existing(data, src, dst, opts, size)
    else:
        _write(data, src, dst, opts, size)
    return prepared.losses + _metadata_lost(prepared.metadata, data)


def _kept_message(src: Path, dst: Path, fmt: str, losses: list[str]) -> str:
    return (
        f"The source {str(src)!r} was kept despite remove_source=True: the {fmt} output "
        f"{str(dst)!r} lacks {'; '.join(losses)}. Delete the source yourself if the "
        "output is enough."
    )


def _remove_source(src: Path, dst: Path) -> None:
    """Delete ``src`` once ``dst`` is on disk.

    Raises:
        OSError: Of the cause's class (e.g. PermissionError), saying that ``dst`` is
            complete and what to do.
    """
    _fsync_dir(dst.parent)
    try:
        src.unlink()
    except OSError as exc:
        raise _os_error(
            exc,
            f"Converted {str(src)!r} to {str(dst)!r} (verified), but could not delete the "
            f"source: {exc.strerror or exc}. Both files are complete. Delete the source "
            "yourself, or fix the cause and run again with remove_source=True: the "
            "existing output is recognised and the source then deleted.",
        ) from exc
    logger.info("removed %s after writing %s", src, dst)


# --------------------------------------------------------------------------- public API


def convert_image(
    src: str | os.PathLike[str],
    to: str = "jpg",
    *,
    dst: str | os.PathLike[str] | None = None,
    quality: int = 95,
    background: tuple[int, int, int] | str | int = (255, 255, 255),
    overwrite: bool = False,
    remove_source: bool = False,
) -> Path:
    """Convert one image file to another format, safely.

    The pixels follow the rules in the module docstring (transparency composited onto
    ``background`` for JPEG/BMP, palette/CMYK/16-bit/float handled, EXIF orientation
    applied, ICC profile kept where it still fits). Only the first frame of an animated
    GIF or multi-page TIFF is converted.

    Args:
        src: Image file to read (PNG, JPEG, WebP, BMP, TIFF or GIF).
        to: Target format: ``"jpg"``, ``"jpeg"``, ``"png"``, ``"webp"``, ``"bmp"``,
            ``"tif"`` or ``"tiff"`` (case-insensitive, a leading dot is allowed).
        dst: Output file; default ``src`` with the suffix ``"." + to``. Its suffix must
            suit the format (e.g. ``.jpg``/``.jpeg`` for JPEG) and it must not be ``src``.
        quality: JPEG and WebP quality in [1, 100]; ignored for lossless targets.
        background: Colour that transparent pixels are blended onto for JPEG and BMP:
            ``(r, g, b)`` ints, a grey int, or a colour string (``"white"``, ``"#fff"``).
        overwrite: Replace an existing ``dst``.
        remove_source: Delete ``src`` after the written file was flushed to disk and
            re-opened (``verify`` + full decode) with the expected format and size, and
            only when the output holds everything the source held: when it lacks
            something (frames 2..n, transparency, bits, a colour profile, EXIF, ...; see
            the table in the docs) the output is still written, the source is kept and a
            `SourceKeptWarning` says what is missing. An existing ``dst`` that holds
            exactly this conversion (an earlier run whose removal failed) is accepted.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: ``src`` does not exist, or ``dst``'s folder does not.
        IsADirectoryError: ``src`` or ``dst`` is a folder.
        FileExistsError: ``dst`` exists and ``overwrite`` is False (with
            ``remove_source``: and it is not exactly this conversion).
        ValueError: ``src`` is not a readable image in a supported format (corrupt,
            truncated, a decompression bomb, other format), ``to`` is unknown, ``dst``
            has the wrong suffix or is ``src``, or another argument is out of range.
        OSError: ``remove_source=True`` and the written file did not verify (the source
            is kept and no output is left behind), or the output is complete but the
            source could not be deleted (e.g. PermissionError; the message says so).
        TypeError: An argument has the wrong type.

    Warns:
        SourceKeptWarning: ``remove_source=True`` but the output lacks part of the source.
    """
    opts = _validate_common("convert_image", to, quality, background, overwrite, remove_source)
    src_path = _check_source(src, "convert_image")
    dst_path = _check_dst(src_path, dst, opts.fmt, opts.suffix, "convert_image")
    # an existing dst may still be accepted with remove_source (see _convert)
    check_destination(dst_path, overwrite=overwrite or remove_source, param="dst")
    losses = _convert(src_path, dst_path, opts)
    if remove_source and losses:
        warnings.warn(
            _kept_message(src_path, dst_path, opts.fmt, losses),
            SourceKeptWarning,
            stacklevel=user_stacklevel(),
        )
    elif remove_source:
        _remove_source(src_path, dst_path)
    return dst_path


def _validate_common(
    func: str,
    to: object,
    quality: object,
    background: object,
    overwrite: object,
    remove_source: object,
) -> _Options:
    """The arguments `convert_image` and `convert_images` share, checked, as `_Options`."""
    fmt, suffix = _parse_target(to, func)
    opts = _Options(
        fmt=fmt,
        suffix=suffix,
        quality=_check_quality(quality, func),
        background=_parse_background(background, func),
        overwrite=_check_bool(overwrite, "overwrite", func),
        remove_source=_check_bool(remove_source, "remove_source", func),
    )
    if opts.remove_source:
        _refuse_truncated_loading(func)
    return opts
