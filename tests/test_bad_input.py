"""Bad input across the public API: the exception type, and a message naming the parameter.

One row per case: ``(callable of a context, exception type, regex)``. The regex must
contain the parameter's name (in quotes as the house wording has it, or the CLI option),
so a message that blames another parameter, or none, fails. Rows for modules fixed
elsewhere (convert, extract/store, hooks, CLI) assert their current behaviour.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import featviz
from featviz import (
    CAM,
    FeatureSet,
    capture,
    class_activation_map,
    convert_image,
    correlation,
    explore,
    extract,
    grad_cam,
    hookable,
    load_image,
    normalize,
    overlay,
    plot_correlation,
    plot_correlation_maps,
    project,
    resolve_layers,
    save_image,
    sum_channels,
    threshold_labels,
    to_image,
    unstandardize,
    upsample,
)
from featviz.datasets import Shapes
from featviz.metrics import (
    average_drop,
    deletion_auc,
    energy_in_box,
    increase_in_confidence,
    insertion_auc,
    pointing_game,
)
from featviz.models import TinyCNN, pretrained_tiny_cnn, train_tiny_cnn

NAN = float("nan")


class CliFailed(Exception):
    """A CLI run that exited non-zero: the message is ``rc=N: <stderr>``."""


def _cli(c: SimpleNamespace, *argv: str) -> None:
    from featviz.cli import main

    try:
        rc = main([a.format(png=c.png, tmp=c.tmp) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        rc = int(exc.code or 0)
    err = c.capsys.readouterr().err
    if rc != 0:
        raise CliFailed(f"rc={rc}: {err}")


def _enter(cap: Any) -> None:
    with cap:
        pass


def _run(c: SimpleNamespace, cap: Any) -> None:
    with cap:
        c.model(c.x)


def _in_inference(fn: Callable[[], Any]) -> None:
    with torch.inference_mode():
        fn()


def _save_twice(c: SimpleNamespace) -> None:
    save_image(np.zeros((2, 2)), c.tmp / "a.png")
    save_image(np.zeros((2, 2)), c.tmp / "a.png")


def _script(m: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(m)


M = np.array([[1.0, 0.0, 0.5], [1.0, 0.0, 0.75]])
BOXES = torch.tensor([[0, 0, 4, 4], [2, 2, 6, 6]])
META = torch.tensor([0, 1], device="meta")

# (id, call, exception, regex)
CASES: list[tuple[str, Callable[[SimpleNamespace], Any], type[BaseException], str]] = [
    # -- hooks: capture, resolve_layers, hookable ------------------------------------------
    ("capture-layers-empty", lambda c: capture(c.model, []), ValueError, r"'layers'.*\[\]"),
    ("capture-layers-unknown", lambda c: capture(c.model, "nope"), ValueError, r"'layers'.*'nope'"),
    ("capture-layers-root", lambda c: capture(c.model, ""), ValueError, r"'layers'.*itself"),
    ("capture-layers-model", lambda c: capture(c.model, c.model), ValueError, r"'layers'"),
    ("capture-layers-int", lambda c: capture(c.model, 3), TypeError, r"'layers'.*int"),
    ("capture-transform", lambda c: capture(c.model, "0", transform=3), TypeError, r"'transform'"),
    ("capture-model-str", lambda c: capture("m", "0"), TypeError, r"'model'.*str"),
    ("capture-model-script", lambda c: capture(_script(c.model), "0"), TypeError, r"'model'"),
    (
        "capture-selector-on-tensor",
        lambda c: _run(c, capture(c.model, "0[0]")),
        ValueError,
        r"'layers' entry '0\[0\]'",
    ),
    (
        "capture-gradients-inference",
        lambda c: _in_inference(lambda: _enter(capture(c.model, "0", gradients=True))),
        RuntimeError,
        r"gradients=True.*inference_mode",
    ),
    ("resolve-glob", lambda c: resolve_layers(c.model, "x*"), ValueError, r"'layers' pattern"),
    ("resolve-type", lambda c: resolve_layers(c.model, nn.LSTM), ValueError, r"'layers' type"),
    ("resolve-not-module-type", lambda c: resolve_layers(c.model, int), TypeError, r"'layers'"),
    (
        "resolve-foreign-module",
        lambda c: resolve_layers(c.model, nn.Linear(2, 2)),
        ValueError,
        r"'layers'.*not part",
    ),
    ("hookable-eager", lambda c: hookable(c.model), TypeError, r"'model' parameter of hookable"),
    (
        "hookable-layers",
        lambda c: hookable(_script(c.model), "nope"),
        ValueError,
        r"'layers' parameter of hookable",
    ),
    # -- CAM -------------------------------------------------------------------------------
    ("cam-method", lambda c: CAM(c.model, "0", "nope"), ValueError, r"'method'.*'nope'"),
    ("cam-method-type", lambda c: CAM(c.model, "0", 3), TypeError, r"'method'.*int"),
    ("cam-model", lambda c: CAM("m", "0"), TypeError, r"'model'.*str"),
    ("cam-size-zero", lambda c: CAM(c.model, "0", size=(0, 2)), ValueError, r"'size'"),
    ("cam-size-str", lambda c: CAM(c.model, "0", size="big"), ValueError, r"'size'.*'big'"),
    ("cam-batch-size", lambda c: CAM(c.model, "0", batch_size=0), ValueError, r"'batch_size'"),
    ("cam-batch-float", lambda c: CAM(c.model, "0", batch_size=1.5), ValueError, r"'batch_size'"),
    (
        "cam-reshape",
        lambda c: CAM(c.model, "0", reshape_transform="swin"),
        TypeError,
        r"'reshape_transform'.*'swin'",
    ),
    (
        "cam-images-3d",
        lambda c: grad_cam(c.model, c.x[0], "0"),
        ValueError,
        r"'images'.*\(3, 8, 8\)",
    ),
    ("cam-images-numpy", lambda c: grad_cam(c.model, c.x.numpy(), "0"), TypeError, r"'images'"),
    ("cam-target-length", lambda c: grad_cam(c.model, c.x, "0", [0]), ValueError, r"'target'"),
    (
        "cam-target-range",
        lambda c: grad_cam(c.model, c.x, "0", 5),
        ValueError,
        r"'target'.*\[0, 2\]",
    ),
    ("cam-target-bool", lambda c: grad_cam(c.model, c.x, "0", True), TypeError, r"'target'"),
    ("cam-target-str", lambda c: grad_cam(c.model, c.x, "0", "cat"), TypeError, r"'target'.*'cat'"),
    ("cam-target-float", lambda c: grad_cam(c.model, c.x, "0", [0.5, 1.0]), TypeError, r"'target'"),
    ("cam-target-meta", lambda c: grad_cam(c.model, c.x, "0", META), ValueError, r"'target'.*meta"),
    (
        "cam-target-no-grad",
        lambda c: grad_cam(c.model, c.x, "0", lambda o: o[:, 0].detach()),
        ValueError,
        r"'target' callable.*no gradient",
    ),
    (
        "cam-target-shape",
        lambda c: grad_cam(c.model, c.x, "0", lambda o: o),
        ValueError,
        r"'target' callable.*\(2,\)",
    ),
    (
        "cam-callable-with-cam",
        lambda c: CAM(c.model, "0", "cam")(c.x, lambda o: o[:, 0]),
        ValueError,
        r"callable 'target'",
    ),
    ("cam-fc-conv", lambda c: CAM(c.model, "0", "cam", fc="0"), ValueError, r"'fc'"),
    (
        "cam-fc-foreign",
        lambda c: class_activation_map(c.model, c.x, "0", fc=nn.Linear(4, 3)),
        ValueError,
        r"'fc'",
    ),
    ("cam-layer-2d", lambda c: grad_cam(c.model, c.x, "4"), ValueError, r"'layers'.*'4'"),
    (
        "cam-layer-not-on-path",
        lambda c: grad_cam(c.branchy, c.x, "side"),
        ValueError,
        r"'side' \(the 'layers' parameter\)",
    ),
    # -- metrics ---------------------------------------------------------------------------
    ("pg-no-region", lambda c: pointing_game(c.sal), ValueError, r"'boxes' and 'masks'"),
    (
        "pg-both-regions",
        lambda c: pointing_game(c.sal, BOXES, torch.ones(2, 8, 8, dtype=torch.bool)),
        ValueError,
        r"'boxes' and 'masks'",
    ),
    ("pg-boxes-float", lambda c: pointing_game(c.sal, BOXES.float()), ValueError, r"'boxes'"),
    ("pg-boxes-count", lambda c: pointing_game(c.sal, BOXES[:1]), ValueError, r"'boxes'.*1 boxes"),
    (
        "pg-masks-shape",
        lambda c: pointing_game(c.sal, masks=torch.ones(2, 4, 4, dtype=torch.bool)),
        ValueError,
        r"'masks'",
    ),
    (
        "pg-tolerance",
        lambda c: pointing_game(c.sal, BOXES, tolerance=-1),
        ValueError,
        r"'tolerance'",
    ),
    (
        "pg-tolerance-nan",
        lambda c: pointing_game(c.sal, BOXES, tolerance=NAN),
        ValueError,
        r"'tolerance'",
    ),
    (
        "pg-empty",
        lambda c: pointing_game(torch.zeros(0, 8, 8), torch.zeros(0, 4, dtype=torch.long)),
        ValueError,
        r"'heatmaps'.*\(0, 8, 8\)",
    ),
    (
        "pg-reduction",
        lambda c: pointing_game(c.sal, BOXES, aggregate="sum"),
        ValueError,
        r"'aggregate'",
    ),
    ("pg-saliency-type", lambda c: pointing_game("x", BOXES), TypeError, r"'heatmaps'.*str"),
    # one (H, W) map is one map, as in overlay; the boxes then do not match it
    (
        "pg-saliency-2d",
        lambda c: pointing_game(c.sal[0], BOXES),
        ValueError,
        r"'boxes' .* 1 maps but 2 boxes",
    ),
    (
        "energy-empty",
        lambda c: energy_in_box(torch.zeros(0, 8, 8), torch.zeros(0, 4, dtype=torch.long)),
        ValueError,
        r"'heatmaps'",
    ),
    (
        "deletion-steps",
        lambda c: deletion_auc(c.model, c.x, c.sal, steps=0),
        ValueError,
        r"'steps'",
    ),
    (
        "deletion-batch",
        lambda c: deletion_auc(c.model, c.x, c.sal, batch_size=0),
        ValueError,
        r"'batch_size'",
    ),
    ("deletion-images", lambda c: deletion_auc(c.model, c.x[0], c.sal), ValueError, r"'images'"),
    ("deletion-maps", lambda c: deletion_auc(c.model, c.x, c.sal[:1]), ValueError, r"'heatmaps'"),
    (
        "deletion-baseline",
        lambda c: deletion_auc(c.model, c.x, c.sal, baseline="noise"),
        ValueError,
        r"'baseline'",
    ),
    (
        "insertion-callable",
        lambda c: insertion_auc(c.model, c.x, c.sal, target=lambda o: o),
        ValueError,
        r"'target' callable must return a tensor of shape",
    ),
    (
        "drop-reduction",
        lambda c: average_drop(c.model, c.x, c.sal, aggregate="max"),
        ValueError,
        r"'aggregate'",
    ),
    ("drop-model", lambda c: average_drop("m", c.x, c.sal), TypeError, r"'model'"),
    (
        "drop-target-meta",
        lambda c: average_drop(c.model, c.x, c.sal, META),
        ValueError,
        r"'target'",
    ),
    (
        "increase-int-images",
        lambda c: increase_in_confidence(c.model, c.x.long(), c.sal),
        ValueError,
        r"'images'",
    ),
    # -- correlations ----------------------------------------------------------------------
    ("corr-1d", lambda c: correlation(np.zeros(3)), ValueError, r"'x'.*\(3,\)"),
    ("corr-one-row", lambda c: correlation([[1.0, 2.0]]), ValueError, r"'x'.*\(1, 2\)"),
    ("corr-method", lambda c: correlation(M, method="kendall"), ValueError, r"'method'.*'kendall'"),
    ("corr-axis", lambda c: correlation(M, axis=2), ValueError, r"'axis'.*2"),
    ("corr-strings", lambda c: correlation(np.array([["a"]])), TypeError, r"'x'"),
    (
        "corr-complex",
        lambda c: correlation(torch.ones(2, 2, dtype=torch.cfloat)),
        TypeError,
        r"'x'",
    ),
    ("corr-nan", lambda c: correlation(np.array([[1.0, NAN], [2, 3]])), ValueError, r"'x'.*row 0"),
    ("thr-4d", lambda c: threshold_labels(np.zeros((2, 2, 2, 2))), ValueError, r"'matrix'"),
    ("thr-names-len", lambda c: threshold_labels(M, ["a"]), ValueError, r"'names'"),
    ("thr-names-str", lambda c: threshold_labels(M, "abc"), TypeError, r"'names'"),
    (
        "thr-both",
        lambda c: threshold_labels(M, threshold=1, quantile=0.5),
        ValueError,
        r"'threshold' and 'quantile'",
    ),
    ("thr-quantile", lambda c: threshold_labels(M, quantile=1.5), ValueError, r"'quantile'.*1.5"),
    ("thr-threshold-nan", lambda c: threshold_labels(M, threshold=NAN), ValueError, r"'threshold'"),
    (
        "thr-statistic",
        lambda c: threshold_labels(M, statistic="median"),
        ValueError,
        r"'statistic'",
    ),
    ("thr-empty", lambda c: threshold_labels(np.zeros((0, 3))), ValueError, r"'matrix'.*empty"),
    (
        "maps-empty-stack",
        lambda c: plot_correlation_maps(np.zeros((0, 3, 3)), None, c.tmp / "m"),
        ValueError,
        r"'stack' parameter of plot_correlation_maps.*empty",
    ),
    (
        "maps-2d",
        lambda c: plot_correlation_maps(np.zeros((3, 3)), None, c.tmp / "m"),
        ValueError,
        r"'stack'.*3-D",
    ),
    (
        "maps-fmt",
        lambda c: plot_correlation_maps(np.ones((1, 3, 3)), None, c.tmp / "m", image_format="bmpx"),
        ValueError,
        r"'image_format'",
    ),
    (
        "maps-prefix",
        lambda c: plot_correlation_maps(np.ones((1, 3, 3)), None, c.tmp / "m", prefix="a/b"),
        ValueError,
        r"'prefix'",
    ),
    ("plot-corr-3d", lambda c: plot_correlation(np.zeros((2, 3, 3))), ValueError, r"'matrix'"),
    # -- imageio ---------------------------------------------------------------------------
    ("img-type", lambda c: to_image("x"), TypeError, r"'array'.*str"),
    ("img-complex", lambda c: to_image(np.zeros((2, 2), complex)), TypeError, r"'array'.*complex"),
    ("img-channels", lambda c: to_image(np.zeros((2, 2, 5))), ValueError, r"'array'.*\(2, 2, 5\)"),
    ("img-empty", lambda c: to_image(np.zeros((0, 2))), ValueError, r"'array'"),
    ("img-mode", lambda c: to_image(np.zeros((2, 2)), mode="CMYK"), ValueError, r"'mode'.*'CMYK'"),
    ("img-cmax", lambda c: to_image(np.zeros((2, 2)), cmin=2, cmax=1), ValueError, r"'cmax'"),
    ("img-cmin-nan", lambda c: to_image(np.zeros((2, 2)), cmin=NAN), ValueError, r"'cmin'.*nan"),
    ("save-exists", _save_twice, FileExistsError, r"a\.png"),
    ("load-missing", lambda c: load_image(c.tmp / "no.png"), FileNotFoundError, r"'path'.*no\.png"),
    ("load-folder", lambda c: load_image(c.tmp), IsADirectoryError, r"'path'"),
    ("load-garbage", lambda c: load_image(c.garbage), ValueError, r"'path'.*junk\.png"),
    ("load-size", lambda c: load_image(c.png, size=0), ValueError, r"'size'"),
    ("load-std-zero", lambda c: load_image(c.png, std=(0, 1, 1)), ValueError, r"'std'"),
    ("load-mean-only", lambda c: load_image(c.png, mean=None), ValueError, r"'mean' and 'std'"),
    ("denorm-type", lambda c: unstandardize("x"), TypeError, r"'tensor'"),
    # -- feature maps (module of another helper: current behaviour) -------------------------
    (
        "sum-reduce",
        lambda c: sum_channels(torch.ones(1, 2, 3, 3), "median"),
        ValueError,
        r"'reduce'",
    ),
    ("upsample-size", lambda c: upsample(torch.ones(1, 3, 3), 0), ValueError, r"'size'"),
    ("overlay-alpha", lambda c: overlay(c.x[0], c.sal[0], alpha=2.0), ValueError, r"'alpha'"),
    ("normalize-type", lambda c: normalize("x"), TypeError, r"'heatmaps'"),
    # -- projection (current behaviour) ----------------------------------------------------
    ("project-method", lambda c: project(np.zeros((5, 3)), method="x"), ValueError, r"'method'"),
    (
        "project-components",
        lambda c: project(
            np.random.default_rng(0).normal(size=(6, 3)), method="pca", n_components=0
        ),
        ValueError,
        r"'n_components'",
    ),
    # -- datasets and models ---------------------------------------------------------------
    ("shapes-n", lambda c: Shapes(0), ValueError, r"'n' parameter of Shapes.*Got 0"),
    (
        "shapes-seed-negative",
        lambda c: Shapes(2, random_state=-1),
        ValueError,
        r"'random_state'.*Got -1",
    ),
    (
        "shapes-seed-float",
        lambda c: Shapes(2, random_state=1.5),
        ValueError,
        r"'random_state'.*Got 1\.5",
    ),
    ("shapes-size", lambda c: Shapes(2, size=8), ValueError, r"'size'.*\[16, inf\)"),
    (
        "shapes-classes-str",
        lambda c: Shapes(2, class_names="circle"),
        ValueError,
        r"'class_names'",
    ),
    (
        "shapes-classes-unknown",
        lambda c: Shapes(2, class_names=["hexagon", "circle"]),
        ValueError,
        r"'class_names'",
    ),
    (
        "shapes-classes-one",
        lambda c: Shapes(2, class_names=["circle"]),
        ValueError,
        r"'class_names'",
    ),
    ("shapes-distractors", lambda c: Shapes(2, distractors=-1), ValueError, r"'distractors'"),
    ("shapes-noise", lambda c: Shapes(2, noise=-0.1), ValueError, r"'noise'"),
    ("shapes-noise-nan", lambda c: Shapes(2, noise=NAN), ValueError, r"'noise'.*nan"),
    ("tiny-classes", lambda c: TinyCNN(num_classes=2.5), ValueError, r"'num_classes'.*2\.5"),
    ("tiny-width", lambda c: TinyCNN(width=0), ValueError, r"'width'"),
    ("train-epochs", lambda c: train_tiny_cnn(epochs=0), ValueError, r"'epochs'.*train_tiny_cnn"),
    (
        "train-seed",
        lambda c: train_tiny_cnn(random_state=-1),
        ValueError,
        r"'random_state'.*train_tiny_cnn",
    ),
    ("pretrained-n-train", lambda c: pretrained_tiny_cnn(n_train=10), ValueError, r"'n_train'"),
    # -- conversion (fixed elsewhere: current behaviour) -----------------------------------
    ("convert-missing", lambda c: convert_image(c.tmp / "no.png"), FileNotFoundError, r"no\.png"),
    ("convert-format", lambda c: convert_image(c.png, to="xyz"), ValueError, r"'to'.*'xyz'"),
    ("convert-quality", lambda c: convert_image(c.png, quality=0), ValueError, r"'quality'"),
    # -- extract and the store (fixed elsewhere: current behaviour) ------------------------
    ("extract-layers", lambda c: extract(c.model, c.loader, "nope"), ValueError, r"'layers'"),
    (
        "extract-pool",
        lambda c: extract(c.model, c.loader, "0", pool="median", progress=False),
        ValueError,
        r"'pool'",
    ),
    (
        "extract-max-batches",
        lambda c: extract(c.model, c.loader, "0", max_batches=0, progress=False),
        ValueError,
        r"'max_batches'",
    ),
    (
        "extract-foreign-store",
        lambda c: extract(c.model, c.loader, "0", store=c.foreign, progress=False),
        (ValueError, FileExistsError),
        r"store|'store'",
    ),
    ("featureset-missing", lambda c: FeatureSet.open(c.tmp / "none"), FileNotFoundError, r"none"),
    # -- CLI (fixed elsewhere: current behaviour; exit 1 or 2 and one line naming the option)
    (
        "cli-device",
        lambda c: _cli(c, "cam", "{png}", "--device", "bogus", "--out", "{tmp}/o"),
        CliFailed,
        r"rc=1: .*--device",
    ),
    (
        "cli-size",
        lambda c: _cli(c, "cam", "{png}", "--size", "0", "--out", "{tmp}/o"),
        CliFailed,
        r"rc=1: .*--size",
    ),
    (
        "cli-missing",
        lambda c: _cli(c, "cam", "{tmp}/no.png", "--out", "{tmp}/o"),
        CliFailed,
        r"rc=1: .*no\.png",
    ),
    (
        "cli-method",
        lambda c: _cli(c, "cam", "{png}", "--method", "x", "--out", "{tmp}/o"),
        CliFailed,
        r"rc=1: .*--method must be .*'x'",
    ),
    (
        "cli-layer",
        lambda c: _cli(c, "cam", "{png}", "--layer", "nope", "--out", "{tmp}/o"),
        CliFailed,
        r"rc=1: .*'nope'",
    ),
    (
        "cli-demo-device",
        lambda c: _cli(c, "demo", "--device", "bogus", "--out", "{tmp}/d"),
        CliFailed,
        r"rc=1: .*--device",
    ),
    # -- the new surfaces under bad input (issue 22): TensorBoard, explorer, files ---------
    (
        "tensorboard-labels-without-features",
        lambda c: _tb(c, heatmaps={"m": c.sal}, labels=[0, 1]),
        ValueError,
        r"'labels'.*together with 'features'",
    ),
    (
        "tensorboard-predictions-without-features",
        lambda c: _tb(c, heatmaps={"m": c.sal}, predictions=[0, 1]),
        ValueError,
        r"'predictions'.*together with 'features'",
    ),
    (
        "tensorboard-class-names-alone",
        lambda c: _tb(c, features=c.sal, class_names=["a", "b"]),
        ValueError,
        r"'class_names'.*'labels' or 'predictions'",
    ),
    (
        "tensorboard-nan-features",
        lambda c: _tb(c, features=torch.tensor([[0.0, 1.0], [float("nan"), 0.0]])),
        ValueError,
        r"'features'.*finite.*rows \[1\]",
    ),
    (
        "tensorboard-nan-logits",
        lambda c: _tb(c, features=c.sal, predictions=torch.tensor([[0.0, 1], [float("nan"), 0]])),
        ValueError,
        r"'predictions'.*finite.*rows \[1\]",
    ),
    (
        "explore-nan-logits",
        lambda c: explore(np.zeros((2, 2)), predictions=torch.tensor([[float("inf"), 0], [0, 1]])),
        ValueError,
        r"'predictions' parameter of explore must be finite.*rows \[0\]",
    ),
    (
        "explore-nan-confidence",
        lambda c: explore(np.zeros((2, 2)), confidence=[float("nan"), 0.5]),
        ValueError,
        r"'confidence' parameter of explore must be finite.*rows \[0\]",
    ),
    (
        "explore-assets-folder-is-a-file",
        lambda c: _save_over_file(c),
        NotADirectoryError,
        r"'assets'.*page_files.*is a file",
    ),
    (
        "save-image-dangling-symlink",
        lambda c: _save_onto_dangling_link(c),
        FileExistsError,
        r"'path'.*existing file.*dangling\.png.*overwrite=True",
    ),
    (
        "projection-old-and-new-name",
        lambda c: featviz.Projection(
            embedding=M,
            embedding_=M,
            frame=None,
            method="pca",
            engine="x",
            seconds=0.0,
            explained_variance_ratio=None,
        ),
        TypeError,
        r"'embedding_' \(its old name\) and 'embedding'",
    ),
    (
        "pretrained-cache-dir-not-writable",
        lambda c: pretrained_tiny_cnn(random_state=7, n_train=64, cache_dir=c.png / "sub"),
        OSError,
        r"'cache_dir' parameter.*cannot be written.*nothing was trained",
    ),
]


def _tb(c: SimpleNamespace, **kwargs: Any) -> Any:
    pytest.importorskip("tensorboard")
    from featviz import to_tensorboard

    return to_tensorboard(c.tmp / "tb", **kwargs)


def _save_over_file(c: SimpleNamespace) -> None:
    (c.tmp / "page_files").write_text("a file")
    explore(np.zeros((2, 2)), images=torch.zeros(2, 3, 4, 4)).save(
        c.tmp / "page.html", assets="folder"
    )


def _save_onto_dangling_link(c: SimpleNamespace) -> None:
    link = c.tmp / "dangling.png"
    link.symlink_to(c.tmp / "missing" / "x.png")
    save_image(np.zeros((2, 2), np.uint8), link)


class _Branchy(nn.Module):
    """A layer ('side') that runs but does not feed the output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.side = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.side(x)
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.fixture
def c(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> SimpleNamespace:
    from PIL import Image

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    png = tmp_path / "img.png"
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(png)
    garbage = tmp_path / "junk.png"
    garbage.write_bytes(b"not an image")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    x = torch.randn(2, 3, 8, 8)
    return SimpleNamespace(
        model=model,
        branchy=_Branchy().eval(),
        x=x,
        sal=torch.rand(2, 8, 8),
        tmp=tmp_path,
        png=png,
        garbage=garbage,
        foreign=foreign,
        loader=[(x, torch.tensor([0, 1]))],
        capsys=capsys,
    )


def test_at_least_80_cases():
    assert len(CASES) >= 80
    assert len({case[0] for case in CASES}) == len(CASES)
    # every regex names a parameter: a quoted name or a CLI option
    for name, _, _, regex in CASES:
        assert re.search(r"'\w+|--\w+|\w+=|\\\.png|none|store", regex), name


@pytest.mark.parametrize(
    ("call", "exc", "regex"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(c, call, exc, regex):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. the layer-choice and non-finite warnings
        with pytest.raises(exc) as info:
            call(c)
    assert re.search(regex, str(info.value), flags=re.DOTALL), str(info.value)
