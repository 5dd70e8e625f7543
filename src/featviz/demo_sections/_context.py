"""The demo's context: what every section of ``featviz demo`` writes through.

A private module of `featviz.demo_sections`, so that the sections (loaded by `featviz.demo`
at run time) need not import `featviz.demo` back. `featviz.demo` re-exports both names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featviz._io import atomic_path
from featviz._validation import renamed

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from featviz.datasets import Shapes
    from featviz.models import TinyCNN

__all__ = ["DemoContext", "DemoError"]

logger = logging.getLogger("featviz.demo")


class DemoError(Exception):
    """The demo cannot run as asked (for example: ``out_dir`` is not empty and no ``overwrite``)."""


@dataclass
class DemoContext:
    """What every demo section gets: the output folder, data, model and save helpers.

    Attributes:
        out_dir: Output folder (exists).
        fast: Use fewer images and iterations.
        full: Full-size scores (more images and steps).
        device: Device to run models on.
        overwrite: Whether files may be replaced (``--overwrite`` on the command line).
            The old keywords ``out`` and ``force`` still work, with a ``FutureWarning``.
        progress: Show progress bars (training the model on a cold cache).
        items: ``(section title, file name, caption)`` of every file written so far.
    """

    out_dir: Path
    fast: bool = False
    full: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    overwrite: bool = False
    progress: bool = False
    section: str = ""
    items: list[tuple[str, str, str]] = field(default_factory=list)

    @cached_property
    def model(self) -> TinyCNN:
        """The built-in trained `TinyCNN` (cached on disk), in eval mode on ``device``."""
        from featviz.models import pretrained_tiny_cnn

        return pretrained_tiny_cnn(progress=self.progress).to(self.device)

    @cached_property
    def data(self) -> Shapes:
        """Held-out `Shapes` images (seed 1): 64 with ``fast``, 512 with ``full``, else 256."""
        from featviz.datasets import Shapes

        return Shapes(self.sized(64, 256, 512), random_state=1)

    def sized(self, fast: int, default: int, full: int) -> int:
        """The number for this run's size: ``fast``, ``default`` or ``full``."""
        return fast if self.fast else full if self.full else default

    @cached_property
    def photos(self) -> dict[str, np.ndarray]:
        """`featviz.datasets.sample_photos`."""
        from featviz.datasets import sample_photos

        return sample_photos()

    def _record(self, name: str, caption: str) -> Path:
        self.items.append((self.section, name, caption))
        return self.out_dir / name

    def save_figure(self, fig: Figure, name: str, caption: str, **savefig_kw: Any) -> Path:
        """Save a matplotlib figure atomically as ``out_dir/name`` and close it."""
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
        """Save an RGB/L uint8 array (H, W[, 3]) or PIL image atomically as ``out_dir/name``."""
        from PIL import Image

        path = self._record(name, caption)
        img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        with atomic_path(path, overwrite=self.overwrite) as tmp:
            img.save(tmp)
        return path

    def note(self, name: str, caption: str) -> Path:
        """Record a file the section wrote by other means; returns ``out_dir/name``."""
        return self._record(name, caption)


# the names of earlier releases, as keywords of the constructor (one release, FutureWarning)
DemoContext.__init__ = renamed(out="out_dir", force="overwrite")(  # type: ignore[method-assign]
    DemoContext.__init__
)
