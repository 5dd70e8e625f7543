"""The README's Python snippets run as written (except the one that needs user files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


@pytest.mark.slow
def test_readme_tour_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    runnable = [b for b in blocks if 'load_image("' not in b]  # those need the user's photos
    assert len(runnable) >= 7
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in runnable:
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "val-features").is_dir()
