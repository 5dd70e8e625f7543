"""Benchmark featviz.explore: page bytes per point and time to first render in Chromium.

For N points (default 1,000 / 10,000 / 50,000; ``--quick``: 1,000) of 64 x 64 RGB Shapes
images (a pool of 1,000 distinct images, repeated; thumbnails are encoded per point all
the same) with labels, 4-class logits and, in a second setting, one Grad-CAM-like heatmap:

- prepare: wall time of ``featviz.explore(...)`` (batched resizing + overlays, one WebP
  encode per sprite sheet);
- bytes/point: (page + image folder - page size of a 1-point view) / N, i.e. what each
  point adds on top of bokeh's inlined JavaScript (the fixed part, printed once), with
  the sprite sheets inline (data URIs) and in a folder beside the page;
- first render: seconds from ``driver.get(file://...)`` until the plot's bokeh view is
  built and idle, in headless Chromium (system ``chromium`` + ``chromedriver`` through
  Selenium; skipped with a note when missing). Software WebGL (SwiftShader) in headless
  mode, so a desktop GPU renders faster. With a folder, the sheets load when first
  needed (hover, click), after this.

The comparison is against what ``featviz.to_tensorboard`` writes for TensorBoard's
projector on the same points (64-d features, labels, a sprite of the same images): the
bytes of its assets per point (tensors.tsv + metadata.tsv + sprite.png). The projector's
own load time needs a running TensorBoard server and is not measured here.

With ``--large`` it measures the webgl renderer (regl-scatterplot, ``featviz[webgl]``)
instead, against today's bokeh page in the same run:

- 1,000,000 points without images: save time (``explore`` + ``save``), bytes per point
  (page minus the fixed bundle), first render (from ``driver.get`` until the page's
  first draw) and redraw after a zoom, timed in the page (``zoomMs``: ``zoomToArea``
  until the next draw, with one pixel read back so the drawing has finished), drawn by
  each of the page's drawers (``?featviz-draw=canvas``, the page's own pick without a
  GPU, and ``=webgl``, regl-scatterplot), and the floor of any WebGL renderer here: a
  minimal WebGL2 shader drawing the same number of points (`FLOOR_PAGE`), ms per frame;
- 1,000,000 points with 32 px thumbnails from a memory-mapped uint8 (N, 32, 32, 3) array
  (written to a temporary .npy first): save time and peak RSS of a fresh process that
  saves it, and the time from the pointer stopping on a point to its thumbnail decoded
  and shown (measured in the page);
- 50,000 points (the standard data above, thumbnails, folder): bokeh vs webgl first
  render and bytes, with their ratio.

Usage: python benchmarks/explore.py [--quick] [--sizes N ...] [--no-browser]
       python benchmarks/explore.py --large [--large-n N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def data(n: int) -> dict[str, torch.Tensor]:
    from featviz.datasets import Shapes

    pool = Shapes(min(n, 1000), random_state=1)
    images, labels = pool.tensors()
    rep = torch.arange(n) % len(pool)
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 2, generator=gen) * 6
    pts = centres[labels[rep]] + torch.randn(n, 2, generator=gen)
    logits = torch.nn.functional.one_hot(labels[rep], 4).float() * 2 + torch.randn(
        n, 4, generator=gen
    )
    cams = images.mean(1)[:, ::8, ::8]  # (n, 8, 8), a map per image
    feats = torch.randn(n, 64, generator=gen) + labels[rep, None].float()
    return {
        "points": pts,
        "images": images[rep],
        "labels": labels[rep],
        "logits": logits,
        "cams": cams[rep],
        "features": feats,
    }


def first_render(driver, path: Path) -> float:
    ready = (
        "try { const p = Bokeh.documents[0].get_model_by_name('featviz_plot');"
        " const v = Bokeh.index.get_one(p); return v != null && v.is_idle !== false; }"
        " catch (e) { return false; }"
    )
    start = time.perf_counter()
    driver.get(path.as_uri())
    while not driver.execute_script(ready):
        if time.perf_counter() - start > 300:
            return float("nan")
        time.sleep(0.01)
    return time.perf_counter() - start


def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        return None, "no chromium/chromedriver (apt-get install chromium chromium-driver)"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "no selenium (pip install selenium)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--enable-unsafe-swiftshader",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(driver)), ""


def tensorboard_bytes(d: dict[str, torch.Tensor], tmp: Path) -> float:
    from featviz.tensorboard import to_tensorboard

    out = to_tensorboard(tmp / "tb", features=d["features"], labels=d["labels"], images=d["images"])
    files = [p for p in out.logdir.rglob("*") if p.suffix in (".tsv", ".png")]
    return sum(p.stat().st_size for p in files) / len(d["labels"])


# -- the webgl renderer at 1,000,000 points -------------------------------------------------
WEBGL_READY = "return window.featviz && window.featviz.state.ready"
ZOOM = """const done = arguments[arguments.length - 1];
const k = arguments[0];
window.featviz.zoomMs({x: -0.6 + 0.1 * k, y: -0.5, width: 0.8, height: 0.8}).then(done);"""
SAVE_SCRIPT = """
import sys, time
import numpy as np
from featviz.explorer import explore
images = np.load(sys.argv[1], mmap_mode="r")
n = len(images)
rng = np.random.default_rng(0)
t = time.perf_counter()
view = explore(rng.normal(size=(n, 2)), images=images, labels=rng.integers(0, 10, n),
               thumbnail_size=32)
