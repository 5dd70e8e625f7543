"""featviz.explore's webgl renderer: binary points, streamed sheets, the widget, the page.

The page tests run a 200,000-point page in headless Chromium (system ``chromium`` and
``chromedriver`` through Selenium, as tests/test_browser.py) and skip without them; the
renderer's JavaScript comes from the jupyter-scatter wheel (``featviz[webgl]``).
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import time
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

pytest.importorskip("bokeh", reason="featviz.explore needs bokeh (pip install bokeh)")

from featviz import _explorer_big as big
from featviz.explorer import explore

HAS_JSCATTER = big.importlib.util.find_spec("jscatter") is not None
needs_jscatter = pytest.mark.skipif(
    not HAS_JSCATTER, reason="the webgl renderer needs jupyter-scatter (featviz[webgl])"
)


def colours(n: int) -> np.ndarray:
    """(n, 3) uint8 colours, neighbours far apart."""
    i = np.arange(n)
    return np.stack([(37 * i) % 256, (91 * i + 40) % 256, (13 * i + 200) % 256], 1).astype(np.uint8)


def solid(n: int, size: int = 16) -> np.ndarray:
    """(n, size, size, 3) uint8 images, image i one colour."""
    return np.ascontiguousarray(np.broadcast_to(colours(n)[:, None, None], (n, size, size, 3)))


def decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def unpack(raw: bytes, layout: dict[str, Any], n: int) -> dict[str, np.ndarray]:
    return {
        c["name"]: np.frombuffer(
            raw, dtype=np.dtype(c["dtype"]).newbyteorder("<"), count=n, offset=c["offset"]
        )
        for c in layout["columns"]
    }


# -- points as binary ----------------------------------------------------------------------
def test_pack_round_trips_the_columns_in_8_bytes_per_point():
    n = 1000
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(n, 2)) * [10.0, 2.0]
    labels = rng.integers(0, 12, n)
    logits = rng.normal(size=(n, 12))
    view = explore(xy, labels=labels, predictions=logits, renderer="webgl")
    raw, layout = big.pack(view.data)
    assert len(raw) == 8 * n  # x, y uint16; label, prediction uint8; confidence uint16
    cols = unpack(raw, layout, n)
    assert "index" not in cols  # the row numbers are not stored
    span = max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]))  # one scale for both: the aspect kept
    np.testing.assert_allclose(
        cols["x"] * span / 65535 + xy[:, 0].min(), xy[:, 0], atol=span / 65535
    )
    np.testing.assert_allclose(
        cols["y"] * span / 65535 + xy[:, 1].min(), xy[:, 1], atol=span / 65535
    )
    assert cols["y"].max() < 65535 // 4  # y spans a fifth of x
    # names sorted as numbers; the codes point at each point's name
    assert layout["names"]["label"] == [str(k) for k in range(12)]
    names = np.array(layout["names"]["prediction"])
    assert (names[cols["prediction"]] == np.array(view.data["prediction"])).all()
    np.testing.assert_allclose(cols["confidence"] / 65535, view.data["confidence"], atol=1e-5)


def test_pack_keeps_a_dataset_index_and_wide_codes():
    view = explore(np.zeros((300, 2)), labels=[f"c{k}" for k in range(300)], renderer="webgl")
    view.data["index"] = np.arange(300) * 7
    raw, layout = big.pack(view.data)
    cols = unpack(raw, layout, 300)
    assert cols["label"].dtype == np.uint16 and cols["index"].dtype == np.uint32
    np.testing.assert_array_equal(cols["index"], np.arange(300) * 7)
    assert [c["offset"] % np.dtype(c["dtype"]).itemsize for c in layout["columns"]] == [0] * 4


# -- choosing the renderer -----------------------------------------------------------------
def test_auto_renderer_switches_at_webgl_from(monkeypatch):
    monkeypatch.setattr(big, "WEBGL_FROM", 10)
    assert explore(np.zeros((9, 2))).renderer == "bokeh"
    view = explore(np.zeros((10, 2)), images=solid(10))
    assert view.renderer == "webgl" and view.thumbnails is None and view.source is not None
    assert explore(np.zeros((10, 2)), renderer="bokeh").renderer == "bokeh"


def test_bad_renderer_names_the_parameter():
    with pytest.raises(
        ValueError,
        match=r"The 'renderer' parameter of explore must be one of "
        r"\['auto', 'bokeh', 'webgl'\]\. Got 'regl'",
    ):
        explore(np.zeros((3, 2)), renderer="regl")


def test_missing_jupyter_scatter_is_an_import_error_with_the_fix(monkeypatch):
    monkeypatch.setattr(big.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'featviz\[webgl\]'"):
        big.bundle()


# -- sheets ----------------------------------------------------------------------------------
def test_sheets_hold_each_points_tile_where_the_page_looks(tmp_path):
    n = 2500  # 16 px tiles: 64 per row, 4096 per sheet; 8 px: 16384 per sheet
    view = explore(
        np.random.default_rng(1).normal(size=(n, 2)),
        images=solid(n),
        heatmaps={"cam": np.zeros((n, 4, 4))},
        renderer="webgl",
        image_format="png",
    )
    keys = big.sheet_keys(view)
    assert list(keys) == ["thumb", "detail:image", "detail:cam"]
    g = keys["thumb"]
    assert (g["tile"], g["per_row"], g["per_sheet"], g["sheets"]) == ([16, 16], 64, 4096, 1)
    sheet = decode(big.sheet_bytes(view, "thumb", 0))
    assert sheet.shape == (40 * 16, 64 * 16, 3)  # 2500 tiles: 40 rows of 64
    for i in (0, 63, 64, 2499):
        y, x = (i // 64) * 16, (i % 64) * 16
        np.testing.assert_array_equal(sheet[y + 8, x + 8], colours(n)[i])


@needs_jscatter
def test_save_streams_sheets_into_the_folder_and_the_page_is_small(tmp_path):
    n = 20_000
    images = np.lib.format.open_memmap(
        tmp_path / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 16, 16, 3)
    )
    images[:] = solid(n)
    images.flush()
    images = np.load(tmp_path / "images.npy", mmap_mode="r")
    rng = np.random.default_rng(0)
    view = explore(
        rng.normal(size=(n, 2)),
        images=images,
        labels=rng.integers(0, 10, n),
        renderer="webgl",
        image_format="png",
    )
    path = view.save(tmp_path / "big.html")
    files = sorted(p.name for p in (tmp_path / "big_files").iterdir())
    # the click-through image is the thumbnail (16 px, never enlarged): its sheets are shared
    assert files == ["thumb_0.png", "thumb_1.png", "thumb_2.png", "thumb_3.png", "thumb_4.png"]
    assert '"detail:image": {"prefix": "big_files/thumb_", "ext": "png"}' in path.read_text()
    np.testing.assert_array_equal(
        decode((tmp_path / "big_files/thumb_4.png").read_bytes())[
            8, (19_999 - 4 * 4096) % 64 * 16 + 8
        ],
        colours(n)[19_999],
    )
    page = path.read_text()
    data = re.search(r'id="featviz-points">([^<]*)<', page).group(1)
    assert len(data) == 4 * -(-5 * n // 3)  # x, y, label: 5 bytes per point, base64
    assert len(page) - len(big.bundle()) - len(big.page_code()) < 7 * n + 20_000
    assert "<script src" not in page and "http" not in page.split('<script type="module">')[0]
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        view.save(tmp_path / "big.html")
    (tmp_path / "big_files" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="featviz did not write"):
        view.save(tmp_path / "big.html", overwrite=True)


# -- the live widget -------------------------------------------------------------------------
@needs_jscatter
def test_inline_images_past_the_limit_are_refused_or_left_out(tmp_path, monkeypatch):
    n = 300
    view = explore(
        np.random.default_rng(0).normal(size=(n, 2)),
        images=solid(n),
        renderer="webgl",
        image_format="png",
    )
    # thumbnails 16 px (the click-through image shares them): 3 * 16 * 16 bytes per point
    assert big.pixel_bytes(view) == n * 3 * 16 * 16
    monkeypatch.setattr(big, "INLINE_PIXELS", n * 3 * 16 * 16 - 1)
    with pytest.raises(ValueError, match=r"'assets' parameter.*'inline'.*assets='auto' or"):
        view.save(tmp_path / "page.html", assets="inline")
    assert list(tmp_path.iterdir()) == []  # nothing written
    with pytest.warns(UserWarning, match="300 points carry 0 MiB.*shown without images"):
        shown = view._repr_html_()
    assert "data:image" not in shown and "&quot;sheets&quot;: {}" in shown
    assert view.save(tmp_path / "page.html").with_name("page_files").is_dir()  # auto: a folder
    monkeypatch.setattr(big, "INLINE_PIXELS", n * 3 * 16 * 16)
    assert shown.count("data:image") == 0 and view._repr_html_().count("data:image/png") == 1


def test_widget_selection_and_sheet_requests_reach_python():
    pytest.importorskip("anywidget", reason="the live view needs anywidget (featviz[webgl])")
    n = 50
    view = explore(
        np.random.default_rng(0).normal(size=(n, 2)),
        images=solid(n),
        labels=np.arange(n) % 3,
        renderer="webgl",
        image_format="png",
    )
    assert view.selected.tolist() == []
    widget = view.show()
    assert widget is view.widget and widget.meta["n"] == n and len(widget.points) == 5 * n
    # what the page does on a lasso: sets "selected" and saves; the kernel applies it
    widget.set_state({"selected": [4, 9, 17]})
    assert view.selected.tolist() == [4, 9, 17]
    sent: list[Any] = []
    widget.send = lambda content, buffers=None: sent.append((content, buffers))
    widget._handle_custom_msg({"type": "sheet", "key": "thumb", "j": 0}, [])
    widget._handle_custom_msg({"type": "sheet", "key": "thumb", "j": 1}, [])  # no such sheet
    assert [c for c, _ in sent] == [{"type": "sheet", "key": "thumb", "j": 0}]
    np.testing.assert_array_equal(decode(sent[0][1][0])[8, 16 * 17 + 8], colours(n)[17])
    assert "application/vnd.jupyter.widget-view+json" in view._repr_mimebundle_()[0]


def test_import_featviz_does_not_import_the_renderer_packages():
    code = (
        "import sys, featviz, featviz.explorer; "
        "bad = [m for m in ('anywidget', 'jscatter', 'ipywidgets') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the page in Chromium --------------------------------------------------------------------
from _chromium import CHROMIUM, DRIVER, chrome, pointer  # noqa: E402  (tests folder on sys.path)

N = 200_000
GROUP = np.arange(N - 1000, N)  # 1,000 points in their own cluster, top right
PROBES = [0, 77_777, 150_001]  # alone, each on its own spot


def _points() -> np.ndarray:
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(N, 2)) * 0.6
    xy[GROUP] = rng.normal(size=(len(GROUP), 2)) * 0.3 + [6.0, 6.0]
    xy[PROBES] = [[-6.0, 6.0], [6.0, -6.0], [-6.0, -6.0]]
    return xy


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """(view, page path, driver): the 200,000-point page saved once, one headless Chromium."""
    if not HAS_JSCATTER:
        pytest.skip("the webgl renderer needs jupyter-scatter (featviz[webgl])")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no Chromium/chromedriver (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium.webdriver", reason="needs selenium")

    xy = _points()
    view = explore(
        xy,
        images=solid(N, 8),
        labels=np.arange(N) % 7,
        heatmaps={"gradcam": np.ones((N, 2, 2))},
        thumbnail_size=8,
        image_format="png",
        renderer="auto",
    )
    assert view.renderer == "webgl"
    path = view.save(tmp_path_factory.mktemp("big") / "explore.html")
    driver = chrome()
    try:
        yield view, path, driver
    finally:
        driver.quit()


def _load(chromium: Any, draw: str | None) -> Any:
    """The page freshly loaded, drawn by ``draw`` ("canvas", "webgl"; None: the page picks)."""
    _, path, driver = chromium
    driver.get(path.as_uri() + (f"?featviz-draw={draw}" if draw else ""))
    assert _wait(driver, "return window.featviz && window.featviz.state.ready", timeout=60)
    return driver


@pytest.fixture(params=["canvas", "webgl"])
def big_page(chromium, request):
    """The page, freshly loaded, drawn by featviz's canvas drawer and by regl-scatterplot."""
    driver = _load(chromium, request.param)
    assert driver.execute_script("return window.featviz.state.draw") == request.param
    return chromium[0], driver


