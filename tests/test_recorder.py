"""Recorder: training is bit-identical with and without it; storage; views; DDP rank."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from featviz.recorder import Recorder, align_procrustes


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(24, 3, 8, 8, generator=g), torch.randint(0, 3, (24,), generator=g)


def _tiny_cnn() -> nn.Module:
    from featviz.models import TinyCNN

    torch.manual_seed(0)
    return TinyCNN(num_classes=3, width=2)


def _train(recorder: bool, steps: int = 50, factory=_model, layers: str = "4") -> dict:
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002
    random.seed(0)
    model = factory()
    x, y = _data()
    next(model.parameters()).requires_grad_(False)  # a frozen parameter must stay frozen
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], 0.1, momentum=0.9)
    rec = Recorder(model, x[:6], labels=y[:6], layers=layers, every=5) if recorder else None
    for step in range(steps):
        idx = torch.randperm(24)[:8]  # the torch RNG drives batches and dropout
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        if rec is not None:
            rec.step(step)
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "torch_rng": torch.get_rng_state(),
        "np_rng": np.random.rand(),  # noqa: NPY002
        "py_rng": random.random(),
        "momentum": [s["momentum_buffer"].clone() for s in opt.state.values()],
        "records": None if rec is None else rec.steps_.tolist(),
    }


def test_builtin_tiny_cnn_trains_bit_identically_with_a_recorder():
    a, b = _train(False, 30, _tiny_cnn), _train(True, 30, _tiny_cnn, "features.13")
    assert b["records"] == list(range(0, 30, 5))
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    for ga, gb in zip(a["grads"], b["grads"], strict=True):
        assert (ga is None and gb is None) or torch.equal(ga, gb)
    assert a["requires_grad"] == b["requires_grad"]
    assert a["training"] == b["training"]
    assert torch.equal(a["torch_rng"], b["torch_rng"])


def test_training_is_bit_identical_with_a_recorder():
    a, b = _train(False), _train(True)
    assert b["records"] == list(range(0, 50, 5))
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    for ga, gb in zip(a["grads"], b["grads"], strict=True):
        assert (ga is None and gb is None) or torch.equal(ga, gb)
    for ma, mb in zip(a["momentum"], b["momentum"], strict=True):
        assert torch.equal(ma, mb)
    assert a["requires_grad"] == b["requires_grad"] == [False] + [True] * 9
    assert a["training"] == b["training"]
    assert all(a["training"])
    assert torch.equal(a["torch_rng"], b["torch_rng"])
    assert a["np_rng"] == b["np_rng"] and a["py_rng"] == b["py_rng"]


def test_eval_mode_model_stays_in_eval_mode():
    model = _model().eval()
    x, _ = _data()
    Recorder(model, x[:4], layers="4", every=1).step(0)
    assert not any(m.training for m in model.modules())


def _recorded(store=None, steps=(0, 1, 2)) -> Recorder:
    model = _model()
    x, y = _data()
    rec = Recorder(model, x[:5], labels=y[:5], layers="4", every=1, store=store)
    for s in steps:
        rec.step(s)
        with torch.no_grad():
            model[-1].weight.add_(0.5)  # the model changes between records
    return rec


def test_records_have_documented_shapes_and_values():
    rec = _recorded()
    assert rec.steps_.tolist() == [0, 1, 2]
    assert rec.heatmaps_["gradcam"].shape == (3, 5, 8, 8)
    assert rec.feature_maps_.shape == (3, 5, 8, 8)
    assert rec.outputs_.shape == (3, 5, 3)
    assert rec.features_.shape == (3, 5, 4)
    assert rec.layers_ == "4"
    # features are the spatial mean, feature maps the channel sum of the same activations
    model = _model()
    x, _ = _data()
    model.eval()
    with torch.no_grad():
        act = model[:5](x[:5])
        np.testing.assert_array_equal(rec.features_[0], act.mean((2, 3)).numpy())
        np.testing.assert_array_equal(rec.feature_maps_[0], act.sum(1).numpy())
        np.testing.assert_array_equal(rec.outputs_[0], model(x[:5]).numpy())
    assert not np.array_equal(rec.outputs_[0], rec.outputs_[1])
    # accuracy and confidence from the stored outputs
    probs = torch.from_numpy(rec.outputs_).softmax(-1)
    _, y = _data()
    acc = (probs.argmax(-1) == y[:5]).float().mean(-1).numpy()
    np.testing.assert_array_equal(rec._metrics()["accuracy"], acc)


def test_step_is_a_no_op_between_records_and_for_repeated_steps():
    model = _model()
    x, _ = _data()
    rec = Recorder(model, x[:3], layers="4", every=10)
    assert [rec.step(s) for s in (0, 3, 10, 10, 15)] == [True, False, True, False, False]
    assert rec.steps_.tolist() == [0, 10]


def test_store_round_trip_resume_and_crash(tmp_path):
    store = tmp_path / "rec"
    rec = _recorded(store, steps=(0, 1))
    rec.close()
    back = Recorder.open(store)
    np.testing.assert_array_equal(back.heatmaps_["gradcam"], rec.heatmaps_["gradcam"])
    np.testing.assert_array_equal(back.outputs_, rec.outputs_)
    np.testing.assert_array_equal(back.features_, rec.features_)
    assert torch.equal(back.probe_images, rec.probe_images)
    assert torch.equal(back.labels, rec.labels)
    with pytest.raises(RuntimeError, match="no model"):
        back.step(0)
    # a crashed record: its files written, the manifest not yet -> ignored, then replaced
    (store / "000000007-outputs.npy").write_bytes(b"half")
    again = _recorded(store, steps=(1, 2))  # resumed: step 1 is kept, step 2 appended
    assert again.steps_.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(again.outputs_[:2], rec.outputs_)
    again.close()
    assert Recorder.open(store).steps_.tolist() == [0, 1, 2]


def test_store_refuses_foreign_files_and_other_recorders(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="did not write"):
        _recorded(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep"
    store = tmp_path / "s"
    _recorded(store, steps=(0,)).close()
    x, _ = _data()
    with pytest.raises(ValueError, match="different"):
        Recorder(_model(), x[:5] + 1, layers="4", every=1, store=store)
    with pytest.raises(ValueError, match="labels: stored"):
        Recorder(_model(), x[:5], labels=[0, 0, 0, 0, 0], layers="4", every=1, store=store)
    with pytest.raises(FileNotFoundError, match="'store'"):
        Recorder.open(tmp_path / "none")


def test_store_crashed_before_its_probe_files_is_completed(tmp_path):
    store = tmp_path / "s"
    _recorded(store, steps=()).close()
    (store / "probe-images.npy").unlink()
    rec = _recorded(store, steps=(0,))
    rec.close()
    assert torch.equal(Recorder.open(store).probe_images, rec.probe_images)


def test_store_is_locked_while_a_recorder_writes(tmp_path):
    rec = _recorded(tmp_path / "s", steps=(0,))
    with pytest.raises(RuntimeError, match="being written"):
        _recorded(tmp_path / "s", steps=())
    rec.close()


def test_other_ranks_return_at_once(monkeypatch):
    import featviz.recorder as mod

    monkeypatch.setattr(mod, "dist_info", lambda: (1, 2))
    x, _ = _data()
    rec = Recorder(_model(), x[:3], layers="4", every=1)
    assert rec.step(0) is False
    monkeypatch.setattr(mod, "dist_info", lambda: (0, 2))
    assert rec.step(0) is True


def test_procrustes_aligns_a_rotated_flipped_copy_back():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(20, 2))
    t = 0.7
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ np.diag([1, -1])
    np.testing.assert_allclose(align_procrustes(pts @ rot + 3, pts), pts, atol=1e-12)


def test_projection_timeline_does_not_flip():
    rec = _recorded()
    feats = rec.features_
    # the same features negated (a PCA sign flip) give the same aligned picture
    rec._records.fields["features"] = [feats[0], -feats[0], feats[0] @ np.diag([1, -1, 1, 1])]
    pts = rec.projections()
    np.testing.assert_allclose(pts[1], pts[0], atol=1e-9)
    fixed = rec.projections("fixed")
    assert fixed.shape == (3, 5, 2)
    with pytest.raises(ValueError, match="'align'"):
        rec.projections("spin")


def test_views(tmp_path):
    from PIL import Image

    rec = _recorded()
    fig = rec.plot_timeline(index=[0, 2])
    assert len(fig.axes) == 6
    assert [a.get_title() for a in fig.axes[:3]] == ["step 0", "step 1", "step 2"]
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(shown, rec._overlays([0], "gradcam", 0)[0])
    ax = rec.plot_metrics()
    assert [line.get_label() for line in ax.lines] == ["confidence", "accuracy"]
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), rec._metrics()["accuracy"])
    assert len(rec.plot_projection_timeline().axes) == 3
    path = rec.animate(tmp_path / "a.gif", index=[0, 1])
    with Image.open(path) as im:
        # issue 23.7: 8 px tiles enlarged 16x to 128 px, under a 24 px caption strip
        assert im.n_frames == 3 and im.size == (2 * 128, 24 + 128)
    with pytest.raises(FileExistsError):
        rec.animate(tmp_path / "a.gif")
    with pytest.raises(ValueError, match="'index'"):
        rec.plot_timeline(index=[9])


def test_tensorboard_writer_gets_images_and_scalars():
    class Writer:
        def __init__(self):
            self.calls = []

        def add_images(self, tag, img, step, dataformats):
            self.calls.append((tag, img.shape, step, dataformats))

        def add_scalar(self, tag, value, step):
            self.calls.append((tag, round(value, 6), step))

    w = Writer()
    x, y = _data()
    rec = Recorder(_model(), x[:3], labels=y[:3], layers="4", every=1, writer=w)
    rec.step(4)
    acc = rec._metrics(-1)
    assert w.calls == [
        ("featviz/gradcam", (3, 8, 8, 3), 4, "NHWC"),
        ("featviz/confidence", round(acc["confidence"], 6), 4),
        ("featviz/accuracy", round(acc["accuracy"], 6), 4),
    ]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"every": 0}, "'every'"),
        ({"methods": ("nope",)}, "'methods'"),
        ({"projection": "lda"}, "'projection'"),
        ({"labels": [1, 2]}, "'labels'"),
    ],
)
def test_bad_arguments(kw, match):
    x, _ = _data()
    with pytest.raises(ValueError, match=match):
        Recorder(_model(), x[:3], layers="4", **kw)


class _Noisy(nn.Module):
    """Draws from every global RNG in each forward pass, also in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        np.random.rand()  # noqa: NPY002
        random.random()
        return x + 0 * torch.rand_like(x)


