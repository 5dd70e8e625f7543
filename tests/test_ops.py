"""featviz._ops: the shared primitives every module rests on (tested directly)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from featviz import _ops


# -- grad mode ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_grad_enabled_inside_grad_off_modes(mode):
    w = torch.ones(3, requires_grad=True)
    with mode():
        with _ops.grad_enabled():
            x = _ops.autograd_input(torch.arange(3.0))
            (g,) = torch.autograd.grad((w * x).sum(), w)
        assert not torch.is_grad_enabled()
    assert torch.equal(g, torch.arange(3.0))


def test_autograd_input_clones_only_inference_tensors():
    x = torch.ones(2)
    assert _ops.autograd_input(x) is x
    with torch.inference_mode():
        y = torch.ones(2)
    z = _ops.autograd_input(y)
    assert y.is_inference() and not z.is_inference() and torch.equal(y, z)


def test_check_autograd_model_names_the_parameter():
    with torch.inference_mode():
        model = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match=r"'weight'.*inference_mode"):
        _ops.check_autograd_model(model, "grad_cam")
    _ops.check_autograd_model(nn.Linear(2, 2), "grad_cam")  # normal model: no error


# -- eval mode ---------------------------------------------------------------------------
def test_eval_mode_restores_every_flag_also_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Sequential(nn.BatchNorm1d(2)))
    model.train()
    model[1].eval()  # mixed flags must come back exactly
    before = [m.training for m in model.modules()]
    with pytest.raises(KeyError), _ops.eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise KeyError("boom")
    assert [m.training for m in model.modules()] == before
    with _ops.eval_mode(model, enabled=False):
        assert [m.training for m in model.modules()] == before


# -- min-max -----------------------------------------------------------------------------
def test_minmax_exact_values_per_item_and_joint():
    t = torch.tensor([[[0.0, 1.0], [2.0, 4.0]], [[-1.0, -1.0], [1.0, 3.0]]])
    per = _ops.minmax(t)
    assert torch.equal(per[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(per[1], torch.tensor([[0.0, 0.0], [0.5, 1.0]]))
    joint = _ops.minmax(t, per_item=False)
    assert torch.equal(joint[0], torch.tensor([[0.2, 0.4], [0.6, 1.0]]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("value", [0.0, 1e-8, 3.0, -7.5, 6e4])
def test_minmax_constant_maps_are_zeros_in_every_dtype(dtype, value):
    t = torch.full((2, 3, 3), value, dtype=dtype)
    out = _ops.minmax(t)
    assert out.dtype == dtype
    assert torch.equal(out, torch.zeros_like(out))


def test_minmax_is_scale_invariant_for_tiny_ranges():
    # maps at 1e-15 (EfficientNet-like near-zero gradients) are still real maps
    t = torch.tensor([[[1e-15, 2e-15], [3e-15, 5e-15]]], dtype=torch.float64)
    assert torch.allclose(_ops.minmax(t), _ops.minmax(t * 1e15))


def test_minmax_non_finite_values_are_ignored_with_a_warning():
    t = torch.tensor([[[1.0, float("nan")], [3.0, float("inf")]], [[float("-inf")] * 2] * 2])
    with pytest.warns(RuntimeWarning, match=r"6 non-finite value\(s\).*heatmap"):
        out = _ops.minmax(t, what="heatmap")
    assert torch.equal(out[0], torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))  # no finite value at all


def test_minmax_integer_input_and_input_untouched():
    t = torch.tensor([[0, 5, 10]], dtype=torch.uint8)
    out = _ops.minmax(t)
    assert out.dtype == torch.float32 and torch.equal(out, torch.tensor([[0.0, 0.5, 1.0]]))
    assert torch.equal(t, torch.tensor([[0, 5, 10]], dtype=torch.uint8))


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    ),
    st.sampled_from([torch.float16, torch.float32, torch.float64]),
)
def test_minmax_property_always_in_unit_range_never_nan(a, dtype):
    t = torch.from_numpy(a).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = _ops.minmax(t)
    assert out.shape == t.shape and out.dtype == dtype
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    finite = torch.isfinite(t)
    assert bool((out[~finite] == 0).all())


# -- finite_or_zero ----------------------------------------------------------------------
def test_finite_or_zero():
    t = torch.tensor([1.0, 2.0])
    assert _ops.finite_or_zero(t) is t
    with pytest.warns(RuntimeWarning, match=r"2 non-finite.*map"):
        out = _ops.finite_or_zero(torch.tensor([float("nan"), 2.0, float("inf")]))
    assert torch.equal(out, torch.tensor([0.0, 2.0, 0.0]))


# -- resize ------------------------------------------------------------------------------
def test_resize_matches_interpolate_for_every_rank():
    x = torch.rand(2, 3, 5, 7)
    ref = F.interpolate(x, size=(9, 4), mode="bilinear", align_corners=False)
    assert torch.equal(_ops.resize(x, (9, 4)), ref)
    assert torch.equal(_ops.resize(x[0], (9, 4)), ref[0])
    assert torch.equal(_ops.resize(x[0, 0], (9, 4)), ref[0, 0])
    assert _ops.resize(x, (5, 7)) is x


def test_resize_half_on_cpu_computes_in_float32():
    x = torch.rand(1, 4, 4)
    out = _ops.resize(x.half(), (8, 8))
    assert out.dtype == torch.float16
    assert torch.allclose(out.float(), _ops.resize(x.half().float(), (8, 8)), atol=1e-3)


# ------------------------------------------------------------------ user_stacklevel
def test_warnings_point_at_the_users_line():
    """Every featviz warning names the caller's file, however deep featviz's machinery is."""
    import featviz
    from featviz.cam import CAM

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 36, 2)
    )
    x = torch.rand(2, 3, 6, 6)
    calls = {
        "grad_cam auto layer": lambda: featviz.grad_cam(model, x),
        "CAM auto layer": lambda: CAM(model)(x),
        "renamed parameter": lambda: featviz.grad_cam(model, x, layer="0"),
        "CAM in a with block": lambda: _in_with_block(CAM(model), x),
        "capture, layer not run": lambda: _capture_unused(model, x),
    }
    for what, call in calls.items():
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            call()
        assert record, what
        assert {r.filename for r in record} == {__file__}, (what, [r.filename for r in record])


def _in_with_block(cam, x):
    with cam:
        return cam(x)


def _capture_unused(model, x):
    import featviz

    class Branchy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = model
            self.unused = torch.nn.ReLU()

        def forward(self, t):
            return self.body(t)

    net = Branchy()
    with featviz.capture(net, "unused"):
        net(x)


# -- progress bars -----------------------------------------------------------------------
BAR = (
    "from featviz._ops import progress_bar\n"
    "for _ in progress_bar(range(3), desc='work'): pass\n"
    "for _ in progress_bar(range(3), enabled=False, desc='off'): pass\n"
)


def test_progress_bars_only_on_a_terminal(tmp_path):
    """Issue 23.9: redirected to a log, a bar wrote 254 lines of ESC[A; now nothing."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    log = tmp_path / "log.txt"
    with log.open("w") as f:
        subprocess.run([sys.executable, "-c", BAR], stderr=f, env=env, check=True)
    assert log.read_text() == ""
    # on a terminal the bar is drawn (and the disabled one is not)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 cols
    try:
        subprocess.run([sys.executable, "-c", BAR], stderr=follower, env=env, check=True)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert b"work: 100%" in seen and b"off" not in seen
