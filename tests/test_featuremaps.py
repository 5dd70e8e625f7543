from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import featviz
from featviz.featuremaps import (
    colorize,
    normalize,
    overlay,
    plot_feature_grid,
    plot_overlays,
    sum_channels,
    upsample,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# (2, 3, 2, 2): two images, three channels, hand-written
FMAP = torch.tensor(
    [
        [[[1.0, -2.0], [0.0, 3.0]], [[2.0, 2.0], [-1.0, 0.0]], [[0.0, 1.0], [4.0, -3.0]]],
        [[[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]], [[-1.0, 5.0], [2.0, 2.0]]],
    ]
)


# -- sum_channels ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reduce", "expected"),
    [
        ("sum", [[[3.0, 1.0], [3.0, 0.0]], [[0.0, 6.0], [3.0, 3.0]]]),
        ("mean", [[[1.0, 1 / 3], [1.0, 0.0]], [[0.0, 2.0], [1.0, 1.0]]]),
        ("max", [[[2.0, 2.0], [4.0, 3.0]], [[1.0, 5.0], [2.0, 2.0]]]),
        ("abs-sum", [[[3.0, 5.0], [5.0, 6.0]], [[2.0, 6.0], [3.0, 3.0]]]),
    ],
)
def test_sum_channels_hand_computed(reduce, expected):
    before = FMAP.clone()
    out = sum_channels(FMAP, reduce=reduce)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor(expected))
    torch.testing.assert_close(sum_channels(FMAP[1], reduce=reduce), torch.tensor(expected[1]))
    arr = sum_channels(FMAP.numpy(), reduce=reduce)
    assert isinstance(arr, np.ndarray)
    np.testing.assert_allclose(arr, np.array(expected, dtype=np.float32), rtol=1e-6)
    assert torch.equal(FMAP, before)


def test_sum_channels_int_and_errors():
    out = sum_channels(np.ones((4, 2, 3), dtype=np.int64), reduce="mean")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.ones((2, 3), np.float32))
    with pytest.raises(
        ValueError, match=r"'activations' parameter of sum_channels .* Got shape \(2, 3\)"
    ):
        sum_channels(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="'reduce' parameter"):
        sum_channels(FMAP, reduce="median")
    with pytest.raises(TypeError, match="Got list"):
        sum_channels([[1.0]])


