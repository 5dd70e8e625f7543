"""One ingestion, every consumer: each accepted image, heatmap and label form gives the same
outcome in every public function that takes it, and each refused form the same error.

The tables are data: to cover a new function, add one row to ``IMAGE_USERS``,
``HEATMAP_USERS``, ``LABEL_USERS`` or the ``*_REFUSERS`` tables (a callable keyed by name);
to cover a new input form, add one row to ``IMAGE_FORMS``, ``HEATMAP_FORMS`` or
``LABEL_FORMS``. Every row runs against every user.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from featviz import _images
from featviz.imageio import save_image, to_image
from featviz.overlays import overlay, plot_overlays

N, H, W = 2, 5, 6
_rng = np.random.default_rng(21)
BASE = _rng.integers(0, 256, size=(N, H, W, 3), dtype=np.uint8)  # (N, H, W, 3) RGB pixels
GREY = BASE[..., :1].copy()  # (N, H, W, 1)
ALPHA = _rng.integers(0, 256, size=(N, H, W, 1), dtype=np.uint8)
RGBA = np.concatenate([BASE, ALPHA], axis=-1)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# heatmaps of multiples of 1/8: exact in float16, bfloat16 and every wider float
HEAT = _rng.integers(0, 9, size=(N, 3, 3)).astype(np.float64) / 8
HEAT[:, 0, 0], HEAT[:, 0, 1] = 0.0, 1.0  # full range, so min-max scaling changes nothing


def _composite(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:].astype(np.float64) / 255
    return np.floor(rgba[..., :3] * a + 255 * (1 - a) + 0.5).astype(np.uint8)


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)


def _normalised() -> np.ndarray:
    return ((BASE / 255 - np.array(MEAN)) / np.array(STD)).astype(np.float32)


# -- accepted image forms ------------------------------------------------------------------
class Form(NamedTuple):
    make: Callable[[], Any]  # builds the input
    pixels: np.ndarray  # the (n, H, W, 3) uint8 RGB every user must display
    tol: int = 0  # +-1 where a narrow float cannot hold the exact pixel
    single: bool = False  # one image, not a batch
    kw: dict[str, Any] = {}  # noqa: RUF012 - read only
    kinds: frozenset[str] = frozenset({"array"})  # "pil", "rgba", "list": users may skip


STD_KW = {"mean": MEAN, "std": STD}
IMAGE_FORMS: dict[str, Form] = {
    "pil": Form(lambda: Image.fromarray(BASE[0]), BASE[:1], single=True, kinds=frozenset({"pil"})),
    "pil_list": Form(lambda: [Image.fromarray(b) for b in BASE], BASE, kinds=frozenset({"pil"})),
    "pil_rgba": Form(
        lambda: Image.fromarray(RGBA[0], "RGBA"),
        _composite(RGBA[:1]),
        tol=1,
        single=True,
        kinds=frozenset({"pil", "rgba"}),
    ),
    "uint8_hwc": Form(lambda: BASE[0], BASE[:1], single=True),
    "uint8_nhwc": Form(lambda: BASE, BASE),
    "float32_nhwc": Form(lambda: (BASE / 255).astype(np.float32), BASE),
    "float64_nhwc": Form(lambda: BASE / 255, BASE),
    "float16_nhwc": Form(lambda: (BASE / 255).astype(np.float16), BASE, tol=1),
    "array_list": Form(lambda: list(BASE), BASE, kinds=frozenset({"list"})),
    "uint8_chw": Form(lambda: _chw(BASE)[0], BASE[:1], single=True),
    "uint8_nchw": Form(lambda: _chw(BASE), BASE),
    "float32_nchw": Form(lambda: _chw(BASE).float() / 255, BASE),
    "float16_nchw": Form(lambda: (_chw(BASE).float() / 255).half(), BASE, tol=1),
    "bfloat16_nchw": Form(lambda: (_chw(BASE).float() / 255).bfloat16(), BASE, tol=1),
    "tensor_list": Form(lambda: list(_chw(BASE).float() / 255), BASE, kinds=frozenset({"list"})),
    "grey_n1hw": Form(lambda: _chw(GREY), GREY.repeat(3, -1)),
    "grey_nhw1": Form(lambda: GREY, GREY.repeat(3, -1)),
    "grey_nhw": Form(lambda: GREY[..., 0], GREY.repeat(3, -1)),
    "grey_nhw_tensor": Form(lambda: torch.from_numpy(GREY[..., 0]), GREY.repeat(3, -1)),
    "rgba_nhwc": Form(lambda: RGBA, _composite(RGBA), tol=1, kinds=frozenset({"rgba"})),
    "rgba_nchw": Form(lambda: _chw(RGBA), _composite(RGBA), tol=1, kinds=frozenset({"rgba"})),
    "normalised_nchw": Form(
        lambda: torch.from_numpy(_normalised()).permute(0, 3, 1, 2), BASE, 1, kw=STD_KW
    ),
    "normalised_nhwc": Form(_normalised, BASE, 1, kw=STD_KW),
    "normalised_bf16": Form(lambda: _chw(_normalised()).bfloat16(), BASE, 2, kw=STD_KW),
}


# -- the users: each returns the (n, H, W, 3) uint8 pixels it displays ---------------------
class User(NamedTuple):
    show: Callable[[Any, dict[str, Any], Path, bool], np.ndarray]  # (x, kw, tmp, single)
    batch_only: bool = False  # needs N images (one per point)
    skip: frozenset[str] = frozenset()  # form kinds it does not take
    mean_std: bool = True  # takes mean/std


def _overlay(x: Any, kw: dict[str, Any], _: Path, single: bool = False) -> np.ndarray:
    out = overlay(x, np.zeros((3, 3)), alpha=0.0, **kw)  # alpha 0: the image itself
    out = out.numpy() if isinstance(out, torch.Tensor) else out
    return out if out.ndim == 4 else out[None]


def _plot_overlays(x: Any, kw: dict[str, Any], _: Path, single: bool = False) -> np.ndarray:
    import matplotlib.pyplot as plt

    fig = plot_overlays(x, np.zeros((3, 3)), **kw)
    rows = len(fig.axes) // 3
    shown = np.stack([np.asarray(fig.axes[3 * i].images[0].get_array()) for i in range(rows)])
    plt.close(fig)
    return shown


def _explore(x: Any, kw: dict[str, Any], _: Path, single: bool = False) -> np.ndarray:
    pytest.importorskip("bokeh")
    from featviz.explorer import explore

    view = explore(np.zeros((N, 2)), images=x, image_format="png", **kw)
    return np.stack([view.details["image"].image(i) for i in range(N)])


def _recording_writer(logdir: Path) -> Any:
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    class Recorder(SummaryWriter):
        """Keeps what featviz hands to the writer."""

        def add_images(self, tag: str, img_tensor: Any, *a: Any, **k: Any) -> None:
            self.images = img_tensor

        def add_embedding(self, mat: Any, metadata: Any = None, *a: Any, **k: Any) -> None:
            self.metadata = metadata

    return Recorder(log_dir=str(logdir))


def _to_tensorboard(x: Any, kw: dict[str, Any], tmp: Path, single: bool = False) -> np.ndarray:
    from featviz.tensorboard import to_tensorboard

    writer = _recording_writer(tmp)
    with writer:
        to_tensorboard(writer, images=x, heatmaps={"h": np.zeros((N, 3, 3))}, alpha=0.0, **kw)
    got = writer.images
    return got.numpy() if isinstance(got, torch.Tensor) else np.asarray(got)


def _items(x: Any, single: bool) -> list[Any]:
    return [x] if single else list(x)


def _to_image(x: Any, kw: dict[str, Any], _: Path, single: bool = False) -> np.ndarray:
    out = []
    for item in _items(x, single):
        scale = {} if item.dtype in (np.uint8, torch.uint8) else {"cmin": 0.0, "cmax": 1.0}
        out.append(np.asarray(to_image(item, **scale).convert("RGB")))
    return np.stack(out)


def _save_image(x: Any, kw: dict[str, Any], tmp: Path, single: bool = False) -> np.ndarray:
    out = []
    for i, item in enumerate(_items(x, single)):
        scale = {} if item.dtype in (np.uint8, torch.uint8) else {"cmin": 0.0, "cmax": 1.0}
        path = save_image(item, tmp / f"{i}.png", **scale)
        with Image.open(path) as img:
            out.append(np.asarray(img.convert("RGB")))
    return np.stack(out)


# one array image each: no PIL input (save_image takes PIL as it is), no compositing
ARRAYS_ONLY = frozenset({"pil", "rgba", "list"})
IMAGE_USERS: dict[str, User] = {
    "overlay": User(_overlay),
    "plot_overlays": User(_plot_overlays),
    "explore": User(_explore, batch_only=True),
    "to_tensorboard": User(_to_tensorboard, batch_only=True),
    "to_image": User(_to_image, skip=ARRAYS_ONLY, mean_std=False),
    "save_image": User(_save_image, skip=ARRAYS_ONLY, mean_std=False),
}


def _takes(user: User, form: Form) -> bool:
    return not (
        (user.batch_only and form.single)
        or (form.kinds & user.skip)
        or (form.kw and not user.mean_std)
    )


PAIRS = [(f, u) for f in IMAGE_FORMS for u in IMAGE_USERS if _takes(IMAGE_USERS[u], IMAGE_FORMS[f])]


@pytest.mark.parametrize(("form", "user"), PAIRS)
def test_every_image_form_shows_the_same_pixels_everywhere(form, user, tmp_path):
    f, u = IMAGE_FORMS[form], IMAGE_USERS[user]
    shown = u.show(f.make(), f.kw, tmp_path, f.single)
    assert shown.dtype == np.uint8 and shown.shape == f.pixels.shape, (shown.shape, shown.dtype)
    diff = np.abs(shown.astype(int) - f.pixels.astype(int))
    assert diff.max() <= f.tol, (form, user, int(diff.max()))


@pytest.mark.parametrize("form", list(IMAGE_FORMS))
def test_every_user_shows_a_form_exactly_alike(form, tmp_path):
    # not only within the tolerance of the truth: the users agree to the last bit
    f = IMAGE_FORMS[form]
    shown = {
        user: u.show(f.make(), f.kw, tmp_path / user, f.single)
        for user, u in IMAGE_USERS.items()
        if _takes(u, f) and not (tmp_path / user).mkdir()
    }
    first = next(iter(shown.values()))
    for user, pixels in shown.items():
        np.testing.assert_array_equal(pixels, first, err_msg=f"{form}: {user}")


def test_the_table_covers_the_issue_forms():
    # the forms issue 21 names: PIL, lists, uint8/float16 numpy, tensors in four dtypes,
    # grey both ways, RGBA, standardised with mean/std
    dtypes = {IMAGE_FORMS[k].make().dtype for k in IMAGE_FORMS if "nchw" in k}
    assert {torch.uint8, torch.float32, torch.float16, torch.bfloat16} <= dtypes
    assert {"pil", "pil_list", "grey_n1hw", "grey_nhw1", "rgba_nhwc", "normalised_nchw"} <= set(
        IMAGE_FORMS
    )


# -- refused image forms: the same error type and words in every user ----------------------
def _refuse_overlay(x: Any, kw: dict[str, Any]) -> None:
    overlay(x, np.zeros((3, 3)), **kw)


def _refuse_plot_overlays(x: Any, kw: dict[str, Any]) -> None:
    plot_overlays(x, np.zeros((3, 3)), **kw)


def _refuse_explore(x: Any, kw: dict[str, Any]) -> None:
    pytest.importorskip("bokeh")
    from featviz.explorer import explore

    explore(np.zeros((N, 2)), images=x, **kw)


def _refuse_to_tensorboard(x: Any, kw: dict[str, Any]) -> None:
    pytest.importorskip("tensorboard")
    from featviz.tensorboard import to_tensorboard

    # the writer is made after the inputs are checked: a bad input writes nothing
    to_tensorboard("/nonexistent/never-written", images=x, features=np.zeros((N, 2)), **kw)


IMAGE_REFUSERS: dict[str, tuple[str, Callable[[Any, dict[str, Any]], None]]] = {
    "overlay": ("overlay", _refuse_overlay),
    "plot_overlays": ("plot_overlays", _refuse_plot_overlays),
    "explore": ("explore", _refuse_explore),
    "to_tensorboard": ("to_tensorboard", _refuse_to_tensorboard),
}

REFUSED_IMAGES: dict[str, tuple[Callable[[], Any], dict[str, Any], type, str]] = {
    "numpy_channel_first": (
        lambda: np.zeros((N, 3, H, W), np.float32),
        {},
        ValueError,
        r"'images' parameter of \w+ must be a channel-last array .* Got ndarray of shape "
        r"\(2, 3, 5, 6\) and dtype float32 instead\. numpy images are channel-last: use "
        r"images\.transpose\(0, 2, 3, 1\)",
    ),
    "tensor_channel_last": (
        lambda: torch.zeros(N, H, W, 3),
        {},
        ValueError,
        r"must be a channel-first tensor .* Got Tensor of shape \(2, 5, 6, 3\) .* "
        r"use images\.permute\(0, 3, 1, 2\)",
    ),
    "two_channels": (lambda: torch.zeros(N, 2, H, W), {}, ValueError, r"channel-first tensor"),
    "int32": (
        lambda: torch.zeros(N, 3, H, W, dtype=torch.int32),
        {},
        TypeError,
        r"must be uint8 \(0\.\.255\) or float \(\[0, 1\]\) images\. Got Tensor .* torch\.int32",
    ),
    "bool": (lambda: np.zeros((N, H, W, 3), bool), {}, TypeError, r"uint8 \(0\.\.255\) or float"),
    "complex": (lambda: np.zeros((N, H, W, 3), complex), {}, TypeError, r"numeric .* complex"),
    "string": (lambda: "cat.png", {}, TypeError, r"a PIL image, a list of images.* Got str"),
    "empty_list": (lambda: [], {}, ValueError, r"non-empty list of images"),
    "nested_list": (lambda: [[BASE[0]]], {}, TypeError, r"Got item 0 of type list"),
    "sizes_differ": (
        lambda: [Image.fromarray(BASE[0]), Image.fromarray(BASE[1, :4])],
        {},
        ValueError,
        r"one size, channel count and dtype\. Got item 0 as .* but item 1 as \(4, 6, 3\)",
    ),
    "five_dims": (lambda: torch.zeros(N, 3, 1, H, W), {}, ValueError, r"channel-first tensor"),
    "lone_mean": (
        lambda: _chw(BASE).float(),
        {"mean": MEAN},
        ValueError,
        r"'mean' and 'std' parameters of \w+ must be given together",
    ),
    "lone_std": (lambda: _chw(BASE).float(), {"std": STD}, ValueError, r"given together"),
    "mean_std_uint8": (
        lambda: _chw(BASE),
        STD_KW,
        ValueError,
        r"apply to standardised float images\. Got uint8 images",
    ),
}


@pytest.mark.parametrize("user", list(IMAGE_REFUSERS))
@pytest.mark.parametrize("form", list(REFUSED_IMAGES))
def test_every_refused_image_form_gets_the_same_error(form, user):
    make, kw, exc, pattern = REFUSED_IMAGES[form]
    func, call = IMAGE_REFUSERS[user]
    with pytest.raises(exc, match=pattern) as info:
        call(make(), kw)
    reference = _message(REFUSED_IMAGES[form], IMAGE_REFUSERS["overlay"])
    assert str(info.value).replace(func, "<f>") == reference


def _message(row: tuple, refuser: tuple) -> str:
    make, kw, exc, _ = row
    func, call = refuser
    with pytest.raises(exc) as info:
        call(make(), kw)
    return str(info.value).replace(func, "<f>")


def test_floats_in_0_255_warn_the_same_everywhere(tmp_path):
    x = _chw(BASE).float()  # 0..255 as floats: clipped to white, so every user warns
    messages = set()
    for name, (func, call) in IMAGE_REFUSERS.items():
        if name == "to_tensorboard":
            with pytest.warns(UserWarning, match=r"holds floats up to 255") as rec:
                _to_tensorboard(x, {}, tmp_path)
        else:
            if name == "explore":
                pytest.importorskip("bokeh")
            with pytest.warns(UserWarning, match=r"holds floats up to 255") as rec:
                call(x, {})
        found = [str(w.message) for w in rec if "holds floats" in str(w.message)]
        messages |= {m.replace(func, "<f>") for m in found}
    assert messages == {
        "The 'images' parameter of <f> holds floats up to 255; float images are read as "
        "[0, 1] and clipped. Divide them by 255, pass uint8, or give the 'mean' and 'std' "
        "they were standardised with."
    }


def test_grey_plot_overlays_matches_overlay():
    # the issue's crash: (N, 1, H, W) images in plot_overlays (an expanded view rounded in place)
    grey = torch.from_numpy(GREY).permute(0, 3, 1, 2).float() / 255
    fig = plot_overlays(grey, torch.from_numpy(HEAT))
    ov = overlay(grey, torch.from_numpy(HEAT)).numpy()
    for i in range(N):
        np.testing.assert_array_equal(fig.axes[3 * i + 2].images[0].get_array(), ov[i])
        np.testing.assert_array_equal(fig.axes[3 * i].images[0].get_array(), GREY[i].repeat(3, -1))


# -- heatmaps ------------------------------------------------------------------------------
HEATMAP_FORMS: dict[str, tuple[Callable[[], Any], np.ndarray]] = {
    "numpy_nhw_float64": (lambda: HEAT, HEAT),
    "numpy_nhw_float32": (lambda: HEAT.astype(np.float32), HEAT),
    "numpy_nhw_float16": (lambda: HEAT.astype(np.float16), HEAT),
    "numpy_n1hw": (lambda: HEAT[:, None].astype(np.float32), HEAT),
    "numpy_int": (lambda: (HEAT * 8).astype(np.int64), HEAT),  # min-max scaled: the same
    "numpy_bool": (lambda: HEAT >= 0.5, (HEAT >= 0.5).astype(np.float64)),
    "tensor_nhw_float32": (lambda: torch.from_numpy(HEAT).float(), HEAT),
    "tensor_nhw_float16": (lambda: torch.from_numpy(HEAT).half(), HEAT),
    "tensor_nhw_bfloat16": (lambda: torch.from_numpy(HEAT).bfloat16(), HEAT),
    "tensor_n1hw_bfloat16": (lambda: torch.from_numpy(HEAT)[:, None].bfloat16(), HEAT),
    "tensor_nhw_float64": (lambda: torch.from_numpy(HEAT), HEAT),
}


def _heat_overlay(maps: Any, tmp: Path) -> np.ndarray:
    out = overlay(BASE, maps)
    return out.numpy() if isinstance(out, torch.Tensor) else out


def _heat_plot_overlays(maps: Any, tmp: Path) -> np.ndarray:
    fig = plot_overlays(BASE, maps)
    return np.stack([np.asarray(fig.axes[3 * i + 2].images[0].get_array()) for i in range(N)])


def _heat_explore(maps: Any, tmp: Path) -> np.ndarray:
    pytest.importorskip("bokeh")
    from featviz.explorer import explore

    view = explore(np.zeros((N, 2)), images=BASE, heatmaps={"h": maps}, image_format="png")
    return np.stack([view.details["h"].image(i) for i in range(N)])


def _heat_to_tensorboard(maps: Any, tmp: Path) -> np.ndarray:
    from featviz.tensorboard import to_tensorboard

    writer = _recording_writer(tmp)
    with writer:
        to_tensorboard(writer, images=BASE, heatmaps={"h": maps})
    return np.asarray(writer.images)


HEATMAP_USERS: dict[str, Callable[[Any, Path], np.ndarray]] = {
    "overlay": _heat_overlay,
    "plot_overlays": _heat_plot_overlays,
    "explore": _heat_explore,
    "to_tensorboard": _heat_to_tensorboard,
}


@pytest.mark.parametrize("user", list(HEATMAP_USERS))
@pytest.mark.parametrize("form", list(HEATMAP_FORMS))
def test_every_heatmap_form_gives_the_same_overlay_everywhere(form, user, tmp_path):
    make, values = HEATMAP_FORMS[form]
    expected = overlay(BASE, values.astype(np.float32))
    np.testing.assert_array_equal(HEATMAP_USERS[user](make(), tmp_path), expected)


def test_one_heatmap_broadcasts_over_a_batch():
    single = overlay(BASE, HEAT[0])
    np.testing.assert_array_equal(single, overlay(BASE, np.stack([HEAT[0]] * N)))


REFUSED_HEATMAPS: dict[str, tuple[Callable[[], Any], type, str]] = {
    "two_channels": (
        lambda: np.zeros((N, 2, 3, 3)),
        ValueError,
        r"Got ndarray of shape \(2, 2, 3, 3\) and dtype float64",
    ),
    "empty": (lambda: np.zeros((N, 0, 3)), ValueError, r"non-empty"),
    "list": (lambda: [[0.0]], TypeError, r"must be a torch\.Tensor or numpy\.ndarray\. Got list"),
    "complex": (lambda: np.zeros((N, 3, 3), complex), TypeError, r"numeric .* complex128"),
}

HEATMAP_REFUSERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "overlay": ("overlay", lambda m: overlay(BASE, m)),
    "plot_overlays": ("plot_overlays", lambda m: plot_overlays(BASE, m)),
    "explore": ("explore", lambda m: _refuse_explore(BASE, {"heatmaps": {"h": m}})),
    "to_tensorboard": (
        "to_tensorboard",
        lambda m: _refuse_to_tensorboard(BASE, {"heatmaps": {"h": m}}),
    ),
}


@pytest.mark.parametrize("user", list(HEATMAP_REFUSERS))
@pytest.mark.parametrize("form", list(REFUSED_HEATMAPS))
def test_every_refused_heatmap_form_gets_the_same_error(form, user):
    make, exc, pattern = REFUSED_HEATMAPS[form]
    func, call = HEATMAP_REFUSERS[user]
    with pytest.raises(exc, match=pattern) as info:
        call(make())
    assert str(info.value).startswith(f"The 'heatmaps' parameter of {func} must be")


# -- labels --------------------------------------------------------------------------------
LABEL_FORMS: dict[str, tuple[Callable[[], Any], list[str]]] = {
    "list_int": (lambda: [0, 1], ["0", "1"]),
    "numpy_int32": (lambda: np.array([0, 1], np.int32), ["0", "1"]),
    "tensor_int64": (lambda: torch.tensor([0, 1]), ["0", "1"]),
    "list_float": (lambda: [0.0, 1.0], ["0", "1"]),  # 0.0 is the class 0
    "tensor_float": (lambda: torch.tensor([0.0, 1.0]), ["0", "1"]),
    "tensor_bfloat16": (lambda: torch.tensor([0.0, 1.0]).bfloat16(), ["0", "1"]),
    "list_str": (lambda: ["cat", "dog"], ["cat", "dog"]),
    "numpy_str": (lambda: np.array(["cat", "dog"]), ["cat", "dog"]),
    "numpy_object": (lambda: np.array(["cat", "dog"], dtype=object), ["cat", "dog"]),
}


def _labels_direct(labels: Any, tmp: Path) -> list[str]:
    arr = _images.label_array(labels, N, func="f")
    return _images.label_names(arr, None, func="f")


def _labels_explore(labels: Any, tmp: Path) -> list[str]:
    pytest.importorskip("bokeh")
    from featviz.explorer import explore

    return list(explore(np.zeros((N, 2)), labels=labels).data["label"])


def _labels_to_tensorboard(labels: Any, tmp: Path) -> list[str]:
    from featviz.tensorboard import to_tensorboard

    # the metadata as written (to_tensorboard writes the embedding files itself)
    out = to_tensorboard(tmp / "run", features=np.zeros((N, 2)), labels=labels)
    metadata = out.logdir / "00000" / "featviz" / "metadata.tsv"  # step 0, tag "featviz"
    return metadata.read_text(encoding="utf-8").splitlines()


LABEL_USERS: dict[str, Callable[[Any, Path], list[str]]] = {
    "label_array": _labels_direct,
    "explore": _labels_explore,
    "to_tensorboard": _labels_to_tensorboard,
}


@pytest.mark.parametrize("user", list(LABEL_USERS))
@pytest.mark.parametrize("form", list(LABEL_FORMS))
def test_every_label_form_reads_the_same_everywhere(form, user, tmp_path):
    make, names = LABEL_FORMS[form]
    assert LABEL_USERS[user](make(), tmp_path) == names


REFUSED_LABELS: dict[str, tuple[Any, type, str]] = {
    "short": ([0], ValueError, r"a 1-D sequence of N=2 labels, one per item\. Got ndarray"),
    "two_d": (np.zeros((N, 2)), ValueError, r"a 1-D sequence of N=2 labels"),
    "missing": ([0.0, float("nan")], ValueError, r"a label for every item\. Got 1 missing"),
    "none": (["a", None], ValueError, r"Got 1 missing \(None or NaN\) at rows \[1\]"),
    "mixed": (["a", 1], ValueError, r"one kind .* Got a mix of \['int', 'str'\]"),
    "type": ("ab", TypeError, r"a tensor, numpy array, list or tuple of labels\. Got str"),
}


@pytest.mark.parametrize("user", ["label_array", "explore"])
@pytest.mark.parametrize("form", list(REFUSED_LABELS))
def test_every_refused_label_form_gets_the_same_error(form, user, tmp_path):
    labels, exc, pattern = REFUSED_LABELS[form]
    with pytest.raises(exc, match=pattern) as info:
        LABEL_USERS[user](labels, tmp_path)
    message = re.sub(r"parameter of \w+", "parameter of <f>", str(info.value))
    assert message.startswith("The 'labels' parameter of <f> must be")


def test_class_names_apply_to_integer_labels_of_any_form():
    for make in (lambda: [0.0, 1.0], lambda: torch.tensor([0, 1]), lambda: np.array([0, 1])):
        arr = _images.label_array(make(), N, func="f")
        assert _images.label_names(arr, ["ant", "bee"], func="f") == ["ant", "bee"]
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\] .* values in \[0, 2\]"):
        _images.label_names(np.array([0, 2]), ["ant", "bee"], func="f")


@pytest.mark.parametrize("form", list(IMAGE_FORMS))
def test_image_batch_is_a_view_when_it_can_be_and_never_warns(form):
    f = IMAGE_FORMS[form]
    x = f.make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read-only arrays, standardised floats: no warning
        b = _images.image_batch(x, func="f")
        ms = _images.display_mean_std(b.nhwc, f.kw.get("mean"), f.kw.get("std"), func="f")
    assert (b.nhwc.shape[0], b.batched) == (len(f.pixels), not f.single)
    assert b.tensor_input == (isinstance(x, torch.Tensor) or "tensor_list" in form)
    assert (ms is None) == (not f.kw)
    if isinstance(x, (np.ndarray, torch.Tensor)) and x.dtype != np.float16:
        src = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        assert b.nhwc.data_ptr() == src.data_ptr(), "copied"
