"""The built docs site works with no network: its maths renderer, fonts and scripts ship with it.

Builds the site once with ``mkdocs build --strict`` (skips without mkdocs), checks the HTML and
CSS for references to other hosts, then opens the pages with formulas in headless Chromium with
the network off (the system Chromium and chromedriver, as in tests/test_browser.py; skips
without them) and checks that every formula is typeset, every font and script came from the
site's own files, and no page links to a repository that is not configured.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("mkdocs", reason="the docs tests need mkdocs (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]
MATHS_PAGES = ["cam", "correlation", "projection", "conversion", "models"]
REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)  # http://, https://, //
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
FONT_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)")
RAW_TEX = ("\\(", "\\)", "\\[", "\\]", "$$", "\\frac")
pytestmark = pytest.mark.slow


from _chromium import CHROMIUM, DRIVER, chrome  # noqa: E402  (the tests folder is on sys.path)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs built as CI builds them, with no repository URL configured."""
    out = tmp_path_factory.mktemp("site")
    env = {k: v for k, v in os.environ.items() if k != "FEATVIZ_DOCS_REPO_URL"}
    env["NO_MKDOCS_2_WARNING"] = "1"
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


class _References(HTMLParser):
    """Every URL an HTML page makes the browser load (not the links a reader may follow)."""

    LOADED: ClassVar[dict[str, str]] = {
        "script": "src",
        "img": "src",
        "iframe": "src",
        "source": "src",
        "link": "href",
    }

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in self.LOADED and values.get(self.LOADED[tag]):
            self.loaded.append(values[self.LOADED[tag]] or "")
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")


def _references(page: Path) -> _References:
    parser = _References()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _local_file(site: Path, page: Path, url: str) -> Path:
    """The file of ``site`` that ``url``, written in ``page``, names."""
    path = unquote(urlsplit(url).path)
    # 404.html is served from any folder, so its paths start at the site's root
    target = (site / path[1:] if path.startswith("/") else page.parent / path).resolve()
    return target / "index.html" if target.is_dir() else target


def test_pages_load_only_files_of_the_site(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    remote, missing = [], []
    for page in pages:
        for url in _references(page).loaded:
            where = (page.relative_to(site).as_posix(), url)
            if REMOTE.match(url):
                remote.append(where)
            elif not url.startswith(LOCAL_SCHEMES) and not _local_file(site, page, url).is_file():
                missing.append(where)
    assert remote == []
    assert missing == []
    cam = _references(site / "cam" / "index.html").loaded
    assert "../javascripts/mathjax/tex-mml-chtml.js" in cam
    assert cam.index("../javascripts/mathjax-config.js") < cam.index(
        "../javascripts/mathjax/tex-mml-chtml.js"
    )


def test_stylesheets_fetch_no_fonts_or_imports_from_another_host(site: Path) -> None:
    sheets = sorted(site.rglob("*.css"))
    assert sheets, "the theme's stylesheets are missing"
    found = []
    for sheet in sheets:
        text = sheet.read_text(encoding="utf-8")
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", text) + re.findall(
            r"@import\s+['\"]([^'\"]+)", text
        ):
            if REMOTE.match(url):
                found.append((sheet.relative_to(site).as_posix(), url))
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        found += [
            (page.name, u) for u in re.findall(r"url\(\s*['\"]?((?:https?:)?//[^'\")]+)", text)
        ]
    assert found == []


def test_mathjax_is_copied_from_the_package_with_its_fonts_and_licence(site: Path) -> None:
    spec = importlib.util.spec_from_file_location("featviz_docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    root = hooks.mathjax_root()
    copied = site / "javascripts" / "mathjax"
    bundle = copied / "tex-mml-chtml.js"
    assert bundle.read_bytes() == (root / "es5" / "tex-mml-chtml.js").read_bytes()
    assert (copied / "LICENSE").read_bytes() == (root / "LICENSE").read_bytes()
    assert "Apache License" in (copied / "LICENSE").read_text(encoding="utf-8")
    fonts = sorted(p.name for p in (copied / "output/chtml/fonts/woff-v2").iterdir())
    assert "MathJax_Main-Regular.woff" in fonts and "MathJax_Math-Italic.woff" in fonts
    assert (copied / "input/tex/extensions/boldsymbol.js").is_file()  # autoloaded by \boldsymbol


def test_no_repository_link_unless_configured(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mkdocs.config import load_config

    links = [u for p in site.rglob("*.html") for u in _references(p).links]
    assert links
    assert [u for u in links if urlsplit(u).hostname in {"github.com", "www.github.com"}] == []
    assert "md-source" not in (site / "index.html").read_text(encoding="utf-8")

    monkeypatch.delenv("FEATVIZ_DOCS_REPO_URL", raising=False)
    assert load_config(str(ROOT / "mkdocs.yml"))["repo_url"] is None
    monkeypatch.setenv("FEATVIZ_DOCS_REPO_URL", "https://example.org/team/featviz")
    config = load_config(str(ROOT / "mkdocs.yml"))
    assert (config["repo_url"], config["repo_name"]) == (
        "https://example.org/team/featviz",
        "Example",
    )


@pytest.fixture(scope="module")
def offline_browser() -> Any:
    """Headless Chromium with the network off: offline emulation, and no host name resolves."""
    if CHROMIUM is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or FEATVIZ_CHROMIUM)")
    if DRIVER is None:
        pytest.skip("no chromedriver (apt-get install chromium-driver, or FEATVIZ_CHROMEDRIVER)")
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="the browser tests need selenium (pip install selenium)"
    )
    options = webdriver.ChromeOptions()
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = chrome(options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        driver.set_script_timeout(60)
        yield driver
    finally:
        driver.quit()


TYPESET = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) {
  done("no MathJax");
  return;
}
MathJax.startup.promise.then(() => document.fonts.ready)
  .then(() => done("ok"), (e) => done(String(e)));
