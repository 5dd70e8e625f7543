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


def _fail_at(step, monkeypatch, tmp_path):
    """Make one step of atomic_path fail the way the OS reports it (naming the temp file)."""
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        if step == "mkstemp":
            os.close(fd)
            os.unlink(name)
            raise PermissionError(13, "Permission denied", name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    if step == "chmod":
        monkeypatch.setattr(
            os, "chmod", lambda p, m: (_ for _ in ()).throw(PermissionError(1, "Not permitted", p))
        )
    if step in ("replace", "link"):

        def move(src, dst, *a, **k):
            raise OSError(28, "No space left on device", str(src), str(dst))

        monkeypatch.setattr(os, step, move)


@pytest.mark.parametrize(
    ("step", "overwrite", "kind", "why"),
    [
        ("mkstemp", False, PermissionError, "Permission denied"),
        ("chmod", False, PermissionError, "Not permitted"),
        ("replace", True, OSError, "No space left on device"),
        ("link", False, OSError, "No space left on device"),
    ],
)
def test_atomic_path_errors_name_the_destination_never_the_temp_file(
    tmp_path, monkeypatch, step, overwrite, kind, why
):
    target = tmp_path / "a.png"
    with monkeypatch.context() as m:
        _fail_at(step, m, tmp_path)
        with pytest.raises(kind) as info:
            with atomic_path(target, overwrite=overwrite) as tmp:
                tmp.write_bytes(b"x")
    assert str(info.value) == f"Cannot write {str(target)!r}: {why}."
    assert type(info.value) is kind and info.value.errno is not None
    assert info.value.__suppress_context__ and info.value.__cause__ is None
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_body_errors_naming_the_temp_file_are_rewritten(tmp_path):
    target = tmp_path / "b.jpg"
    with pytest.raises(OSError) as info:  # a writer's OSError about its file
        with atomic_path(target) as tmp:
            raise OSError(5, "Input/output error", str(tmp))
    assert str(info.value) == f"Cannot write {str(target)!r}: Input/output error."
    with pytest.raises(ValueError) as info2:  # a writer's message quoting the file
        with atomic_path(target) as tmp:
            raise ValueError(f"cannot encode {tmp} as JPEG")
    assert str(info2.value) == f"cannot encode {target} as JPEG"
    with pytest.raises(OSError) as info3:  # errors about other files pass unchanged
        with atomic_path(target):
            raise FileNotFoundError(2, "No such file or directory", "/elsewhere/in.png")
    assert info3.value.filename == "/elsewhere/in.png"
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_destination_appearing_is_named_and_kept(tmp_path):
    from featviz._io import DestinationAppeared

    target = tmp_path / "c.txt"
    with pytest.raises(DestinationAppeared) as info:
        with atomic_path(target, param="dst") as tmp:
            tmp.write_text("mine")
            target.write_text("theirs")
    assert str(info.value) == (
        f"The 'dst' parameter names an existing file {str(target)!r} (it appeared "
        "while writing); it was left as it is. Pass overwrite=True to replace it."
    )
    assert isinstance(info.value, FileExistsError) and info.value.errno == 17
    assert target.read_text() == "theirs"


def test_atomic_path_dangling_symlink_is_an_existing_destination(tmp_path):
    link = tmp_path / "d.png"
    os.symlink(tmp_path / "nowhere" / "x.png", link)
    with pytest.raises(FileExistsError, match=r"existing file.*overwrite=True"):
        with atomic_path(link) as tmp:
            tmp.write_bytes(b"x")
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["d.png"]
