"""featviz.explore's saved page in a real browser: headless Chromium driven by Selenium.

Needs the system Chromium and its driver (Debian: ``apt-get install chromium
chromium-driver``) and ``pip install selenium``; Selenium is pointed at the system binaries,
so it downloads nothing. Without them the tests skip and say which part is missing.
"""

from __future__ import annotations

import io
import os
import time
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("bokeh", reason="featviz.explore needs bokeh (pip install bokeh)")
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="the browser tests need selenium (pip install selenium)"
)

from _chromium import CHROMIUM, DRIVER, chrome, pointer  # noqa: E402  (tests folder on sys.path)
from featviz.explorer import explore  # noqa: E402
from featviz.featuremaps import overlay  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium binary (apt-get install chromium, or FEATVIZ_CHROMIUM)",
    ),
    pytest.mark.skipif(
        DRIVER is None,
        reason="no chromedriver (apt-get install chromium-driver, or FEATVIZ_CHROMEDRIVER)",
    ),
]

CLASSES = ["red", "green", "blue", "yellow"]
N = 20  # points on a 5 x 4 grid, one unit apart: each is far from its neighbours on screen

# every element of the page, shadow roots included (bokeh renders into shadow DOM)
DEEP_QUERY = """
const out = [];
const visit = (root) => {
  root.querySelectorAll(arguments[0]).forEach((e) => out.push(e));
  root.querySelectorAll("*").forEach((e) => { if (e.shadowRoot) visit(e.shadowRoot); });
};
visit(document);
return out;
"""

SCREEN_XY = """
const plot = Bokeh.documents[0].get_model_by_name("featviz_plot");
const view = Bokeh.index.get_one(plot);
const box = view.canvas_view.el.getBoundingClientRect();
return arguments[0].map(([x, y]) =>
  [box.left + view.frame.x_scale.compute(x), box.top + view.frame.y_scale.compute(y)]);
"""

VISIBLE_TIPS = DEEP_QUERY.replace(
    "return out;",
    "return out.filter((e) => e.offsetParent !== null)"
    ".map((e) => [e.innerText, e.querySelector('.featviz-thumb')]);",
)

FRAME = """
const view = Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name("featviz_plot"));
const box = view.canvas_view.el.getBoundingClientRect();
const f = view.frame.bbox;
return [box.left + f.left, box.top + f.top, box.left + f.right, box.top + f.bottom];
"""

MODEL = "return Bokeh.documents[0].get_model_by_name(arguments[0])"


def _images() -> torch.Tensor:
    colours = torch.tensor([[220, 30, 30], [30, 200, 30], [30, 30, 220], [210, 210, 40]])
    per_point = colours[torch.arange(N) % 4].to(torch.uint8)
    img = per_point[:, :, None, None].expand(N, 3, 32, 32).clone()
    img[:, :, 8:24, 8:24] = 255 - img[:, :, 8:24, 8:24]  # a square in the middle
    return img


def _maps() -> torch.Tensor:
    """(N, 4, 4) maps rising from 0 (top left) to 1 (bottom right)."""
    return torch.linspace(0, 1, 16).view(1, 4, 4).expand(N, 4, 4)


@pytest.fixture(scope="module", params=["inline", "folder"])
def page(tmp_path_factory, request):
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(4.0)), -1).reshape(-1, 2)
    labels = np.arange(N) % 4
    logits = np.eye(4)[(labels + (np.arange(N) % 5 == 0)) % 4] * 3.0  # every fifth is wrong
    maps = _maps()
    view = explore(
        grid,
        images=_images(),
        labels=labels,
        predictions=logits,
        heatmaps={"gradcam": maps},
        class_names=CLASSES,
    )
    path = view.save(tmp_path_factory.mktemp("explore") / "explore.html", assets=request.param)
    return view, path


@pytest.fixture(scope="module")
def browser():
    driver = chrome()
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver: Any, path: Any) -> None:
    driver.get(path.as_uri())
    deadline = time.monotonic() + 30
    ready = (
        "try { const p = Bokeh.documents[0].get_model_by_name('featviz_plot');"
        " const v = Bokeh.index.get_one(p); return v != null && v.is_idle !== false; }"
        " catch (e) { return false; }"
    )
    while not driver.execute_script(ready):
        assert time.monotonic() < deadline, "the page did not render within 30 s"
        time.sleep(0.05)