def _wait(driver: Any, script: str, *args: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _screen(driver: Any, i: int) -> tuple[float, float]:
    return driver.execute_script(
        "const [x, y] = window.featviz.sp.getScreenPosition(arguments[0]);"
        "const r = document.querySelector('.featviz-plot canvas').getBoundingClientRect();"
        "return [r.left + x, r.top + y];",
        i,
    )


_pointer = pointer


def _pixel(element: Any, y: int, x: int) -> np.ndarray:
    return decode(element.screenshot_as_png)[y, x]


@pytest.mark.slow
def test_hover_shows_the_points_thumbnail_and_click_its_details(big_page):
    _, driver = big_page
    for i in PROBES:
        _pointer(driver, ("move", *_screen(driver, i)))
        shown = _wait(
            driver, "const h = window.featviz.state.hover;return h && h.shown !== null && h.i;"
        )
        assert shown == i
        tip = driver.find_element("css selector", ".featviz-tip")
        assert f"#{i}\nlabel: {i % 7}" in tip.text
        thumb = tip.find_element("css selector", ".featviz-thumb")
        assert thumb.get_attribute("data-index") == str(i)
        assert np.abs(_pixel(thumb, 4, 4) - colours(N)[i]).max() <= 2
    _pointer(driver, ("click", *_screen(driver, PROBES[1])))
    assert _wait(driver, "return document.querySelector('.featviz-selected').value") == "77777"
    shown = driver.find_elements("css selector", ".featviz-detail-image")
    assert [e.get_attribute("data-name") for e in shown] == ["image", "gradcam"]
    _wait(
        driver, "return document.querySelectorAll('.featviz-detail-image[data-index]').length === 2"
    )
    assert shown[0].size == {"width": 160, "height": 160}  # shown at detail_size
    assert np.abs(_pixel(shown[0], 80, 80) - colours(N)[PROBES[1]]).max() <= 2


@pytest.mark.slow
def test_lasso_selects_exactly_the_cluster(big_page):
    _, driver = big_page
    driver.find_element("css selector", ".featviz-mode").click()  # drag draws a lasso
    corners = driver.execute_script(
        "const sp = window.featviz.sp, r = document.querySelector('.featviz-plot canvas')"
        ".getBoundingClientRect(); const xs = [], ys = [];"
        "for (const i of arguments[0]) { const [x, y] = sp.getScreenPosition(i);"
        " xs.push(x); ys.push(y); }"
        "return [r.left + Math.min(...xs) - 8, r.top + Math.min(...ys) - 8,"
        " r.left + Math.max(...xs) + 8, r.top + Math.max(...ys) + 8];",
        GROUP.tolist(),
    )
    x0, y0, x1, y1 = corners
    path = [("move", x0, y0), ("down", x0, y0)]
    for (ax, ay), (bx, by) in pairwise([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]):
        # the lasso takes a vertex per pointer move: seven along each side
        path += [("move", ax + (bx - ax) * t, ay + (by - ay) * t) for t in np.arange(1, 8) / 7]
    _pointer(driver, *path, ("up", x0, y0))
    value = _wait(driver, "return document.querySelector('.featviz-selected').value")
    assert value == ", ".join(map(str, GROUP))
    assert driver.find_element("css selector", ".featviz-count").text.startswith("1000 selected")


@pytest.mark.slow
def test_box_selects_exactly_the_cluster_and_a_second_click_pans_again(big_page):
    _, driver = big_page
    box = driver.find_elements("css selector", ".featviz-mode")[1]
    assert box.text == "Box"
    box.click()
    assert driver.execute_script("return window.featviz.sp.get('lassoType')") == "rectangle"
    x0, y0, x1, y1 = driver.execute_script(
        "const sp = window.featviz.sp, r = document.querySelector('.featviz-plot canvas')"
        ".getBoundingClientRect(); const xs = [], ys = [];"
        "for (const i of arguments[0]) { const [x, y] = sp.getScreenPosition(i);"
        " xs.push(x); ys.push(y); }"
        "return [r.left + Math.min(...xs) - 8, r.top + Math.min(...ys) - 8,"
        " r.left + Math.max(...xs) + 8, r.top + Math.max(...ys) + 8];",
        GROUP.tolist(),
    )
    steps = [("move", x0 + (x1 - x0) * t, y0 + (y1 - y0) * t) for t in np.arange(1, 11) / 10]
    # regl-scatterplot's box starts at the first vertex it records after the press, and
    # takes one at most every 10 ms: both corners are held a while
    start = [("move", x0 + d, y0 + d) for d in (1, 0, 1, 0)]
    end = [("move", x1 + d, y1 + d) for d in (1, 0, 1, 0)]
    _pointer(driver, ("move", x0, y0), ("down", x0, y0), *start, *steps, *end, ("up", x1, y1))
    value = _wait(driver, "return document.querySelector('.featviz-selected').value")
    assert value == ", ".join(map(str, GROUP))
    box.click()  # off again: a drag pans
    assert driver.execute_script("return window.featviz.sp.get('mouseMode')") == "panZoom"
    assert "featviz-on" not in box.get_attribute("class")


def _colour(driver: Any, u: float, v: float) -> list[int]:
    """RGB of the plot's canvas at CSS pixel (u, v) (read back from the canvas itself)."""
    return driver.execute_script(
        "const c = document.querySelector('.featviz-plot canvas');"
        "const s = c.width / c.clientWidth, g = c.getContext('2d');"
        "return Array.from(g.getImageData(Math.floor(arguments[0] * s),"
        " Math.floor(arguments[1] * s), 1, 1).data.slice(0, 3));",
        u,
        v,
    )


SCREEN = "return window.featviz.sp.getScreenPosition(arguments[0])"  # CSS px in the canvas


def _palette(view: Any, label: int) -> list[int]:
    hex_colour = big.meta(view, big.pack(view.data, view.class_names)[1])["colors"]["label"]
    c = hex_colour["colors"][hex_colour["names"].index(str(label))]
    return [int(c[k : k + 2], 16) for k in (1, 3, 5)]


@pytest.mark.slow
def test_page_draws_on_the_canvas_where_webgl_is_software(chromium):
    view, _, _ = chromium
    driver = _load(chromium, None)  # headless Chromium: SwiftShader, no GPU
    assert driver.execute_script("return window.featviz.state.draw") == "canvas"
    for i in PROBES:  # each alone: its label's colour at its place, white beside it
        u, v = driver.execute_script(SCREEN, i)
        assert _colour(driver, u, v) == _palette(view, i % 7)
        assert _colour(driver, u + 6, v + 6) == [255, 255, 255]
    ms = driver.execute_async_script(
        "window.featviz.zoomMs({x: -0.2, y: -0.2, width: 0.4, height: 0.4})"
        ".then(arguments[arguments.length - 1]);"
    )
    assert ms > 0 and driver.execute_script("return window.featviz.state.draws") == 2


@pytest.mark.slow
def test_canvas_wheel_zoom_keeps_the_point_under_the_pointer_and_drag_pans(chromium):
    driver = _load(chromium, "canvas")
    i = PROBES[0]
    x, y = _screen(driver, i)
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    canvas = driver.find_element("css selector", ".featviz-plot canvas")
    rect = canvas.rect
    origin = ScrollOrigin.from_element(
        canvas, round(x - rect["x"] - rect["width"] / 2), round(y - rect["y"] - rect["height"] / 2)
    )
    ActionChains(driver).scroll_from_origin(origin, 0, -300).perform()
    _wait(driver, "return window.featviz.state.draws >= 2")
    zoom = driver.execute_script("return window.featviz.sp.get('camera').zoom")
    assert zoom > 1.5
    x2, y2 = _screen(driver, i)
    assert abs(x2 - x) <= 1.5 and abs(y2 - y) <= 1.5  # the point under the pointer stays
    # a drag of (40, -30) px moves every point by (40, -30) px
    j = PROBES[1]
    before = _screen(driver, j)
    _pointer(driver, ("move", 400, 500), ("down", 400, 500), ("move", 420, 485), ("move", 440, 470))
    _pointer(driver, ("up", 440, 470))
    _wait(driver, "return window.featviz.state.draws >= 3")
    after = _screen(driver, j)
    np.testing.assert_allclose(np.subtract(after, before), [40, -30], atol=1.5)
    assert driver.execute_script("return document.querySelector('.featviz-selected').value") == ""
    # hover after zoom and pan still names the right point
    _pointer(driver, ("move", *_screen(driver, i)))
    assert _wait(driver, "const h = window.featviz.state.hover; return h && h.i;") == i


@pytest.mark.slow
def test_canvas_hover_in_a_dense_spot_lists_four_and_the_rest(chromium):
    driver = _load(chromium, "canvas")
    _pointer(driver, ("move", *_screen(driver, int(GROUP[500]))))
    assert _wait(driver, "const h = window.featviz.state.hover; return h && h.shown !== null")
    tip = driver.find_element("css selector", ".featviz-tip")
    rows = tip.find_elements("css selector", ".featviz-row")
    hits = driver.execute_script("return window.featviz.sp.get('hoverHits')")
    assert len(rows) == 4 and hits["total"] > 4
    shown = [int(r.text.split("\n")[0][1:]) for r in rows]
    assert set(shown) <= set(GROUP.tolist()) and len(set(shown)) == 4
    more = tip.find_element("css selector", ".featviz-more").text
    assert more == f"+{hits['total'] - 4} more"
    box, plot = tip.rect, driver.find_element("css selector", ".featviz-plot").rect
    assert box["x"] + box["width"] <= plot["x"] + plot["width"] + 1  # inside the plot
    assert box["y"] + box["height"] <= plot["y"] + plot["height"] + 1


@pytest.mark.slow
@pytest.mark.parametrize("draw", ["canvas", "webgl"])
def test_legend_click_hides_a_class_from_drawing_hover_and_selection(chromium, draw):
    view, _, _ = chromium
    driver = _load(chromium, draw)
    group = [int(i) for i in GROUP]
    by_label = {k: [i for i in group if i % 7 == k] for k in range(7)}
    driver.find_element("css selector", ".featviz-legend [data-k='3']").click()
    assert "featviz-off" in driver.find_element(
        "css selector", ".featviz-legend [data-k='3']"
    ).get_attribute("class")
    driver.execute_script("window.featviz.sp.select(arguments[0])", group)
    value = _wait(driver, "return document.querySelector('.featviz-selected').value")
    hidden = set(by_label[3])
    assert value == ", ".join(str(i) for i in group if i not in hidden)
    driver.execute_script("window.featviz.sp.deselect()")  # (a selection fades the others)
    if draw == "canvas":
        probe = PROBES[0]  # label 0: hide it and its place turns white
        u, v = driver.execute_script(SCREEN, probe)
        driver.find_element("css selector", f".featviz-legend [data-k='{probe % 7}']").click()
        _wait(driver, "return document.querySelectorAll('.featviz-off').length === 2")
        assert _colour(driver, u, v) == [255, 255, 255]
        _pointer(driver, ("move", u + 20, v + 20), ("move", *_screen(driver, probe)))
        time.sleep(0.3)
        assert driver.execute_script("return window.featviz.state.hover") is None
        driver.find_element("css selector", f".featviz-legend [data-k='{probe % 7}']").click()
        _wait(driver, "return document.querySelectorAll('.featviz-off').length === 1")
        assert _colour(driver, u, v) == _palette(view, probe % 7)


@pytest.mark.slow
def test_canvas_escape_and_a_click_on_nothing_deselect(chromium):
    driver = _load(chromium, "canvas")
    _pointer(driver, ("click", *_screen(driver, PROBES[2])))
    assert _wait(driver, "return document.querySelector('.featviz-selected').value") == "150001"
    from selenium.webdriver.common.keys import Keys

    driver.find_element("css selector", "body").send_keys(Keys.ESCAPE)
    assert _wait(driver, "return document.querySelector('.featviz-selected').value === ''")
    _pointer(driver, ("click", *_screen(driver, PROBES[2])))
    assert _wait(driver, "return document.querySelector('.featviz-selected').value") == "150001"
    x, y = _screen(driver, PROBES[2])
    _pointer(driver, ("click", x + 40, y))  # empty space
    assert _wait(driver, "return document.querySelector('.featviz-selected').value === ''")


WIDGET_PAGE = """<!DOCTYPE html><html><head><style>%s</style></head><body><div id="w"></div>
<script type="module">
%s
const state = {meta: %s, points: new DataView(Uint8Array.from(atob("%s"), (c) => c.charCodeAt(0))
  .buffer), selected: []};
const handlers = {}, sheet = Uint8Array.from(atob("%s"), (c) => c.charCodeAt(0));
window.sent = []; window.saved = [];
const model = {
  get: (k) => state[k], set: (k, v) => { state[k] = v; },
  save_changes: () => window.saved.push(state.selected.slice()),
  on: (event, callback) => { handlers[event] = callback; },
  send: (msg) => {
    window.sent.push(msg);  // the kernel answers with the sheet's bytes
    setTimeout(() => handlers["msg:custom"](msg, [sheet.buffer]));
  },
};
const el = document.getElementById("w");
__widget.render({model, el});
window.el = el;
</script></body></html>"""


@pytest.mark.slow
def test_widget_page_code_sends_the_selection_and_asks_for_sheets(chromium, tmp_path):
    """The widget's JavaScript with a stand-in for the kernel's model (no Jupyter)."""
    pytest.importorskip("anywidget", reason="the live view needs anywidget (featviz[webgl])")
    driver = chromium[2]
    n = 50
    xy = np.stack([np.arange(n) % 10, np.arange(n) // 10], 1).astype(float)
    view = explore(xy, images=solid(n), renderer="webgl", image_format="png")
    widget = view.show()
    esm = widget._esm.replace("export default {", "const __widget = {")
    raw = base64.b64encode(widget.points).decode()
    sheet = base64.b64encode(big.sheet_bytes(view, "thumb", 0)).decode()
    page = tmp_path / "widget.html"
    page.write_text(WIDGET_PAGE % (widget._css, esm, json.dumps(widget.meta), raw, sheet))
    driver.get(page.as_uri())
    assert _wait(driver, "return window.el && window.el.featviz && window.el.featviz.state.ready")
    driver.execute_script("window.el.featviz.sp.select([7, 3])")
    assert _wait(driver, "return window.saved.length") == 1
    assert driver.execute_script("return window.saved") == [[3, 7]]
    x, y = driver.execute_script(
        "const [x, y] = window.el.featviz.sp.getScreenPosition(12);"
        "const r = window.el.querySelector('canvas').getBoundingClientRect();"
        "return [r.left + x, r.top + y];"
    )
    _pointer(driver, ("move", x, y))
    assert _wait(driver, "const h = window.el.featviz.state.hover; return h && h.shown !== null")
    # the click-through image of point 3 (shown on selecting), then the hovered thumbnail
    assert driver.execute_script("return window.sent") == [
        {"type": "sheet", "key": "detail:image", "j": 0},
        {"type": "sheet", "key": "thumb", "j": 0},
    ]
    thumb = driver.find_element("css selector", "#w .featviz-thumb")
    assert np.abs(_pixel(thumb, 8, 8) - colours(n)[12]).max() <= 2
