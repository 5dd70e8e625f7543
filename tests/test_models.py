import pytest
import torch

from featviz.datasets import Shapes
from featviz.models import TinyCNN, cache_dir, pretrained_tiny_cnn


def test_layer_names_and_shapes():
    model = TinyCNN(num_classes=5, width=4)
    names = dict(model.named_modules())
    assert isinstance(names["features.0"], torch.nn.Conv2d)
    assert isinstance(names["features.13"], torch.nn.ReLU)
    assert isinstance(names["fc"], torch.nn.Linear)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
        assert model.features(torch.zeros(1, 3, 32, 32)).shape == (1, 16, 8, 8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        TinyCNN(num_classes=0)


def test_pretrained_accuracy(tiny_model, shapes_test):
    images, labels = shapes_test.tensors()
    with torch.no_grad():
        acc = (tiny_model(images).argmax(1) == labels).float().mean().item()
    assert acc >= 0.95
    assert not tiny_model.training
    assert tiny_model.classes == shapes_test.classes


def test_cache_reload_does_not_train_and_is_identical(tiny_model, monkeypatch):
    import featviz.models

    def no_training(**kw):
        raise AssertionError("the cached model was retrained")

    monkeypatch.setattr(featviz.models, "train_tiny_cnn", no_training)
    again = pretrained_tiny_cnn()
    ref, new = tiny_model.state_dict(), again.state_dict()
    for (k, a), (_, b) in zip(ref.items(), new.items(), strict=True):
        assert torch.equal(a, b), k


def test_trained_and_loaded_models_look_the_same(tmp_path):
    # a cold cache (trained now) and a warm one (loaded) must give the same object state
    kw = {"random_state": 3, "epochs": 1, "n_train": 64, "cache_dir": tmp_path}
    for model in (pretrained_tiny_cnn(**kw), pretrained_tiny_cnn(**kw)):
        assert all(p.grad is None for p in model.parameters())
        assert all(p.requires_grad for p in model.parameters())
        assert not any(m.training for m in model.modules())
        assert model.classes == Shapes(1).classes


def test_cache_file_gets_the_umask_mode(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        pretrained_tiny_cnn(random_state=2, epochs=1, n_train=64, cache_dir=tmp_path)
    finally:
        os.umask(old)
    (f,) = tmp_path.iterdir()
    assert f.stat().st_mode & 0o777 == 0o644


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FEATVIZ_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path


def test_training_is_deterministic_and_cached_atomically(tmp_path):
    kw = {"random_state": 5, "epochs": 1, "n_train": 128, "cache_dir": tmp_path}
    a = pretrained_tiny_cnn(**kw)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("tiny_cnn-") and files[0].endswith(".pt")
    b = pretrained_tiny_cnn(**kw, cache=False)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), k
    # a corrupt cache file is replaced by a retrained one
    (tmp_path / files[0]).write_bytes(b"not a checkpoint")
    c = pretrained_tiny_cnn(**kw)
    assert torch.equal(c.fc.weight, a.fc.weight)
    assert (tmp_path / files[0]).read_bytes()[:2] == b"PK"
    # a different recipe is a different file
    pretrained_tiny_cnn(**{**kw, "random_state": 6})
    assert len(list(tmp_path.iterdir())) == 2


def test_training_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    pretrained_tiny_cnn(random_state=1, epochs=1, n_train=64, cache=False)
    assert torch.equal(state, torch.random.get_rng_state())
    Shapes(2)  # data creation uses its own generator too
    assert torch.equal(state, torch.random.get_rng_state())
