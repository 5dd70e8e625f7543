"""MkDocs hooks for the featviz docs: every file a page loads ships with the site.

The formulas are typeset in the reader's browser by MathJax 3. MathJax comes from the
``django-static-mathjax`` package on PyPI (in the ``dev`` extra; it holds MathJax's own files
and needs no Django), and :func:`on_post_build` copies the part of it the pages use into
``<site>/javascripts/mathjax``. Nothing of MathJax is committed to this repository, and the
built site works with no network: no CDN, no web fonts, no repository API.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

PACKAGE = "django-static-mathjax"
SITE_FOLDER = Path("javascripts", "mathjax")  # mkdocs.yml's extra_javascript points here
# What the pages load, relative to MathJax's es5 folder: the combined TeX input + HTML
# output component, the TeX packages it loads on demand (autoload), its fonts, and what its
# right-click menu loads when a reader turns on the accessibility options.
COPIED = (
    "tex-mml-chtml.js",
    "input/tex/extensions",
    "input/mml/extensions",
    "output/chtml/fonts",
    "ui",
    "a11y",
    "sre",
)


def mathjax_root() -> Path:
    """The installed MathJax distribution: the folder that holds ``es5/`` and ``LICENSE``.

    Returns:
        Path: ``<site-packages>/mathjax/static/mathjax`` of ``django-static-mathjax``.

    Raises:
        PluginError: If the package is not installed (or another ``mathjax`` module shadows
            it); the message says how to install it.
    """
    spec = importlib.util.find_spec("mathjax")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        root = Path(location, "static", "mathjax")
        if all((root / "es5" / name).exists() for name in COPIED):
            return root
    raise PluginError(
        f"The docs need MathJax from the {PACKAGE!r} package, which is not installed "
        f"(found: {locations or 'no mathjax module'}). Install it with "
        f'pip install {PACKAGE} (it is in the dev extra: pip install -e ".[dev]").'
    )


def on_config(config: Any) -> Any:
    """Fail at the start of the build, not after it, when MathJax is missing."""
    mathjax_root()
    return config


def on_post_build(config: Any) -> None:
    """Copy MathJax's files (see ``COPIED``) and its licence into ``<site>/javascripts/mathjax``."""
    root = mathjax_root()
    target = Path(config["site_dir"], SITE_FOLDER)
    for name in COPIED:
        source = root / "es5" / name
        if source.is_dir():
            shutil.copytree(source, target / name, dirs_exist_ok=True)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    shutil.copy2(root / "LICENSE", target / "LICENSE")
