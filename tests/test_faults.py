"""The new surfaces under fault: each test is named after the class of defect it guards.

Data loss (an earlier export or a user's file gone), silently wrong output (a corrupt
TSV, a class that never matches, a NaN shown as a number), crashes on names of earlier
releases, unclear errors (temporary names, late failures) and inputs that fall through
every list. Each class is fixed in its shared layer (`featviz._io`, `featviz._images`,
the TensorBoard embedding writer, the explorer's folder writer), so the tests drive the
public functions.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import featviz
from featviz import explore, save_image
from featviz.convert import convert_images

tb = pytest.importorskip("tensorboard", reason="to_tensorboard needs tensorboard")

from google.protobuf import text_format  # noqa: E402
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig  # noqa: E402

from featviz.tensorboard import to_tensorboard  # noqa: E402


def projector(logdir) -> ProjectorConfig:
    config = ProjectorConfig()
    text_format.Parse((logdir / "projector_config.pbtxt").read_text(), config)
    return config


def solid(n: int) -> torch.Tensor:
    """(n, 3, 8, 8) uint8 images, image i grey level 20 * i."""
    return (torch.arange(n) * 20).to(torch.uint8)[:, None, None, None].expand(n, 3, 8, 8)


def no_temp_names(root) -> bool:
    return not [p for p in root.rglob("*") if ".tmp" in p.name or p.name.endswith(".old")]


# ----------------------------------------------------------------------------- data loss
def test_data_loss_tensorboard_exports_never_replace_earlier_ones(tmp_path):
    feats = {k: torch.full((3, 2), float(k)) for k in range(4)}
    out0 = to_tensorboard(tmp_path, features=feats[0], labels=[0, 1, 2], step=0)
    out1 = to_tensorboard(tmp_path, features=feats[1], labels=[1, 1, 1], step=1)
    out2 = to_tensorboard(tmp_path, features=feats[2], step=1)  # same step, new writer
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(tmp_path) as writer:  # one open writer, twice at one step
        out3 = to_tensorboard(writer, features=feats[3], step=1)
        out4 = to_tensorboard(writer, features=feats[3] + 1, step=1)
    names = [out.embedding for out in (out0, out1, out2, out3, out4)]
    assert names == [
        "featviz:00000",
        "featviz:00001",
        "featviz:00001-2",
        *["featviz:00001-3", "featviz:00001-4"],
    ]
    embeddings = projector(tmp_path).embeddings
    assert [e.tensor_name for e in embeddings] == names
    assert [e.tensor_path for e in embeddings] == [
        "00000/featviz/tensors.tsv",
        "00001/featviz/tensors.tsv",
        "00001/featviz-2/tensors.tsv",
        "00001/featviz-3/tensors.tsv",
        "00001/featviz-4/tensors.tsv",
    ]
    for e, value in zip(embeddings, [0, 1, 2, 3, 4], strict=True):
        np.testing.assert_array_equal(
            np.loadtxt(tmp_path / e.tensor_path, delimiter="\t"), np.full((3, 2), value)
        )
    assert (tmp_path / embeddings[0].metadata_path).read_text() == "0\n1\n2\n"
    assert (tmp_path / embeddings[1].metadata_path).read_text() == "1\n1\n1\n"
    assert not embeddings[2].metadata_path
    assert no_temp_names(tmp_path)


def test_data_loss_tensorboard_damaged_config_is_refused_before_writing(tmp_path):
    (tmp_path / "projector_config.pbtxt").write_text("embeddings { nonsense")
    with pytest.raises(ValueError, match=r"projector_config.pbtxt.*cannot be read.*Nothing"):
        to_tensorboard(tmp_path, features=torch.zeros(2, 2))
    assert (tmp_path / "projector_config.pbtxt").read_text() == "embeddings { nonsense"
    assert not (tmp_path / "00000").exists()


def test_data_loss_explorer_save_replaces_only_files_the_page_owns(tmp_path):
    view = explore(np.zeros((3, 2)), images=solid(3))
    page = view.save(tmp_path / "p.html", assets="folder")
    folder = tmp_path / "p_files"
    assert sorted(p.name for p in folder.iterdir()) == ["detail0_0.webp", "thumb_0.webp"]
    # a user's sub-folder, even one named like a sheet, and a link: refused and kept
    for name in ("thumb_1.webp", "mine"):
        (folder / name).mkdir()
        (folder / name / "keep.txt").write_text("mine")
        with pytest.raises(FileExistsError, match=rf"did not write \(\['{name}'\]\)"):
            view.save(page, assets="folder", overwrite=True)
        assert (folder / name / "keep.txt").read_text() == "mine"
        (folder / name / "keep.txt").unlink()
        (folder / name).rmdir()
    os.symlink(tmp_path / "elsewhere.webp", folder / "detail0_1.webp")
    with pytest.raises(FileExistsError, match=r"detail0_1\.webp"):
        view.save(page, assets="folder", overwrite=True)
    (folder / "detail0_1.webp").unlink()
    # the page's own sheets are replaced; nothing else is left behind
    view.save(page, assets="folder", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.html", "p_files"]
    assert (folder / "thumb_0.webp").read_bytes() == view.thumbnails.sheets[0]


def test_data_loss_inline_resave_removes_only_the_old_sheets(tmp_path):
    view = explore(np.zeros((3, 2)), images=solid(3))
    page = view.save(tmp_path / "p.html", assets="folder")
    view.save(page, assets="inline", overwrite=True)  # the folder was the page's alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.html"]
    assert "data:image/webp" in page.read_text(encoding="utf-8")
    view.save(page, assets="folder", overwrite=True)
    # a file the user added later than the page: the sheets go, the file and folder stay
    (tmp_path / "p_files" / "notes.txt").write_text("mine")
    view.save(page, assets="inline", overwrite=True)
    assert [p.name for p in (tmp_path / "p_files").iterdir()] == ["notes.txt"]
    # without overwrite a folder is never touched
    (tmp_path / "q_files").mkdir()
    (tmp_path / "q_files" / "thumb_0.webp").write_bytes(b"old")
    view.save(tmp_path / "q.html", assets="inline")
    assert (tmp_path / "q_files" / "thumb_0.webp").read_bytes() == b"old"


# ------------------------------------------------------------------------ silently wrong
def test_silently_wrong_metadata_cells_never_split(tmp_path):
    labels = ["a\tb", "c\nd", "e\rf", "g\r\nh", "plain", "x"]
    to_tensorboard(tmp_path / "one", features=torch.zeros(6, 2), labels=labels)
    (emb,) = projector(tmp_path / "one").embeddings
    text = (tmp_path / "one" / emb.metadata_path).read_text()
    assert text.split("\n") == ["a b", "c d", "e f", "g  h", "plain", "x", ""]
    # class names with breaks, two columns: one header and one line per point
    names = ["cat\tdog", "new\nline", "ok"]
    to_tensorboard(
        tmp_path / "two",
        features=torch.zeros(3, 2),
        labels=[0, 1, 2],
        predictions=[2, 1, 0],
        class_names=names,
    )
    (emb,) = projector(tmp_path / "two").embeddings
    lines = (tmp_path / "two" / emb.metadata_path).read_text().split("\n")
    assert lines == ["label\tprediction", "cat dog\tok", "new line\tnew line", "ok\tcat dog", ""]


def test_silently_wrong_float_labels_are_classes_everywhere(tmp_path):
    labels = np.array([0.0, 1.0, 2.0, 1.0])
    logits = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [0, 3.0, 0], [0, 0, 3.0]])
    view = explore(np.zeros((4, 2)), labels=labels, predictions=logits)
    assert view.data["label"] == ["0", "1", "2", "1"]
    assert view.data["correct"] == ["correct", "correct", "wrong", "wrong"]
    view = explore(np.zeros((4, 2)), labels=torch.tensor(labels), predictions=[0.0, 1, 2, 2])
    assert view.data["correct"] == ["correct", "correct", "correct", "wrong"]
    named = explore(np.zeros((4, 2)), labels=labels, class_names=["a", "b", "c"])
    assert named.data["label"] == ["a", "b", "c", "b"]
    to_tensorboard(tmp_path, features=torch.zeros(4, 2), labels=labels, predictions=logits.double())
    (emb,) = projector(tmp_path).embeddings
    lines = (tmp_path / emb.metadata_path).read_text().splitlines()
    assert lines == ["label\tprediction", "0\t0", "1\t1", "2\t1", "1\t2"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_silently_wrong_non_finite_logits_and_confidence_refused_alike(tmp_path, bad):
    logits = torch.tensor([[1.0, 0.0], [bad, 0.0], [0.0, 1.0]])
    wording = r"must be finite \(no NaN or inf\)\. Got 1 row\(s\) with NaN or inf \(rows \[1\]\)"
    with pytest.raises(ValueError, match=rf"'predictions' parameter of explore {wording}"):
        explore(np.zeros((3, 2)), predictions=logits)
    with pytest.raises(ValueError, match=rf"'confidence' parameter of explore {wording}"):
        explore(np.zeros((3, 2)), confidence=[0.5, bad, 0.5])
    with pytest.raises(ValueError, match=rf"'predictions' parameter of to_tensorboard {wording}"):
        to_tensorboard(tmp_path, features=torch.zeros(3, 2), predictions=logits)
    assert list(tmp_path.iterdir()) == []


def test_silently_wrong_non_finite_features_refused_before_writing(tmp_path):
    feats = torch.zeros(4, 3)
    feats[2, 1] = float("nan")
    feats[3, 0] = float("-inf")
    with pytest.raises(
        ValueError, match=r"'features'.*2 row\(s\) with NaN or inf \(rows \[2, 3\]\)"
    ):
        to_tensorboard(tmp_path, features=feats, heatmaps={"m": torch.rand(4, 3, 3)})
    assert list(tmp_path.iterdir()) == []  # not even the heatmaps' event file


def test_silently_wrong_float_images_in_0_255_warn_in_explore():
    images = solid(3).float()  # 0..40, read as [0, 1] and clipped
    with pytest.warns(UserWarning, match=r"'images' parameter of explore holds floats up to 40"):
        view = explore(np.zeros((3, 2)), images=images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = explore(np.zeros((3, 2)), images=images / 255)
    assert view.thumbnails is not None and same.thumbnails is not None


# -------------------------------------------------------------------------------- crashes
def test_crash_old_constructor_keywords_warn_and_work():
    kw = {"frame": None, "method": "pca", "engine": "sklearn", "seconds": 0.0}
    with pytest.warns(FutureWarning, match=r"'embedding_' parameter of Projection.*'embedding'"):
        p = featviz.Projection(embedding_=np.ones((2, 2)), explained_variance_ratio=None, **kw)
    assert p.embedding.tolist() == [[1, 1], [1, 1]]
    with pytest.warns(FutureWarning, match=r"'explained_variance_ratio_'"):
        p = featviz.Projection(
            embedding=np.ones((2, 2)), explained_variance_ratio_=np.array([0.5]), **kw
        )
    assert p.explained_variance_ratio.tolist() == [0.5]
    with pytest.raises(TypeError, match="both 'embedding_'"):
        featviz.Projection(
            embedding=np.ones(2), embedding_=np.ones(2), explained_variance_ratio=None, **kw
        )
    from featviz.demo import DemoContext

    with pytest.warns(FutureWarning) as record:
        ctx = DemoContext(out="x", force=True)
    assert [str(w.message).split(";")[0] for w in record] == [
        "The 'out' parameter of DemoContext is renamed 'out_dir'",
        "The 'force' parameter of DemoContext is renamed 'overwrite'",
    ]
    assert ctx.out_dir == "x" and ctx.overwrite is True


# ------------------------------------------------------------------------- unclear errors
def _deny_mkstemp(monkeypatch):
    real = tempfile.mkstemp

    def deny(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        os.close(fd)
        os.unlink(name)
        raise PermissionError(13, "Permission denied", name)

    monkeypatch.setattr(tempfile, "mkstemp", deny)


def test_unclear_error_save_image_onto_a_dangling_symlink(tmp_path):
    link = tmp_path / "p.png"
    os.symlink(tmp_path / "gone" / "x.png", link)
    with pytest.raises(FileExistsError) as info:
        save_image(np.zeros((4, 4), np.uint8), link)
    assert str(info.value) == (
        f"The 'path' parameter names an existing file {str(link)!r}; "
        "pass overwrite=True to replace it."
    )
    assert link.is_symlink() and no_temp_names(tmp_path)
    save_image(np.zeros((4, 4), np.uint8), link, overwrite=True)  # the link is replaced
    assert not link.is_symlink() and Image.open(link).size == (4, 4)


def test_unclear_error_explorer_save_names_the_page_or_its_folder(tmp_path, monkeypatch):
    view = explore(np.zeros((2, 2)), images=solid(2))
    (tmp_path / "p_files").write_text("a file")
    with pytest.raises(NotADirectoryError, match=r"'assets' parameter.*p_files.*is a file"):
        view.save(tmp_path / "p.html", assets="folder")
    with pytest.raises(NotADirectoryError, match=r"'assets'"):
        view.save(tmp_path / "p.html", assets="folder", overwrite=True)
    assert (tmp_path / "p_files").read_text() == "a file"
    (tmp_path / "p_files").unlink()
    with monkeypatch.context() as m:
        _deny_mkstemp(m)
        with pytest.raises(PermissionError) as info:
            view.save(tmp_path / "p.html")
    assert str(info.value) == f"Cannot write {str(tmp_path / 'p.html')!r}: Permission denied."

    def deny_mkdtemp(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".p_files.ab12cd"))

    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkdtemp", deny_mkdtemp)
        with pytest.raises(PermissionError) as info:
            view.save(tmp_path / "p.html", assets="folder")
    assert str(info.value) == f"Cannot write {str(tmp_path / 'p_files')!r}: Permission denied."
    assert list(tmp_path.iterdir()) == []


def test_unclear_error_cli_cam_into_an_unwritable_folder(tmp_path, monkeypatch, capsys):
    from featviz.cli import main

    png = tmp_path / "img.png"
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(png)
    out = tmp_path / "out"
    out.mkdir()
    featviz.models.pretrained_tiny_cnn()  # in the cache before writes are denied
    _deny_mkstemp(monkeypatch)
    assert main(["cam", str(png), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Permission denied" in err and str(out) in err and ".tmp" not in err
    assert list(out.iterdir()) == []


def test_unclear_error_unwritable_model_cache_fails_before_training(tmp_path, monkeypatch):
    import featviz.models as models

    def no_training(**kwargs):
        raise AssertionError("trained although the cache cannot be written")

    monkeypatch.setattr(models, "train_tiny_cnn", no_training)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(OSError, match=r"'cache_dir' parameter.*'.*file/c'.*cache=False"):
        models.pretrained_tiny_cnn(random_state=9, n_train=64, cache_dir=blocked / "c")
    monkeypatch.setenv("FEATVIZ_CACHE", str(tmp_path))
    with monkeypatch.context() as m:
        _deny_mkstemp(m)
        cold = r"FEATVIZ_CACHE.*\(Permission denied\); nothing was"
        with pytest.raises(PermissionError, match=cold):
            models.pretrained_tiny_cnn(random_state=9, n_train=64)
    assert list(tmp_path.iterdir()) == [blocked]


def test_unclear_error_read_only_cache_holding_the_model_still_loads(tmp_path, monkeypatch):
    import featviz.models as models

    kw = {"random_state": 4, "epochs": 1, "n_train": 64, "cache_dir": tmp_path}
    first = models.pretrained_tiny_cnn(**kw)
    _deny_mkstemp(monkeypatch)  # a read-only cache from now on
    monkeypatch.setattr(models, "train_tiny_cnn", lambda **k: pytest.fail("retrained"))
    again = models.pretrained_tiny_cnn(**kw)
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------- minor
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_minor_every_conversion_input_lands_in_exactly_one_list(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((4, 4, 3), 9, np.uint8)).save(folder / "good.png")
    os.mkfifo(folder / "pipe.png")
    os.symlink("/dev/zero", folder / "zero.png")
    os.symlink(folder / "missing.png", folder / "broken.png")
    (folder / "notes.txt").write_text("x")
    report = convert_images(folder, "webp", progress=False)
    outcomes = {
        "converted": [str(src.name) for src, _ in report.converted],
        "skipped": [(src.name, why) for src, why in report.skipped],
        "failed": [(src.name, why) for src, why in report.failed],
    }
    assert outcomes == {
        "converted": ["good.png"],
        "skipped": [
            ("notes.txt", "not an image file (suffix '.txt')"),
            ("pipe.png", "not a regular file (a named pipe); never read"),
            ("zero.png", "not a regular file (a character device); never read"),
        ],
        "failed": [
            ("broken.png", f"a symbolic link to a missing file: {str(folder / 'broken.png')!r}")
        ],
    }
    # given directly, the same outcomes
    direct = convert_images([folder / "pipe.png", folder / "zero.png"], "webp", progress=False)
    assert [why for _, why in direct.skipped] == [
        "not a regular file (a named pipe); never read",
        "not a regular file (a character device); never read",
    ]


def test_minor_to_tensorboard_refuses_arguments_it_would_ignore(tmp_path):
    maps = {"m": torch.rand(2, 3, 3)}
    with pytest.raises(ValueError, match=r"'labels'.*together with 'features'.*Got labels without"):
        to_tensorboard(tmp_path, heatmaps=maps, labels=[0, 1])
    with pytest.raises(ValueError, match=r"'predictions'.*together with 'features'"):
        to_tensorboard(tmp_path, heatmaps=maps, predictions=[0, 1])
    with pytest.raises(ValueError, match=r"'class_names'.*'labels' or 'predictions'"):
        to_tensorboard(tmp_path, features=torch.zeros(2, 2), class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"'sprite_size'.*'features' and 'images'"):
        to_tensorboard(tmp_path, features=torch.zeros(2, 2), sprite_size=16)
    with pytest.raises(ValueError, match=r"'mean'.*together with 'images'.*leave mean out"):
        to_tensorboard(tmp_path, features=torch.zeros(2, 2), mean=[0.5] * 3, std=[0.2] * 3)
    assert list(tmp_path.iterdir()) == []
