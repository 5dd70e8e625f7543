"""Tests for featviz.hooks: layer resolution, hooks, gradients, cleanup, to_numpy."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from conftest import _HOOK_DICTS, assert_no_hooks, no_hooks
from featviz.hooks import capture, hookable, resolve_layers, to_numpy, unwrap_model


# ------------------------------------------------------------------ tiny fixed-weight models
def ones_conv_net() -> nn.Sequential:
    """conv(1->2, 3x3, weights: channel 0 all +1, channel 1 all -1, no bias) -> in-place ReLU
    -> flatten -> linear(2 -> 1, weights (1, 2), bias 0)."""
    conv = nn.Conv2d(1, 2, 3, bias=False)
    lin = nn.Linear(2, 1, bias=True)
    with torch.no_grad():
        conv.weight[0].fill_(1.0)
        conv.weight[1].fill_(-1.0)
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
        lin.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(inplace=True), nn.Flatten(), lin)


class TupleNet(nn.Module):
    """enc returns a tuple (x + 1, x * 2); head returns {"a": sum, "b": difference}."""

    class Enc(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x + 1, x * 2

    class Head(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"a": a + b, "b": a - b}

    class Lst(nn.Module):
        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [x, -x]

    def __init__(self) -> None:
        super().__init__()
        self.enc = self.Enc()
        self.head = self.Head()
        self.lst = self.Lst()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.enc(x)
        d = self.head(a, b)
        return self.lst(d["a"])[1] + d["b"]


# ------------------------------------------------------------------ resolution
def test_resolve_names_globs_types_and_modules(tiny_model):
    got = resolve_layers(tiny_model, ["features.13", "fc"])
    assert list(got) == ["features.13", "fc"]
    assert got["fc"] is tiny_model.fc
    relus = resolve_layers(tiny_model, "features.*")
    assert list(relus) == [f"features.{i}" for i in range(14)]
    convs = resolve_layers(tiny_model, nn.Conv2d)
    assert list(convs) == ["features.0", "features.4", "features.8", "features.11"]
    assert list(resolve_layers(tiny_model, tiny_model.features[8])) == ["features.8"]
    # duplicates collapse, order of first mention kept
    assert list(resolve_layers(tiny_model, ["fc", "f?", nn.Linear])) == ["fc"]


def test_resolve_unwraps_dataparallel_and_accepts_module_prefix(tiny_model):
    wrapped = nn.DataParallel(tiny_model)
    assert unwrap_model(wrapped) is tiny_model
    a = resolve_layers(wrapped, ["module.features.13", "features.2"])
    assert list(a) == ["features.13", "features.2"]
    assert a["features.13"] is tiny_model.features[13]
    with capture(wrapped, "module.fc") as cap:
        out = wrapped(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(cap.activations["fc"], out)
    assert_no_hooks(tiny_model)


def test_unknown_name_lists_closest_valid_names(tiny_model):
    with pytest.raises(ValueError, match=r"'features\.133'.*Closest valid names: 'features\.13'"):
        resolve_layers(tiny_model, "features.133")
    with pytest.raises(ValueError, match="matches no module"):
        resolve_layers(tiny_model, "layer*.relu")
    with pytest.raises(ValueError, match="type LSTM matches no module"):
        resolve_layers(tiny_model, nn.LSTM)
    with pytest.raises(ValueError, match="not part of"):
        resolve_layers(tiny_model, nn.ReLU())
    with pytest.raises(ValueError, match="empty"):
        resolve_layers(tiny_model, [])
    with pytest.raises(TypeError, match="Got int"):
        resolve_layers(tiny_model, [3])
    with pytest.raises(TypeError, match="not a subclass"):
        resolve_layers(tiny_model, int)
    with pytest.raises(TypeError, match=r"torch.nn.Module"):
        capture("model", "fc")  # type: ignore[arg-type]


# ------------------------------------------------------------------ values
def test_activations_by_hand_and_not_altered_by_inplace_relu():
    net = ones_conv_net()
    x = torch.ones(1, 1, 3, 3)
    x[0, 0, 0, 0] = 4.0  # sum of the window: 8 + 4 = 12
    with capture(net, ["0", "1", "3"], inputs=True) as cap:
        y = net(x)
    # conv: channel 0 = +12, channel 1 = -12 (the in-place ReLU after it must not alter it)
    torch.testing.assert_close(cap.activations["0"], torch.tensor([[[[12.0]], [[-12.0]]]]))
    # the ReLU's input was recorded before it ran in place: still negative
    torch.testing.assert_close(cap.inputs["1"], torch.tensor([[[[12.0]], [[-12.0]]]]))
    torch.testing.assert_close(cap.activations["1"], torch.tensor([[[[12.0]], [[0.0]]]]))
    torch.testing.assert_close(cap.inputs["3"], torch.tensor([[12.0, 0.0]]))
    torch.testing.assert_close(y, torch.tensor([[12.0]]))
    torch.testing.assert_close(cap.activations["3"], y)
    assert cap.calls == {"0": 1, "1": 1, "3": 1}
    assert not cap.activations["0"].requires_grad  # detached copies


def test_tuple_list_dict_outputs_whole_and_selected():
    net = TupleNet()
    x = torch.tensor([[1.0, 2.0]])
    layers = ["enc", "enc[0]", "enc[1]", "head", "head['a']", 'head["b"]', "lst[1]"]
    with capture(net, layers, inputs=True) as cap:
        net(x)
    act = cap.activations
    assert isinstance(act["enc"], tuple) and len(act["enc"]) == 2
    torch.testing.assert_close(act["enc"][0], torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(act["enc[0]"], torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(act["enc[1]"], torch.tensor([[2.0, 4.0]]))
    assert set(act["head"]) == {"a", "b"}
    torch.testing.assert_close(act["head['a']"], torch.tensor([[4.0, 7.0]]))
    torch.testing.assert_close(act["head['b']"], torch.tensor([[0.0, -1.0]]))
    torch.testing.assert_close(act["lst[1]"], torch.tensor([[-4.0, -7.0]]))
    # two positional inputs are kept as a tuple
    assert isinstance(cap.inputs["head"], tuple) and len(cap.inputs["head"]) == 2
    with capture(net, "enc[5]") as cap, pytest.raises(ValueError, match=r"cannot select \[5\]"):
        net(x)
    assert_no_hooks(net)


def test_transform_pools_inside_hook_and_copies_views():
    net = ones_conv_net()
    x = torch.ones(2, 1, 3, 3)
    x[1] *= 2
    with capture(net, ["0"], transform=lambda t: t.mean(dim=(2, 3))) as cap:
        net(x)
    torch.testing.assert_close(cap.activations["0"], torch.tensor([[9.0, -9.0], [18.0, -18.0]]))
    # an identity transform returns the live tensor: it must be copied before the ReLU runs
    with capture(net, ["0"], transform=lambda t: t) as cap:
        net(x)
    assert float(cap.activations["0"].min()) == -18.0
    with capture(net, ["0"], transform=lambda t: t.half()) as cap:
        net(x)
    assert cap.activations["0"].dtype == torch.float16
    with (
        capture(net, ["0"], transform=lambda t: 3) as cap,
        pytest.raises(TypeError, match="tensor"),
    ):
        net(x)
    with pytest.raises(TypeError, match="'transform'"):
        capture(net, "0", transform=3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ gradients
def test_gradients_by_hand():
    net = ones_conv_net()
    x = torch.ones(1, 1, 3, 3)
    with capture(net, ["0", "2"], gradients=True) as cap:
        y = net(x)
        y.sum().backward()
    # y = 1 * relu(c0) + 2 * relu(c1) with c0 = 9 > 0, c1 = -9 < 0: dy/dc = (1, 0)
    torch.testing.assert_close(cap.gradients["0"], torch.tensor([[[[1.0]], [[0.0]]]]))
    torch.testing.assert_close(cap.gradients["2"], torch.tensor([[1.0, 2.0]]))


def test_gradients_resnet18_inplace_relu_match_autograd_reference():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    # bn2 is followed by `out += identity` and ReLU(inplace=True); bn1 by an in-place ReLU
    layers = ["layer3.1.bn2", "layer4", "layer2.0.conv1", "layer1.0.bn1"]
    with capture(model, layers, gradients=True) as cap:
        y = model(x)
        loss = y[:, 3].sum() + (y**2).mean()
        torch.autograd.grad(loss, [model.conv1.weight])
    # reference: forward hooks that hand a clone downstream, so nothing alters the kept tensor
    kept: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:

        def keep(mod, args, out, name=name):
            kept[name] = out
            return out.clone()

        handles.append(model.get_submodule(name).register_forward_hook(keep))
    try:
        y2 = model(x)
        loss2 = y2[:, 3].sum() + (y2**2).mean()
        refs = torch.autograd.grad(loss2, [kept[n] for n in layers])
    finally:
        for h in handles:
            h.remove()
    for name, ref in zip(layers, refs, strict=True):
        assert cap.gradients[name].shape == ref.shape
        assert float(ref.abs().max()) > 0
        torch.testing.assert_close(cap.gradients[name], ref, rtol=1e-5, atol=1e-7)
    assert_no_hooks(model)
    assert all(p.grad is None for p in model.parameters())


def test_gradient_warnings_when_grad_off_or_nothing_requires_grad():
    net = ones_conv_net()
    x = torch.ones(1, 1, 3, 3)
    with (
        pytest.warns(UserWarning, match="grad mode is off"),
        torch.no_grad(),
        capture(net, "0", gradients=True) as cap,
    ):
        net(x)
    assert cap.gradients == {}
    frozen = ones_conv_net().requires_grad_(False)
    with (
        pytest.warns(UserWarning, match="does not require grad"),
        capture(frozen, ["0", "3"], gradients=True),
    ):
        frozen(x)
    # no warning when gradients were not requested
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad(), capture(net, "0"):
            net(x)


# ------------------------------------------------------------------ cleanup and state
def test_hooks_removed_after_success_and_after_exception(tiny_model):
    x = torch.rand(2, 3, 32, 32)
    spec = ["features.*", "fc"]
    with capture(tiny_model, spec, inputs=True, gradients=True) as cap:
        assert cap.attached
        assert any(m._forward_hooks for m in tiny_model.modules())
        assert any(m._forward_pre_hooks for m in tiny_model.modules())
        tiny_model(x)
    assert not cap.attached and no_hooks(tiny_model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        capture(tiny_model, spec, inputs=True, gradients=True),
    ):
        tiny_model(x)
        raise RuntimeError("boom")
    assert_no_hooks(tiny_model)
    # an error inside the forward (wrong input shape) also leaves nothing behind
    with pytest.raises(RuntimeError), capture(tiny_model, spec, inputs=True):
        tiny_model(torch.rand(2, 5, 32, 32))
    assert_no_hooks(tiny_model)


def test_exit_twice_is_harmless_and_attach_twice_is_an_error(tiny_model):
    cap = capture(tiny_model, "fc")
    with cap:
        tiny_model(torch.rand(1, 3, 32, 32))
        with pytest.raises(RuntimeError, match="already attached"):
            cap.attach()
    cap.__exit__(None, None, None)
    cap.remove()
    assert_no_hooks(tiny_model)
    assert cap.activations["fc"].shape == (1, 4)  # results survive the exit
    cap.clear()
    assert cap.activations == {} and cap.calls == {}
    assert "attached=False" in repr(cap)


def test_model_flags_requires_grad_and_grad_left_as_found():
    net = ones_conv_net().train()
    net[0].eval()  # mixed modes must survive
    net[3].weight.requires_grad_(False)
    net[0].weight.grad = torch.full_like(net[0].weight, 7.0)
    before_training = [m.training for m in net.modules()]
    before_rg = [p.requires_grad for p in net.parameters()]
    x = torch.ones(2, 1, 3, 3, requires_grad=True)
    with capture(net, ["0", "3"], inputs=True, gradients=True) as cap:
        y = net(x)
        (gx,) = torch.autograd.grad(y.sum(), [x])
    assert "0" in cap.gradients
    assert [m.training for m in net.modules()] == before_training
    assert [p.requires_grad for p in net.parameters()] == before_rg
    torch.testing.assert_close(net[0].weight.grad, torch.full_like(net[0].weight, 7.0))
    assert net[3].bias.grad is None
    assert gx.shape == x.shape


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def test_repeated_use_does_not_leak(tiny_model):
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    spec = ["features.2", "features.13", "fc"]

    def once() -> None:
        with capture(tiny_model, spec, inputs=True, gradients=True) as cap:
            y = tiny_model(x)
            torch.autograd.grad(y.sum(), [x])
        assert len(cap.gradients) == 3

    for _ in range(5):  # warm-up: lazily created caches
        once()
    before = _live_tensors()
    for _ in range(300):
        once()
    after = _live_tensors()
    assert after - before <= 5, (before, after)
    assert_no_hooks(tiny_model)


# ------------------------------------------------------------------ torch.compile
def _compiled_net() -> tuple[nn.Module, nn.Module]:
    torch._dynamo.reset()
    net = ones_conv_net()
    return net, torch.compile(net, backend="eager")


def test_compile_capture_entered_before_first_call():
    net, compiled = _compiled_net()
    x = torch.ones(2, 1, 3, 3)
    with capture(compiled, ["0", "3"]) as cap:
        y = compiled(x)
    torch.testing.assert_close(cap.activations["0"], torch.tensor([[[[9.0]], [[-9.0]]]] * 2))
    torch.testing.assert_close(cap.activations["3"], y)
    assert no_hooks(net) and no_hooks(compiled)
    # hooks registered on the plain module before torch.compile are traced too
    torch._dynamo.reset()
    net2 = ones_conv_net()
    with capture(net2, "3") as cap2:
        compiled2 = torch.compile(net2, backend="eager")
        y2 = compiled2(x)
    torch.testing.assert_close(cap2.activations["3"], y2)
    assert_no_hooks(net2)


def test_compile_hooks_added_after_first_call_raise_clearly():
    net, compiled = _compiled_net()
    x = torch.ones(1, 1, 3, 3)
    compiled(x)  # compiled without hooks: later hooks would be silently skipped
    with (
        pytest.raises(RuntimeError, match="Compiled code ignores hooks added after"),
        capture(compiled, ["0"]),
    ):
        compiled(x)
    assert no_hooks(net) and no_hooks(compiled)


# ------------------------------------------------------------------ to_numpy
def test_to_numpy_no_copy_for_contiguous_cpu_float32():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    a = to_numpy(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert np.shares_memory(a, t.numpy())
    np.testing.assert_array_equal(a, [[0, 1, 2], [3, 4, 5]])


def test_to_numpy_dtypes_grad_and_nesting():
    bf = torch.tensor([1.5, -2.25], dtype=torch.bfloat16)
    a = to_numpy(bf)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, np.array([1.5, -2.25], np.float32))
    h = to_numpy(torch.tensor([0.5], dtype=torch.float16))
    assert h.dtype == np.float16
    g = torch.ones(2, requires_grad=True) * 3
    np.testing.assert_array_equal(to_numpy(g), [3.0, 3.0])
    arr = np.zeros(2)
    nested = {"a": [torch.ones(1), (torch.zeros(2), arr)], "b": 5, "c": "text"}
    out = to_numpy(nested)
    assert isinstance(out["a"], list) and isinstance(out["a"][1], tuple)
    np.testing.assert_array_equal(out["a"][0], [1.0])
    np.testing.assert_array_equal(out["a"][1][0], [0.0, 0.0])
    assert out["a"][1][1] is arr
    assert out["b"] == 5 and out["c"] == "text"
    # a transposed (non-contiguous) view converts to the right values
    t = torch.arange(6.0).reshape(2, 3).T
    np.testing.assert_array_equal(to_numpy(t), np.arange(6.0).reshape(2, 3).T)


# ------------------------------------------------------------------ TorchScript
def _scripted(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream
        return torch.jit.script(model)


def _traced(model: nn.Module, x: torch.Tensor) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.trace(model, x)


def test_hookable_script_capture_and_grad_cam_equal_eager(tiny_model):
    from featviz.cam import grad_cam

    x = torch.rand(2, 3, 64, 64)
    layers = ["features.2", "features.13", "fc"]
    model = hookable(_scripted(tiny_model))
    assert [n for n, _ in model.named_modules() if n in layers] == layers
    with capture(model, layers, gradients=True) as cap:
        y = model(x)
        y[:, 1].sum().backward()
    with capture(tiny_model, layers, gradients=True) as ref:
        y_ref = tiny_model(x)
        y_ref[:, 1].sum().backward()
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-6)
    for key in layers:
        torch.testing.assert_close(cap.activations[key], ref.activations[key], rtol=0, atol=1e-6)
        torch.testing.assert_close(cap.gradients[key], ref.gradients[key], rtol=0, atol=1e-6)
    assert no_hooks(model) and no_hooks(tiny_model)
    for p in tiny_model.parameters():
        p.grad = None
    maps = grad_cam(model, x, "features.13", target=[0, 3])
    expected = grad_cam(tiny_model, x, "features.13", target=[0, 3])
    assert float(expected.max()) == 1.0
    torch.testing.assert_close(maps, expected, rtol=0, atol=1e-6)
    # only the path to the named layer unrolled; a saved trace loads as hookable TorchScript
    path_only = hookable(_scripted(tiny_model), "features.13")
    globbed = hookable(_scripted(tiny_model), ["featu*.13", "features.13[0]"])
    names = [n for n, _ in path_only.named_modules()]
    assert [n for n, _ in globbed.named_modules()] == names
    assert names[:4] == ["", "features", "features.0", "features.0.inner"]
    assert "features.12.inner" in dict(path_only.named_modules())
    assert "pool.inner" in dict(path_only.named_modules())
    torch.testing.assert_close(grad_cam(path_only, x, "features.13", target=[0, 3]), expected)


def test_hookable_saved_trace_and_resnet_stage(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from featviz.cam import grad_cam

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    scripted = _scripted(resnet)
    whole = hookable(scripted)  # residual blocks are not chains: refused on the first call
    with pytest.raises(ValueError, match=r"'model'.*plain chain.*'layers' parameter"):
        whole(x)
    stage = hookable(scripted, ["layer4", "layer3.1"])
    torch.testing.assert_close(
        grad_cam(stage, x, ["layer4", "layer3.1"], target=2),
        grad_cam(resnet, x, ["layer4", "layer3.1"], target=2),
        rtol=0,
        atol=1e-6,
    )
    # a bad input fails with PyTorch's own error, not as "not a chain"
    with pytest.raises(RuntimeError, match="channels"):
        hookable(scripted, "layer4")(torch.randn(1, 5, 32, 32))
    path = tmp_path / "traced.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _traced(ones_conv_net(), torch.ones(1, 1, 3, 3)).save(str(path))
        loaded = torch.jit.load(str(path))
    with capture(hookable(loaded), ["0", "3"]) as cap:
        hookable(loaded)(torch.ones(1, 1, 3, 3))  # another wrapper: its hooks are not ours
    assert cap.activations == {}
    model = hookable(loaded)
    with capture(model, ["0", "3"]) as cap:
        model(torch.ones(1, 1, 3, 3))
    torch.testing.assert_close(cap.activations["0"], torch.tensor([[[[9.0]], [[-9.0]]]]))
    torch.testing.assert_close(cap.activations["3"], torch.tensor([[9.0]]))


def test_torchscript_models_and_layers_raise_clearly(tiny_model):
    x = torch.rand(1, 3, 64, 64)
    scripted = _scripted(tiny_model)
    with pytest.raises(TypeError, match=r"'model' parameter of capture is a TorchScript.*hookable"):
        capture(scripted, "features.13")
    traced = _traced(tiny_model, x)
    with pytest.raises(TypeError, match=r"'model' parameter of capture is a traced.*eager model"):
        capture(traced, "features.13")
    with pytest.raises(TypeError, match=r"'model' parameter of hookable is an in-memory"):
        hookable(traced)
    with pytest.raises(TypeError, match=r"'model' parameter of hookable must be a TorchScript"):
        hookable(tiny_model)
    with pytest.raises(ValueError, match=r"'layers' parameter of hookable.*'features\.13'"):
        hookable(scripted, "featurs.13")
    with pytest.raises(ValueError, match=r"'layers' parameter of hookable.*Got ''"):
        hookable(scripted, [""])
    model = hookable(scripted, "features.13")
    with pytest.raises(ValueError, match=r"'layers' entry 'features\.12\.inner'.*TorchScript"):
        capture(model, "features.12.inner")
    # globs and types skip the TorchScript modules inside, and hook the Python ones
    assert list(resolve_layers(model, "features.1*")) == [
        f"features.{i}" for i in (1, 10, 11, 12, 13)
    ]
    mixed = nn.Sequential(_scripted(nn.Conv2d(1, 1, 1)), nn.ReLU())
    with pytest.raises(ValueError, match=r"'layers' entry '0' is a TorchScript module"):
        capture(mixed, "0")
    with pytest.raises(ValueError, match=r"'layers' entry '0\*' matches only TorchScript"):
        capture(mixed, "0*")
    assert_no_hooks(mixed)


# ------------------------------------------------------------------ bad input
class DictBackbone(nn.Module):
    """Returns {"0": x + 1, "1": x * 3}, like torchvision's IntermediateLayerGetter."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"0": x + 1, "1": x * 3}


class WithBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = DictBackbone()
        self.unused = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)["1"]


def test_layers_model_itself_and_empty_name(tiny_model):
    for spec in (tiny_model, "", "  ", "module."):
        with pytest.raises(ValueError, match=r"'layers' parameter must.*model itself.*'fc'"):
            capture(tiny_model, spec)
    with pytest.raises(ValueError, match=r"'layers' parameter got a Conv2d module that is not"):
        resolve_layers(tiny_model, nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match=r"'layers' parameter is empty. Got \[\]"):
        capture(tiny_model, ())
    with pytest.raises(TypeError, match=r"'layers' parameter.*Got float instead"):
        capture(tiny_model, 3.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'layers' name 'featurs\.13'.*'features\.13'"):
        capture(tiny_model, ["fc", "featurs.13"])
    with pytest.raises(ValueError, match=r"'layers' type GRU matches no module.*name a layer"):
        capture(tiny_model, nn.GRU)
    assert_no_hooks(tiny_model)


def test_selector_errors_name_the_entry_and_suggest_the_right_form():
    net = WithBackbone()
    x = torch.tensor([[1.0, 2.0]])
    with capture(net, "backbone['0']") as cap:
        net(x)
    torch.testing.assert_close(cap.activations["backbone['0']"], torch.tensor([[2.0, 3.0]]))
    with capture(net, "backbone[0]") as cap, pytest.raises(ValueError) as info:
        net(x)
    msg = str(info.value)
    assert "'layers' entry 'backbone[0]' cannot select [0]" in msg
    assert "keys are ['0', '1']" in msg and "\"backbone['0']\"" in msg
    tuple_net = TupleNet()
    with capture(tuple_net, "enc[5]"), pytest.raises(ValueError, match=r"index in \[0, 1\]"):
        tuple_net(x)
    with (
        capture(tuple_net, "enc[0][1]"),
        pytest.raises(ValueError, match=r"'layers' entry 'enc\[0\]\[1\]' selects \[1\].*tensor"),
    ):
        tuple_net(x)
    conv_net = ones_conv_net()
    with (
        capture(conv_net, "0[0]"),
        pytest.raises(ValueError, match=r"'layers' entry '0\[0\]'.*returns a tensor.*without"),
    ):
        conv_net(torch.ones(2, 1, 3, 3))  # must not silently pick the first image
    assert no_hooks(net) and no_hooks(tuple_net) and no_hooks(conv_net)


def test_layer_that_did_not_run_warns():
    net = WithBackbone()
    x = torch.ones(1, 2)
    with (
        pytest.warns(UserWarning, match=r"layers \['unused'\] did not run during this call"),
        capture(net, ["backbone", "unused"]) as cap,
    ):
        net(x)
    assert list(cap.activations) == ["backbone"]
    with pytest.warns(UserWarning, match="did not run") as record, capture(net, "unused"):
        net(x)
    assert record[0].filename == __file__  # points at the line that called the model
    # globs and types match "every module like this": no warning for the ones that did not run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with capture(net, ["backbone", "unu*", nn.ReLU]) as cap:
            net(x)
            net.backbone(x)  # a submodule called on its own is not checked
    assert cap.calls == {"backbone": 2}


def test_gradients_inside_inference_mode_raise_what_to_do():
    net = ones_conv_net()
    x = torch.ones(1, 1, 3, 3)
    with (
        torch.inference_mode(),
        pytest.raises(RuntimeError, match=r"gradients=True.*inference_mode.*gradients=False"),
    ):
        capture(net, "0", gradients=True).__enter__()
    assert_no_hooks(net)
    with (
        capture(net, "0", gradients=True),
        pytest.raises(RuntimeError, match=r"inference_mode\(\).*outside inference_mode"),
        torch.inference_mode(),
    ):
        net(x)
    assert_no_hooks(net)
    with torch.inference_mode(), capture(net, "0") as cap:  # without gradients: fine
        net(x)
    torch.testing.assert_close(cap.activations["0"], torch.tensor([[[[9.0]], [[-9.0]]]]))


def test_capture_records_only_its_own_threads_forward_passes():
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3)).eval()
    inputs = [torch.full((1, 3, 6, 6), float(i)) for i in range(6)]
    with torch.no_grad():
        want = [model[0](x) for x in inputs]

    def run(i: int) -> tuple[torch.Tensor, int]:
        with capture(model, ["0", "2"]) as cap:
            for _ in range(20):
                model(inputs[i])
        return cap.activations["0"], cap.calls["0"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(run, range(6)))
    for (act, calls), ref in zip(results, want, strict=True):
        assert calls == 20  # none of the other threads' passes
        torch.testing.assert_close(act, ref, rtol=0, atol=0)
    assert_no_hooks(model)


