"""Safe image format conversion: one file (`convert_image`) or many (`convert_images`).

PNG, JPEG, WebP, BMP, TIFF and GIF (first frame) are read; JPEG, PNG, WebP, BMP and
TIFF are written. Conversion is *faithful* where the target allows it and follows
fixed, documented rules where it does not:

* **Transparency** (RGBA, LA, palette or grey/RGB images with a transparent colour) is
  composited onto ``background`` for targets without alpha (JPEG, BMP) with
  ``out = round((c * a + bg * (255 - a)) / 255)`` per channel; it is kept for PNG,
  WebP and TIFF. LA stays greyscale when ``background`` is grey.
* **Palette** (P, PA) and bilevel (1) images become RGB/RGBA and L.
* **CMYK** becomes RGB for every target except TIFF (through the embedded ICC profile
  when there is one, else Pillow's plain formula); TIFF keeps CMYK.
* **Bit depth.** 16-bit integer images (I;16) become 8-bit by ``v >> 8`` (the high
  byte) for JPEG/WebP/BMP; PNG and TIFF keep 16 bits. 32-bit integer images (I) are
  read as 16-bit data when every value is in [0, 65535], else min-max scaled. Float
  images (F) map ``v * 255`` (``v * 65535`` for PNG) when every finite value is in
  [0, 1], else min-max scaled over the finite values (NaN -> 0, a constant image -> 0);
  TIFF keeps I and F as they are.
* **EXIF orientation** is applied to the pixels (`PIL.ImageOps.exif_transpose`); the
  rest of the EXIF block is kept for JPEG, PNG and WebP with the orientation removed.
* **ICC profiles** are kept for JPEG, PNG, WebP and TIFF when the profile's colour space
  still matches the written pixels (a grey profile is dropped when grey becomes RGB).

Safety: every file is written through `featviz._io.atomic_path` (a temporary file beside
the destination, moved into place only when complete); an existing destination is never
replaced unless ``overwrite=True``; the source is only read, and it is deleted only when
``remove_source=True`` *and* the written file, flushed to disk, re-opens (``verify`` +
``load``) with the expected size and format. Corrupt or truncated images raise
`ValueError` naming the file; `PIL.ImageFile.LOAD_TRUNCATED_IMAGES` is never changed.

Example:
    >>> featviz.convert_image("scan.png", to="jpg")  # doctest: +SKIP
    PosixPath('scan.jpg')
    >>> report = featviz.convert_images("photos/", to="webp", recursive=True)  # doctest: +SKIP
    >>> report.summary()  # doctest: +SKIP
    '12 converted, 1 skipped, 0 failed'
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featviz._io import atomic_path, check_destination

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ConversionReport", "convert_image", "convert_images"]

logger = logging.getLogger(__name__)

#: ``to`` spelling -> Pillow format name.
_TARGETS: dict[str, str] = {
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "bmp": "BMP",
    "tif": "TIFF",
    "tiff": "TIFF",
}
#: File name suffixes accepted for a ``dst`` of each format.
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "BMP": (".bmp", ".dib"),
    "TIFF": (".tif", ".tiff"),
}
#: Pillow formats read (camera JPEGs may open as "MPO", through the JPEG opener).
_INPUT_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "DIB", "TIFF", "GIF")
_INPUT_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)
_ICC_TARGETS = frozenset({"JPEG", "PNG", "WEBP", "TIFF"})
_EXIF_TARGETS = frozenset({"JPEG", "PNG", "WEBP"})
_NO_ALPHA = frozenset({"JPEG", "BMP"})
_EXIF_ORIENTATION = 0x0112


class _VerifyError(OSError):
    """Internal: a written file did not re-open as expected."""


# --------------------------------------------------------------------------- validation


def _parse_target(to: object, func: str) -> tuple[str, str]:
    """``to`` -> (Pillow format, suffix with dot)."""
    if not isinstance(to, str):
        raise TypeError(
            f"The 'to' parameter of {func} must be a str such as 'jpg'. "
            f"Got {type(to).__name__} instead."
        )
    key = to.strip().lower().lstrip(".")
    if key not in _TARGETS:
        raise ValueError(
            f"The 'to' parameter of {func} must be one of {sorted(_TARGETS)} "
            f"(case-insensitive, leading dot allowed). Got {to!r} instead."
        )
    return _TARGETS[key], "." + key


def _check_quality(quality: object, func: str) -> int:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(
            f"The 'quality' parameter of {func} must be an int in the range [1, 100]. "
            f"Got {quality!r} instead."
        )
    return quality


def _parse_background(background: object, func: str) -> tuple[int, int, int]:
    """A colour name / ``#rrggbb`` / grey int / (r, g, b) -> (r, g, b) ints in [0, 255]."""
    msg = (
        f"The 'background' parameter of {func} must be an (r, g, b) tuple of ints in "
        f"[0, 255], a grey int, or a colour string such as 'white' or '#ffffff'. "
        f"Got {background!r} instead."
    )
    if isinstance(background, str):
        from PIL import ImageColor

        try:
            rgb = ImageColor.getrgb(background)
        except ValueError as exc:
            raise ValueError(msg) from exc
        return rgb[0], rgb[1], rgb[2]
    if isinstance(background, int) and not isinstance(background, bool):
        background = (background,) * 3
    if (
        not isinstance(background, (tuple, list))
        or len(background) != 3
        or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255
            for v in background
        )
    ):
        raise ValueError(msg)
    return int(background[0]), int(background[1]), int(background[2])


