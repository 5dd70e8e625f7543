"""Conversion rules shared by one file and many: options, pixel and metadata rules.

See `featviz.convert` for the rules in words.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    from PIL import Image


logger = logging.getLogger("featviz.convert")

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
