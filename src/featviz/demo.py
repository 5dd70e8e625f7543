"""The demo behind ``featviz demo``: every visualization featviz offers, in one folder.

Sections live in `featviz.demo_sections`, one module each, discovered at run time. A
section module defines ``ORDER`` (int, sort key), ``TITLE`` (str) and
``run(ctx: DemoContext) -> None``, and writes its files with `DemoContext.save_figure`
or `DemoContext.save_image`, which record them for ``index.md``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featviz._io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from featviz.datasets import Shapes
    from featviz.models import TinyCNN

__all__ = ["DemoContext", "DemoError", "run_demo"]

logger = logging.getLogger(__name__)


class DemoError(Exception):
    """The demo cannot run as asked (for example: OUT is not empty and no --force)."""


@dataclass
class DemoContext:
    """What every demo section gets: the output folder, data, model and save helpers.

    Attributes:
        out: Output folder (exists).
        fast: Use fewer images and iterations.
        device: Device to run models on.
        overwrite: Whether files may be replaced (``--force``).
        items: ``(section title, file name, caption)`` of every file written so far.
    """

    out: Path
    fast: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    overwrite: bool = False
    section: str = ""
    items: list[tuple[str, str, str]] = field(default_factory=list)

    @cached_property
    def model(self) -> TinyCNN:
        """The built-in trained `TinyCNN` (cached on disk), in eval mode on ``device``."""
        from featviz.models import pretrained_tiny_cnn

        return pretrained_tiny_cnn(progress=True).to(self.device)

    @cached_property
    def data(self) -> Shapes:
        """Held-out `Shapes` images (seed 1): 64 with ``fast``, else 512."""
        from featviz.datasets import Shapes

        return Shapes(64 if self.fast else 512, seed=1)

    @cached_property
    def photos(self) -> dict[str, np.ndarray]:
        """`featviz.datasets.sample_photos`."""
        from featviz.datasets import sample_photos

        return sample_photos()

    def _record(self, name: str, caption: str) -> Path:
        self.items.append((self.section, name, caption))
        return self.out / name

    def save_figure(self, fig: Figure, name: str, caption: str, **savefig_kw: Any) -> Path:
        """Save a matplotlib figure atomically as ``out/name`` and close it."""
        import matplotlib.pyplot as plt

        path = self._record(name, caption)
        savefig_kw.setdefault("dpi", 120)
        savefig_kw.setdefault("bbox_inches", "tight")
        try:
            with atomic_path(path, overwrite=self.overwrite) as tmp:
                fig.savefig(tmp, **savefig_kw)
        finally:
            plt.close(fig)
        return path

    def save_image(self, image: Any, name: str, caption: str) -> Path:
        """Save an RGB/L uint8 array (H, W[, 3]) or PIL image atomically as ``out/name``."""
        from PIL import Image

        path = self._record(name, caption)
        img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        with atomic_path(path, overwrite=self.overwrite) as tmp:
            img.save(tmp)
        return path

    def note(self, name: str, caption: str) -> Path:
        """Record a file the section wrote by other means; returns ``out/name``."""
        return self._record(name, caption)


def _sections() -> list[Any]:
    from featviz import demo_sections

    modules = [
        importlib.import_module(f"featviz.demo_sections.{m.name}")
        for m in pkgutil.iter_modules(demo_sections.__path__)
        if not m.name.startswith("_")
    ]
    return sorted(modules, key=lambda m: (m.ORDER, m.__name__))


def run_demo(
    out: str | Path,
    *,
    force: bool = False,
    fast: bool = False,
    device: str | torch.device | None = None,
) -> Path:
    """Write every demo figure into ``out`` and an ``index.md`` listing them.

    Args:
        out: Output folder; created if missing.
        force: Allow writing into a non-empty folder (files of the same name are replaced;
            nothing else is touched).
        fast: Fewer images and iterations (for tests and quick looks).
        device: Torch device; default CUDA when available, else CPU.

    Returns:
        Path of the written ``index.md``.

    Raises:
        DemoError: ``out`` exists, is not empty, and ``force`` is False; or ``out`` is a file.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DemoError(f"{str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise DemoError(f"{str(out)!r} is not empty; pass --force to write into it anyway")
    out.mkdir(parents=True, exist_ok=True)
    dev = (
        torch.device(device)
        if device
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    ctx = DemoContext(out=out, fast=fast, device=dev, overwrite=force)
    timings: list[tuple[str, float]] = []
    for section in _sections():
        ctx.section = section.TITLE
        start = time.perf_counter()
        logger.info("demo: %s", section.TITLE)
        section.run(ctx)
        timings.append((section.TITLE, time.perf_counter() - start))
    lines = ["# featviz demo", "", f"Device: `{dev}`. Written by `featviz demo`.", ""]
    current = None
    for title, name, caption in ctx.items:
        if title != current:
            lines += [f"## {title}", ""]
            current = title
        if name.endswith((".png", ".jpg", ".jpeg", ".webp", ".svg")):
            lines += [f"![{caption}]({name})", "", f"*{caption}* (`{name}`)", ""]
        else:
            lines += [f"- [`{name}`]({name}): {caption}", ""]
    lines += ["## Timings", "", "| section | seconds |", "| --- | ---: |"]
    lines += [f"| {t} | {s:.1f} |" for t, s in timings]
    index = out / "index.md"
    with atomic_path(index, overwrite=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return index