def _check_bool(value: object, name: str, func: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"The {name!r} parameter of {func} must be a bool. Got {value!r} instead.")
    return value


def _check_source(src: object, func: str) -> Path:
    if not isinstance(src, (str, os.PathLike)):
        raise TypeError(
            f"The 'src' parameter of {func} must be a str or os.PathLike. "
            f"Got {type(src).__name__} instead."
        )
    path = Path(src)
    if path.is_dir():
        raise IsADirectoryError(
            f"The 'src' parameter of {func} names a folder, not an image file: {str(path)!r}."
        )
    if not path.is_file():
        raise FileNotFoundError(f"The 'src' parameter of {func} names no file: {str(path)!r}.")
    return path


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_dst(src: Path, dst: object, fmt: str, suffix: str, func: str) -> Path:
    """The destination path: ``dst`` checked against the format, or ``src`` + suffix."""
    if dst is None:
        path = src.with_suffix(suffix)
    elif isinstance(dst, (str, os.PathLike)):
        path = Path(dst)
        if path.suffix.lower() not in _SUFFIXES[fmt]:
            raise ValueError(
                f"The 'dst' parameter of {func} must end in one of {list(_SUFFIXES[fmt])} "
                f"to be written as {fmt}. Got {str(path)!r} instead."
            )
    else:
        raise TypeError(
            f"The 'dst' parameter of {func} must be None, a str or os.PathLike. "
            f"Got {type(dst).__name__} instead."
        )
    if _same_file(src, path):
        raise ValueError(
            f"The destination {str(path)!r} is the source file itself; {func} never "
            "writes over its source. Pass another 'dst'."
        )
    return path


def _refuse_truncated_loading(func: str) -> None:
    from PIL import ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ValueError(
            f"{func} refuses remove_source=True while PIL.ImageFile.LOAD_TRUNCATED_IMAGES "
            "is True: a truncated source would convert with missing pixels and then be "
            "deleted. Set it back to False or keep the sources."
        )


# --------------------------------------------------------------------------- pixel rules


def _mode_family(mode: str) -> str | None:
    """Colour space an ICC profile for pixels of ``mode`` must describe."""
    if mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16"):
        return "GRAY"
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA"):
        return "RGB"
    if mode == "CMYK":
        return "CMYK"
    return None


