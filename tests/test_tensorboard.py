"""featviz.to_tensorboard, read back with TensorBoard's own event reader and projector config."""

from __future__ import annotations

import io
import math
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("tensorboard", reason="to_tensorboard needs tensorboard (featviz[tensorboard])")

from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

import featviz.tensorboard as tb
from featviz.featuremaps import overlay
from featviz.tensorboard import to_tensorboard

COLOURS = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 0, 0]])


def solid(n: int, h: int, w: int) -> torch.Tensor:
    """(n, 3, h, w) uint8, image i one colour of COLOURS (exact under any resize)."""
    return COLOURS[torch.arange(n) % 5].to(torch.uint8)[:, :, None, None].expand(n, 3, h, w)


def projector(logdir) -> ProjectorConfig:
    config = ProjectorConfig()
    text_format.Parse((logdir / "projector_config.pbtxt").read_text(), config)
    return config


def test_embedding_metadata_and_sprite(tmp_path):
    feats = torch.arange(7 * 3, dtype=torch.float32).view(7, 3) / 4
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    out = to_tensorboard(
        tmp_path,
        features=feats,
        labels=labels,
        images=solid(7, 16, 16),
        class_names=["ant", "bee", "cat"],
        step=12,
        tag="emb",
    )
    assert out.logdir == tmp_path and out.rows.tolist() == list(range(7)) and out.sprite_size == 16
    (emb,) = projector(tmp_path).embeddings
    assert emb.tensor_name == "emb:00012"
    assert list(emb.sprite.single_image_dim) == [16, 16]
    folder = tmp_path / "00012" / "emb"
    assert emb.metadata_path == "00012/emb/metadata.tsv"
    names = ["ant", "bee", "cat", "ant", "bee", "cat", "ant"]
    assert (folder / "metadata.tsv").read_text().splitlines() == names
    tensors = np.loadtxt(folder / "tensors.tsv", delimiter="\t")
    np.testing.assert_array_equal(tensors, feats.numpy())
    sprite = np.asarray(Image.open(tmp_path / emb.sprite.image_path).convert("RGB"))
    side = math.ceil(math.sqrt(7)) * 16
    assert sprite.shape == (side, side, 3)
    for i in range(7):
        r, c = divmod(i, 3)
        tile = sprite[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16]
        assert (tile == COLOURS[i % 5].numpy()).all(), i


def test_two_metadata_columns_and_logits(tmp_path):
    logits = torch.tensor([[0.0, 2.0], [3.0, 1.0], [0.0, 1.0]])
    to_tensorboard(tmp_path, features=torch.zeros(3, 2), labels=["x", "y", "y"], predictions=logits)
    (emb,) = projector(tmp_path).embeddings
    assert not emb.sprite.image_path
    lines = (tmp_path / emb.metadata_path).read_text().splitlines()
    assert lines == ["label\tprediction", "x\t1", "y\t0", "y\t1"]


def test_sprite_size_fits_the_limit():
    assert tb._sprite_size(7, (224, 224), None) == 224
    # 5000 points: a 71 x 71 grid; 8192 // 71 = 115 px thumbnails, sprite 8165 px
    assert tb._sprite_size(5000, (224, 224), None) == 115
    assert 71 * 115 <= tb.SPRITE_LIMIT < 71 * 116
    assert tb._sprite_size(100_000, (64, 48), None) == 8192 // 317
    assert tb._sprite_size(10, (32, 32), 20) == 20


def test_too_many_points_are_subsampled_with_a_warning(tmp_path):
    feats = torch.arange(30, dtype=torch.float32).view(30, 1).expand(30, 2)
    with pytest.warns(UserWarning, match=r"embedding 10 of 30 points.*max_points=10"):
        out = to_tensorboard(tmp_path, features=feats, labels=np.arange(30), max_points=10)
    assert len(out.rows) == 10 and (np.diff(out.rows) > 0).all()
    (emb,) = projector(tmp_path).embeddings
    tensors = np.loadtxt(tmp_path / emb.tensor_path, delimiter="\t")
    np.testing.assert_array_equal(tensors[:, 0], out.rows)
    assert (tmp_path / emb.metadata_path).read_text().split() == [str(r) for r in out.rows]