def test_detach_false_keeps_the_output_before_inplace_ops_with_selector():
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x * 2, x * 3

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pair = Pair()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, b = self.pair(x)
            a += 1.0  # in place on the captured element
            b.mul_(10.0)
            return a + b

    x = torch.ones(1, 2)
    net = Net()
    with capture(net, ["pair[0]"], detach=False) as cap:
        y = net(x.requires_grad_(True))
    torch.testing.assert_close(cap.activations["pair[0]"], torch.full((1, 2), 2.0))
    torch.testing.assert_close(y, torch.full((1, 2), 33.0))  # the model's result unchanged
    (g,) = torch.autograd.grad(y.sum(), [cap.activations["pair[0]"]])
    torch.testing.assert_close(g, torch.ones(1, 2))


def test_capture_warns_when_the_model_ran_only_in_another_thread():
    import threading

    model = nn.Sequential(nn.Conv2d(3, 2, 1))
    x = torch.ones(1, 3, 2, 2)
    with pytest.warns(UserWarning, match=r"ran 1 time\(s\), but only in other threads"):
        with capture(model, "0") as cap:
            worker = threading.Thread(target=lambda: model(x))
            worker.start()
            worker.join()
    assert cap.activations == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the entering thread's pass: no warning
        with capture(model, "0") as cap:
            model(x)
    assert cap.calls == {"0": 1}


