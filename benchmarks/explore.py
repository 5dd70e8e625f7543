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

Usage: python benchmarks/explore.py [--quick] [--sizes N ...] [--no-browser]
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

    pool = Shapes(min(n, 1000), seed=1)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1,000 points only")
    p.add_argument("--sizes", type=int, nargs="+", default=None)
    p.add_argument("--no-browser", action="store_true", help="skip the Chromium timing")
    args = p.parse_args()
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
