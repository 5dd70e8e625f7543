"""The ``featviz`` command line: `featviz.cli.main` error handling and ``featviz cam``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from featviz.cli import CLIError, build_parser, main


def _write_png(path, rgb):
    from PIL import Image

    Image.fromarray(rgb).save(path)


@pytest.fixture
def image(tmp_path, shapes_test) -> Path:
    p = tmp_path / "img.png"
    _write_png(p, shapes_test.images[0].permute(1, 2, 0).numpy())
    return p


def _one_error_line(capsys, rc: int, *words: str) -> str:
    """Assert exit code 1 and exactly one stderr line 'featviz cam: ...' containing words."""
    err = capsys.readouterr().err
    assert rc == 1, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("featviz cam: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, err)
    return lines[0]


# --------------------------------------------------------------------------------------
# featviz cam: working runs (moved from test_cam.py)
# --------------------------------------------------------------------------------------
def test_cli_cam_writes_overlays(tmp_path, shapes_test, capsys):
    from PIL import Image

    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        _write_png(p, shapes_test.images[i].permute(1, 2, 0).numpy())
        paths.append(str(p))
    out = tmp_path / "out"
    rc = main(["cam", *paths, "--out", str(out), "--layer", "features.13", "--method", "gradcam++"])
    assert rc == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["img0_gradcam++.png", "img1_gradcam++.png"]
    with Image.open(out / files[0]) as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    before = (out / files[0]).read_bytes()
    capsys.readouterr()
    # refuses to overwrite without --overwrite: one line naming the flag, file untouched
    rc = main(
        ["cam", paths[0], "--out", str(out), "--layer", "features.13", "--method", "gradcam++"]
    )
    line = _one_error_line(capsys, rc, "img0_gradcam++.png", "pass --overwrite")
    assert "overwrite=" not in line
    assert (out / files[0]).read_bytes() == before
    rc = main(["cam", str(tmp_path / "missing.png"), "--out", str(out)])
    _one_error_line(capsys, rc, "IMAGE", "missing.png")


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_cli_cam_with_factory_and_torchscript(tmp_path, shapes_test, tiny_model):
    from PIL import Image

    p = tmp_path / "img.png"
    _write_png(p, shapes_test.images[0].permute(1, 2, 0).numpy())
    rc = main(
        [
            "cam",
            str(p),
            "--model",
            "featviz.models:pretrained_tiny_cnn",
            "--layer",
            "features.13",
            "--out",
            str(tmp_path / "a"),
            "--target",
            "2",
            "--size",
            "32",
        ]
    )
    assert rc == 0
    with Image.open(tmp_path / "a" / "img_gradcam.png") as im:
        assert im.size == (64, 64)  # overlays are written at the file's resolution
    scripted = torch.jit.script(tiny_model)
    ts = tmp_path / "model.pt"
    scripted.save(str(ts))
    rc = main(
        ["cam", str(p), "--model", str(ts), "--layer", "features.13", "--out", str(tmp_path / "b")]
    )
    assert rc == 0
    assert (tmp_path / "b" / "img_gradcam.png").is_file()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_cli_cam_torchscript_equals_eager(tmp_path, image, tiny_model):
    """The TorchScript path (featviz.hooks.hookable) writes the same bytes as the eager one."""
    ts = tmp_path / "model.pt"
    torch.jit.script(tiny_model).save(str(ts))
    common = [str(image), "--layer", "features.13", "--standardize", "none", "--size", "64"]
    assert main(["cam", *common, "--model", str(ts), "--out", str(tmp_path / "ts")]) == 0
    assert main(["cam", *common, "--out", str(tmp_path / "eager")]) == 0
    ts_png = (tmp_path / "ts" / "img_gradcam.png").read_bytes()
    assert ts_png == (tmp_path / "eager" / "img_gradcam.png").read_bytes()


# --------------------------------------------------------------------------------------
# featviz cam: bad input gives one line on stderr and exit code 1
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("no_such_file.pt", ["--model", "'no_such_file.pt'", "MODULE:FACTORY"]),
        ("featviz_no_such_module:make", ["--model", "'featviz_no_such_module'", "imported"]),
        ("featviz.models:no_such_factory", ["--model", "'no_such_factory'"]),
        ("featviz.models:SHAPE_CLASSES", ["--model", "torch.nn.Module", "tuple"]),
        ("featviz.models:cache_dir", ["--model"]),  # a factory that is not a model factory
    ],
)
def test_cli_cam_bad_model(tmp_path, image, capsys, model, words):
    rc = main(["cam", str(image), "--model", model, "--out", str(tmp_path / "o")])
    _one_error_line(capsys, rc, *words)
    assert not (tmp_path / "o").exists()  # nothing created for a failed run


def test_cli_cam_factory_that_raises(tmp_path, image, capsys, monkeypatch):
    import featviz.models

    def broken():
        raise KeyError("weights")

    monkeypatch.setattr(featviz.models, "broken_factory", broken, raising=False)
    rc = main(["cam", str(image), "--model", "featviz.models:broken_factory", "--out", "o"])
    _one_error_line(capsys, rc, "--model", "'featviz.models:broken_factory'", "KeyError")


def test_cli_cam_corrupt_torchscript_file(tmp_path, image, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive" * 10)
    rc = main(["cam", str(image), "--model", str(bad), "--out", str(tmp_path / "o")])
    _one_error_line(capsys, rc, "--model", str(bad), "torch.jit.save")
    # a torch.save'd state dict is not TorchScript either
    sd = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, sd)
    rc = main(["cam", str(image), "--model", str(sd), "--out", str(tmp_path / "o")])
    _one_error_line(capsys, rc, "--model", "MODULE:FACTORY")


@pytest.mark.parametrize(
    ("device", "words"),
    [("bogus", ["--device", "'bogus'", "cpu"]), ("cuda:x", ["--device", "'cuda:x'"])],
)
def test_cli_cam_bad_device(tmp_path, image, capsys, device, words):
    rc = main(["cam", str(image), "--device", device, "--out", str(tmp_path / "o")])
    _one_error_line(capsys, rc, *words)
    assert not (tmp_path / "o").exists()  # checked before anything is written


def test_cli_cam_cuda_without_gpu(tmp_path, image, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = main(["cam", str(image), "--device", "cuda", "--out", str(tmp_path / "o")])
    _one_error_line(capsys, rc, "--device", "'cuda'", "no", "--device cpu")


@pytest.mark.parametrize(
    ("size", "words"),
    [
        (["0"], ["--size", "[0]", "[1, inf)"]),
        (["1", "2", "3"], ["--size", "[1, 2, 3]"]),
        (["2"], ["--size 2 2", "img.png"]),  # TinyCNN cannot take 2x2 inputs
    ],
)
def test_cli_cam_bad_size(tmp_path, image, capsys, size, words):
    rc = main(["cam", str(image), "--size", *size, "--out", str(tmp_path / "o")])
    _one_error_line(capsys, rc, *words)


def test_cli_cam_decompression_bomb(tmp_path, image, capsys, monkeypatch):
    from PIL import Image

    # a 64x64 image is a "bomb" under a 1000-pixel limit (error above 2x the limit)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    rc = main(["cam", str(image), "--out", str(tmp_path / "o")])
    _one_error_line(capsys, rc, "IMAGE", "img.png", "too large")
    # between 1x and 2x the limit PIL only warns; the CLI refuses as well
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    rc = main(["cam", str(image), "--out", str(tmp_path / "o")])
    _one_error_line(capsys, rc, "IMAGE", "too large")
    assert list((tmp_path / "o").iterdir()) == []


def test_cli_cam_out_is_a_file_or_unwritable(tmp_path, image, capsys):
    f = tmp_path / "file.txt"
    f.write_text("user data")
    rc = main(["cam", str(image), "--out", str(f)])
    _one_error_line(capsys, rc, "--out", "file.txt", "is a file")
    rc = main(["cam", str(image), "--out", str(f / "sub")])
    _one_error_line(capsys, rc, "--out", "cannot be created")
    assert f.read_text() == "user data"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_cli_cam_read_only_out(tmp_path, image, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc = main(["cam", str(image), "--out", str(ro / "sub")])
        _one_error_line(capsys, rc, "--out", "cannot be created")
        rc = main(["cam", str(image), "--out", str(ro)])
        _one_error_line(capsys, rc, "Permission denied")
    finally:
        ro.chmod(0o755)


def test_cli_cam_bad_layer_target_method(tmp_path, image, capsys):
    out = str(tmp_path / "o")
    rc = main(["cam", str(image), "--layer", "features.133", "--out", out])
    line = _one_error_line(capsys, rc, "--layer", "'features.133'", "'features.13'")
    assert "'layers'" not in line  # the CLI names its options, not the library's parameters
    capsys.readouterr()
    assert main(["cam", str(image), "--out", out]) == 0  # no --layer: one warning line
    captured = capsys.readouterr()
    assert captured.err == (
        "featviz cam: warning: CAM: no layer given; using 'features.13', the last layer with "
        "a spatial output (C, h, w) = (64, 16, 16). Pass --layer features.13 to choose "
        "explicitly.\n"
    )
    assert captured.out == f"{tmp_path / 'o' / 'img_gradcam.png'}\n"
    rc = main(["cam", str(image), "--target", "hexagon", "--out", out])
    _one_error_line(capsys, rc, "--target", "'hexagon'", "circle")
    rc = main(["cam", str(image), "--method", "gradcam+++", "--out", out])
    _one_error_line(capsys, rc, "--method", "gradcam+++")
    rc = main(["cam", str(image), "--alpha", "7", "--out", out])
    _one_error_line(capsys, rc, "--alpha", "[0, 1]. Got 7.0 instead")
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["img_gradcam.png"]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_cli_cam_torchscript_that_is_not_a_chain(tmp_path, image, capsys):
    class Skip(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.pool = torch.nn.AdaptiveAvgPool2d(1)
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.pool(self.conv(x) + x).flatten(1))

    ts = tmp_path / "skip.pt"
    torch.jit.script(Skip().eval()).save(str(ts))
    rc = main(["cam", str(image), "--model", str(ts), "--layer", "conv", "--out", "o"])
    _one_error_line(capsys, rc, "'model'", "plain chain", "eager model")


# --------------------------------------------------------------------------------------
# featviz.cli.main: one place for every error
# --------------------------------------------------------------------------------------
def _raising(monkeypatch, exc: BaseException) -> None:
    import featviz.commands.cam

    def run(args):
        raise exc

    monkeypatch.setattr(featviz.commands.cam, "run", run)


@pytest.mark.parametrize(
    "exc",
    [
        CLIError("The --x value 'y' is bad."),
        ValueError("The --x value 'y' is bad."),
        TypeError("The --x value 'y' is bad."),
        PermissionError(13, "Permission denied", "/x"),
        RuntimeError("The --x value 'y' is bad:\n  second line"),
    ],
)
def test_main_prints_user_errors_as_one_line(monkeypatch, capsys, exc):
    _raising(monkeypatch, exc)
    rc = main(["cam", "a.png", "--out", "o"])
    line = _one_error_line(capsys, rc)
    assert "internal error" not in line and "--verbose" not in line
    assert line.split(": ", 1)[1] == " ".join(str(exc).split())


def test_main_prints_demo_error_as_one_line(monkeypatch, capsys):
    from featviz.demo import DemoError

    _raising(monkeypatch, DemoError("'out' is not empty; pass --force to write into it anyway"))
    rc = main(["cam", "a.png", "--out", "o"])
    line = _one_error_line(capsys, rc)
    assert line == "featviz cam: 'out' is not empty; pass --force to write into it anyway"


def test_main_internal_error_and_verbose(monkeypatch, capsys):
    _raising(monkeypatch, KeyError("oops"))
    rc = main(["cam", "a.png", "--out", "o"])
    line = _one_error_line(capsys, rc, "internal error: KeyError", "oops", "--verbose")
    assert line.endswith("(run with --verbose for the traceback)")
    for argv in (["-v", "cam", "a.png", "--out", "o"], ["cam", "a.png", "--out", "o", "-v"]):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 1
        assert err.startswith("Traceback (most recent call last):")
        assert "KeyError: 'oops'" in err
        assert err.splitlines()[-1] == line  # the summary line comes last


def test_main_keyboard_interrupt(monkeypatch, capsys):
    _raising(monkeypatch, KeyboardInterrupt())
    assert main(["cam", "a.png", "--out", "o"]) == 130
    assert capsys.readouterr().err == "featviz cam: interrupted\n"


def test_main_usage_errors_and_no_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["cam", "a.png"])  # --out missing: argparse
    assert info.value.code == 2
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_subprocess_prints_no_traceback(tmp_path, image):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "featviz", "cam", str(image), "--model", str(bad), "--out", "o"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("featviz cam: The --model file"), proc.stderr
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_cli_cam_smoothing_flags(tmp_path, image, tiny_model, capsys):
    import numpy as np
    from PIL import Image

    import featviz

    out = tmp_path / "out"
    args = ["cam", str(image), "--out", str(out), "--layer", "features.13"]
    assert main([*args, "--aug-smooth", "--eigen-smooth"]) == 0
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["img_gradcam-aug-eigen.png", "img_gradcam.png"]
    x, original = featviz.load_image(image, size=(64, 64), mean=None, std=None)
    heat = featviz.CAM(tiny_model, "features.13", aug_smooth=True, eigen_smooth=True)(x)[0]
    expected = np.asarray(featviz.overlay(original, heat, alpha=0.4))
    with Image.open(out / "img_gradcam-aug-eigen.png") as im:
        np.testing.assert_array_equal(np.asarray(im), expected)
    with Image.open(out / "img_gradcam.png") as im:
        assert not np.array_equal(np.asarray(im), expected)


# --------------------------------------------------------------------------------------
# featviz cam: output names, the overwrite flag, CLI wording (issues 22 and 23)
# --------------------------------------------------------------------------------------
def test_cli_cam_same_name_in_two_folders_is_refused_before_writing(tmp_path, image, capsys):
    other = tmp_path / "b"
    other.mkdir()
    twin = other / image.name
    twin.write_bytes(image.read_bytes())
    out = tmp_path / "o"
    for extra in ([], ["--overwrite"], ["--force"]):
        rc = main(["cam", str(image), str(twin), "--out", str(out), *extra])
        _one_error_line(capsys, rc, "would both be written to", "img_gradcam.png")
        assert not out.exists()  # nothing written, not even the folder


def test_cli_cam_existing_outputs_checked_before_any_write(tmp_path, shapes_test, capsys):
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        _write_png(p, shapes_test.images[i].permute(1, 2, 0).numpy())
        paths.append(str(p))
    out = tmp_path / "o"
    out.mkdir()
    (out / "img1_gradcam.png").write_bytes(b"user data")
    rc = main(["cam", *paths, "--out", str(out), "--layer", "features.13"])
    _one_error_line(capsys, rc, "img1_gradcam.png", "pass --overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["img1_gradcam.png"]  # img0 not written
    assert (out / "img1_gradcam.png").read_bytes() == b"user data"


@pytest.mark.parametrize("flag", ["--overwrite", "--force"])
def test_cli_cam_overwrite_flag_and_its_hidden_alias(tmp_path, image, capsys, flag):
    out = tmp_path / "o"
    args = ["cam", str(image), "--out", str(out), "--layer", "features.13"]
    assert main(args) == 0
    (out / "img_gradcam.png").write_bytes(b"old")
    assert main([*args, flag]) == 0
    assert (out / "img_gradcam.png").read_bytes()[:4] == b"\x89PNG"
    help_text = build_parser()._subparsers._group_actions[0].choices["cam"].format_help()
    assert "--overwrite" in help_text and "--force" not in help_text


def test_cli_demo_overwrite_flag_and_its_hidden_alias():
    parser = build_parser()
    demo = parser._subparsers._group_actions[0].choices["demo"]
    assert "--overwrite" in demo.format_help() and "--force" not in demo.format_help()
    assert parser.parse_args(["demo", "--force"]).overwrite is True
    assert parser.parse_args(["demo", "--overwrite"]).overwrite is True
    assert parser.parse_args(["demo"]).overwrite is False


@pytest.mark.parametrize("value", ["\u00b2", "--1", "1.5", "-1"])
def test_cli_cam_target_that_is_not_an_index(tmp_path, image, capsys, value):
    rc = main(["cam", str(image), f"--target={value}", "--out", str(tmp_path / "o")])
    _one_error_line(capsys, rc, "--target", repr(value))
    assert not (tmp_path / "o").exists()


def test_cli_warning_printed_once_for_many_images(tmp_path, shapes_test, capsys):
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        _write_png(p, shapes_test.images[i].permute(1, 2, 0).numpy())
        paths.append(str(p))
    assert main(["cam", *paths, "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "Pass --layer features.13" in err[0], err


def test_cli_demo_errors_name_the_flags(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    rc = main(["demo", "--out", str(out), "--fast", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1, err
    assert "pass --overwrite" in err and "overwrite=True" not in err and "out_dir" not in err
    assert (out / "mine.txt").read_text() == "x"


def test_cli_wording_translates_parameters_to_options():
    from featviz._errors import cli_wording

    options = {"overwrite": "--overwrite", "layers": "--layer", "alpha": "--alpha"}
    assert cli_wording("The 'alpha' parameter of overlay must be a float.", options) == (
        "--alpha must be a float."
    )
    assert cli_wording("exists;\n pass overwrite=True to replace it.", options) == (
        "exists; pass --overwrite to replace it."
    )
    assert cli_wording("Pass layers='a.b' to choose.", options) == "Pass --layer a.b to choose."
    assert cli_wording("The 'layers' name 'x' is not a module.", options) == (
        "The --layer 'x' is not a module."
    )
    # parameters with no option stay as they are
    assert cli_wording("The 'mean' parameter of f is bad.", options) == (
        "The 'mean' parameter of f is bad."
    )
