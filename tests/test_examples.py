"""Every script in examples/ runs with no required arguments (here in --fast mode)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [str(script), "--fast", "--out", str(out)])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(script), run_name="__main__")
    assert exc.value.code in (0, None)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written, f"{script.name} wrote nothing into --out"


def test_cam_example_help_names_fast_and_the_run_time(capsys, monkeypatch):
    script = next(p for p in EXAMPLES if p.stem == "cam")
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "--fast" in out and "6 minutes" in out and "under a minute" in out


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_output_folder_is_git_ignored(script):
    """Issue 23.9: the folders the examples write by default are not left as untracked."""
    import re
    import shutil
    import subprocess

    default = re.search(r"""default=(?:Path\()?["']([^"']+-out)["']""", script.read_text())
    assert default, f"{script.name}: no default --out folder"
    root = script.parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for where in (default.group(1), f"examples/{default.group(1)}"):
        done = subprocess.run(["git", "check-ignore", "-q", f"{where}/x.png"], cwd=root)
        assert done.returncode == 0, f"{where}/ is not ignored"
