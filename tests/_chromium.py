"""Where the browser tests find Chromium and its driver (Debian's packages, or env vars)."""

from __future__ import annotations

import os
import shutil


def find(env: str, *names: str) -> str | None:
    """``$env`` when set, else the first of ``names`` on PATH, else None."""
    if os.environ.get(env):
        return os.environ[env]
    return next((p for p in map(shutil.which, names) if p), None)


CHROMIUM = find("FEATVIZ_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
DRIVER = find("FEATVIZ_CHROMEDRIVER", "chromedriver")