view.save(sys.argv[2])
# peak RSS of this process image: VmHWM (ru_maxrss would include the parent's, kept
# across exec, and the parent has just written the memory map)
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
print(time.perf_counter() - t, hwm / 1e6)
"""


def webgl_render(driver, path: Path, draw: str = "") -> float:
    start = time.perf_counter()
    driver.get(path.as_uri() + (f"?featviz-draw={draw}" if draw else ""))
    while not driver.execute_script(WEBGL_READY):
        if time.perf_counter() - start > 300:
            return float("nan")
        time.sleep(0.01)
    return time.perf_counter() - start


FLOOR_PAGE = """<!DOCTYPE html><html><body><canvas width=800 height=600></canvas><script>
// the least any WebGL renderer does per frame: one uint16 x, y and a class byte per point,
// a 10-colour palette, 3 px points, no blending; median of 5 frames, pixels read back
const n = %d, gl = document.querySelector("canvas").getContext("webgl2", {antialias: false});
const xy = new Uint16Array(2 * n), cls = new Uint8Array(n);
for (let i = 0; i < 2 * n; i++) xy[i] = 32768 + 20000 * Math.sin(i * 12.9898) * Math.cos(i);
for (let i = 0; i < n; i++) cls[i] = i %% 10;
const sh = (t, src) => {
  const o = gl.createShader(t); gl.shaderSource(o, src); gl.compileShader(o); return o; };
const pr = gl.createProgram();
gl.attachShader(pr, sh(gl.VERTEX_SHADER, `#version 300 es
in vec2 p; in float c; uniform float s; uniform vec3 pal[10]; out vec3 col;
void main() { gl_Position = vec4((p * 2.0 - 1.0) * s, 0.0, 1.0); gl_PointSize = 3.0;
  col = pal[int(c)]; }`));
gl.attachShader(pr, sh(gl.FRAGMENT_SHADER, `#version 300 es
precision mediump float; in vec3 col; out vec4 o; void main() { o = vec4(col, 1.0); }`));
gl.linkProgram(pr); gl.useProgram(pr);
const buf = (data, loc, size, type, norm) => { gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW); gl.enableVertexAttribArray(loc);
  gl.vertexAttribPointer(loc, size, type, norm, 0, 0); };
buf(xy, gl.getAttribLocation(pr, "p"), 2, gl.UNSIGNED_SHORT, true);
buf(cls, gl.getAttribLocation(pr, "c"), 1, gl.UNSIGNED_BYTE, false);
const pal = new Float32Array(30).map((_, k) => (k * 37 %% 10) / 10);
gl.uniform3fv(gl.getUniformLocation(pr, "pal"), pal);
window.frame = (s) => { const t = performance.now();
  gl.uniform1f(gl.getUniformLocation(pr, "s"), s); gl.clearColor(1, 1, 1, 1);
  gl.clear(gl.COLOR_BUFFER_BIT); gl.drawArrays(gl.POINTS, 0, n);
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
  return performance.now() - t; };
