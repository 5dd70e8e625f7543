"""Where the browser tests find Chromium and its driver (Debian's packages, or env vars)."""

from __future__ import annotations

import os
import shutil
from typing import Any


def find(env: str, *names: str) -> str | None:
    """``$env`` when set, else the first of ``names`` on PATH, else None."""
    if os.environ.get(env):
        return os.environ[env]
    return next((p for p in map(shutil.which, names) if p), None)


CHROMIUM = find("FEATVIZ_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
DRIVER = find("FEATVIZ_CHROMEDRIVER", "chromedriver")

#: What every browser test runs Chromium with: headless, software WebGL (SwiftShader), a
#: fixed window, and no host name resolving, so a page that reaches for the network fails.
ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    "--enable-unsafe-swiftshader",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def chrome(options: Any = None) -> Any:
    """A selenium Chromium driver on `CHROMIUM`/`DRIVER` with `ARGS` (``options`` extends)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = options or webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ARGS:
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(DRIVER))


def pointer(driver: Any, *steps: tuple[str, float, float], duration: int = 60) -> None:
    """Pointer actions at viewport points: ``("move" | "down" | "up" | "click", x, y)``."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver, duration=duration)
    for kind, x, y in steps:
        actions.pointer_action.move_to_location(round(x), round(y))
        if kind == "down":
            actions.pointer_action.pointer_down()
        elif kind == "up":
            actions.pointer_action.pointer_up()
        elif kind == "click":
            actions.pointer_action.click()
    actions.perform()
