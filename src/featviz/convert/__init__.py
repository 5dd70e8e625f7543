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

from featviz.convert._batch import ConversionReport, convert_images
from featviz.convert._rules import SourceKeptWarning
from featviz.convert._single import convert_image

__all__ = ["ConversionReport", "SourceKeptWarning", "convert_image", "convert_images"]
