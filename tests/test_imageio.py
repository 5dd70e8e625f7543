from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import featviz
from featviz.imageio import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_image,
    save_image,
    to_image,
    unstandardize,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def scipy_bytescale(data, cmin=None, cmax=None, high=255, low=0):
    """SciPy 1.1's scipy.misc.bytescale, as it was (uint8 input returned unchanged)."""
    if data.dtype == np.uint8:
        return data
    if cmin is None:
        cmin = data.min()
    if cmax is None:
        cmax = data.max()
    cscale = cmax - cmin
    if cscale == 0:
        cscale = 1
    scale = float(high - low) / cscale
    bytedata = (data - cmin) * scale + low
    return (bytedata.clip(low, high) + 0.5).astype(np.uint8)


# -- to_image ----------------------------------------------------------------------------
def test_to_image_cmin_cmax_hand_values():
    x = np.array([[-1.0, 0.0, 0.5], [1.0, 2.0, 3.0]])
    # (x - 0) * 255 / 2, clipped, + 0.5, truncated
    np.testing.assert_array_equal(
        np.asarray(to_image(x, cmin=0, cmax=2)), [[0, 0, 64], [128, 255, 255]]
    )
    # default: min -1 -> 0, max 3 -> 255: (x + 1) * 63.75 + 0.5
    np.testing.assert_array_equal(np.asarray(to_image(x)), [[0, 64, 96], [128, 191, 255]])
    np.testing.assert_array_equal(np.asarray(to_image(x, cmin=0, cmax=2)), scipy_bytescale(x, 0, 2))


def test_to_image_matches_scipy_bytescale_random():
    rng = np.random.default_rng(0)
    for dtype in (np.float16, np.float32, np.float64, np.int16, np.int32, np.uint16):
        x = (rng.normal(size=(9, 7)) * 300).astype(dtype)
        for cmin, cmax in [(None, None), (-100, 250), (0, None), (None, 5)]:
            lo = x.min() if cmin is None else cmin
            hi = x.max() if cmax is None else cmax
            if hi < lo:  # SciPy raised here too
                with pytest.raises(ValueError, match="must be >= cmin"):
                    to_image(x, cmin=cmin, cmax=cmax)
                continue
            expected = scipy_bytescale(x.astype(np.float64), cmin, cmax)
            np.testing.assert_array_equal(np.asarray(to_image(x, cmin=cmin, cmax=cmax)), expected)


@pytest.mark.parametrize(
    ("array", "mode", "values"),
    [
        (np.array([[False, True]]), "L", [[0, 255]]),
        (np.array([[3, 200]], dtype=np.uint8), "L", [[3, 200]]),
        (np.array([[-5, 5]], dtype=np.int8), "L", [[0, 255]]),
        (np.array([[0, 1000]], dtype=np.uint16), "L", [[0, 255]]),
        (np.array([[0, 1]], dtype=np.int64), "L", [[0, 255]]),
        (np.array([[0.0, 0.25, 1.0]], dtype=np.float16), "L", [[0, 64, 255]]),
        (np.array([[0.0, 0.5]], dtype=np.float32), "L", [[0, 255]]),
        (np.array([[2.0, 2.0]]), "L", [[0, 0]]),  # constant -> black, no NaN
    ],
)
def test_to_image_modes_2d(array, mode, values):
    img = to_image(array)
    assert img.mode == mode
    np.testing.assert_array_equal(np.asarray(img), values)


def test_to_image_modes_3d_and_tensors():
    rgb = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    rgba = np.arange(2 * 5 * 4, dtype=np.uint8).reshape(2, 5, 4)
    assert to_image(rgb).mode == "RGB" and np.array_equal(np.asarray(to_image(rgb)), rgb)
    assert to_image(rgba).mode == "RGBA" and np.array_equal(np.asarray(to_image(rgba)), rgba)
    assert to_image(rgb[..., :1]).mode == "L"
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    assert np.array_equal(np.asarray(to_image(chw)), rgb)
    assert np.array_equal(np.asarray(to_image(torch.from_numpy(rgb))), rgb)  # HWC tensor
    f = torch.tensor([[0.0, 1.0]], dtype=torch.bfloat16)
    np.testing.assert_array_equal(np.asarray(to_image(f)), [[0, 255]])
    assert to_image(rgb, mode="L").mode == "L"
    assert to_image(np.zeros((2, 2)), mode="RGB").mode == "RGB"
    fimg = to_image(np.array([[1.5, -2.0]]), mode="F")
    assert fimg.mode == "F" and np.asarray(fimg).tolist() == [[1.5, -2.0]]
    # the image owns its pixels
    src = rgb.copy()
    img = to_image(src)
    src[:] = 0
    assert np.asarray(img).max() > 0


