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
the destination, moved into place only when complete; its name never appears in an
error message); an existing destination is never replaced unless ``overwrite=True``;
the source is only read, and it is deleted only when ``remove_source=True`` *and* the
written file, flushed to disk, re-opens (``verify`` + ``load``) with the expected size
and format *and* the output holds everything the source held. When the output lacks
something (frames 2..n, used transparency, bits, CMYK, an ICC profile, EXIF, XMP, a
comment, PNG text), the output is written and the source kept, with a
`SourceKeptWarning` (`convert_image`) or an entry in `ConversionReport.kept`
(`convert_images`); docs/conversion.md has the table. A deletion that fails (e.g. a
read-only folder) is reported as such, and a rerun accepts an existing destination
that holds exactly this conversion. Corrupt or truncated images and decompression
bombs raise `ValueError` naming the file; `PIL.ImageFile.LOAD_TRUNCATED_IMAGES` is
never changed.

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
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from featviz._images import bomb_error
from featviz._io import atomic_path, check_destination
from featviz._ops import user_stacklevel

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ConversionReport", "SourceKeptWarning", "convert_image", "convert_images"]

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
#: EXIF tags that describe the picture (not the TIFF layout): description, make, model,
#: date, artist, copyright, and the pointers to the Exif and GPS sub-blocks.
_EXIF_DESCRIPTIVE = frozenset({0x010E, 0x010F, 0x0110, 0x0132, 0x013B, 0x8298, 0x8769, 0x8825})


class _VerifyError(OSError):
    """Internal: a written file did not re-open as expected."""


class SourceKeptWarning(UserWarning):
    """``remove_source=True`` kept a source because its output lacks part of it.

    The message names the source, the output and what the output lacks (frames,
    transparency, bit depth, colour profile, metadata). Delete the source yourself
    if the output is enough.
    """


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


@dataclass
class _Prepared:
    """A decoded source, ready to encode.

    Attributes:
        image: Pixels in a mode the target format stores.
        icc: ICC profile to embed, or None.
        exif: EXIF block to embed (orientation removed), or None.
        losses: What the output will lack compared with the source (the table in
            docs/conversion.md), e.g. ``"frames (pages) 2 to 3 (...)"``; empty: nothing.
        metadata: Kinds of metadata the source holds (`_metadata_kinds`).
    """

    image: Image.Image
    icc: bytes | None
    exif: bytes | None
    losses: list[str] = field(default_factory=list)
    metadata: frozenset[str] = frozenset()


def _exif_for(im: Image.Image, fmt: str) -> bytes | None:
    """The source's EXIF block without the orientation tag, for targets that hold EXIF."""
    if "exif" not in im.info or fmt not in _EXIF_TARGETS:
        return None
    try:
        ex = im.getexif()
        ex.pop(_EXIF_ORIENTATION, None)
        return ex.tobytes() if len(ex) else None
    except Exception as exc:
        logger.info("EXIF block dropped (%s)", exc)
        return None


def _depth_loss(im: Image.Image, fmt: str) -> str | None:
    """What writing an I;16 / I / F image as ``fmt`` loses, None when it is exact."""
    if fmt == "TIFF":
        return None
    if fmt == "PNG":
        if im.mode.startswith("I;16"):
            return None
        if im.mode == "I":
            lo, hi = cast("tuple[int, int]", im.getextrema())
            if 0 <= lo and hi <= 65535:
                return None
            return f"its 32-bit integer samples (min-max scaled to 16 bits, from [{lo}, {hi}])"
        return "its 32-bit float samples (rounded to 16 bits)"
    return f"its {'16' if im.mode.startswith('I;16') else '32'}-bit samples (reduced to 8 bits)"


def _to_target_mode(
    im: Image.Image, fmt: str, icc: bytes | None, losses: list[str]
) -> tuple[Image.Image, bytes | None]:
    """Palette, bilevel, CMYK, 16-bit and float pixels -> a mode ``fmt`` stores."""
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
        losses.append("its CMYK colours (converted to RGB)")
        im, icc = _cmyk_to_rgb(im, icc)
    elif mode in ("I", "F") or mode.startswith("I;16"):
        loss = _depth_loss(im, fmt)
        if loss:
            losses.append(loss)
        if fmt == "PNG":
            im = _scale_depth(im, 16)
        elif fmt != "TIFF":
            im = _scale_depth(im, 8)
    elif mode not in ("L", "LA", "RGB", "RGBA", "CMYK"):
        raise ValueError(f"pixel mode {mode!r} is not supported")
    return im, icc


