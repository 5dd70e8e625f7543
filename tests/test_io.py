import os
import stat

import pytest

from featviz._io import atomic_path


def test_atomic_path_writes_with_umask_mode_and_cleans_up(tmp_path):
    target = tmp_path / "a.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".txt"
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    old = os.umask(0o022)
    os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_path_never_overwrites_and_keeps_bytes(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x")
    assert target.read_bytes() == b"user data"
    # a file that appears while the body runs is not clobbered either
    other = tmp_path / "b.bin"
    with pytest.raises(FileExistsError):
        with atomic_path(other) as tmp:
            tmp.write_bytes(b"mine")
            other.write_bytes(b"theirs")
    assert other.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


def test_atomic_path_error_in_body_leaves_nothing(tmp_path):
    target = tmp_path / "c.png"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_bad_destinations(tmp_path):
    with pytest.raises(IsADirectoryError, match="'path'"):
        with atomic_path(tmp_path):
            pass
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        with atomic_path(tmp_path / "missing" / "x.png"):
            pass