# ------------------------------------------------------------------ torch.export / torch.fx
def test_exported_program_module_is_refused_and_unflatten_works():
    from featviz.cam import CAM

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    x = torch.rand(2, 3, 8, 8)
    program = torch.export.export(net, (x,))
    flat = program.module()
    own = [dict(getattr(m, d)) for m in flat.modules() for d in _HOOK_DICTS]  # torch's own
    with pytest.raises(TypeError, match=r"inlined into one graph.*torch.export.unflatten"):
        capture(flat, "1")
    with pytest.raises(TypeError, match=r"cannot be switched to eval mode.*eval_mode=False"):
        CAM(flat, "1")(x)
    with pytest.raises(TypeError, match=r"inlined into one graph"):
        CAM(flat, "1", eval_mode=False)(x)
    assert [dict(getattr(m, d)) for m in flat.modules() for d in _HOOK_DICTS] == own
    unflat = torch.export.unflatten(program)
    torch.testing.assert_close(CAM(unflat, "1")(x), CAM(net, "1")(x), atol=0, rtol=0)
    assert no_hooks(unflat)


def test_fx_trace_keeps_leaf_calls_so_leaves_are_captured():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.Conv2d(4, 2, 1)))
    traced = torch.fx.symbolic_trace(net)
    x = torch.rand(1, 3, 6, 6)
    with capture(traced, "1.1") as cap:  # a leaf: called as a module in the graph
        traced(x)
    torch.testing.assert_close(cap.activations["1.1"], net(x))
    with pytest.raises(TypeError, match=r"layers \['1'\] are inlined"):
        capture(traced, "1")  # a container: inlined