def _icc_space(icc: bytes) -> str | None:
    """Colour space named by an ICC profile ('RGB', 'GRAY', 'CMYK', ...), None if unknown."""
    try:
        from PIL import ImageCms

        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return str(profile.profile.xcolor_space).strip().upper()
    except Exception:
        return None


def _scale_depth(im: Image.Image, bits: int) -> Image.Image:
    """I;16 / I / F image -> L (``bits=8``) or I;16 (``bits=16``) by the module's rules."""
    from PIL import Image

    top = 255 if bits == 8 else 65535
    dtype = np.uint8 if bits == 8 else np.uint16
    a = np.asarray(im)
    if a.dtype.kind in "ui":
        wide = a.astype(np.int64)
        lo, hi = (int(wide.min()), int(wide.max())) if wide.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            out = (wide >> 8) if bits == 8 else wide
        else:
            logger.info("%s values span [%d, %d]: min-max scaled to %d bits", im.mode, lo, hi, bits)
            span = hi - lo
            # exact integer rounding (half up) of (v - lo) * top / span
            out = np.zeros_like(wide) if span == 0 else (2 * (wide - lo) * top + span) // (2 * span)
        return Image.fromarray(np.ascontiguousarray(out.astype(dtype)))
    f = a.astype(np.float64)
    finite = np.isfinite(f)
    vals = f[finite]
    if vals.size and (vals.min() < 0 or vals.max() > 1):
        flo, fhi = float(vals.min()), float(vals.max())
        f = (f - flo) / (fhi - flo) if fhi > flo else np.zeros_like(f)
    f = np.nan_to_num(f, nan=0.0, posinf=1.0, neginf=0.0)
    out_f = np.rint(np.clip(f, 0.0, 1.0) * top)
    return Image.fromarray(np.ascontiguousarray(out_f.astype(dtype)))