# -- normalize ---------------------------------------------------------------------------
def test_normalize_values_and_constant():
    m = torch.tensor([[0.0, 2.0], [4.0, 8.0]])
    torch.testing.assert_close(normalize(m), torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    const = normalize(np.full((2, 3, 3), 7.0, dtype=np.float32))
    assert isinstance(const, np.ndarray)
    np.testing.assert_array_equal(const, np.zeros((2, 3, 3), np.float32))
    assert not np.isnan(const).any()
    batch = torch.stack([m, m * 10 + 5])
    torch.testing.assert_close(normalize(batch)[1], normalize(m))
    # global: one min (0) and max (85) for both images
    torch.testing.assert_close(normalize(batch, per_image=False), batch / 85.0)
    assert torch.equal(m, torch.tensor([[0.0, 2.0], [4.0, 8.0]]))  # input unchanged
    with pytest.raises(ValueError, match="'heatmaps' parameter of normalize"):
        normalize(np.zeros(5))


# -- upsample ----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(224, 224), (13, 29), (7, 7), (3, 5), (20, 4), (1, 1)])
def test_upsample_equals_opencv_inter_linear(size):
    import cv2

    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 9)).astype(np.float32)
    ref = cv2.resize(x, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    got = upsample(x, size)
    assert isinstance(got, np.ndarray)
    assert got.shape == size
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    # batched tensors give the same numbers per image
    batch = torch.from_numpy(np.stack([x, 2 * x]))
    got_t = upsample(batch, size)
    assert isinstance(got_t, torch.Tensor)
    np.testing.assert_allclose(got_t[1].numpy(), 2 * ref, atol=2e-5, rtol=0)
    got_4d = upsample(batch[:, None], size)
    assert got_4d.shape == (2, 1, *size)


def test_upsample_nearest_and_antialias():
    import cv2

    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    ref = cv2.resize(x, (11, 9), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(upsample(x, (9, 11), mode="nearest"), ref)
    # shrinking 4x: plain bilinear samples 2 pixels, antialias averages the footprint
    big = np.zeros((8, 8), np.float32)
    big[:, ::2] = 1.0
    assert np.allclose(upsample(big, 2, antialias=True), 0.5, atol=0.1)
    np.testing.assert_allclose(
        upsample(big, 2), cv2.resize(big, (2, 2), interpolation=cv2.INTER_LINEAR), atol=1e-6
    )


def test_upsample_same_size_is_a_copy_and_errors():
    x = torch.rand(3, 3)
    y = upsample(x, 3)
    torch.testing.assert_close(x, y)
    y += 1
    assert float(x.max()) <= 1.0
    with pytest.raises(ValueError, match="'size' parameter of upsample"):
        upsample(x, (0, 3))
    with pytest.raises(ValueError, match="'mode' parameter of upsample"):
        upsample(x, 4, mode="lanczos")


# -- colorize ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["jet", "viridis", "gray", "magma", "turbo"])
def test_colorize_equals_matplotlib(name):
    import matplotlib

    vals = np.concatenate(
        [np.linspace(-0.2, 1.2, 2001), [0.0, 1.0, 1 / 256, 255 / 256, np.nan]]
    ).astype(np.float32)
    expected = matplotlib.colormaps[name](vals, bytes=True)[..., :3]
    np.testing.assert_array_equal(colorize(vals, name), expected)
    t = colorize(torch.from_numpy(vals.reshape(1, 1, -1)), matplotlib.colormaps[name])
    assert t.dtype == torch.uint8 and t.shape == (1, 1, vals.size, 3)
    np.testing.assert_array_equal(t.numpy()[0, 0], expected)


def test_colorize_custom_under_over_bad_and_ints():
    import matplotlib

    cm = matplotlib.colormaps["viridis"].with_extremes(under="red", over="blue", bad="lime")
    vals = np.array([-0.5, 0.5, 1.5, np.nan])
    np.testing.assert_array_equal(colorize(vals, cm), cm(vals, bytes=True)[..., :3])
    ints = np.array([[0, 17], [255, 300]])
    np.testing.assert_array_equal(
        colorize(ints, "jet"), matplotlib.colormaps["jet"](ints, bytes=True)[..., :3]
    )


def test_colorize_opencv_jet_table():
    import cv2

    x = np.linspace(0, 1, 997).reshape(1, -1)
    ref = cv2.applyColorMap(np.uint8(255 * x), cv2.COLORMAP_JET)[..., ::-1]
    np.testing.assert_array_equal(colorize(x, "cv2:jet"), ref)
    assert colorize(np.array([0.0]), "cv2:jet").tolist() == [[0, 0, 128]]  # dark blue in RGB
    with pytest.raises(ValueError, match="unknown OpenCV colour map"):
        colorize(x, "cv2:nope")
    with pytest.raises(ValueError, match="'cmap' parameter"):
        colorize(x, "no-such-map")


# -- overlay -----------------------------------------------------------------------------
IMG = np.array([[[10, 20, 30], [200, 100, 0]], [[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
HEAT = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
# gray colour map: 0 -> (0, 0, 0), 1 -> (255, 255, 255); alpha 0.5: round(img/2 + col/2)
# (torch.round: halves to even, like OpenCV's cvRound)
BLEND_2X2 = np.array(
    [[[5, 10, 15], [228, 178, 128]], [[128, 128, 128], [128, 128, 128]]], dtype=np.uint8
)


def test_overlay_2x2_by_hand():
    out = overlay(IMG, HEAT, alpha=0.5, cmap="gray")
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, BLEND_2X2)
    # values of the heatmap only matter up to min-max normalisation
    np.testing.assert_array_equal(overlay(IMG, HEAT * 7 - 3, alpha=0.5, cmap="gray"), BLEND_2X2)
    # alpha 0: the image; alpha 1: the colours
    np.testing.assert_array_equal(overlay(IMG, HEAT, alpha=0.0), IMG)
    np.testing.assert_array_equal(
        overlay(IMG, HEAT, alpha=1.0, cmap="gray")[..., 0], (HEAT * 255).astype(np.uint8)
    )


def _ref_overlay(img_u8: np.ndarray, heat: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Per-image OpenCV reference: normalise, resize, cv2 JET, blend."""
    import cv2

    h = (heat - heat.min()) / max(heat.max() - heat.min(), 1e-12)
    h = cv2.resize(h.astype(np.float32), img_u8.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    col = cv2.applyColorMap(np.uint8(255 * np.clip(h, 0, 1)), cv2.COLORMAP_JET)[..., ::-1]
    return cv2.addWeighted(img_u8, 1 - alpha, np.ascontiguousarray(col), alpha, 0)


def test_overlay_matches_opencv_pipeline():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    heat = rng.random((7, 7)).astype(np.float32)
    got = overlay(img, heat, cmap="cv2:jet")
    diff = np.abs(got.astype(int) - _ref_overlay(img, heat).astype(int))
    assert diff.max() <= 1  # float rounding of the blend
    assert (diff == 0).mean() > 0.99


def _kinds(img: np.ndarray):
    from PIL import Image

    f = img.astype(np.float32) / 255.0
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    chw = torch.from_numpy(f).permute(2, 0, 1)
    normed = (chw - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    return {
        "pil": (Image.fromarray(img), {}),
        "hwc_uint8": (img, {}),
        "hwc_float": (f, {}),
        "chw_tensor": (chw, {}),
        "chw_uint8_tensor": (torch.from_numpy(img).permute(2, 0, 1), {}),
        "normalized_tensor": (normed, {"mean": mean, "std": std}),
        "rgba_opaque": (np.concatenate([img, np.full((*img.shape[:2], 1), 255, np.uint8)], 2), {}),
    }


def test_overlay_every_input_kind_agrees():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    heat = rng.random((4, 4))
    ref = overlay(img, heat)
    assert ref.shape == (12, 10, 3)
    for name, (kind, kw) in _kinds(img).items():
        out = overlay(kind, heat, **kw)
        out_np = out.numpy() if isinstance(out, torch.Tensor) else out
        assert isinstance(out, torch.Tensor) == isinstance(kind, torch.Tensor), name
        assert out_np.shape == (12, 10, 3) and out_np.dtype == np.uint8, name
        assert np.abs(out_np.astype(int) - ref.astype(int)).max() <= 1, name
    # batched tensor: (1, C, H, W) gives (1, H, W, 3)
    assert overlay(torch.from_numpy(img).permute(2, 0, 1)[None], heat).shape == (1, 12, 10, 3)


def test_overlay_grayscale_and_alpha():
    from PIL import Image

    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    expected = overlay(rgb, HEAT, alpha=0.5, cmap="gray")
    for kind in (gray, Image.fromarray(gray), torch.from_numpy(gray), gray[..., None]):
        out = overlay(kind, HEAT, alpha=0.5, cmap="gray")
        out = out.numpy() if isinstance(out, torch.Tensor) else out
        np.testing.assert_array_equal(out, expected)
    # fully transparent pixels are composited onto white
    rgba = np.zeros((2, 2, 4), np.uint8)
    np.testing.assert_array_equal(overlay(rgba, HEAT, alpha=0.0), np.full((2, 2, 3), 255))


def test_overlay_batches_and_broadcast():
    rng = np.random.default_rng(3)
    imgs = torch.rand(3, 3, 16, 16)
    heats = torch.from_numpy(rng.random((3, 5, 5)).astype(np.float32))
    out = overlay(imgs, heats)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 16, 16, 3)
    for i in range(3):  # batch == one by one
        torch.testing.assert_close(out[i], overlay(imgs[i], heats[i]))
    # one image, three heatmaps; (N, 1, h, w) heatmaps; numpy batch (N, H, W, C)
    assert overlay(imgs[0], heats).shape == (3, 16, 16, 3)
    torch.testing.assert_close(overlay(imgs, heats[:, None]), out)
    nhwc = (imgs.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    assert overlay(nhwc, heats.numpy()).shape == (3, 16, 16, 3)
    # a heatmap larger than the image is shrunk
    assert overlay(imgs[0], torch.rand(64, 64)).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="hold 3 and 2 items"):
        overlay(imgs, heats[:2])


def test_overlay_errors_and_inputs_untouched():
    img = torch.rand(3, 8, 8)
    heat = torch.rand(4, 4)
    before_i, before_h = img.clone(), heat.clone()
    overlay(img, heat, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert torch.equal(img, before_i) and torch.equal(heat, before_h)
    with pytest.raises(ValueError, match=r"'alpha' parameter of overlay .* Got 1.5"):
        overlay(img, heat, alpha=1.5)
    with pytest.raises(ValueError, match="given together"):
        overlay(img, heat, mean=(0.5,))
    with pytest.raises(ValueError, match="channel-last"):
        overlay(np.zeros((3, 8, 8), np.uint8), heat)
    with pytest.raises(TypeError, match="'images' parameter of overlay"):
        overlay([[0]], heat)
    with pytest.raises(TypeError, match=r"dtype torch\.int32"):
        overlay(torch.zeros(3, 8, 8, dtype=torch.int32), heat)
    with pytest.raises(ValueError, match="'heatmaps' parameter"):
        overlay(img, torch.rand(2, 3, 4, 4))


@cuda
def test_overlay_and_colorize_stay_on_cuda():
    img = torch.rand(2, 3, 16, 16, device="cuda")
    out = overlay(img, torch.rand(2, 4, 4, device="cuda"))
    assert out.device.type == "cuda"
    assert colorize(torch.rand(4, 4, device="cuda")).device.type == "cuda"
    assert upsample(torch.rand(4, 4, device="cuda"), 8).device.type == "cuda"


# -- plots -------------------------------------------------------------------------------
def test_plot_feature_grid_panels():
    fmap = torch.arange(5 * 3 * 4, dtype=torch.float32).reshape(1, 5, 3, 4)
    fig = plot_feature_grid(fmap)
    assert len(fig.axes) == 6  # 5 channels + sum, in a 3x2 grid with nothing spare
    for i in range(5):
        np.testing.assert_array_equal(fig.axes[i].images[0].get_array(), fmap[0, i].numpy())
    np.testing.assert_array_equal(fig.axes[5].images[0].get_array(), fmap[0].sum(0).numpy())
    assert fig.axes[5].get_title() == "sum"

    fig = plot_feature_grid(fmap[0].numpy(), max_channels=2, ncols=1, sum_panel=False)
    assert len(fig.axes) == 2
    assert "2 of 5 channels" in fig._suptitle.get_text()
    rows = {round(ax.get_position().y0, 3) for ax in fig.axes}
    assert len(rows) == 2  # one column -> two rows
    with pytest.raises(ValueError, match="select one image"):
        plot_feature_grid(torch.rand(2, 3, 4, 4))


def test_plot_feature_grid_into_given_figure():
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.add_subplot(111).plot([1, 2])
    assert plot_feature_grid(torch.rand(3, 4, 4), fig=fig) is fig
    assert len(fig.axes) == 4 and not fig.axes[0].lines


def test_plot_overlays_rows():
    imgs = torch.rand(2, 3, 16, 16)
    heats = torch.rand(2, 4, 4)
    fig = plot_overlays(imgs, heats, titles=["cat", "dog"])
    assert len(fig.axes) == 6
    ov = overlay(imgs, heats).numpy()
    for i in range(2):
        a0, a1, a2 = fig.axes[3 * i : 3 * i + 3]
        np.testing.assert_array_equal(
            a0.images[0].get_array(), (imgs[i].permute(1, 2, 0) * 255).round().byte().numpy()
        )
        hm = np.asarray(a1.images[0].get_array())
        assert hm.shape == (16, 16) and hm.min() >= 0 and hm.max() <= 1
        np.testing.assert_array_equal(a2.images[0].get_array(), ov[i])
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "heatmap", "overlay"]
    assert fig.axes[3].get_ylabel() == "dog"
    fig = plot_overlays(imgs[0], heats[0], colorbar=True, cmap="cv2:jet")
    assert len(fig.axes) == 4  # one row + colour bar
    with pytest.raises(ValueError, match="one entry per row"):
        plot_overlays(imgs, heats, titles=["only one"])


def test_public_names():
    assert featviz.overlay is overlay and featviz.colorize is colorize


def test_overlay_equals_its_definition():
    """floor(0.6 * image + 0.4 * colorize(resized normalised heatmap) + 0.5)."""
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, size=(2, 9, 11, 3), dtype=np.uint8)
    heat = rng.normal(size=(2, 9, 11)).astype(np.float32)  # same size: no resize
    colour = colorize(normalize(heat), "viridis").astype(np.float32)
    expected = np.floor(np.float32(0.6) * img + np.float32(0.4) * colour + 0.5)
    got = overlay(img, heat, cmap="viridis")
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert (got == expected).mean() > 0.99
    # with resizing: the heatmap goes through the upsample rule
    small = rng.random((2, 3, 4)).astype(np.float32)
    big = np.clip(upsample(normalize(small), (9, 11)), 0, 1)
    colour = colorize(big, "viridis").astype(np.float32)
    expected = np.floor(np.float32(0.6) * img + np.float32(0.4) * colour + 0.5)
    diff = np.abs(overlay(img, small, cmap="viridis").astype(int) - expected.astype(int))
    assert diff.max() <= 2 and (diff == 0).mean() > 0.99


def test_overlay_chunking_does_not_change_results():
    from featviz.overlays import _blend_cpu, _blend_torch, _colour_rows, _prepare

    gen = torch.Generator().manual_seed(0)
    imgs = torch.rand(5, 3, 12, 10, generator=gen)
    heats = torch.rand(5, 4, 4, generator=gen)
    table, opencv = _colour_rows("jet")
    p = _prepare(imgs, heats, 0.4, None, None, True)
    whole = _blend_torch(p, 0.4, table, opencv)
    for pixels in (1, 120, 250):  # 1, 1 and 2 images per chunk
        assert torch.equal(_blend_torch(p, 0.4, table, opencv, chunk_pixels=pixels), whole)
    # the OpenCV path (what overlay uses on the CPU), float and uint8 images, likewise
    p8 = _prepare((imgs * 255).to(torch.uint8), heats, 0.4, None, None, True)
    for prep, ref in (
        (p, overlay(imgs, heats)),
        (p8, overlay(p8.images.permute(0, 3, 1, 2), heats)),
    ):
        for pixels in (1, 120, 250, 10_000):
            assert torch.equal(_blend_cpu(prep, 0.4, table, opencv, pixels), ref)
    diff = (overlay(imgs, heats).int() - whole.int()).abs()
    assert int(diff.max()) <= 1 and float((diff == 0).float().mean()) > 0.99


@pytest.mark.parametrize("cmap", ["jet", "cv2:jet", "viridis", "tab10", "gray"])
def test_overlay_opencv_path_equals_torch_path(cmap, monkeypatch):
    """On the CPU overlays go through OpenCV; the numbers are the torch path's."""
    import featviz.overlays as fm

    calls = []
    real = fm._blend_cpu
    monkeypatch.setattr(fm, "_blend_cpu", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, size=(3, 16, 20, 3), dtype=np.uint8)
    same = rng.random((3, 16, 20)).astype(np.float32)  # no resizing: identical numbers
    same[0, 0, 0], same[0, 0, 1] = 0.0, 1.0  # the ends of the table
    small = rng.random((3, 5, 4)).astype(np.float32)

    def both(image, heat, alpha):  # (overlay, the torch path) as int arrays
        p = fm._prepare(image, heat, alpha, None, None, True)
        torch_path = fm._blend_torch(p, alpha, *fm._colour_rows(cmap)).numpy()
        return overlay(image, heat, alpha=alpha, cmap=cmap).astype(int), torch_path.astype(int)

    for alpha in (0.0, 0.25, 0.4, 0.5, 0.75, 1.0):  # 0.5: halves must round up
        np.testing.assert_array_equal(*both(img, same, alpha))
        diff = np.abs(np.subtract(*both(img, small, alpha)))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999
    assert len(calls) == 12
    # float images: blended as float32 in [0, 255] by both paths
    imgf = img.astype(np.float32) / 255.0
    for alpha in (0.25, 0.4, 0.5):
        diff = np.abs(np.subtract(*both(imgf, same, alpha)))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999
    assert len(calls) == 15
    # a channel-first tensor (not contiguous as channel-last) and a broadcast image
    chw = torch.from_numpy(img).permute(0, 3, 1, 2).contiguous()
    from_tensor = overlay(chw, torch.from_numpy(small)).numpy()
    np.testing.assert_array_equal(from_tensor, overlay(img, small))
    np.testing.assert_array_equal(overlay(img[0], small), overlay(img[[0, 0, 0]], small))
    assert len(calls) == 19


@pytest.mark.parametrize("shape", [(2, 4000), (4000, 2), (1, 1)])
def test_plot_overlays_figure_size_is_capped_for_extreme_aspect_ratios(shape):
    from featviz import plot_overlays

    h, w = shape
    fig = plot_overlays(torch.rand(1, 3, h, w), torch.rand(1, 4, 4))
    width, height = fig.get_size_inches()
    assert width == 7.5
    assert 0.5 < height <= 2.5 * 8 + 0.75  # one row, at most 8x the width's aspect
    fig.savefig(io.BytesIO(), dpi=50)  # renders: no runaway canvas
