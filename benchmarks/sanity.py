"""Benchmark `featviz.sanity_check`, alone and against Quantus 0.6.

Default: cascading randomisation of a torchvision ResNet-50 copy (``weights=None``) over
8 layers (``fc``, ``layer4.2``, ``layer4.1``, ``layer4.0``, ``layer3``, ``layer2``,
``layer1``, ``conv1``; ResNet-18: ``layer4.1``, ``layer4.0``, ..., ``bn1``, ``conv1``), the eight
CAM methods other than Score-CAM, 16 images at 224 x 224,
all four measures; the target is 3 minutes on 2 CPU cores. ``--quick``: ResNet-18,
4 images at 64 x 64 (a CI-sized check).

``--vs-quantus``: the same batch, methods and seed through featviz (one call: the
cascading model-parameter randomisation and the random-logit test, Spearman(abs)) and
through Quantus 0.6 (``quantus.MPRT(layer_order="top_down")`` and
``quantus.RandomLogit`` per method, ``similarity_func=correlation_spearman``, the maps
from featviz's CAMs as ``explain_func``); prints both times, their ratio and the largest
difference between the two sets of numbers. Quantus randomises every module with a
``reset_parameters`` method (no layer subset), so both run with ``layers=None``; the
default model there is ResNet-18 at 112 x 112 with 8 images (``--arch``/``--size``/``--n``;
smaller images make layer4 a 2 x 2 grid whose maps of a random model can be all zero for
the whole batch, which Quantus refuses).

Usage: ``python benchmarks/sanity.py [--quick] [--vs-quantus] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import numpy as np
import torch

import featviz
from featviz.cam import METHODS as CAM_METHODS
from featviz.sanity import sanity_check

#: 8 layers from the logits down (ResNet-18 has two blocks in layer4: its bn1 comes in)
LAYERS = {
    "resnet50": ["fc", "layer4.2", "layer4.1", "layer4.0", "layer3", "layer2", "layer1", "conv1"],
    "resnet18": ["fc", "layer4.1", "layer4.0", "layer3", "layer2", "layer1", "bn1", "conv1"],
}
METHODS = [m for m in CAM_METHODS if m != "scorecam"]


def _model(arch: str) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    return getattr(torchvision.models, arch)(weights=None).eval()


def _images(n: int, size: int) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def featviz_alone(arch: str, n: int, size: int) -> float:
    model, images = _model(arch), _images(n, size)
    layers = LAYERS[arch]
    start, cpu = time.perf_counter(), time.process_time()
    report = sanity_check(model, images, METHODS, layers, cam_layers="layer4", tests="cascading")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(report.mean("cascading").round(2).to_string())
    print(report)
    print(
        f"featviz sanity_check: cascading over {len(layers)} layers of {arch}, "
        f"{len(METHODS)} methods x {n} images at {size} px, 4 measures: {seconds:.1f} s "
        f"wall, {cpu:.1f} s CPU ({torch.get_num_threads()} threads)"
    )
    return seconds


def _explainer(method: str, target_layer: str) -> Any:
    def explain(model: torch.nn.Module, inputs: Any, targets: Any, **kwargs: Any) -> Any:
        cam = featviz.CAM(model, target_layer, method, progress=False)
        return cam(torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()

    return explain


def vs_quantus(arch: str, n: int, size: int) -> None:
    import quantus

    model, images = _model(arch), _images(n, size)
    with torch.no_grad():
        labels = model(images).argmax(1)
    num_classes = 1000
    start = time.perf_counter()
    report = sanity_check(
        model,
        images,
        METHODS,
        None,
        labels,
        cam_layers="layer4",
        tests=("cascading", "random_logit"),
        measures="spearman_abs",
    )
    ours = time.perf_counter() - start
    spearman = quantus.similarity_func.correlation_spearman
    worst = 0.0
    start = time.perf_counter()
    for method in METHODS:
        explain = _explainer(method, "layer4")
        mprt = quantus.MPRT(layer_order="top_down", seed=42, abs=True, similarity_func=spearman)
        q = mprt(model, images.numpy(), labels.numpy(), explain_func=explain, batch_size=n)
        logit = quantus.RandomLogit(
            num_classes=num_classes, seed=42, abs=True, similarity_func=spearman
        )
        r = logit(model, images.numpy(), labels.numpy(), explain_func=explain, batch_size=n)
        s = report.scores[report.scores.method == method]
        for layer, values in q.items():
            mine = s[(s.test == "cascading") & (s.layer == layer)].sort_values("image")
            worst = max(worst, float(np.nanmax(np.abs(mine.value.to_numpy() - values))))
        mine = s[s.test == "random_logit"].sort_values("image").value.to_numpy()
        worst = max(worst, float(np.nanmax(np.abs(mine - np.asarray(r)))))
    theirs = time.perf_counter() - start
    steps = len(report.layers)
    print(
        f"{arch}, {n} images at {size} px, {len(METHODS)} methods, {steps} layers "
        f"(every module with reset_parameters), cascading MPRT + random logit, Spearman(abs):"
    )
    print(f"featviz {ours:.1f} s, Quantus {quantus.__version__} {theirs:.1f} s")
    print(f"speed-up: {theirs / ours:.1f}x; largest difference: {worst:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="resnet18, 4 images, 64 px")
    parser.add_argument("--vs-quantus", action="store_true", help="compare with Quantus 0.6")
    parser.add_argument("--arch", default=None, help="a torchvision ResNet")
    parser.add_argument("--n", type=int, default=None, help="images")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    if args.vs_quantus:
        quick = args.quick
        vs_quantus(
            args.arch or "resnet18",
            args.n or (4 if quick else 8),
            args.size or 112,
        )
        return
    if args.quick:
        featviz_alone(args.arch or "resnet18", args.n or 4, args.size or 64)
    else:
        featviz_alone(args.arch or "resnet50", args.n or 16, args.size or 224)


if __name__ == "__main__":
    main()
