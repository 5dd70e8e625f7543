"""The demo behind ``featviz demo``: every visualization featviz offers, in one folder.

Sections live in `featviz.demo_sections`, one module each, discovered at run time. A
section module defines ``ORDER`` (int, sort key), ``TITLE`` (str) and
``run(ctx: DemoContext) -> None``, and writes its files with `DemoContext.save_figure`
or `DemoContext.save_image`, which record them for ``index.md``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pkgutil
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from featviz._io import atomic_path
from featviz._validation import renamed
from featviz.demo_sections._context import DemoContext, DemoError

if TYPE_CHECKING:
    pass

__all__ = ["DemoContext", "DemoError", "run_demo"]

logger = logging.getLogger(__name__)


def _sections() -> list[Any]:
    from featviz import demo_sections

    modules = [
        importlib.import_module(f"featviz.demo_sections.{m.name}")
        for m in pkgutil.iter_modules(demo_sections.__path__)
        if not m.name.startswith("_")
    ]
    return sorted(modules, key=lambda m: (m.ORDER, m.__name__))


#: Marks a folder as a demo's unfinished staging folder, safe for a later run to delete.
_PARTIAL_MARK = ".featviz-demo-partial"


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DemoError(
            f"The 'out_dir' parameter of run_demo names a file, {str(out)!r}; pass a folder."
        )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DemoError(
            f"The 'out_dir' parameter of run_demo names a non-empty folder, {str(out)!r}; "
            "pass overwrite=True to write into it anyway."
        )
    if not out.parent.is_dir():
        raise DemoError(
            f"The 'out_dir' parameter of run_demo is in a folder that does not exist, "
            f"{str(out)!r}; create it first."
        )


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """Yield the folder the demo writes into, and finish or clean it up.

    That is ``out`` itself when it is a non-empty folder (``overwrite``), else a hidden
    staging folder beside it that becomes ``out`` only when every section succeeded.
    A failed or killed run leaves nothing in the way of the next one: the staging
    folder is removed on failure, and one left by a killed run (it holds
    `_PARTIAL_MARK`, so it is known to be ours) is removed at the next start.
    """
    if out.is_dir() and any(out.iterdir()):
        yield out
        return
    stage = out.parent / f".{out.name}.featviz-partial"
    if stage.is_dir() and (stage / _PARTIAL_MARK).is_file():
        shutil.rmtree(stage)
    try:
        stage.mkdir()
    except OSError as exc:
        raise DemoError(f"cannot write beside {str(out)!r}: {exc.strerror}") from exc
    (stage / _PARTIAL_MARK).touch()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    (stage / _PARTIAL_MARK).unlink()
    if out.is_dir():
        out.rmdir()  # empty (checked above); replaced by the finished folder
    os.replace(stage, out)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise DemoError(
            f"The 'device' parameter of run_demo must be a torch device usable here. Got "
            f"{str(device)!r} instead ({str(exc).splitlines()[0]}); use 'cpu', or 'cuda' on "
            "a machine with a GPU."
        ) from exc
    return dev


def _index(ctx: DemoContext, timings: list[tuple[str, float]]) -> str:
    lines = ["# featviz demo", "", f"Device: `{ctx.device}`. Written by `featviz demo`.", ""]
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
    return "\n".join(lines) + "\n"


def _markdown_html(text: str) -> str:
    """The demo's markdown notes as HTML: pipe tables and plain paragraphs (escaped).

    The notes are written by the demo sections (a caption line, then a table), so this
    renders exactly that subset: a browser shows a ``.md`` link as raw text.
    """
    from html import escape

    def inline(s: str) -> str:
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(s.strip()))

    out: list[str] = []
    table: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if table:
            out.append(_table_html(table, inline))
            table = []
        if line.strip():
            out.append(f"<p>{inline(line)}</p>")
    return "\n".join(out)


def _table_html(rows: list[list[str]], inline: Callable[[str], str]) -> str:
    """A markdown pipe table (header, ``---`` row, body) as an HTML table."""
    head, body = rows[0], rows[1:]
    aligns = []
    if body and all(re.fullmatch(r":?-{3,}:?", c) for c in body[0]):
        aligns = ["num" if c.endswith(":") else "" for c in body[0]]
        body = body[1:]
    th = "".join(f"<th>{inline(c)}</th>" for c in head)
    trs = []
    for row in body:
        tds = "".join(
            f'<td class="{aligns[i]}">{inline(c)}</td>'
            if i < len(aligns) and aligns[i]
            else f"<td>{inline(c)}</td>"
            for i, c in enumerate(row)
        )
        trs.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(trs)}</tbody></table>"


def _index_html(ctx: DemoContext) -> str:
    """The gallery as one page: figures inline, the explorer embedded, other files linked."""
    from html import escape

    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>featviz demo</title>',
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "img{max-width:100%}figure{margin:1em 0}figcaption{color:#444}"
        "iframe{width:100%;height:760px;border:1px solid #ccc}"
        "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;"
        "padding:.2em .5em}td.num{text-align:right}</style></head><body>",
        "<h1>featviz demo</h1>",
        f"<p>Device: <code>{escape(str(ctx.device))}</code>. Written by "
        "<code>featviz demo</code>; the same files are listed in "
        '<a href="index.md">index.md</a>.</p>',
    ]
    current = None
    for title, name, caption in ctx.items:
        if title != current:
            parts.append(f"<h2>{escape(title)}</h2>")
            current = title
        src, text = escape(name, quote=True), escape(caption)
        if name.endswith((".png", ".jpg", ".jpeg", ".webp", ".svg")):
            parts.append(
                f'<figure><img src="{src}" alt="{text}"><figcaption>{text}</figcaption></figure>'
            )
        elif name.endswith(".html"):
            parts.append(
                f'<p><a href="{src}">{src}</a>: {text}</p><iframe src="{src}" title="{text}">'
                "</iframe>"
            )
        elif name.endswith(".md") and (ctx.out_dir / name).is_file():
            body = _markdown_html((ctx.out_dir / name).read_text(encoding="utf-8"))
            parts.append(f'<section><p><a href="{src}">{src}</a>: {text}</p>{body}</section>')
        else:
            parts.append(f'<p><a href="{src}">{src}</a>: {text}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


@renamed(out="out_dir", force="overwrite")
def run_demo(
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    fast: bool = False,
    full: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Path:
    """Write every demo figure into ``out_dir``, with ``index.md`` and ``index.html``.

    ``index.html`` shows the figures and embeds the interactive explorer; it opens offline.

    The default size keeps a first run on 2 CPU cores well under 2 minutes, training of
    the built-in model included (50 s on an idle machine); ``full`` computes the scores
    over more images and steps. Until every section has succeeded the files go to a
    hidden staging folder beside ``out_dir``, so a failed run leaves ``out_dir`` as it
    was (with ``overwrite`` into a non-empty folder, files are written in place).

    Args:
        out_dir: Output folder; created if missing (its parent must exist).
        overwrite: Allow writing into a non-empty folder (files of the same name are replaced;
            nothing else is touched).
        fast: Fewer images and iterations (for tests and quick looks).
        full: Full-size scores (256 images for localisation, 64 x 16 steps for
            faithfulness); slower. Ignored with ``fast``.
        device: Torch device; default CUDA when available, else CPU.
        progress: Show which section runs and how far along the demo is (tqdm, stderr).

    Returns:
        Path of the written ``index.md``.

    Raises:
        DemoError: ``out_dir`` exists, is not empty, and ``overwrite`` is False;
            ``out_dir`` is a file; the device is not usable; or a section failed (the
            message names it; the original exception is chained as ``__cause__``).
    """
    from featviz._ops import progress_bar

    out = Path(out_dir)
    _check_out(out, overwrite)
    dev = _device(device)
    sections = _sections()
    timings: list[tuple[str, float]] = []
    with _staging(out) as folder:
        ctx = DemoContext(
            out_dir=folder,
            fast=fast,
            full=full and not fast,
            device=dev,
            overwrite=overwrite,
            progress=progress,
        )
        bar = progress_bar(sections, enabled=progress, desc="featviz demo", unit="section")
        for section in bar:
            ctx.section = section.TITLE
            bar.set_postfix_str(section.TITLE)
            start = time.perf_counter()
            logger.info("demo: %s", section.TITLE)
            try:
                section.run(ctx)
            except Exception as exc:
                raise DemoError(
                    f"section {section.TITLE!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
            timings.append((section.TITLE, time.perf_counter() - start))
        bar.close()
        with atomic_path(folder / "index.md", overwrite=True) as tmp:
            tmp.write_text(_index(ctx, timings), encoding="utf-8")
        with atomic_path(folder / "index.html", overwrite=True) as tmp:
            tmp.write_text(_index_html(ctx), encoding="utf-8")
    return out / "index.md"
