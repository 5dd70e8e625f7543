"""Convert a folder of mixed images (RGBA, palette, greyscale+alpha, 16-bit, CMYK) to JPEG.

Writes sample images of several modes into OUT/src (from the scikit-learn sample photos
and the built-in Shapes data), adds a corrupt file and a text file to show how a batch
continues past them, converts everything to JPEG in OUT/jpg and prints the report.

Run: python examples/convert_images.py [--out convert_images-out] [--fast]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import featviz
from featviz.datasets import Shapes, sample_photos


def make_samples(folder: Path, fast: bool) -> None:
    """Write one image per interesting mode into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = sample_photos()["china"]
    if fast:
        photo = photo[::4, ::4]
    h, w = photo.shape[:2]
    # RGBA: the photo fading out to the right (alpha ramp)
    alpha = np.tile(np.linspace(255, 0, w).astype(np.uint8), (h, 1))
    Image.fromarray(np.dstack([photo, alpha]), "RGBA").save(folder / "photo_fade.png")
    # palette GIF with a transparent colour, from a Shapes image
    shape = Shapes(1, size=64, random_state=3).images[0].permute(1, 2, 0).numpy()
    pal = Image.fromarray(shape).quantize(16)
    pal.save(folder / "shape_palette.gif", transparency=0)
    # greyscale + alpha
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(folder / "grey_fade.png")
    # 16-bit greyscale TIFF (values spread over 0..65535)
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "grey16.tif")
    # CMYK TIFF (print workflows)
    Image.fromarray(photo).convert("CMYK").save(folder / "cmyk.tif")
    # already a JPEG (skipped), a truncated PNG (fails) and a text file (skipped)
    Image.fromarray(photo).save(folder / "already.jpg", quality=90)
    data = (folder / "photo_fade.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 3])
    (folder / "README.txt").write_text("not an image\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="convert_images-out", help="output folder")
    ap.add_argument("--fast", action="store_true", help="smaller images")
    args = ap.parse_args(argv)
    out = Path(args.out)
    src = out / "src"
    make_samples(src, args.fast)

    report = featviz.convert_images(
        src, "jpg", out_dir=out / "jpg", overwrite=True, background=(255, 255, 255)
    )
    for s, d in report.converted:
        print(f"converted  {s.name:20s} -> {d}")
    for s, reason in report.skipped:
        print(f"skipped    {s.name:20s} ({reason})")
    for s, reason in report.failed:
        print(f"failed     {s.name:20s} ({reason})")
    print(report.summary())
    return 0  # the truncated file is there on purpose: its failure is the demonstration


if __name__ == "__main__":
    raise SystemExit(main())
