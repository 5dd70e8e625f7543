"""featviz._model_cache: the one weights cache of the built-in models."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from featviz._model_cache import cached_model, default_cache_dir


def _net() -> nn.Module:
    return nn.Linear(2, 2)


def _trained() -> nn.Module:
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.fill_(3.0)
        net.bias.fill_(-1.0)
    return net


def _cached(tmp_path, train, **kw):
    args = {"classes": ("a", "b"), "cache": True, "cache_dir": tmp_path, "func": "f"} | kw
    return cached_model("net", {"w": 3}, _net, train, **args)


def test_trains_once_then_loads_the_same_weights(tmp_path):
    first = _cached(tmp_path, _trained)
    (file,) = tmp_path.glob("net-*.pt")
    again = _cached(tmp_path, lambda: pytest.fail("trained again"))
    assert torch.equal(again.weight, first.weight) and not again.training
    assert again.classes == ("a", "b")
    assert file.name == f"net-{file.name[4:20]}.pt" and len(file.name) == len("net-.pt") + 16


def test_another_recipe_is_another_file(tmp_path):
    _cached(tmp_path, _trained)
    cached_model("net", {"w": 4}, _net, _trained, classes=(), cache=True, cache_dir=tmp_path,
                 func="f")  # fmt: skip
    assert len(list(tmp_path.glob("net-*.pt"))) == 2


def test_a_corrupt_file_is_retrained_and_replaced(tmp_path):
    _cached(tmp_path, _trained)
    (file,) = tmp_path.glob("net-*.pt")
    file.write_bytes(b"not a checkpoint")
    model = _cached(tmp_path, _trained)
    assert float(model.weight.detach()[0, 0]) == 3.0
    assert file.read_bytes()[:2] == b"PK"  # a torch zip archive again


def test_an_unwritable_cache_fails_before_training(tmp_path, monkeypatch):
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match=r"'cache_dir' parameter of f names .* nothing"):
        _cached(tmp_path, lambda: pytest.fail("trained before the check"))


def test_no_cache_trains_and_writes_nothing(tmp_path):
    model = _cached(tmp_path, _trained, cache=False)
    assert float(model.bias.detach()[0]) == -1.0 and not list(tmp_path.iterdir())


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FEATVIZ_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FEATVIZ_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "featviz"
    assert os.fspath(default_cache_dir()).endswith("featviz")