</script></body></html>"""


def webgl_floor(driver, n: int, tmp: Path) -> float:
    """Median ms per frame of `FLOOR_PAGE`: what WebGL itself costs per redraw of n points."""
    page = tmp / "floor.html"
    page.write_text(FLOOR_PAGE % n)
    driver.get(page.as_uri())
    driver.execute_script("return frame(1.0)")  # shaders compiled, buffers uploaded
    return float(
        np.median([driver.execute_script(f"return frame({1 + k / 10})") for k in range(5)])
    )


def hover_ms(driver, i: int) -> float:
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    x, y = driver.execute_script(
        "const [x, y] = window.featviz.sp.getScreenPosition(arguments[0]);"
        "const r = document.querySelector('.featviz-plot canvas').getBoundingClientRect();"
        "return [r.left + x, r.top + y];",
        i,
    )
    actions = ActionBuilder(driver, duration=50)
    actions.pointer_action.move_to_location(round(x), round(y))
    actions.perform()
    start = time.perf_counter()
    while time.perf_counter() - start < 30:
        shown = driver.execute_script("const h = window.featviz.state.hover; return h && h.shown")
        if shown:
            return float(shown)
        time.sleep(0.01)
    return float("nan")


def large(n: int) -> None:
    import os
    import subprocess
    import sys

    from featviz.explorer import explore

    print(f"load average: {os.getloadavg()}, cores: {os.cpu_count()}")
    driver, why = browser()
    if driver is None:
        print(f"no browser timings: {why}")
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            # 1M points, no images
            centres = rng.normal(size=(10, 2)) * 6
            labels = rng.integers(0, 10, n)
            t = time.perf_counter()
            view = explore(
                centres[labels] + rng.normal(size=(n, 2)),
                labels=labels,
                predictions=rng.normal(size=(n, 10)).astype(np.float32),
            )
            path = view.save(tmp / "big.html")
            save_s = time.perf_counter() - t
            per = (path.stat().st_size - len(webgl_fixed())) / n
            for draw in ("canvas", "webgl"):  # the page's pick here, then regl-scatterplot
                render, zoom = float("nan"), float("nan")
                if driver:
                    render = webgl_render(driver, path, draw)
                    zoom = float(
                        np.median([driver.execute_async_script(ZOOM, k) for k in range(5)])
                    )
                what = f"{n:,} points, labels + logits, drawn by {draw}"
                rows.append((what, save_s, per, render, zoom, "-", "-"))
            if driver:
                floor = webgl_floor(driver, n, tmp)
                nan = float("nan")
                rows.append(
                    (f"{n:,} points, a minimal WebGL2 shader", nan, nan, nan, floor, "-", "-")
                )
            # 1M points with 32 px thumbnails from a memory map
            images = np.lib.format.open_memmap(
                tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 32, 32, 3)
            )
            pool = thumbnails_32()  # 1,000 distinct Shapes images, repeated
            for start in range(0, n, 65536):
                stop = min(n, start + 65536)
                images[start:stop] = pool[np.arange(start, stop) % len(pool)]
            images.flush()
            del images
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    SAVE_SCRIPT,
                    str(tmp / "images.npy"),
                    str(tmp / "thumbs.html"),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            save_s, rss = map(float, out.stdout.split())
            hover = float("nan")
            if driver:
                webgl_render(driver, tmp / "thumbs.html")
                hover = float(np.median([hover_ms(driver, i) for i in (5, 50_000, n - 7)]))
            rows.append(
                (
                    f"{n:,} points, 32 px thumbnails (memmap)",
                    save_s,
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    f"{rss:.2f}",
                    f"{hover:.0f}",
                )
            )
            # 50k: today's bokeh page against the webgl one, same data
            d = data(50_000)
            for kind in ("bokeh", "webgl"):
                v = explore(
                    d["points"],
                    images=d["images"],
                    labels=d["labels"],
                    predictions=d["logits"],
                    renderer=kind,
                )
                page = v.save(tmp / f"50k_{kind}.html", assets="folder")
                size = page.stat().st_size + sum(
                    f.stat().st_size for f in tmp.glob(f"50k_{kind}_files/*")
                )
                r = (
                    (first_render(driver, page) if kind == "bokeh" else webgl_render(driver, page))
                    if driver
                    else float("nan")
                )
                rows.append(
                    (
                        f"50,000 points, thumbnails, {kind}",
                        float("nan"),
                        size / 50_000,
                        r,
                        float("nan"),
                        "-",
                        "-",
                    )
                )
        finally:
            if driver is not None:
                driver.quit()
    print(
        "| what | save s | bytes/point | first render s | zoom redraw ms | peak RSS GB | hover ms |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for what, save_s, per, render, zoom, rss, hover in rows:
        fmt = lambda v, f: "-" if v != v else format(v, f)  # noqa: E731 - NaN shows as "-"
        print(
            f"| {what} | {fmt(save_s, '.1f')} | {fmt(per, ',.1f')} | {fmt(render, '.2f')} |"
            f" {fmt(zoom, '.0f')} | {rss} | {hover} |"
        )
    (b, wb), (w, ww) = [(r[3], r[2]) for r in rows[-2:]]
    print(f"\n50k webgl / bokeh (today's page): first render x{w / b:.2f}, bytes x{ww / wb:.2f}")


def thumbnails_32() -> np.ndarray:
    """(1000, 32, 32, 3) uint8 Shapes images (the 64 px ones, halved)."""
    from featviz.datasets import Shapes

    images, _ = Shapes(1000, random_state=1).tensors()
    small = 255 * torch.nn.functional.interpolate(
        images.float(), size=(32, 32), antialias=True, mode="bilinear"
    )
    return small.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def webgl_fixed() -> str:
    """The part of every webgl page that does not grow with N: the renderer's bundle."""
    from featviz._explorer_big import bundle

    return bundle()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1,000 points only")
    p.add_argument("--sizes", type=int, nargs="+", default=None)
    p.add_argument("--no-browser", action="store_true", help="skip the Chromium timing")
    p.add_argument("--large", action="store_true", help="the webgl renderer at 1M points")
    p.add_argument("--large-n", type=int, default=1_000_000)
    args = p.parse_args()
    if args.large:
        large(args.large_n)
        return
    sizes = args.sizes or ([1000] if args.quick else [1000, 10_000, 50_000])

    from featviz.explorer import explore

    base = len(explore(np.zeros((1, 2))).html().encode())
    print(f"fixed part of every page (bokeh JS inlined): {base / 1e6:.2f} MB")
    driver, why = (None, "--no-browser") if args.no_browser else browser()
    if driver is None:
        print(f"first render not measured: {why}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            for n in sizes:
                d = data(n)
                for setting, extra in (
                    ("thumbnails", {}),
                    ("+ gradcam", {"heatmaps": {"gradcam": d["cams"]}}),
                ):
                    t = time.perf_counter()
                    view = explore(
                        d["points"],
                        images=d["images"],
                        labels=d["labels"],
                        predictions=d["logits"],
                        **extra,
                    )
                    prep = time.perf_counter() - t
                    for assets in ("inline", "folder"):
                        path = view.save(tmp / f"{n}_{len(extra)}_{assets}.html", assets=assets)
                        page = path.stat().st_size
                        side = sum(f.stat().st_size for f in tmp.glob(f"{path.stem}_files/*"))
                        render = first_render(driver, path) if driver else float("nan")
                        what = f"{setting}, {assets}"
                        rows.append((n, what, prep, page, side, (page + side - base) / n, render))
                tb = tensorboard_bytes(d, tmp / str(n))
                nan = float("nan")
                rows.append((n, "TensorBoard projector assets", nan, nan, nan, tb, nan))
        finally:
            if driver is not None:
                driver.quit()
    print()
    print("| N | what | prepare s | page MB | folder MB | bytes/point | first render s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for n, what, prep, size, side, per, render in rows:
        fmt = lambda v, f: "-" if v != v else format(v, f)  # noqa: E731 - NaN shows as "-"
        cells = [f"{n:,}", what, fmt(prep, ".2f"), fmt(size / 1e6, ".1f")]
        cells += [fmt(side / 1e6, ".1f"), f"{per:,.0f}", fmt(render, ".2f")]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