def _composite(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Blend an RGBA/LA image onto a solid background; LA on a grey background stays L.

    Pillow's masked paste computes ``round((c * a + bg * (255 - a)) / 255)`` exactly.
    """
    from PIL import Image

    alpha = im.getchannel("A")
    if im.mode == "LA" and background[0] == background[1] == background[2]:
        base = Image.new("L", im.size, background[0])
        base.paste(im.getchannel("L"), mask=alpha)
        return base
    base = Image.new("RGB", im.size, background)
    base.paste(im.convert("RGB"), mask=alpha)
    return base


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK -> RGB through the embedded CMYK profile to sRGB when possible."""
    if icc and _icc_space(icc) == "CMYK":
        try:
            from PIL import ImageCms

            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            rgb = ImageCms.profileToProfile(
                im, ImageCms.ImageCmsProfile(io.BytesIO(icc)), srgb, outputMode="RGB"
            )
            if rgb is not None:
                return rgb, srgb.tobytes()
        except Exception as exc:
            logger.info("CMYK profile transform failed (%s); using the plain formula", exc)
    return im.convert("RGB"), None


def _prepare(
    im: Image.Image, fmt: str, background: tuple[int, int, int]
) -> tuple[Image.Image, bytes | None, bytes | None]:
    """Loaded source image -> (image ready to save as ``fmt``, ICC bytes, EXIF bytes)."""
    from PIL import ImageOps

    src_mode = im.mode
    icc: bytes | None = im.info.get("icc_profile") or None
    has_exif = "exif" in im.info
    if im.getexif().get(_EXIF_ORIENTATION, 1) not in (0, 1):
        im = ImageOps.exif_transpose(im)
    exif: bytes | None = None
    if has_exif and fmt in _EXIF_TARGETS:
        try:
            ex = im.getexif()
            ex.pop(_EXIF_ORIENTATION, None)
            exif = ex.tobytes() if len(ex) else None
        except Exception as exc:
            logger.info("EXIF block dropped (%s)", exc)

    mode = im.mode
    has_transparency = "transparency" in im.info and im.info["transparency"] is not None
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if (mode == "PA" or has_transparency) else "RGB")
    elif mode in ("L", "RGB") and has_transparency:
        im = im.convert("LA" if mode == "L" else "RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode in ("RGBX", "YCbCr", "HSV"):
        im = im.convert("RGB")
    elif mode == "CMYK" and fmt != "TIFF":
        im, icc = _cmyk_to_rgb(im, icc)
    elif mode in ("I", "F") or mode.startswith("I;16"):
        if fmt == "PNG":
            im = _scale_depth(im, 16)
        elif fmt != "TIFF":
            im = _scale_depth(im, 8)
    elif mode not in ("L", "LA", "RGB", "RGBA", "CMYK"):
        raise ValueError(f"pixel mode {mode!r} is not supported")

    if im.mode in ("RGBA", "LA") and fmt in _NO_ALPHA:
        im = _composite(im, background)
    if fmt == "WEBP" and im.mode in ("L", "LA"):
        im = im.convert("RGBA" if im.mode == "LA" else "RGB")

    if icc is not None:
        target_space = _mode_family(im.mode)
        space = _icc_space(icc)
        keep = fmt in _ICC_TARGETS and (
            space == target_space if space is not None else target_space == _mode_family(src_mode)
        )
        if not keep:
            logger.info("ICC profile (%s) dropped for %s %s output", space, im.mode, fmt)
            icc = None
    return im, icc, exif


def _save_options(fmt: str, quality: int, icc: bytes | None, exif: bytes | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"format": fmt}
    if fmt in ("JPEG", "WEBP"):
        kw["quality"] = quality
    if fmt == "TIFF":
        kw["compression"] = "tiff_adobe_deflate"
    if fmt in _ICC_TARGETS:
        kw["icc_profile"] = icc  # explicit None: no fallback to a stale im.info profile
    if exif is not None:
        kw["exif"] = exif
    return kw


def _verify_written(path: Path, fmt: str, size: tuple[int, int]) -> None:
    """Re-open a written file: ``verify()``, then a full decode; check format and size.

    Raises:
        _VerifyError: The file does not re-open as ``fmt`` with ``size``.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
            got_fmt, got_size = im.format, im.size
    except Exception as exc:
        raise _VerifyError(f"The written file {str(path)!r} does not re-open: {exc}") from exc
    if got_fmt != fmt or got_size != size:
        raise _VerifyError(
            f"The written file {str(path)!r} re-opens as {got_fmt} {got_size}, "
            f"expected {fmt} {size}."
        )


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - filesystems without directory fsync
        pass
    finally:
        os.close(fd)


def _is_fs_error(exc: BaseException) -> bool:
    """An OS-level error (permissions, missing file), not a decoding failure."""
    return isinstance(exc, OSError) and exc.errno is not None


def _convert(
    src: Path,
    dst: Path,
    fmt: str,
    *,
    quality: int,
    background: tuple[int, int, int],
    overwrite: bool,
    remove_source: bool,
    make_parents: bool = False,
) -> Path:
    """Decode ``src``, write ``dst`` atomically, optionally delete ``src`` after verifying."""
    from PIL import Image, UnidentifiedImageError

    if dst.exists() or dst.parent.is_dir():  # fail before decoding when we can
        check_destination(dst, overwrite=overwrite, param="dst")
    try:
        with Image.open(src, formats=list(_INPUT_FORMATS)) as im:
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > 1:
                logger.info("%s has %d frames; converting the first", src, n_frames)
            im.load()
            out, icc, exif = _prepare(im, fmt, background)
            out.load()
    except UnidentifiedImageError as exc:
        raise ValueError(
            f"{str(src)!r} is not an image in a supported format (PNG, JPEG, WebP, BMP, TIFF, GIF)."
        ) from exc
    except Exception as exc:
        if _is_fs_error(exc) or isinstance(exc, MemoryError):
            raise
        # decoder errors, truncation ("image file is truncated"), bad headers, bombs
        raise ValueError(f"Cannot read the image {str(src)!r}: {exc}") from exc

    if make_parents:
        dst.parent.mkdir(parents=True, exist_ok=True)
    size = out.size
    kw = _save_options(fmt, quality, icc, exif)
    try:
        with atomic_path(dst, overwrite=overwrite, param="dst") as tmp:
            with open(tmp, "wb") as fh:
                out.save(fh, **kw)
                if remove_source:
                    fh.flush()
                    os.fsync(fh.fileno())
            if remove_source:
                _verify_written(tmp, fmt, size)
    except _VerifyError as exc:
        raise OSError(f"{exc} The source {str(src)!r} was kept; nothing was written.") from exc
    except (FileExistsError, IsADirectoryError, FileNotFoundError, PermissionError):
        raise  # destination problems, already naming the file
    except Exception as exc:
        if _is_fs_error(exc) or isinstance(exc, MemoryError):
            raise
        raise ValueError(f"Cannot write {str(src)!r} as {fmt} to {str(dst)!r}: {exc}") from exc
    if remove_source:
        _fsync_dir(dst.parent)
        src.unlink()
        logger.info("removed %s after writing %s", src, dst)
    return dst


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
            re-opened (``verify`` + full decode) with the expected format and size.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: ``src`` does not exist, or ``dst``'s folder does not.
        IsADirectoryError: ``src`` or ``dst`` is a folder.
        FileExistsError: ``dst`` exists and ``overwrite`` is False.
        ValueError: ``src`` is not a readable image in a supported format (corrupt,
            truncated, other format), ``to`` is unknown, ``dst`` has the wrong suffix
            or is ``src``, or another argument is out of range.
        OSError: ``remove_source=True`` and the written file did not verify; the
            source is kept and no output is left behind.
        TypeError: An argument has the wrong type.
    """
    func = "convert_image"
    fmt, suffix = _parse_target(to, func)
    quality = _check_quality(quality, func)
    bg = _parse_background(background, func)
    overwrite = _check_bool(overwrite, "overwrite", func)
    remove_source = _check_bool(remove_source, "remove_source", func)
    src_path = _check_source(src, func)
    dst_path = _check_dst(src_path, dst, fmt, suffix, func)
    check_destination(dst_path, overwrite=overwrite, param="dst")
    if remove_source:
        _refuse_truncated_loading(func)
    return _convert(
        src_path,
        dst_path,
        fmt,
        quality=quality,
        background=bg,
        overwrite=overwrite,
        remove_source=remove_source,
    )


@dataclass
class ConversionReport:
    """What `convert_images` did, file by file, in input order.

    Attributes:
        converted: ``(source, written file)`` pairs.
        skipped: ``(source, reason)`` for files left alone on purpose: not an image
            (by suffix), hidden, or already in the target format.
        failed: ``(source, reason)`` for files that could not be converted (corrupt,
            unreadable, destination exists or collides, ...). Their sources are untouched.
    """

    converted: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file failed (skipped files do not count as failures)."""
        return not self.failed

    def summary(self) -> str:
        """One line such as ``'3 converted, 1 skipped, 0 failed'``."""
        return (
            f"{len(self.converted)} converted, {len(self.skipped)} skipped, "
            f"{len(self.failed)} failed"
        )


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
      (starts with ``.``), or the file is already in the target format (by content);
    * **failed**: missing, unreadable, corrupt or truncated, its destination exists
      (without ``overwrite``), or two inputs would write the same destination, or the
      destination is itself one of the inputs;
    * **converted**: written as with `convert_image`.

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
        remove_source: Delete each source after its output verified (see
            `convert_image`).
        progress: Show a ``tqdm`` progress bar.

    Returns:
        A `ConversionReport`; ``report.ok`` is True when nothing failed.

    Raises:
        TypeError, ValueError: An argument is invalid (checked before any file is
            touched). Problems with individual files never raise; they are reported.
    """
    func = "convert_images"
    fmt, suffix = _parse_target(to, func)
    quality = _check_quality(quality, func)
    bg = _parse_background(background, func)
    for name, value in (
        ("recursive", recursive),
        ("overwrite", overwrite),
        ("remove_source", remove_source),
        ("progress", progress),
    ):
        _check_bool(value, name, func)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(
            f"The 'workers' parameter of {func} must be an int in the range [1, inf) or "
            f"None. Got {workers!r} instead."
        )
    out_path: Path | None = None
    if out_dir is not None:
        if not isinstance(out_dir, (str, os.PathLike)):
            raise TypeError(
                f"The 'out_dir' parameter of {func} must be None, a str or os.PathLike. "
                f"Got {type(out_dir).__name__} instead."
            )
        out_path = Path(out_dir)
        if out_path.exists() and not out_path.is_dir():
            raise NotADirectoryError(
                f"The 'out_dir' parameter of {func} names a file: {str(out_path)!r}."
            )
    if remove_source:
        _refuse_truncated_loading(func)

    # (source, root folder or None) in input order, each file once
    found: list[tuple[Path, Path | None]] = []
    results: dict[int, tuple[str, Any]] = {}
    seen: set[Path] = set()
    for item in _iter_inputs(paths_or_folder):
        if item.is_dir():
            files = item.rglob("*") if recursive else item.iterdir()
            for f in sorted(p for p in files if p.is_file()):
                if not _is_within(f, out_path) and f.resolve() not in seen:
                    seen.add(f.resolve())
                    found.append((f, item))
        elif item.resolve() not in seen:
            seen.add(item.resolve())
            found.append((item, None))

    sources = {f.resolve() for f, _ in found}
    planned: dict[Path, Path] = {}
    jobs: list[tuple[int, Path, Path]] = []
    for i, (src, root) in enumerate(found):
        if not src.exists():
            results[i] = ("failed", f"no such file or folder: {str(src)!r}")
            continue
        if src.name.startswith("."):
            results[i] = ("skipped", "hidden file")
            continue
        if src.suffix.lower() not in _INPUT_SUFFIXES:
            results[i] = ("skipped", f"not an image file (suffix {src.suffix!r})")
            continue
        if _sniff_format(src) in (fmt, "MPO" if fmt == "JPEG" else fmt):
            results[i] = ("skipped", f"already {fmt}")
            continue
        if out_path is None:
            dst = src.with_suffix(suffix)
        elif root is not None:
            dst = out_path / src.relative_to(root).with_suffix(suffix)
        else:
            dst = out_path / src.with_suffix(suffix).name
        key = dst.resolve()
        if key in sources:
            results[i] = ("failed", f"the destination {str(dst)!r} is one of the input files")
        elif key in planned:
            results[i] = (
                "failed",
                f"the destination {str(dst)!r} is also that of {str(planned[key])!r}",
            )
        else:
            planned[key] = src
            jobs.append((i, src, dst))

    def work(src: Path, dst: Path) -> tuple[str, Any]:
        try:
            written = _convert(
                src,
                dst,
                fmt,
                quality=quality,
                background=bg,
                overwrite=overwrite,
                remove_source=remove_source,
                make_parents=out_path is not None,
            )
        except Exception as exc:
            logger.info("convert failed: %s: %s", src, exc)
            return "failed", f"{type(exc).__name__}: {exc}"
        return "converted", written

    _run_jobs(jobs, work, results, workers=workers, progress=progress)

    report = ConversionReport()
    for i, (src, _) in enumerate(found):
        status, value = results[i]
        getattr(report, status).append((src, value))
    return report


def _run_jobs(
    jobs: list[tuple[int, Path, Path]],
    work: Callable[[Path, Path], tuple[str, Any]],
    results: dict[int, tuple[str, Any]],
    *,
    workers: int,
    progress: bool,
) -> None:
    """Run ``work`` on every job (serially or on threads), storing results by index."""
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs), desc="convert", unit="file", disable=not progress) as bar:
        if workers == 1 or len(jobs) <= 1:
            for i, src, dst in jobs:
                results[i] = work(src, dst)
                bar.update()
            return
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = {pool.submit(work, src, dst): i for i, src, dst in jobs}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update()
