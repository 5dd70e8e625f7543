import re

import numpy as np

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
        "Feature maps and overlays",
        "Correlation heatmaps",
        "Projections",
        "Before/after comparisons",
        "Image format conversion",
        "Interactive explorer",
        "Watching a model learn",
    ):
        assert f"## {title}" in index
    assert all((out / name).stat().st_size > 0 for name in written)
    assert f"wrote {out}" in capsys.readouterr().out

    # a non-empty folder is refused without --force, and left untouched
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["demo", "--fast", "--out", str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


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
    assert err.count("\n") == 1 and "--device 'bogus'" in err
    assert not (tmp_path / "d").exists()