def _shot_dir(tmp_path: Any) -> Any:
    """Where screenshots go: $FEATVIZ_SCREENSHOTS (e.g. a CI artifact folder) or tmp_path."""
    from pathlib import Path

    folder = Path(os.environ.get("FEATVIZ_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _pixels(element: Any) -> np.ndarray:
    """What the browser shows of ``element``: RGB int (h, w, 3)."""
    from PIL import Image

    with Image.open(io.BytesIO(element.screenshot_as_png)) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def _assert_close(pixel: np.ndarray, expected: np.ndarray, tol: int = 16) -> None:
    assert np.abs(pixel - expected).max() <= tol, (pixel.tolist(), expected.tolist())


def _screen(driver: Any, view: Any, i: int) -> tuple[float, float]:
    """Viewport pixel of point ``i``."""
    ((sx, sy),) = driver.execute_script(SCREEN_XY, [[view.data["x"][i], view.data["y"][i]]])
    return sx, sy


def _pointer(driver: Any, *steps: tuple[str, float, float]) -> None:
    pointer(driver, *steps, duration=50)


def _drag(driver: Any, x0: float, y0: float, x1: float, y1: float) -> None:
    """Press at (x0, y0), move in two steps to (x1, y1), release: a box selection."""
    mid = ((x0 + x1) / 2, (y0 + y1) / 2)
    _pointer(
        driver, ("move", x0, y0), ("down", x0, y0), ("move", *mid), ("move", x1, y1), ("up", x1, y1)
    )


def _wait(driver: Any, script: str, *args: Any, timeout: float = 5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_hover_shows_thumbnail_label_and_prediction(browser, page):
    view, path = page
    _open(browser, path)
    for i in (0, 7, 13):
        _pointer(browser, ("move", *_screen(browser, view, i)))
        tips = _wait(browser, VISIBLE_TIPS, ".featviz-tip")
        assert len(tips) == 1, tips
        text, thumb = tips[0]
        assert f"#{i}\n" in text
        assert f"label: {view.data['label'][i]}" in text
        assert f"prediction: {view.data['prediction'][i]}" in text
        assert f"confidence: {view.data['confidence'][i]:.3f}" in text
        # the thumbnail shown is image i: its colour, with the inverted square in the middle
        colour = _images()[i, :, 0, 0].numpy().astype(int)
        assert thumb.size == {"width": 32, "height": 32}
        _assert_close(_pixels(thumb)[4, 4], colour)
        _assert_close(_pixels(thumb)[16, 16], 255 - colour)


def test_box_select_fills_the_indices_field_and_click_shows_heatmaps(browser, page, tmp_path):
    view, path = page
    _open(browser, path)
    # a box around grid columns 1-2 of rows 1-2: points 6, 7, 11, 12
    (x0, y0), (x1, y1) = browser.execute_script(SCREEN_XY, [[0.5, 2.5], [2.5, 0.5]])
    _drag(browser, x0, y0, x1, y1)
    value = _wait(browser, MODEL + ".value", "featviz_selected")
    assert value == "6, 7, 11, 12"
    fields = browser.execute_script(DEEP_QUERY + "", "textarea")
    assert [f.get_property("value") for f in fields] == ["6, 7, 11, 12"]  # what the user copies
    assert browser.execute_script(MODEL + ".text", "featviz_count").startswith("4 selected")
    shot = _shot_dir(tmp_path) / f"explore_select_{path.parent.name}.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    _pointer(browser, ("click", *_screen(browser, view, 3)))
    assert _wait(browser, MODEL + ".value", "featviz_selected") == "3"
    shown = _wait(browser, DEEP_QUERY, ".featviz-detail")
    assert [e.get_attribute("data-name") for e in shown] == ["image", "gradcam"]
    assert [e.size for e in shown] == [{"width": 160, "height": 160}] * 2  # shown at detail_size
    colour = _images()[3, :, 0, 0].numpy().astype(int)
    image = _pixels(shown[0])
    _assert_close(image[20, 20], colour)
    _assert_close(image[80, 80], 255 - colour)
    # the Grad-CAM overlay is featviz.overlay's, each source pixel shown as a 5 x 5 block
    expected = overlay(_images()[3:4], _maps()[3:4])[0].numpy().astype(int)
    cam = _pixels(shown[1])
    for y, x in ((4, 4), (4, 27), (27, 4), (27, 27), (12, 20)):
        _assert_close(cam[5 * y + 2, 5 * x + 2], expected[y, x], tol=24)
    assert browser.save_screenshot(
        str(_shot_dir(tmp_path) / f"explore_click_{path.parent.name}.png")
    )


def test_hidden_class_and_colour_switch(browser, page):
    view, path = page
    _open(browser, path)
    # what a click on the legend entry "red" does: hide that renderer
    browser.execute_script(
        "for (const m of Bokeh.documents[0].all_models) if (m.type === 'Legend' && m.visible)"
        " for (const it of m.items) if (it.label.value === 'red')"
        " for (const r of it.renderers) r.visible = false;"
    )
    x0, y0, x1, y1 = browser.execute_script(FRAME)  # the whole plot area
    _drag(browser, x0 + 3, y0 + 3, x1 - 3, y1 - 3)
    value = _wait(browser, MODEL + ".value", "featviz_selected")
    expected = [i for i in range(N) if view.data["label"][i] != "red"]
    assert value == ", ".join(map(str, expected))

    browser.execute_script(MODEL + ".selected.indices = []", "featviz_points")
    browser.execute_script(MODEL + ".value = 'correct'", "featviz_color_by")
    legends = browser.execute_script(
        "return Array.from(Bokeh.documents[0].all_models)"
        ".filter((m) => m.type === 'Legend' && m.visible)"
        ".map((m) => [m.title, m.items.map((it) => it.label.value)])"
    )
    assert legends == [["correct", ["correct", "wrong"]]]
    # the new colouring's renderers take the selection: every point again, "red" included
    _drag(browser, x0 + 3, y0 + 3, x1 - 3, y1 - 3)
    value = _wait(browser, MODEL + ".value", "featviz_selected")
    assert value == ", ".join(map(str, range(N)))


HOVER_BOX = """
const box = document.querySelector(".featviz-hover");
if (box == null || box.style.display === "none") return null;
const r = box.getBoundingClientRect();
return {tips: Array.from(box.querySelectorAll(".featviz-tip")).map((e) => e.innerText),
        more: (box.querySelector(".featviz-more") || {}).innerText || null,
        rect: [r.left, r.top, r.right, r.bottom]};
"""


def test_hover_in_a_dense_spot_lists_the_nearest_four_inside_the_plot(browser, tmp_path):
    """Issue 23.4: 300 points under the cursor, 4 listed (nearest first), "+296 more"."""
    from featviz._explorer_page import HOVER_MAX

    rng = np.random.default_rng(0)
    n = 300
    xy = np.concatenate([rng.normal(0, 0.01, size=(n - 2, 2)), [[0.0, 0.0], [10.0, 10.0]]])
    images = torch.full((n, 3, 48, 48), 128, dtype=torch.uint8)
    view = explore(xy, images=images, labels=np.arange(n) % 4, class_names=CLASSES)
    path = view.save(tmp_path / "dense.html")
    _open(browser, path)
    cursor = np.round(_screen(browser, view, n - 2))
    _pointer(browser, ("move", *cursor))
    got = _wait(browser, HOVER_BOX)
    assert got is not None, "no hover box"
    assert len(got["tips"]) == HOVER_MAX == 4
    # the listed points are the nearest on screen (to half a pixel of rounding)
    screen = np.array(browser.execute_script(SCREEN_XY, xy.tolist()))
    dist = np.hypot(*(screen - cursor).T)
    listed = [int(t.split("\n")[0].lstrip("#")) for t in got["tips"]]
    assert dist[listed].max() <= np.sort(np.delete(dist, listed))[0] + 0.5
    hits = int(got["more"].split()[0].lstrip("+")) + HOVER_MAX
    assert got["more"] == f"+{hits - HOVER_MAX} more" and hits > 100
    x0, y0, x1, y1 = browser.execute_script(FRAME)
    left, top, right, bottom = got["rect"]
    assert x0 - 1 <= left and right <= x1 + 1 and y0 - 1 <= top and bottom <= y1 + 1
    browser.save_screenshot(str(_shot_dir(tmp_path) / "explore_dense_hover.png"))
    # a corner point: the box flips to stay inside the plot
    _pointer(browser, ("move", *_screen(browser, view, n - 1)))
    got = _wait(browser, HOVER_BOX.replace("return null;", "return null; // corner"))
    assert got["tips"] and got["tips"][0].startswith(f"#{n - 1}\n") and got["more"] is None
    left, top, right, bottom = got["rect"]
    assert x0 - 1 <= left and right <= x1 + 1 and y0 - 1 <= top and bottom <= y1 + 1
