"""Image format conversion: pixel rules, metadata, safety, batch reports, CLI, properties."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFile, PngImagePlugin

import featviz
from featviz import convert as conv
from featviz.cli import main
from featviz.convert import ConversionReport, _rules, _single, convert_image, convert_images


def blend(c, a, bg):
    """The documented compositing rule, in exact integer arithmetic."""
    c, a, bg = np.asarray(c, np.int64), np.asarray(a, np.int64), np.asarray(bg, np.int64)
    return np.floor((c * a + bg * (255 - a)) / 255 + 0.5).astype(np.int64)


def pixels(path):
    with Image.open(path) as im:
        return im.mode, np.asarray(im).copy()


def no_temp_files(folder: Path) -> bool:
    return not any(".tmp" in p.name for p in folder.iterdir())


@pytest.fixture
def rgba_png(tmp_path):
    """16x48 RGBA: left block fully transparent, middle half (a=128), right opaque."""
    a = np.zeros((16, 48, 4), np.uint8)
    a[..., :3] = (200, 100, 50)
    a[:, :16, 3] = 0
    a[:, 16:32, 3] = 128
    a[:, 32:, 3] = 255
    p = tmp_path / "rgba.png"
    Image.fromarray(a).save(p)
    return p


# --------------------------------------------------------------------------- transparency


def test_rgba_to_bmp_composites_exactly(rgba_png):
    bg = (10, 220, 30)
    out = convert_image(rgba_png, "bmp", background=bg)
    assert out == rgba_png.with_suffix(".bmp")
    mode, px = pixels(out)
    assert mode == "RGB"
    assert px[0, 0].tolist() == [10, 220, 30]  # fully transparent -> background
    # half transparent: round((200*128 + 10*127)/255) = 105, (100*128+220*127)/255 -> 160,
    # (50*128 + 30*127)/255 -> 40
    assert px[0, 20].tolist() == [105, 160, 40]
    assert px[0, 20].tolist() == blend((200, 100, 50), 128, bg).tolist()
    assert px[0, 40].tolist() == [200, 100, 50]


def test_composite_rule_holds_for_every_alpha(tmp_path):
    a = np.zeros((1, 256, 4), np.uint8)
    a[0, :, 0] = 255
    a[0, :, 1] = np.arange(256)
    a[0, :, 2] = 17
    a[0, :, 3] = np.arange(256)
    src = tmp_path / "ramp.png"
    Image.fromarray(a).save(src)
    bg = (0, 255, 200)
    _, px = pixels(convert_image(src, "bmp", background=bg))
    expected = blend(a[0, :, :3], a[0, :, 3:4], bg)
    np.testing.assert_array_equal(px[0].astype(np.int64), expected)


def test_rgba_to_jpeg_blends_onto_background(rgba_png):
    out = convert_image(rgba_png, "jpg", quality=95)
    mode, px = pixels(out)
    assert (mode, px.shape) == ("RGB", (16, 48, 3))
    # uniform 16x16 blocks survive JPEG almost exactly
    np.testing.assert_allclose(px[8, 8], [255, 255, 255], atol=2)
    np.testing.assert_allclose(px[8, 24], blend((200, 100, 50), 128, 255), atol=2)  # 227,177,152
    np.testing.assert_allclose(px[8, 40], [200, 100, 50], atol=3)


@pytest.mark.parametrize("to", ["png", "webp", "tiff"])
def test_alpha_kept_for_formats_with_alpha(rgba_png, to):
    dst = rgba_png.with_name(f"out.{to}")
    mode, px = pixels(convert_image(rgba_png, to, dst=dst, quality=100))
    assert mode == "RGBA"
    assert px[0, :16, 3].tolist() == [0] * 16
    assert px[0, 20, 3] == 128 and px[0, 40, 3] == 255


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (8, 4), 1)
    im.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)  # 0 blue, 1 red
    im.paste(0, (0, 0, 4, 4))
    im.info["transparency"] = 0
    src = tmp_path / "pal.png"
    im.save(src, transparency=0)
    _, px = pixels(convert_image(src, "bmp", background=(0, 255, 0)))
    assert px[0, 0].tolist() == [0, 255, 0]  # transparent blue -> green background
    assert px[0, 6].tolist() == [255, 0, 0]
    mode, px = pixels(convert_image(src, "png", dst=tmp_path / "pal_out.png"))
    assert mode == "RGBA"
    assert px[0, 0, 3] == 0 and px[0, 6].tolist() == [255, 0, 0, 255]


def test_la_stays_grey_on_grey_background_and_turns_rgb_on_colour(tmp_path):
    a = np.zeros((4, 8, 2), np.uint8)
    a[..., 0] = 100
    a[:, :4, 1] = 0
    a[:, 4:, 1] = 51
    src = tmp_path / "la.png"
    Image.fromarray(a, mode="LA").save(src)
    mode, px = pixels(convert_image(src, "bmp", background=(200, 200, 200)))
    assert mode == "L"
    assert px[0, 0] == 200
    assert px[0, 5] == blend(100, 51, 200)  # (5100 + 40800) / 255 = 180
    assert px[0, 5] == 180
    mode, px = pixels(convert_image(src, "bmp", dst=tmp_path / "la_red.bmp", background="red"))
    assert mode == "RGB"
    assert px[0, 0].tolist() == [255, 0, 0]
    assert px[0, 5].tolist() == blend(100, 51, (255, 0, 0)).tolist()
    mode, px = pixels(convert_image(src, "png", dst=tmp_path / "la2.png"))
    assert mode == "LA" and px[0, 5].tolist() == [100, 51]


# --------------------------------------------------------------------------- colour, depth


def test_cmyk_jpeg_to_png(tmp_path):
    src = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(src, quality=100)
    mode, px = pixels(convert_image(src, "png"))
    assert mode == "RGB"
    np.testing.assert_allclose(px[8, 8], [255, 0, 0], atol=3)


def test_cmyk_tiff_kept_for_tiff_and_exact_rgb_for_bmp(tmp_path):
    src = tmp_path / "cmyk.tif"
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(src)
    mode, px = pixels(convert_image(src, "bmp"))
    assert mode == "RGB" and px[0, 0].tolist() == [255, 0, 0]
    mode, px = pixels(convert_image(src, "tiff", dst=tmp_path / "copy.tiff"))
    assert mode == "CMYK" and px[0, 0].tolist() == [0, 255, 255, 0]


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_scaled_by_high_byte_or_kept(tmp_path, ext):
    a = np.array([[0, 255, 256, 511], [32768, 40000, 65280, 65535]], np.uint16)
    src = tmp_path / f"deep.{ext}"
    Image.fromarray(a).save(src)
    mode, px = pixels(convert_image(src, "bmp"))
    assert mode == "L"
    assert px.tolist() == [[0, 0, 1, 1], [128, 156, 255, 255]]  # v >> 8
    # PNG and TIFF keep all 16 bits
    for to in ("png", "tiff"):
        mode, px = pixels(convert_image(src, to, dst=tmp_path / f"keep_{ext}.{to}"))
        assert mode == "I;16"
        np.testing.assert_array_equal(px, a)


def test_32bit_int_tiff_rules(tmp_path):
    inside = np.array([[0, 256, 65535]], np.int32)
    Image.fromarray(inside, mode="I").save(tmp_path / "i.tif")
    assert pixels(convert_image(tmp_path / "i.tif", "bmp"))[1].tolist() == [[0, 1, 255]]
    outside = np.array([[-100, 0, 100]], np.int32)  # not 16-bit data -> min-max
    Image.fromarray(outside, mode="I").save(tmp_path / "j.tif")
    assert pixels(convert_image(tmp_path / "j.tif", "bmp"))[1].tolist() == [[0, 128, 255]]


def test_float_tiff_rules(tmp_path):
    unit = np.array([[0.0, 0.5, 1.0, np.nan]], np.float32)
    Image.fromarray(unit, mode="F").save(tmp_path / "unit.tif")
    assert pixels(convert_image(tmp_path / "unit.tif", "bmp"))[1].tolist() == [[0, 128, 255, 0]]
    mode, px = pixels(convert_image(tmp_path / "unit.tif", "png"))
    assert mode == "I;16" and px.tolist() == [[0, 32768, 65535, 0]]
    mode, px = pixels(convert_image(tmp_path / "unit.tif", "tiff", dst=tmp_path / "u2.tiff"))
    assert mode == "F"
    np.testing.assert_array_equal(px, unit)
    wide = np.array([[-2.0, 0.0, 2.0, 6.0]], np.float32)  # outside [0, 1] -> min-max
    Image.fromarray(wide, mode="F").save(tmp_path / "wide.tif")
    # (v + 2) / 8 * 255 -> 0, 63.75, 127.5, 255, rounded half to even
    assert pixels(convert_image(tmp_path / "wide.tif", "bmp"))[1].tolist() == [[0, 64, 128, 255]]


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=50)
    with Image.open(src) as im:
        assert im.n_frames == 3
    mode, px = pixels(convert_image(src, "png"))
    assert mode == "RGB" and px.shape == (6, 6, 3)
    assert (px == [255, 0, 0]).all()


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    exif[0x010F] = "featviz-camera"
    src = tmp_path / "rot.jpg"
    Image.fromarray(a).save(src, exif=exif, quality=100)
    out = convert_image(src, "png")
    with Image.open(out) as im:
        assert im.size == (20, 40)  # width and height swapped
        px = np.asarray(im.convert("L"))
        kept = im.getexif()
    assert px[5].mean() > 200 and px[-5].mean() < 50  # white half now on top
    assert 0x0112 not in kept and kept[0x010F] == "featviz-camera"


def test_icc_profile_kept_where_supported(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(src, icc_profile=icc)
    for to in ("jpg", "webp", "tiff"):
        with Image.open(convert_image(src, to)) as im:
            assert im.info.get("icc_profile") == icc, to
    with Image.open(convert_image(src, "bmp")) as im:
        assert "icc_profile" not in im.info
    # an RGB profile does not describe grey pixels: dropped rather than mislabelled
    grey = tmp_path / "grey.png"
    Image.new("L", (8, 8), 5).save(grey, icc_profile=icc)
    with Image.open(convert_image(grey, "jpg")) as im:
        assert not im.info.get("icc_profile")


# --------------------------------------------------------------------------- safety


def test_existing_destination_is_never_replaced(rgba_png, tmp_path):
    dst = tmp_path / "rgba.jpg"
    dst.write_bytes(b"precious")
    src_bytes = rgba_png.read_bytes()
    with pytest.raises(FileExistsError, match=r"rgba\.jpg"):
        convert_image(rgba_png, "jpg")
    assert dst.read_bytes() == b"precious"
    assert rgba_png.read_bytes() == src_bytes
    assert no_temp_files(tmp_path)
    assert convert_image(rgba_png, "jpg", overwrite=True) == dst
    with Image.open(dst) as im:
        assert im.format == "JPEG"


def test_destination_appearing_during_conversion_is_not_replaced(rgba_png, monkeypatch):
    dst = rgba_png.with_suffix(".jpg")
    real_prepare = _single._prepare

    def prepare_then_race(*args, **kwargs):
        dst.write_bytes(b"late")  # another process writes the destination meanwhile
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(_single, "_prepare", prepare_then_race)
    with pytest.raises(FileExistsError, match=r"rgba\.jpg"):
        convert_image(rgba_png, "jpg", remove_source=True)
    assert dst.read_bytes() == b"late" and rgba_png.exists()
    assert no_temp_files(rgba_png.parent)


def test_remove_source_after_verification(rgba_png):
    out = convert_image(rgba_png, "webp", remove_source=True)
    assert not rgba_png.exists()
    with Image.open(out) as im:
        assert im.size == (48, 16)


def test_remove_source_kept_when_verification_fails(rgba_png, tmp_path, monkeypatch):
    def broken(path, fmt, size):
        raise _rules._VerifyError(f"The written file {str(path)!r} does not re-open: simulated")

    monkeypatch.setattr(_single, "_verify_written", broken)
    before = rgba_png.read_bytes()
    with pytest.raises(OSError, match="was kept"):
        convert_image(rgba_png, "jpg", remove_source=True)
    assert rgba_png.read_bytes() == before
    assert not (tmp_path / "rgba.jpg").exists()
    assert no_temp_files(tmp_path)


def test_verification_checks_size(rgba_png, tmp_path):
    p = tmp_path / "x.png"
    Image.new("RGB", (3, 2)).save(p)
    _single._verify_written(p, "PNG", (3, 2))
    with pytest.raises(OSError, match="expected PNG"):
        _single._verify_written(p, "PNG", (2, 3))
    with pytest.raises(OSError, match="expected JPEG"):
        _single._verify_written(p, "JPEG", (3, 2))


def test_remove_source_refused_when_truncated_loading_enabled(rgba_png, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ValueError, match="LOAD_TRUNCATED_IMAGES"):
        convert_image(rgba_png, "jpg", remove_source=True)
    assert rgba_png.exists()


@pytest.mark.parametrize("kind", ["truncated-png", "truncated-jpeg", "garbage"])
def test_corrupt_source_error_names_file_and_is_untouched(tmp_path, kind):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG" if kind == "truncated-jpeg" else "PNG")
    data = buf.getvalue()[: len(buf.getvalue()) // 2] if kind != "garbage" else b"not an image"
    src = tmp_path / ("broken.jpg" if kind == "truncated-jpeg" else "broken.png")
    src.write_bytes(data)
    with pytest.raises(ValueError, match="broken"):
        convert_image(src, "bmp", remove_source=True)
    assert src.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_bad_arguments(rgba_png, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        convert_image(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError, match="names a folder"):
        convert_image(tmp_path)
    with pytest.raises(ValueError, match=r"'to' parameter.*\['bmp', 'jpeg', 'jpg'.*'gif'"):
        convert_image(rgba_png, "gif")
    assert convert_image(rgba_png, ".JPEG").name == "rgba.jpeg"  # case and dot tolerated
    with pytest.raises(ValueError, match="is the source file itself"):
        convert_image(rgba_png, "png")
    with pytest.raises(ValueError, match="must end in one of"):
        convert_image(rgba_png, "jpg", dst=tmp_path / "out.png")
    (tmp_path / "sub.jpg").mkdir()
    with pytest.raises(IsADirectoryError, match=r"sub\.jpg"):
        convert_image(rgba_png, "jpg", dst=tmp_path / "sub.jpg", overwrite=True)
    with pytest.raises(ValueError, match=r"'quality'.*\[1, 100\]. Got 0"):
        convert_image(rgba_png, "jpg", quality=0)
    with pytest.raises(ValueError, match="'background'"):
        convert_image(rgba_png, "jpg", background=(1, 2))
    with pytest.raises(TypeError, match="'overwrite'"):
        convert_image(rgba_png, "jpg", overwrite="yes")


# --------------------------------------------------------------------------- batches


def make_folder(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    sub = root / "sub"
    sub.mkdir(parents=True)
    files = {
        "good": root / "a.png",
        "rgba": root / "b.webp",
        "deep": sub / "c.tif",
        "jpg": root / "d.jpg",
        "corrupt": root / "e.png",
        "text": root / "notes.txt",
    }
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(files["good"])
    Image.new("RGBA", (10, 10), (1, 2, 3, 4)).save(files["rgba"], lossless=True)
    Image.fromarray(np.full((5, 7), 1000, np.uint16)).save(files["deep"])
    Image.new("RGB", (8, 8), "red").save(files["jpg"])
    files["corrupt"].write_bytes(files["good"].read_bytes()[:300])
    files["text"].write_text("hello")
    return files


@pytest.mark.parametrize("workers", [1, 2])
def test_convert_images_report(tmp_path, workers):
    files = make_folder(tmp_path / "in")
    before = {k: p.read_bytes() for k, p in files.items()}
    rep = convert_images(tmp_path / "in", "jpg", workers=workers, progress=False)
    assert isinstance(rep, ConversionReport)
    assert rep.converted == [
        (files["good"], files["good"].with_suffix(".jpg")),
        (files["rgba"], files["rgba"].with_suffix(".jpg")),
    ]
    assert rep.skipped == [
        (files["jpg"], "already JPEG"),
        (files["text"], "not an image file (suffix '.txt')"),
    ]
    assert [s for s, _ in rep.failed] == [files["corrupt"]]
    assert "e.png" in rep.failed[0][1] and "truncated" in rep.failed[0][1]
    assert not rep.ok
    assert rep.summary() == "2 converted, 2 skipped, 1 failed"
    assert {k: p.read_bytes() for k, p in files.items()} == before  # sources untouched
    with Image.open(files["rgba"].with_suffix(".jpg")) as im:
        # (1*4 + 255*251) / 255 = 251.03 -> 251 on a white background
        np.testing.assert_allclose(np.asarray(im)[5, 5], [251, 251, 251], atol=2)


def test_convert_images_recursive_out_dir_and_remove_source(tmp_path):
    files = make_folder(tmp_path / "in")
    files["corrupt"].unlink()
    out = tmp_path / "out"
    rep = convert_images(
        [tmp_path / "in"], "png", out_dir=out, recursive=True, remove_source=True, progress=False
    )
    assert rep.ok and rep.failed == []
    assert sorted(str(d.relative_to(out)) for _, d in rep.converted) == [
        "b.png",
        "d.png",
        "sub/c.png",
    ]
    assert rep.skipped == [
        (files["good"], "already PNG"),
        (files["text"], "not an image file (suffix '.txt')"),
    ]
    assert files["good"].exists() and not files["deep"].exists() and not files["jpg"].exists()
    mode, px = pixels(out / "sub" / "c.png")
    assert mode == "I;16" and (px == 1000).all()


def test_convert_images_collisions_and_missing(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "x.gif")
    rep = convert_images(
        [tmp_path / "x.gif", tmp_path / "x.png", tmp_path / "nope.png"], "jpg", progress=False
    )
    assert rep.converted == [(tmp_path / "x.gif", tmp_path / "x.jpg")]
    assert [s for s, _ in rep.failed] == [tmp_path / "x.png", tmp_path / "nope.png"]
    assert "also that of" in rep.failed[0][1] and "no such file" in rep.failed[1][1]
    # second run: the destination exists now -> a failure naming it, nothing replaced
    before = (tmp_path / "x.jpg").read_bytes()
    rep = convert_images(tmp_path / "x.gif", "jpg", progress=False)
    assert rep.failed and "FileExistsError" in rep.failed[0][1] and "x.jpg" in rep.failed[0][1]
    assert (tmp_path / "x.jpg").read_bytes() == before
    with pytest.raises(ValueError, match="'workers'"):
        convert_images(tmp_path, workers=0)


def test_lazy_export():
    assert featviz.convert_images is convert_images
    assert featviz.ConversionReport is ConversionReport


# --------------------------------------------------------------------------- CLI


def test_cli_exit_codes_and_summary(tmp_path, capsys):
    files = make_folder(tmp_path / "in")
    code = main(["convert", str(tmp_path / "in"), "--to", "JPG", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.strip().splitlines()[-1] == "featviz convert: 2 converted, 2 skipped, 1 failed"
    assert "e.png" in err
    files["corrupt"].unlink()
    code = main(
        ["convert", str(files["good"]), str(files["deep"]), "--to", "webp", "--out",
         str(tmp_path / "w"), "--quality", "80", "--workers", "1", "--no-progress"]
    )  # fmt: skip
    out, _ = capsys.readouterr()
    assert code == 0
    assert out.strip().splitlines()[-1] == "featviz convert: 2 converted, 0 skipped, 0 failed"
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["a.webp", "c.webp"]
    assert main(["convert", str(files["good"]), "--quality", "0", "--no-progress"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(files["good"]), "--to", "gif"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- properties


def random_image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "P":
        im = Image.fromarray(rng.integers(0, 8, (h, w), dtype=np.uint8), mode="L").convert("P")
        im.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
        return im
    bands = len(mode)  # L, LA, RGB, RGBA
    shape = (h, w) if bands == 1 else (h, w, bands)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "I;16"]),
    w=st.integers(1, 40),
    h=st.integers(1, 40),
    src_fmt=st.sampled_from(["png", "tif"]),
    seed=st.integers(0, 2**16),
)
def test_property_every_target_reopens_with_same_size(mode, w, h, src_fmt, seed):
    im = random_image(mode, w, h, seed)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"src.{src_fmt}"
        im.save(src)
        before = src.read_bytes()
        for to in ("jpg", "png", "webp", "bmp", "tiff"):
            out = convert_image(src, to, dst=Path(tmp) / f"out.{to}")
            with Image.open(out) as back:
                back.load()
                assert back.size == (w, h)
                assert back.format == _rules._TARGETS[to]
                if to in ("jpg", "bmp"):
                    assert back.mode in ("L", "RGB")
        assert src.read_bytes() == before


# ----------------------------------------------------------------------- remove_source and losses


def png16(path: Path, a: np.ndarray) -> None:
    """Write a 16-bit-per-channel RGB(A) PNG by hand (Pillow only writes 8-bit RGB)."""
    h, w, c = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def make_lossy(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A source file of one lossy case and the target that loses something."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    camera = Image.Exif()
    camera[0x010F] = "featviz-camera"
    frames = [Image.new("RGB", (6, 4), c) for c in ("red", "lime", "blue")]
    src = tmp_path / {"gif": "anim.gif", "tiff-pages": "pages.tif", "48bit": "deep48.png"}.get(
        case, f"{case}.png"
    )
    if case == "gif":
        frames[0].save(src, save_all=True, append_images=frames[1:], duration=40)
        return src, "png"
    if case == "tiff-pages":
        frames[0].save(src, save_all=True, append_images=frames[1:])
        return src.with_suffix(".tif"), "tiff"
    if case == "alpha":
        Image.new("RGBA", (6, 4), (10, 20, 30, 100)).save(src)
        return src, "jpg"
    if case == "palette-transparency":
        im = Image.new("P", (6, 4), 1)
        im.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
        im.paste(0, (0, 0, 2, 2))
        im.save(src, transparency=0)
        return src, "bmp"
    if case == "16bit":
        Image.fromarray(np.full((4, 6), 1000, np.uint16)).save(src)
        return src, "jpg"
    if case == "48bit":
        png16(src, np.full((4, 6, 3), 40000, np.uint16))
        return src, "png"
    if case == "float":
        src = src.with_suffix(".tif")
        Image.fromarray(np.full((4, 6), 0.3, np.float32), mode="F").save(src)
        return src, "png"
    if case == "cmyk":
        src = src.with_suffix(".jpg")
        Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save(src)
        return src, "png"
    if case == "icc":
        Image.new("RGB", (6, 4), (1, 2, 3)).save(src, icc_profile=srgb)
        return src, "bmp"
    if case == "exif":
        src = src.with_suffix(".jpg")
        Image.new("RGB", (6, 4)).save(src, exif=camera)
        return src, "bmp"
    if case == "xmp":
        src = src.with_suffix(".jpg")
        Image.new("RGB", (6, 4)).save(src, xmp=b"<x:xmpmeta>rating 5</x:xmpmeta>")
        return src, "png"
    if case == "png-text":
        info = PngImagePlugin.PngInfo()
        info.add_text("Title", "holiday")
        Image.new("RGB", (6, 4)).save(src, pnginfo=info)
        return src, "jpg"
    assert case == "comment"
    src = src.with_suffix(".jpg")
    Image.new("RGB", (6, 4)).save(src, comment=b"shot by featviz")
    return src, "webp"


LOSSY = {
    "gif": "frames (pages) 2 to 3",
    "tiff-pages": "frames (pages) 2 to 3",
    "alpha": "its transparency",
    "palette-transparency": "its transparency",
    "16bit": "its 16-bit samples (reduced to 8 bits)",
    "48bit": "its 16-bit colour samples (decoded as 8 bits)",
    "float": "its 32-bit float samples",
    "cmyk": "its CMYK colours",
    "icc": "its ICC colour profile",
    "exif": "its EXIF data",
    "xmp": "its XMP metadata",
    "png-text": "its PNG text chunks",
    "comment": "its comment",
}


@pytest.mark.parametrize("case", sorted(LOSSY))
def test_remove_source_keeps_a_source_the_output_lacks_part_of(tmp_path, case):
    src, to = make_lossy(tmp_path, case)
    before = src.read_bytes()
    dst = tmp_path / f"out.{to}"
    with pytest.warns(conv.SourceKeptWarning) as record:
        assert convert_image(src, to, dst=dst, remove_source=True) == dst
    (message,) = [str(w.message) for w in record]
    assert LOSSY[case] in message and repr(str(src)) in message and repr(str(dst)) in message
    assert src.read_bytes() == before  # byte for byte
    with Image.open(dst) as out:
        out.load()
        assert out.size == (6, 4) and out.format == _rules._TARGETS[to]
    assert no_temp_files(tmp_path)


def test_gif_kept_and_first_frame_written(tmp_path):
    src, _ = make_lossy(tmp_path, "gif")
    with pytest.warns(conv.SourceKeptWarning, match="frames"):
        out = convert_image(src, "png", remove_source=True)
    mode, px = pixels(out)
    assert mode == "RGB" and (px == [255, 0, 0]).all()
    with Image.open(src) as im:
        assert im.n_frames == 3


def test_two_frame_webp_kept(tmp_path):
    src = tmp_path / "two.webp"
    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    frames[0].save(src, save_all=True, append_images=frames[1:], lossless=True)
    before = src.read_bytes()
    with pytest.warns(conv.SourceKeptWarning, match=r"lacks frame \(page\) 2 \(only the first"):
        out = convert_image(src, "png", remove_source=True)
    assert src.read_bytes() == before and (pixels(out)[1] == [255, 0, 0]).all()


@pytest.mark.parametrize(
    ("make", "to"),
    [
        (lambda p: Image.new("RGBA", (5, 3), (9, 8, 7, 255)).save(p), "jpg"),  # opaque alpha
        (lambda p: Image.fromarray(np.full((3, 5), 1000, np.uint16)).save(p), "png"),
        (lambda p: Image.new("P", (5, 3), 0).save(p), "bmp"),  # palette, no transparency
        (lambda p: Image.new("1", (5, 3), 1).save(p), "bmp"),
    ],
)
def test_remove_source_deletes_when_nothing_is_lost(tmp_path, make, to):
    src = tmp_path / "src.png"
    make(src)
    with warnings.catch_warnings():
        warnings.simplefilter("error", conv.SourceKeptWarning)
        out = convert_image(src, to, dst=tmp_path / f"out.{to}", remove_source=True)
    assert not src.exists() and out.exists()


def test_exif_kept_by_png_so_source_removed(tmp_path):
    src, _ = make_lossy(tmp_path, "exif")  # loses EXIF only for BMP
    with warnings.catch_warnings():
        warnings.simplefilter("error", conv.SourceKeptWarning)
        out = convert_image(src, "png", remove_source=True)
    assert not src.exists()
    with Image.open(out) as im:
        assert im.getexif()[0x010F] == "featviz-camera"


def test_batch_lists_kept_sources_and_is_not_ok(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    gif, _ = make_lossy(folder, "gif")
    Image.new("RGB", (6, 4), "red").save(folder / "plain.png")
    before = gif.read_bytes()
    rep = convert_images(folder, "webp", remove_source=True, progress=False)
    assert rep.converted == [
        (gif, gif.with_suffix(".webp")),
        (folder / "plain.png", folder / "plain.webp"),
    ]
    assert [s for s, _ in rep.kept] == [gif] and "frames (pages) 2 to 3" in rep.kept[0][1]
    assert rep.failed == [] and not rep.ok
    assert rep.summary() == "2 converted, 0 skipped, 0 failed, 1 source kept"
    assert gif.read_bytes() == before and not (folder / "plain.png").exists()
    # the CLI: one "kept:" line, exit status 1; a rerun accepts the outputs (idempotent)
    code = main(["convert", str(folder), "--to", "webp", "--remove-source", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [f"kept: {gif}: {rep.kept[0][1]}"]
    assert (
        out.splitlines()[-1] == "featviz convert: 1 converted, 2 skipped, 0 failed, 1 source kept"
    )
    assert gif.read_bytes() == before


# ----------------------------------------------------------------------- removal failures, reruns


def refuse_unlink(monkeypatch, victim: Path) -> None:
    """Make deleting ``victim`` fail as in a read-only folder (root ignores chmod)."""
    real = Path.unlink

    def unlink(self, missing_ok=False):
        if self == victim:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)


def test_failed_removal_reports_good_output_and_rerun_finishes(rgba_png, tmp_path, monkeypatch):
    before = rgba_png.read_bytes()
    with monkeypatch.context() as m:
        refuse_unlink(m, rgba_png)
        with pytest.raises(PermissionError) as exc:
            convert_image(rgba_png, "png", dst=tmp_path / "out.png", remove_source=True)
    message = str(exc.value)
    assert exc.value.errno == 13
    assert "could not delete the source: Permission denied" in message
    assert repr(str(rgba_png)) in message and "out.png" in message and ".tmp" not in message
    assert rgba_png.read_bytes() == before and no_temp_files(tmp_path)
    written = (tmp_path / "out.png").read_bytes()
    np.testing.assert_array_equal(pixels(tmp_path / "out.png")[1], pixels(rgba_png)[1])
    # rerun: the existing output is exactly this conversion -> accepted, source deleted
    assert convert_image(rgba_png, "png", dst=tmp_path / "out.png", remove_source=True)
    assert not rgba_png.exists() and (tmp_path / "out.png").read_bytes() == written


def test_batch_failed_removal_is_converted_and_kept_then_rerun_clean(tmp_path, monkeypatch):
    files = make_folder(tmp_path / "in")
    files["corrupt"].unlink()
    good = files["good"]
    with monkeypatch.context() as m:
        refuse_unlink(m, good)
        rep = convert_images(tmp_path / "in", "tiff", remove_source=True, progress=False)
    assert (good, good.with_suffix(".tiff")) in rep.converted and rep.failed == []
    (kept,) = rep.kept
    assert kept[0] == good and kept[1].startswith("PermissionError: Converted")
    assert (
        "could not delete the source" in kept[1] and "run again with remove_source=True" in kept[1]
    )
    assert good.exists() and not files["rgba"].exists()
    rep = convert_images(tmp_path / "in", "tiff", remove_source=True, progress=False)
    assert rep.converted == [(good, good.with_suffix(".tiff"))] and rep.kept == [] and rep.ok
    assert not good.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path):  # pragma: no cover - CI runs as root
    folder = tmp_path / "ro"
    folder.mkdir()
    Image.new("RGB", (4, 4), "red").save(folder / "a.png")
    out = tmp_path / "out"
    folder.chmod(0o555)
    try:
        rep = convert_images(folder, "jpg", out_dir=out, remove_source=True, progress=False)
        assert rep.converted == [(folder / "a.png", out / "a.jpg")]
        assert "PermissionError" in rep.kept[0][1]
        rep = convert_images(folder, "jpg", out_dir=out, remove_source=True, progress=False)
        assert rep.converted and "PermissionError" in rep.kept[0][1] and not rep.failed
    finally:
        folder.chmod(0o755)


def test_rerun_refuses_an_existing_output_that_differs(rgba_png, tmp_path):
    dst = tmp_path / "rgba.webp"
    convert_image(rgba_png, "webp", quality=90)
    theirs = dst.read_bytes()
    before = rgba_png.read_bytes()
    with pytest.raises(
        FileExistsError, match=r"rgba\.webp.*not this conversion of.*overwrite=True"
    ):
        convert_image(rgba_png, "webp", quality=80, remove_source=True)  # other bytes
    assert dst.read_bytes() == theirs and rgba_png.read_bytes() == before
    convert_image(rgba_png, "webp", quality=90, remove_source=True)  # same bytes: accepted
    assert not rgba_png.exists() and dst.read_bytes() == theirs


# ------------------------------------------------------------------ duplicates, bombs, temp names


def test_same_file_listed_several_ways_is_reported_not_dropped(tmp_path):
    (tmp_path / "a").mkdir()
    src = tmp_path / "a" / "x.png"
    Image.new("RGB", (4, 4), "red").save(src)
    link = tmp_path / "link.png"
    link.symlink_to(src)
    dotted = tmp_path / "a" / ".." / "a" / "x.png"
    rep = convert_images([src, src, dotted, link], "bmp", progress=False)
    assert rep.converted == [(src, src.with_suffix(".bmp"))]
    reason = f"the same file as {str(src)!r} (converted once)"
    assert rep.skipped == [(src, reason), (dotted, reason), (link, reason)]
    assert rep.ok and rep.summary() == "1 converted, 3 skipped, 0 failed"


def test_symlink_inside_a_folder_is_reported(tmp_path):
    Image.new("RGB", (4, 4), "red").save(tmp_path / "b.png")
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")  # sorts first
    rep = convert_images(tmp_path, "jpg", progress=False)
    assert rep.converted == [(tmp_path / "a.png", tmp_path / "a.jpg")]
    assert rep.skipped == [
        (tmp_path / "b.png", f"the same file as {str(tmp_path / 'a.png')!r} (converted once)")
    ]


def test_decompression_bomb_is_a_value_error_naming_the_file(tmp_path, monkeypatch):
    src = tmp_path / "bomb.png"
    Image.new("RGB", (10, 10)).save(src)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # 100 > 2 * 40 pixels
    with pytest.raises(ValueError, match=r"bomb\.png.*MAX_IMAGE_PIXELS"):
        convert_image(src, "jpg", remove_source=True)
    assert src.exists() and sorted(tmp_path.iterdir()) == [src]
    rep = convert_images(src, "jpg", progress=False)
    assert (
        rep.failed[0][0] == src
        and "ValueError" in rep.failed[0][1]
        and "bomb.png" in rep.failed[0][1]
    )


def test_temp_names_never_reach_messages(rgba_png, tmp_path, monkeypatch):
    # a destination appearing during the write: os.link's message names the temp file
    real_verify = _single._verify_written

    def verify_then_race(path, fmt, size):
        rgba_png.with_suffix(".webp").write_bytes(b"late")
        real_verify(path, fmt, size)

    with monkeypatch.context() as m:
        m.setattr(_single, "_verify_written", verify_then_race)
        with pytest.raises(FileExistsError) as exc:
            convert_image(rgba_png, "webp", remove_source=True)
    assert rgba_png.exists() and rgba_png.with_suffix(".webp").read_bytes() == b"late"
    assert ".tmp" not in str(exc.value) and "rgba.webp" in str(exc.value)
    assert "appeared while converting" in str(exc.value)
    rgba_png.with_suffix(".webp").unlink()

    # no permission to create the temporary file
    def no_mkstemp(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".rgba.x1y2.tmp.webp"))

    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkstemp", no_mkstemp)
        with pytest.raises(PermissionError) as exc:
            convert_image(rgba_png, "webp")
        assert str(exc.value) == f"Cannot write {str(tmp_path / 'rgba.webp')!r}: Permission denied."
        rep = convert_images(rgba_png, "webp", progress=False)
    assert rep.failed[0][1] == f"PermissionError: {exc.value}"

    # a written file that does not verify: named by its destination
    def broken(path, fmt, size):
        raise _rules._VerifyError(f"The written file {str(path)!r} does not re-open: simulated")

    with monkeypatch.context() as m:
        m.setattr(_single, "_verify_written", broken)
        with pytest.raises(OSError) as exc:
            convert_image(rgba_png, "bmp", remove_source=True)
    assert str(exc.value) == (
        f"The written file {str(tmp_path / 'rgba.bmp')!r} does not re-open: simulated "
        f"The source {str(rgba_png)!r} was kept; nothing was written."
    )
    assert no_temp_files(tmp_path)


# -------------------------------------------------------------------- bad input, one message each


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda p: convert_image(p, 5), TypeError, r"'to' parameter of convert_image.*Got int"),
        (lambda p: convert_image(p, "heic"), ValueError, r"'to'.*Got 'heic'"),
        (lambda p: convert_image(str(p)[:-4]), FileNotFoundError, r"'src'.*rgba'"),
        (lambda p: convert_image(5), TypeError, r"'src' parameter.*Got int"),
        (lambda p: convert_image(p, dst=5), TypeError, r"'dst' parameter.*Got int"),
        (
            lambda p: convert_image(p, dst=p.parent / "no" / "x.jpg"),
            FileNotFoundError,
            r"'dst'.*no'",
        ),
        (lambda p: convert_image(p, quality=True), ValueError, r"'quality'.*Got True"),
        (lambda p: convert_image(p, quality=101), ValueError, r"'quality'.*\[1, 100\]. Got 101"),
        (lambda p: convert_image(p, background="#zz"), ValueError, r"'background'.*Got '#zz'"),
        (lambda p: convert_image(p, background=(0, 0, 256)), ValueError, r"'background'.*256"),
        (lambda p: convert_image(p, remove_source=1), TypeError, r"'remove_source'.*Got 1"),
        (lambda p: convert_images(5), TypeError, r"'paths_or_folder'.*Got int"),
        (lambda p: convert_images([p, 5]), TypeError, r"'paths_or_folder'.*Got list"),
        (lambda p: convert_images(p, "gif"), ValueError, r"'to' parameter of convert_images"),
        (lambda p: convert_images(p, workers=2.0), ValueError, r"'workers'.*Got 2.0"),
        (lambda p: convert_images(p, workers=True), ValueError, r"'workers'.*Got True"),
        (lambda p: convert_images(p, out_dir=3), TypeError, r"'out_dir'.*Got int"),
        (lambda p: convert_images(p, out_dir=p), NotADirectoryError, r"'out_dir'.*rgba\.png"),
        (lambda p: convert_images(p, recursive="yes"), TypeError, r"'recursive'.*Got 'yes'"),
        (lambda p: convert_images(p, progress=1), TypeError, r"'progress'.*Got 1"),
    ],
)
def test_bad_input_names_the_parameter(rgba_png, call, error, pattern):
    before = rgba_png.read_bytes()
    with pytest.raises(error, match=pattern):
        call(rgba_png)
    assert rgba_png.read_bytes() == before
    assert sorted(p.name for p in rgba_png.parent.iterdir()) == ["rgba.png"]


def test_batch_reports_inputs_it_cannot_access(tmp_path):
    nul = tmp_path / "x\x00y.png"
    rep = convert_images([nul, tmp_path / "f.png" / "g.png"], progress=False)
    assert rep.converted == [] and rep.skipped == []
    assert rep.failed[0][1] == f"cannot access {str(nul)!r}: embedded null byte"
    assert rep.failed[1][1] == f"no such file or folder: {str(tmp_path / 'f.png' / 'g.png')!r}"


@pytest.mark.parametrize(
    ("argv", "first_words"),
    [
        (["--workers", "0"], "featviz convert: error: --workers must be an int"),
        (
            ["--quality", "0"],
            "featviz convert: error: --quality must be an int in the range [1, 100]",
        ),
        (["--background", "nope"], "featviz convert: error: --background must be"),
        (["--out", "{src}"], "featviz convert: error: --out names a file"),
    ],
)
def test_cli_bad_options_one_line_exit_2(rgba_png, capsys, argv, first_words):
    argv = [a.replace("{src}", str(rgba_png)) for a in argv]
    assert main(["convert", str(rgba_png), *argv, "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith(first_words)
    assert "Traceback" not in err and "convert_images" not in err