"""

STATE = """
const inCode = (n) => n.parentElement.closest("pre, code, script, style, mjx-container");
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const text = [];
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (!inCode(n) && n.parentElement.getClientRects().length) text.push(n.data);
}
const maths = [...document.querySelectorAll(".arithmatex")];
const fontRules = [];
for (const sheet of document.styleSheets) {
  let rules = [];
  try { rules = [...sheet.cssRules]; } catch (e) { continue; }
  for (const r of rules) {
    if (r instanceof CSSFontFaceRule) fontRules.push(r.style.getPropertyValue("src"));
  }
}
return {
  text: text.join(" "),
  maths: maths.length,
  untypeset: maths.filter((e) => !e.querySelector("mjx-container")).length,
  containers: document.querySelectorAll("mjx-container").length,
  errors: document.querySelectorAll("mjx-merror, [data-mjx-error]").length,
  resources: performance.getEntriesByType("resource").map((e) => e.name),
  attributes: [...document.querySelectorAll("script[src], img[src], iframe[src], link[href]")]
    .map((e) => e.src || e.href),
  links: [...document.querySelectorAll("a[href]")].map((e) => e.href),
  fonts: [...document.fonts].map((f) => [f.family, f.status]),
  fontRules: fontRules,
};
"""


def _requests(driver: Any) -> list[str]:
    """Every URL the browser asked for since the last call (Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _open_typeset(driver: Any, page: Path) -> dict[str, Any]:
    _requests(driver)  # drop what earlier pages asked for
    driver.get(page.as_uri())
    started = time.monotonic()
    assert driver.execute_async_script(TYPESET) == "ok"
    state: dict[str, Any] = driver.execute_script(STATE)
    state["seconds"] = time.monotonic() - started
    state["requests"] = _requests(driver)
    return state


@pytest.mark.parametrize("name", MATHS_PAGES)
def test_formulas_render_offline_from_local_files(
    offline_browser: Any, site: Path, name: str
) -> None:
    state = _open_typeset(offline_browser, site / name / "index.html")

    assert state["maths"] > 0
    assert state["untypeset"] == 0
    assert state["containers"] >= state["maths"]
    assert state["errors"] == 0
    assert [t for t in RAW_TEX if t in state["text"]] == []

    # Chrome's log of every request the page made (resource timing lists none for file://)
    assert any(u.endswith("/javascripts/mathjax/tex-mml-chtml.js") for u in state["requests"])
    assert any(u.endswith("/woff-v2/MathJax_Main-Regular.woff") for u in state["requests"])
    urls = state["resources"] + state["attributes"] + state["requests"]
    assert [u for u in urls if not u.startswith(LOCAL_SCHEMES)] == []
    assert [u for u in state["links"] if urlsplit(u).hostname == "github.com"] == []
    font_urls = [u for src in state["fontRules"] for u in re.findall(FONT_URL, src)]
    assert font_urls, "MathJax declared no fonts"
    assert [u for u in font_urls if REMOTE.match(u) and not u.startswith("file:")] == []
    assert [f for f in state["fonts"] if f[1] == "error"] == []
    # MathJax's TeX fonts (upright and italic) came from the site's copy, with the network off
    loaded = {family for family, status in state["fonts"] if status == "loaded"}
    assert {"MJXTEX", "MJXTEX-I"} <= loaded, state["fonts"]


def test_screenshot_of_the_cam_page_offline(
    offline_browser: Any, site: Path, tmp_path: Path
) -> None:
    """A picture of typeset formulas: to $FEATVIZ_SCREENSHOTS (or tmp) as docs-cam-offline.png."""
    _open_typeset(offline_browser, site / "cam" / "index.html")
    first = offline_browser.find_element("css selector", "div.arithmatex mjx-container")
    offline_browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", first)
    time.sleep(0.5)  # the theme's header swaps its title on scroll, with a short fade
    folder = Path(os.environ.get("FEATVIZ_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "docs-cam-offline.png"
    assert offline_browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
