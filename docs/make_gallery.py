"""Rebuild docs/gallery/ and docs/gallery.md from a fresh `featviz demo` run.

Usage: python docs/make_gallery.py   (takes a few minutes on 2 CPU cores)

The demo's PNG figures are converted to JPEG with featviz.convert_images to keep the
repository small; the page lists them in the demo's order with its captions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import featviz

DOCS = Path(__file__).parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        cmd = [sys.executable, "-m", "featviz", "demo", "--full", "--out", str(demo)]
        subprocess.run(cmd, check=True)
        gallery = DOCS / "gallery"
        shutil.rmtree(gallery, ignore_errors=True)
        gallery.mkdir()
        # figures become JPEG; the conversion section's files (convert_*) are its
        # sources and results, shown as they are
        figures = [p for p in sorted(demo.glob("*.png")) if not p.name.startswith("convert_")]
        report = featviz.convert_images(figures, "jpg", out_dir=gallery, quality=85, progress=False)
        if not report.ok:
            print(report.summary(), file=sys.stderr)
            return 1
        # the demo's own pages stay out: index.html links the PNGs, and the explorer
        # page (several MB of inline thumbnails) is a link to run the demo instead
        left_out = {"index.md", "index.html", "explore.html"}
        for other in demo.iterdir():
            if other.name not in left_out and other not in figures:
                shutil.copy2(other, gallery / other.name)
        index = (demo / "index.md").read_text(encoding="utf-8")
        for fig in figures:
            index = index.replace(f"({fig.name})", f"({fig.stem}.jpg)")
        index = re.sub(r"\]\(([\w.-]+\.(?:jpg|png|gif|md))\)", r"](gallery/\1)", index)
        index = index.replace(
            "[`explore.html`](explore.html)",
            "`explore.html` ([the explorer](explore.md); run `featviz demo` to get this page)",
        )
        index = index.replace("# featviz demo", "# Gallery", 1)
        intro = (
            "Every figure below was written by `featviz demo --out DIR` (regenerate with "
            "`python docs/make_gallery.py`); PNGs are shown as JPEG to keep the "
            "repository small.\n"
        )
        index = index.replace("Written by `featviz demo`.", "\n" + intro, 1)
        (DOCS / "gallery.md").write_text(index, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