def test_rng_states_are_restored_when_the_model_draws_in_eval_mode():
    model = nn.Sequential(_Noisy(), *_model())
    x, y = _data()
    rec = Recorder(model, x[:3], labels=y[:3], layers="5", every=1)
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002
    random.seed(3)
    rec.step(0)
    after = (torch.rand(2), np.random.rand(), random.random())  # noqa: NPY002
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002
    random.seed(3)
    assert torch.equal(after[0], torch.rand(2))
    assert after[1:] == (np.random.rand(), random.random())  # noqa: NPY002


def _ddp_worker(rank: int, store: str, init: str, results: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        x, _ = _data()
        rec = Recorder(_model(), x[:3], layers="4", every=1, store=store)
        made = [rec.step(s) for s in (0, 1)]
        rec.close()
        Path(results, f"rank{rank}.txt").write_text(repr(made))
    finally:
        dist.destroy_process_group()


def test_ddp_only_rank_0_records_with_gloo(tmp_path):
    import torch.multiprocessing as mp

    store = tmp_path / "store"
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_ddp_worker, args=(str(store), init, str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "rank0.txt").read_text() == "[True, True]"
    assert (tmp_path / "rank1.txt").read_text() == "[False, False]"
    assert Recorder.open(store).steps_.tolist() == [0, 1]


# ------------------------------------------------------------------ issue 22: the store
def test_closed_recorder_refuses_to_write(tmp_path):
    store = tmp_path / "s"
    first = _recorded(store, steps=(0,))
    first.close()
    second = _recorded(store, steps=(1,))  # another Recorder writes the store meanwhile
    with pytest.raises(RuntimeError, match="Recorder is closed"):
        first.step(2)
    second.close()
    assert Recorder.open(store).steps_.tolist() == [0, 1]  # nothing lost
    ram = _recorded(steps=(0,))
    ram.close()
    with pytest.raises(RuntimeError, match="Recorder is closed"):
        ram.step(1)
    assert ram.steps_.tolist() == [0]


def test_steps_with_ten_or_more_digits_round_trip(tmp_path):
    store = tmp_path / "s"
    steps = (3, 1_000_000_000, 12_345_678_901)
    rec = _recorded(store, steps=steps)
    rec.close()
    names = sorted(p.name for p in store.glob("*-outputs.npy"))
    assert names == ["000000003-outputs.npy", "1000000000-outputs.npy", "12345678901-outputs.npy"]
    assert Recorder.open(store).steps_.tolist() == list(steps)
    again = _recorded(store, steps=(12_345_678_902,))  # resumable: its files are its own
    again.close()
    assert Recorder.open(store).steps_.tolist() == [*steps, 12_345_678_902]


def test_changed_width_or_classes_are_refused_at_step(tmp_path):
    store = tmp_path / "s"
    model = _model()
    x, _ = _data()
    rec = Recorder(model, x[:5], layers="4", every=1, store=store)
    rec.step(0)
    model[-1] = nn.Linear(4, 7)  # 3 -> 7 classes
    with pytest.raises(ValueError, match=r"'outputs' has shape \(5, 7\).*\(5, 3\).*classes"):
        rec.step(1)
    model[-1] = nn.Linear(4, 3)
    model[4] = nn.Conv2d(4, 6, 3, padding=1)  # the recorded layer widens: 4 -> 6 features
    model[5] = nn.BatchNorm2d(6)
    model[-1] = nn.Linear(6, 3)
    with pytest.raises(ValueError, match=r"'features' has shape \(5, 6\).*\(5, 4\)"):
        rec.step(2)
    rec.close()
    back = Recorder.open(store)
    assert back.steps_.tolist() == [0] and back.outputs_.shape == (1, 5, 3)


def test_dropped_recorder_lock_is_taken_over_live_one_refused(tmp_path):
    store = tmp_path / "s"
    old = _recorded(store, steps=(0,))
    old.cycle = old  # unreachable only to the garbage collector, as in a notebook re-run
    del old
    new = _recorded(store, steps=(1,))  # not "being written by another Recorder"
    assert new.steps_.tolist() == [0, 1]
    with pytest.raises(RuntimeError, match=r"being written by another Recorder call"):
        _recorded(store, steps=())  # `new` is alive and open
    new.close()
    assert Recorder.open(store).steps_.tolist() == [0, 1]


@pytest.mark.parametrize("bad", ["a", None, 2.0, -1, True])
def test_step_refuses_values_that_are_not_steps(bad):
    x, _ = _data()
    rec = Recorder(_model(), x[:3], layers="4", every=1)
    with pytest.raises(ValueError, match=r"The 'step' parameter of Recorder.step must be an int"):
        rec.step(bad)
    assert rec.steps_.tolist() == []


@pytest.mark.parametrize(
    ("version", "found"), [("x", "'x'"), (None, "None"), (99, "version 99"), (1.5, "1.5")]
)
def test_open_manifest_with_bad_version_names_file_and_version(tmp_path, version, found):
    import json

    store = tmp_path / "s"
    _recorded(store, steps=(0,)).close()
    path = store / "recorder.json"
    man = json.loads(path.read_text())
    if version is None:
        del man["version"]
    else:
        man["version"] = version
    path.write_text(json.dumps(man))
    for call in (lambda: Recorder.open(store), lambda: _recorded(store, steps=())):
        with pytest.raises(ValueError, match=r"recorder\.json") as exc:
            call()
        assert found in str(exc.value)


def test_views_without_records_say_to_record_first(tmp_path):
    x, _ = _data()
    rec = Recorder(_model(), x[:3], layers="4", every=1)
    for view in (rec.plot_timeline, rec.plot_metrics, lambda: rec.animate(tmp_path / "a.gif")):
        with pytest.raises(ValueError, match="record at least one step first"):
            view()
    assert not (tmp_path / "a.gif").exists()


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"probe_images": "images"}, TypeError, "'probe_images'"),
        ({"probe_images": torch.zeros(3, 3, 8, 8, dtype=torch.long)}, ValueError, "float"),
        ({"labels": "abc"}, TypeError, "'labels'"),
        ({"labels": ["a", "b", "c"]}, TypeError, "'labels'"),
        ({"writer": "x"}, TypeError, "'writer'"),
        ({"store": 3}, TypeError, "'store'"),
    ],
)
def test_arguments_are_checked_at_construction(kw, error, match):
    x, _ = _data()
    args = {"probe_images": x[:3], **kw}
    with pytest.raises(error, match=match):
        Recorder(_model(), layers="4", every=1, **args)