def test_to_image_errors():
    with pytest.raises(ValueError, match=r"Got ndarray of shape \(2, 2, 2\)"):
        to_image(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="must be >= cmin"):
        to_image(np.zeros((2, 2)), cmin=1, cmax=0)
    with pytest.raises(ValueError, match="'mode' parameter"):
        to_image(np.zeros((2, 2, 3)), mode="F")
    with pytest.raises(TypeError, match="complex"):
        to_image(np.zeros((2, 2), complex))
    with pytest.raises(TypeError, match="Got list"):
        to_image([[0, 1]])


# -- save_image --------------------------------------------------------------------------
def test_save_image_atomic_and_refuses_overwrite(tmp_path):
    p = tmp_path / "a.png"
    assert save_image(np.eye(4), p) == p
    first = p.read_bytes()
    np.testing.assert_array_equal(np.asarray(Image.open(p)), np.eye(4, dtype=np.uint8) * 255)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_image(np.zeros((4, 4)), p)
    assert p.read_bytes() == first
    save_image(np.zeros((4, 4), np.uint8), str(p), overwrite=True)
    assert p.read_bytes() != first
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.png"]  # no temporary files


def test_save_image_kwargs_formats_and_errors(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    lo = save_image(rgb, tmp_path / "lo.jpg", quality=10)
    hi = save_image(Image.fromarray(rgb), tmp_path / "hi.jpeg", quality=95)
    assert lo.stat().st_size < hi.stat().st_size
    with pytest.raises(ValueError, match="cannot write a RGBA image as JPEG"):
        save_image(np.zeros((4, 4, 4), np.uint8), tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="image suffix"):
        save_image(rgb, tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        save_image(rgb, tmp_path / "missing" / "x.png")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["hi.jpeg", "lo.jpg"]


# -- load_image --------------------------------------------------------------------------
def _two_halves(w: int = 40, h: int = 20) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)  # left red
    a[:, w // 2 :] = (0, 0, 255)  # right blue
    return a


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_load_image_applies_exif_orientation(tmp_path, suffix):
    img = Image.fromarray(_two_halves())
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = tmp_path / f"rot{suffix}"
    img.save(p, exif=exif.tobytes(), **({"quality": 95} if suffix == ".jpg" else {}))
    tensor, original = load_image(p, size=None, mean=None, std=None)
    assert original.shape == (40, 20, 3)  # upright: now tall
    assert tensor.shape == (1, 3, 40, 20)
    top, bottom = original[5, 10].astype(int), original[35, 10].astype(int)
    assert np.abs(top - (255, 0, 0)).max() < 12  # left (red) went to the top
    assert np.abs(bottom - (0, 0, 255)).max() < 12
    np.testing.assert_allclose(tensor[0].permute(1, 2, 0).numpy() * 255, original, atol=0.51)


def test_load_image_16bit_png(tmp_path):
    v = np.array([[0, 257, 1000], [32768, 65534, 65535]], dtype=np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(v).save(p)
    assert Image.open(p).mode in ("I;16", "I")
    tensor, original = load_image(p, size=None, mean=None, std=None)
    expected = v.astype(np.float32) / 65535
    for c in range(3):
        np.testing.assert_allclose(tensor[0, c].numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(original[..., 1], np.rint(expected * 255).astype(np.uint8))
    assert original[0, 1].tolist() == [1, 1, 1]  # 257 / 65535 * 255 = 1


def test_load_image_gray_rgba_palette(tmp_path):
    Image.fromarray(np.array([[0, 128]], np.uint8)).save(tmp_path / "g.png")
    _, g = load_image(tmp_path / "g.png", size=None)
    assert g.tolist() == [[[0, 0, 0], [128, 128, 128]]]
    rgba = np.array([[[0, 0, 0, 0], [0, 0, 0, 128], [10, 20, 30, 255]]], np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    _, a = load_image(tmp_path / "a.png", size=None)
    # onto white: c * a + 255 * (1 - a); 255 * (1 - 128/255) = 127
    assert a.tolist() == [[[255, 255, 255], [127, 127, 127], [10, 20, 30]]]
    pal = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    pal.putpalette([200, 0, 0, 0, 200, 0])
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    _, pp = load_image(tmp_path / "p.png", size=None)
    assert pp.tolist() == [[[255, 255, 255], [0, 200, 0]]]


def test_load_image_size_and_normalisation(tmp_path):
    p = save_image(np.full((30, 50, 3), 128, np.uint8), tmp_path / "c.png")
    t, orig = load_image(p)
    assert t.shape == (1, 3, 224, 224) and t.dtype == torch.float32
    assert orig.shape == (30, 50, 3) and orig.dtype == np.uint8
    expected = (128 / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(t[0, :, 10, 10].numpy(), expected, rtol=1e-5)
    assert load_image(p, size=8)[0].shape == (1, 3, 8, 8)
    assert load_image(p, size=(6, 9))[0].shape == (1, 3, 6, 9)
    t2, _ = load_image(p, size=None, mean=None, std=None)
    assert t2.shape == (1, 3, 30, 50)
    torch.testing.assert_close(t2, torch.full((1, 3, 30, 50), 128 / 255))


def test_load_image_errors(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        load_image(missing)
    with pytest.raises(IsADirectoryError):
        load_image(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(bad)
    assert bad.read_bytes() == b"\x89PNG\r\n\x1a\nnot really"
    good = save_image(np.zeros((4, 4), np.uint8), tmp_path / "z.png")
    with pytest.raises(ValueError, match="'size' parameter of load_image"):
        load_image(good, size=(0, 4))
    with pytest.raises(ValueError, match="must be given together"):
        load_image(good, std=None)


# -- unstandardize -------------------------------------------------------------------------
def test_denormalize_round_trip():
    x = torch.rand(2, 3, 5, 5)
    m = torch.tensor(IMAGENET_MEAN)[:, None, None]
    s = torch.tensor(IMAGENET_STD)[:, None, None]
    n = (x - m) / s
    before = n.clone()
    torch.testing.assert_close(unstandardize(n), x)
    torch.testing.assert_close(unstandardize(n[1]), x[1])
    assert torch.equal(n, before)
    arr = unstandardize(n.numpy())
    assert isinstance(arr, np.ndarray)
    np.testing.assert_allclose(arr, x.numpy(), atol=1e-6)
    # clamped to [0, 1]
    assert unstandardize(torch.full((3, 1, 1), 100.0)).tolist() == [[[1.0]]] * 3
    out = unstandardize(torch.zeros(1, 3, 1, 1), mean=(0.5,), std=(1.0,))
    assert out.flatten().tolist() == [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        unstandardize(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="std != 0"):
        unstandardize(torch.zeros(3, 2, 2), std=(0, 1, 1))


@cuda
def test_denormalize_stays_on_cuda():
    assert unstandardize(torch.zeros(3, 2, 2, device="cuda")).device.type == "cuda"


# -- property tests ----------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    channels=st.sampled_from([0, 3, 4]),
    suffix=st.sampled_from([".png", ".bmp", ".tiff", ".webp"]),
    seed=st.integers(0, 2**16),
)
def test_uint8_round_trip_through_files(h, w, channels, suffix, seed):
    if suffix == ".bmp" and channels == 4:
        suffix = ".png"  # Pillow reads 32-bit BMP back without its alpha
    kw = {"lossless": True, "exact": True} if suffix == ".webp" else {}
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 0 else (h, w, channels)
    a = rng.integers(0, 256, size=shape, dtype=np.uint8)
    img = to_image(a)
    assert img.mode == {0: "L", 3: "RGB", 4: "RGBA"}[channels]
    np.testing.assert_array_equal(np.asarray(img), a)
    with tempfile.TemporaryDirectory() as d:
        p = save_image(a, Path(d) / f"x{suffix}", **kw)
        tensor, original = load_image(p, size=None, mean=None, std=None)
    if channels == 0:
        expected = np.repeat(a[..., None], 3, axis=2)
    elif channels == 3:
        expected = a
    else:
        alpha = a[..., 3:].astype(np.float64) / 255
        expected = np.rint(a[..., :3] / 255 * alpha * 255 + 255 * (1 - alpha)).astype(np.uint8)
    assert original.shape == (h, w, 3)
    assert np.abs(original.astype(int) - expected.astype(int)).max() <= (1 if channels == 4 else 0)
    assert tensor.shape == (1, 3, h, w)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 10),
    w=st.integers(1, 10),
    dtype=st.sampled_from(["float16", "float32", "float64", "int32", "bool"]),
    seed=st.integers(0, 2**16),
)
def test_to_image_float_property(h, w, dtype, seed):
    rng = np.random.default_rng(seed)
    a = (rng.normal(size=(h, w)) * 10).astype(dtype)
    out = np.asarray(to_image(a))
    assert out.shape == (h, w) and out.dtype == np.uint8
    if dtype == "bool":
        np.testing.assert_array_equal(out, a.astype(np.uint8) * 255)
        return
    np.testing.assert_array_equal(out, scipy_bytescale(a.astype(np.float64)))
    if a.max() > a.min():
        assert out.flat[np.argmin(a)] == 0 and out.flat[np.argmax(a)] == 255


def test_public_names():
    assert featviz.load_image is load_image
    assert featviz.IMAGENET_MEAN == (0.485, 0.456, 0.406)


# -- non-finite values (issue 14) --------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_image_one_non_finite_pixel_is_black_and_the_rest_scaled(bad):
    a = np.array([[0.0, 1.0], [2.0, bad]])
    with pytest.warns(RuntimeWarning, match="1 non-finite"):
        img = to_image(a)
    np.testing.assert_array_equal(np.asarray(img), [[0, 128], [255, 0]])
    with pytest.warns(RuntimeWarning):
        rgb = to_image(np.stack([a, a, a], -1).astype(np.float16))
    np.testing.assert_array_equal(np.asarray(rgb)[..., 0], [[0, 128], [255, 0]])
    with pytest.warns(RuntimeWarning):  # tensors too
        t = to_image(torch.tensor(a, dtype=torch.float32))
    np.testing.assert_array_equal(np.asarray(t), [[0, 128], [255, 0]])


def test_to_image_all_non_finite_is_black_and_cmin_cmax_must_be_finite():
    with pytest.warns(RuntimeWarning, match="4 non-finite"):
        img = to_image(np.full((2, 2), np.nan))
    np.testing.assert_array_equal(np.asarray(img), np.zeros((2, 2)))
    for name in ("cmin", "cmax"):
        with pytest.raises(ValueError, match=f"'{name}' parameter of to_image .* Got nan"):
            to_image(np.zeros((2, 2)), **{name: float("nan")})
        with pytest.raises(ValueError, match=f"'{name}' parameter of to_image"):
            to_image(np.zeros((2, 2)), **{name: "1"})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=16), min_size=6, max_size=6
    ),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
)
def test_to_image_non_finite_rule_property(values, dtype):
    a = np.array(values, dtype=np.float64).reshape(2, 3).astype(dtype)
    finite = np.isfinite(a)
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = np.asarray(to_image(a))
    assert (len(seen) > 0) == (not finite.all())
    assert (out[~finite] == 0).all()
    if finite.any():
        f = a[finite].astype(np.float64)
        want = np.clip((f - f.min()) * (255.0 / ((f.max() - f.min()) or 1.0)), 0, 255) + 0.5
        np.testing.assert_array_equal(out[finite], want.astype(np.uint8))


def test_load_image_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 > 2 x 1000: an error
    with pytest.raises(ValueError, match=r"big\.png.*too large.*MAX_IMAGE_PIXELS"):
        load_image(path)
