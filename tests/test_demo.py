import re
import warnings

import numpy as np
import pytest
import torch

from featviz.cli import main


def test_demo_writes_every_section_and_refuses_non_empty(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--quiet", "--out", str(out)]) == 0
    index = (out / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)]+)\)", index))
    written = {p.name for p in out.iterdir()} - {"index.md", "index.html"}
    assert linked == written  # every file is listed, every listed file exists
    page = (out / "index.html").read_text(encoding="utf-8")
    assert set(re.findall(r'(?:src|href)="([^"]+)"', page)) - {"index.md"} == written
    assert '<iframe src="explore.html"' in page
    for title in (
        "Built-in data and model",
        "Class activation maps",
        "Vision transformer (random weights)",
        "Object detector (random weights)",
        "Feature maps and overlays",
        "Correlation heatmaps",
        "Projections",
        "Before/after comparisons",
        "Image format conversion",
        "Interactive explorer",
        "Watching a model learn",
    ):
        assert f"## {title}" in index
    assert {"vit_gradcam.png", "detector_gradcam.png"} <= written
    assert all((out / name).stat().st_size > 0 for name in written)
    assert f"wrote {out}" in capsys.readouterr().out

    # a non-empty folder is refused without --force, and left untouched
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["demo", "--fast", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "pass --overwrite" in err and "overwrite=True" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _run_real_model_sections(out):
    """Run the ViT and detector sections alone; return the context and the drawn arrays."""
    import torch

    from featviz.demo import DemoContext
    from featviz.demo_sections import detection, vit

    out.mkdir()
    ctx = DemoContext(out_dir=out, fast=True)
    drawn = {}
    save_figure = ctx.save_figure

    def keep_arrays(fig, name, caption, **kw):
        # the heatmap column of plot_overlays: axes 1, 4, 7, ...
        drawn[name] = [np.asarray(ax.images[0].get_array()) for ax in fig.axes[1::3]]
        return save_figure(fig, name, caption, **kw)

    ctx.save_figure = keep_arrays
    before = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sections' output is clean
        for section in (vit, detection):
            ctx.section = section.TITLE
            section.run(ctx)
    assert torch.equal(torch.get_rng_state(), before)  # seeded locally, global RNG untouched
    return ctx, drawn


def test_vit_and_detector_sections_name_their_layer_and_are_reproducible(tmp_path):
    ctx, drawn = _run_real_model_sections(tmp_path / "a")
    vit_item, det_item = ctx.items
    assert [vit_item[1], det_item[1]] == ["vit_gradcam.png", "detector_gradcam.png"]
    # the automatic choice for torchvision's ViT: the first norm of the last (6th) block,
    # its 1 + 14 * 14 tokens (224 / 16 = 14) losing the class token
    assert "chose encoder.layers.encoder_layer_5.ln_1 " in vit_item[2]
    assert "tokens[:, 1:] -> (N, C, 14, 14)" in vit_item[2]
    assert "layer backbone.body.16" in det_item[2]
    assert all("weights are random" in item[2] for item in ctx.items)
    # the detector's random-weight maps are noise-level: said in the caption, not warned
    assert "noise-level (NearZeroMapWarning)" in det_item[2]
    # random weights still give maps that are not all zero (torchvision's zero ViT head would)
    assert [len(v) for v in drawn.values()] == [2, 2]  # --fast: the two photos
    for heatmaps in drawn.values():
        assert all(h.max() > 0.5 and h.std() > 0.01 for h in heatmaps)
    # the same figures again, byte for byte
    _run_real_model_sections(tmp_path / "b")
    for name in ("vit_gradcam.png", "detector_gradcam.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_demo_refuses_a_file_as_out(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert main(["demo", "--out", str(target)]) == 1
    assert target.read_text() == "keep me"


def _fake_sections(monkeypatch, fail_at: str | None):
    """Replace the demo's sections by two quick ones; the one titled fail_at raises."""
    import types

    import featviz.demo

    def section(title: str):
        def run(ctx):
            if title == fail_at:
                raise RuntimeError("boom")
            ctx.save_image(np.zeros((4, 4, 3), np.uint8), f"{title}.png", title)

        return types.SimpleNamespace(ORDER=0, TITLE=title, run=run)

    monkeypatch.setattr(featviz.demo, "_sections", lambda: [section("one"), section("two")])


def test_failed_demo_leaves_nothing_in_the_way(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    _fake_sections(monkeypatch, fail_at="two")
    assert main(["demo", "--quiet", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    # one line, naming the section, no traceback
    assert err.count("\n") == 1 and "section 'two' failed" in err and "boom" in err
    assert "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging folder left either

    # the same command again now succeeds
    _fake_sections(monkeypatch, fail_at=None)
    assert main(["demo", "--quiet", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "index.md", "one.png", "two.png"]


def test_failed_demo_into_an_existing_empty_folder_keeps_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    out.mkdir()
    _fake_sections(monkeypatch, fail_at="one")
    assert main(["demo", "--quiet", "--out", str(out)]) == 1
    assert out.is_dir() and not any(out.iterdir())
    _fake_sections(monkeypatch, fail_at=None)
    assert main(["demo", "--quiet", "--out", str(out)]) == 0


def test_killed_demo_staging_folder_is_cleared_by_the_next_run(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    stage = tmp_path / ".demo.featviz-partial"
    stage.mkdir()
    (stage / ".featviz-demo-partial").touch()
    (stage / "half.png").write_bytes(b"x")
    _fake_sections(monkeypatch, fail_at=None)
    assert main(["demo", "--quiet", "--out", str(out)]) == 0
    assert not stage.exists()
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "index.md", "one.png", "two.png"]


def test_foreign_folder_with_the_staging_name_is_not_deleted(tmp_path, capsys, monkeypatch):
    stage = tmp_path / ".demo.featviz-partial"
    stage.mkdir()
    (stage / "mine.txt").write_text("user data")
    _fake_sections(monkeypatch, fail_at=None)
    assert main(["demo", "--quiet", "--out", str(tmp_path / "demo")]) == 1
    assert (stage / "mine.txt").read_text() == "user data"
    assert "cannot write beside" in capsys.readouterr().err


def test_verbose_demo_failure_prints_the_traceback(tmp_path, capsys, monkeypatch):
    _fake_sections(monkeypatch, fail_at="one")
    assert main(["-v", "demo", "--quiet", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err


def test_demo_bad_device_is_one_line(tmp_path, capsys):
    assert main(["demo", "--quiet", "--device", "bogus", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device must be" in err and "'bogus'" in err
    assert not (tmp_path / "d").exists()


def test_run_demo_old_parameter_names_warn_and_work(tmp_path, monkeypatch):
    from featviz.demo import run_demo

    _fake_sections(monkeypatch, fail_at=None)
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.warns(FutureWarning) as record:
        assert run_demo(out=out, force=True) == out / "index.md"
    said = " ".join(str(r.message) for r in record)
    assert "'out' parameter of run_demo is renamed 'out_dir'" in said
    assert "'force' parameter of run_demo is renamed 'overwrite'" in said
    assert {"one.png", "two.png", "index.md", "keep.txt"} <= {p.name for p in out.iterdir()}


def test_the_recorder_section_leaves_the_global_rng_as_it_was(tmp_path):
    from featviz.demo import DemoContext
    from featviz.demo_sections import recorder

    ctx = DemoContext(out_dir=tmp_path, device=torch.device("cpu"), fast=True)
    before = torch.random.get_rng_state()
    recorder.run(ctx)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_index_html_shows_markdown_notes_as_tables(tmp_path, monkeypatch):
    """Issue 23.9: the browser showed cam_scores.md as raw markdown; the page renders it."""
    import types

    import featviz.demo

    def run(ctx):
        path = ctx.note("scores.md", "Scores of <every> method")
        path.write_text(
            "Scored on `16` images.\n\n| method | score (higher) |\n| --- | ---: |\n"
            "| gradcam | 0.5 |\n| a<b | 1.0 |\n",
            encoding="utf-8",
        )

    section = types.SimpleNamespace(ORDER=0, TITLE="Notes", run=run)
    monkeypatch.setattr(featviz.demo, "_sections", lambda: [section])
    out = tmp_path / "demo"
    assert main(["demo", "--quiet", "--out", str(out)]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert '<a href="scores.md">scores.md</a>: Scores of &lt;every&gt; method' in page
    assert "<p>Scored on <code>16</code> images.</p>" in page
    assert (
        "<table><thead><tr><th>method</th><th>score (higher)</th></tr></thead><tbody>"
        '<tr><td>gradcam</td><td class="num">0.5</td></tr>'
        '<tr><td>a&lt;b</td><td class="num">1.0</td></tr></tbody></table>'
    ) in page
    assert "| --- |" not in page