def _flatten_alpha(
    im: Image.Image, fmt: str, background: tuple[int, int, int], losses: list[str]
) -> Image.Image:
    """Composite transparency for JPEG/BMP; WebP stores grey as RGB(A)."""
    if im.mode in ("RGBA", "LA") and fmt in _NO_ALPHA:
        if im.getchannel("A").getextrema() != (255, 255):
            losses.append("its transparency (blended onto the background)")
        im = _composite(im, background)
    if fmt == "WEBP" and im.mode in ("L", "LA"):
        im = im.convert("RGBA" if im.mode == "LA" else "RGB")
    return im


def _fit_icc(icc: bytes | None, src_mode: str, im: Image.Image, fmt: str) -> bytes | None:
    """The ICC profile if ``fmt`` holds one and it still describes ``im``'s colour space."""
    if icc is None:
        return None
    target_space = _mode_family(im.mode)
    space = _icc_space(icc)
    keep = fmt in _ICC_TARGETS and (
        space == target_space if space is not None else target_space == _mode_family(src_mode)
    )
    if not keep:
        logger.info("ICC profile (%s) dropped for %s %s output", space, im.mode, fmt)
        return None
    return icc


def _prepare(im: Image.Image, fmt: str, background: tuple[int, int, int]) -> _Prepared:
    """Loaded source image -> pixels, ICC and EXIF ready to save as ``fmt``, and the losses."""
    from PIL import ImageOps

    src_mode = im.mode
    icc: bytes | None = im.info.get("icc_profile") or None
    if im.getexif().get(_EXIF_ORIENTATION, 1) not in (0, 1):
        im = ImageOps.exif_transpose(im)
    exif = _exif_for(im, fmt)
    losses: list[str] = []
    im, icc = _to_target_mode(im, fmt, icc, losses)
    im = _flatten_alpha(im, fmt, background, losses)
    return _Prepared(im, _fit_icc(icc, src_mode, im, fmt), exif, losses)


def _metadata_kinds(im: Image.Image) -> frozenset[str]:
    """The kinds of metadata an opened image holds (names used in loss messages)."""
    kinds = set()
    if im.info.get("icc_profile"):
        kinds.add("ICC colour profile")
    try:
        if set(im.getexif()) & _EXIF_DESCRIPTIVE:
            kinds.add("EXIF data")
    except Exception:  # an unreadable EXIF block is no EXIF data
        pass
    if im.info.get("xmp") or im.info.get("XML:com.adobe.xmp"):
        kinds.add("XMP metadata")
    if im.info.get("comment"):
        kinds.add("comment")
    if im.format == "PNG" and set(getattr(im, "text", {})) - {"XML:com.adobe.xmp"}:
        kinds.add("PNG text chunks")
    return frozenset(kinds)


def _metadata_lost(source: frozenset[str], data: bytes) -> list[str]:
    """Kinds of source metadata missing from the encoded file ``data``, sorted."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as out:
        lost = source - _metadata_kinds(out)
    return [f"its {kind}" for kind in sorted(lost)]


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


def _os_error(exc: OSError, text: str) -> OSError:
    """An error of ``exc``'s class (PermissionError, ...) and errno with the message ``text``.

    Used instead of re-raising ``exc`` where its message would name a temporary file.
    """
    new = type(exc)(text)
    new.errno = exc.errno
    return new


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
    except FileExistsError as exc:
        if exc.filename is None:
            raise  # check_destination's own message
        raise _os_error(
            exc,
            f"The 'dst' parameter names an existing file {str(dst)!r} (it appeared while "
            "converting); it was left as it is. Pass overwrite=True to replace it.",
        ) from exc
    except OSError as exc:
        if exc.filename is None:
            raise
        raise _os_error(exc, f"Cannot write {str(dst)!r}: {exc.strerror or exc}.") from exc


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
        try:
            files = sorted(
                p for p in (item.rglob("*") if recursive else item.iterdir()) if p.is_file()
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
    """Why ``src`` is not converted (missing, hidden, not an image, already ``fmt``), or None."""
    try:
        src.stat()
    except FileNotFoundError:
        return _Outcome("failed", f"no such file or folder: {str(src)!r}")
    except (OSError, ValueError) as exc:
        return _Outcome(
            "failed", f"cannot access {str(src)!r}: {getattr(exc, 'strerror', None) or exc}"
        )
    if src.name.startswith("."):
        return _Outcome("skipped", "hidden file")
    if src.suffix.lower() not in _INPUT_SUFFIXES:
        return _Outcome("skipped", f"not an image file (suffix {src.suffix!r})")
    if _sniff_format(src) in (fmt, "MPO" if fmt == "JPEG" else fmt):
        return _Outcome("skipped", f"already {fmt}")
    return None


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
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs), desc="convert", unit="file", disable=not progress) as bar:
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