def test_read_only_store_error_names_the_recorder(tmp_path, monkeypatch):
    import errno
    import os

    real = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OSError) as exc:
        _recorded(tmp_path / "s", steps=(0,))
    text = str(exc.value)
    assert "] Recorder: could not write rank00000.lock in the Recorder store " in text
    assert "Read-only file system" in text and "a folder this process can write" in text
    assert "extract" not in text and "free space" not in text


def test_temp_files_of_killed_writes_are_cleaned_on_open(tmp_path):
    store = tmp_path / "s"
    _recorded(store, steps=(0,)).close()
    temps = [".000000001-outputs.a1B2c3_4.tmp.npy", ".recorder.zz99yy88.tmp.json"]
    for name in temps:
        (store / name).write_bytes(b"half")
    rec = _recorded(store, steps=(1,))
    rec.close()
    assert not [n for n in temps if (store / n).exists()]
    assert Recorder.open(store).steps_.tolist() == [0, 1]


def test_symlinked_manifest_is_refused_not_decoded(tmp_path):
    store = tmp_path / "s"
    _recorded(store, steps=(0,)).close()
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(bytes(range(256)))  # not UTF-8
    (store / "recorder.json").unlink()
    (store / "recorder.json").symlink_to(target)
    with pytest.raises(ValueError, match="symbolic link"):
        Recorder.open(store)
    with pytest.raises(ValueError, match=r"recorder.json' is a symbolic link"):
        _recorded(store, steps=())
    assert target.read_bytes() == bytes(range(256))


