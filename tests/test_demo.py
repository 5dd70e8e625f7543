import re

from featviz.cli import main


def test_demo_writes_every_section_and_refuses_non_empty(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--out", str(out)]) == 0
    index = (out / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)]+)\)", index))
    written = {p.name for p in out.iterdir()} - {"index.md"}
    assert linked == written  # every file is listed, every listed file exists
    for title in (
        "Built-in data and model",
        "Class activation maps",
        "Feature maps and overlays",
        "Correlation heatmaps",
        "Projections",
        "Before/after comparisons",
        "Image format conversion",
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