def test_an_explicit_sprite_size_that_does_not_fit_subsamples(tmp_path, monkeypatch):
    monkeypatch.setattr(tb, "SPRITE_LIMIT", 64)  # a 64 px sprite holds 2 x 2 tiles of 32 px
    with pytest.warns(UserWarning, match=r"embedding 4 of 9 points.*64 px sprite of 32 px"):
        out = to_tensorboard(
            tmp_path, features=torch.zeros(9, 2), images=solid(9, 8, 8), sprite_size=32
        )
    assert len(out.rows) == 4
    (emb,) = projector(tmp_path).embeddings
    assert Image.open(tmp_path / emb.sprite.image_path).size == (64, 64)


def test_heatmap_overlays_as_images_at_the_step(tmp_path):
    images = torch.rand(5, 3, 12, 10)
    maps = torch.rand(5, 3, 3)
    out = to_tensorboard(tmp_path, images=images, heatmaps={"gradcam": maps}, step=7, max_images=3)
    assert out.image_tags == ["featviz/gradcam"] and out.rows.size == 0
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    (event,) = acc.Images("featviz/gradcam")
    assert event.step == 7
    grid = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
    assert grid.shape == (12, 30, 3)  # three images side by side
    expected = overlay(images[:3], maps[:3]).numpy()
    for i in range(3):
        np.testing.assert_array_equal(grid[:, i * 10 : (i + 1) * 10], expected[i])


def test_an_open_writer_stays_open(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(tmp_path) as writer:
        to_tensorboard(writer, heatmaps={"map": torch.rand(2, 4, 4)})
        writer.add_scalar("after", 1.0, 0)  # still usable
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["featviz/map"] and acc.Tags()["scalars"] == ["after"]


BAD = [
    (dict(writer=3, features=torch.zeros(2, 2)), TypeError, "'writer'"),
    (dict(), ValueError, "nothing to write"),
    (dict(features="abc"), TypeError, "'features'"),
    (dict(features=torch.zeros(3, 2), labels=[1, 2]), ValueError, r"'labels'.*N=3"),
    (
        dict(features=torch.zeros(3, 2), labels=[0, 1, 3], class_names=["a", "b"]),
        ValueError,
        r"'labels'.*\[0, 1\]",
    ),
    (dict(features=torch.zeros(3, 2), images=torch.zeros(2, 3, 4, 4)), ValueError, r"'images'"),
    (dict(features=torch.zeros(3, 2), step=-1), ValueError, r"'step'.*\[0, inf\). Got -1"),
    (dict(features=torch.zeros(3, 2), max_points=0), ValueError, "'max_points'"),
    (dict(features=torch.zeros(3, 2), sprite_size=0), ValueError, "'sprite_size'"),
    (dict(heatmaps=[torch.zeros(2, 3, 3)]), TypeError, "'heatmaps'"),
    (
        dict(features=torch.zeros(3, 2), heatmaps={"m": torch.zeros(2, 3, 3)}),
        ValueError,
        r"'heatmaps'.*N=3",
    ),
]


@pytest.mark.parametrize(("kwargs", "exc", "pattern"), BAD, ids=lambda v: None)
def test_bad_input_names_the_parameter(tmp_path, kwargs, exc, pattern):
    kwargs = dict(kwargs)
    target = kwargs.pop("writer", tmp_path)
    with pytest.raises(exc, match=pattern):
        to_tensorboard(target, **kwargs)


def test_missing_tensorboard_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install featviz\[tensorboard\]"):
        to_tensorboard(tmp_path, features=torch.zeros(2, 2))


def test_importing_the_module_does_not_import_tensorboard():
    import subprocess

    code = "import sys, featviz.tensorboard; print('tensorboard' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_writer_old_name_writer_or_logdir_warns(tmp_path):
    with pytest.warns(FutureWarning, match="'writer_or_logdir' parameter of to_tensorboard"):
        out = tb.to_tensorboard(writer_or_logdir=tmp_path / "run", features=torch.eye(3))
    assert out.logdir == tmp_path / "run" and (out.logdir / "projector_config.pbtxt").is_file()
