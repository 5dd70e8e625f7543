"""Demo section: safe image format conversion (transparency composited, 16-bit scaled)."""

from __future__ import annotations

import numpy as np

from featviz.demo_sections._context import DemoContext

ORDER = 80
TITLE = "Image format conversion"


def run(ctx: DemoContext) -> None:
    """Make an RGBA PNG and a 16-bit PNG from a sample photo and convert both to JPEG."""
    from featviz.convert import convert_image

    photo = ctx.photos["flower"]
    if ctx.fast:
        photo = photo[::2, ::2]
    h, w = photo.shape[:2]
    # transparent gradient: opaque on the left, fully transparent on the right
    alpha = np.tile(np.linspace(255, 0, w).round().astype(np.uint8), (h, 1))
    rgba = np.dstack([photo, alpha])
    ctx.save_image(rgba, "convert_rgba.png", "Source: RGBA PNG, alpha fading to the right")
    src = ctx.out_dir / "convert_rgba.png"

    dst = convert_image(
        src, "jpg", dst=ctx.out_dir / "convert_rgba_white.jpg", overwrite=ctx.overwrite
    )
    ctx.note(dst.name, "RGBA PNG -> JPEG: transparency blended onto white")
    dst = convert_image(
        src,
        "jpg",
        dst=ctx.out_dir / "convert_rgba_navy.jpg",
        background=(20, 30, 70),
        overwrite=ctx.overwrite,
    )
    ctx.note(dst.name, "The same PNG -> JPEG with background=(20, 30, 70)")

    from PIL import Image

    grey16 = np.asarray(Image.fromarray(photo).convert("L"), np.uint16) * 257
    ctx.save_image(Image.fromarray(grey16), "convert_grey16.png", "Source: 16-bit greyscale PNG")
    dst = convert_image(
        ctx.out_dir / "convert_grey16.png",
        "jpg",
        dst=ctx.out_dir / "convert_grey16.jpg",
        overwrite=ctx.overwrite,
    )
    ctx.note(dst.name, "16-bit PNG -> 8-bit JPEG (v >> 8), not clipped to white")