def test_animation_and_projection_timeline_are_readable(tmp_path):
    """Issue 23.7: tiles enlarged under a caption strip; a legend, labels and a title."""
    from PIL import Image

    rec = _recorded()
    path = rec.animate(tmp_path / "a.gif", index=[0, 1])
    tiles = np.concatenate(list(rec._overlays([0, 1], "gradcam", 0)), axis=1)  # (8, 16, 3)
    with Image.open(path) as im:
        frame = np.asarray(im.convert("RGB")).astype(int)
    # 8 px tiles: enlarged 16x to 128 px, under a 24 px caption strip
    assert frame.shape == (24 + 128, 256, 3)
    image = frame[24:]
    expected = tiles.repeat(16, 0).repeat(16, 1).astype(int)
    assert np.abs(image - expected).mean() < 4  # the GIF palette rounds colours a little
    strip = frame[:24]
    assert (strip.min(-1) > 200).mean() > 0.8 and (strip.max(-1) < 100).any()  # text on white
    fig = rec.plot_projection_timeline(class_names=["a", "b", "c"])
    (legend,) = fig.legends
    present = sorted(set(rec.labels.tolist()))
    assert [t.get_text() for t in legend.get_texts()] == [["a", "b", "c"][i] for i in present]
    tab10 = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    import matplotlib.colors as mcolors

    (points,) = fig.axes[0].collections
    got = [mcolors.to_hex(c) for c in points.get_facecolors()]
    assert got == [tab10[i] for i in rec.labels.tolist()]
    assert [mcolors.to_hex(h.get_color()) for h in legend.legend_handles] == [
        tab10[i] for i in present
    ]
    assert fig.get_suptitle().startswith("pca of 4 features over training")
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("component 1", "component 2")


def test_plot_timeline_old_name_images_warns():
    rec = _recorded()
    with pytest.warns(FutureWarning, match="'images' parameter of Recorder.plot_timeline"):
        fig = rec.plot_timeline(images=[1])
    assert len(fig.axes) == 3  # one row, three records


def test_reopened_store_projects_with_the_runs_settings(tmp_path):
    model = _model()
    x, y = _data()
    kw = {"perplexity": 1.5}
    rec = Recorder(
        model, x[:5], labels=y[:5], layers="4", every=1, store=tmp_path / "s",
        projection="tsne", project_kwargs=kw, random_state=3,
    )  # fmt: skip
    for s in (0, 1):
        rec.step(s)
        with torch.no_grad():
            model[-1].weight.add_(0.5)
    rec.close()
    back = Recorder.open(tmp_path / "s")
    assert back.projection == "tsne" and dict(back.project_kwargs) == kw
    assert back.random_state == 3
    np.testing.assert_array_equal(back.projections(), rec.projections())
