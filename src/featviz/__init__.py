"""featviz: see what PyTorch vision models do.

Capture activations and gradients with hooks, compute Grad-CAM/CAM heatmaps, draw
channel-summed feature maps over images, plot correlation heatmaps with threshold
labels, project features with PCA/t-SNE, and convert image formats.

Public names are imported lazily: ``import featviz`` loads only torch and numpy;
matplotlib, scikit-learn, OpenCV and torchvision are imported by the functions that
need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from featviz._version import __version__

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # capture (hooks, conversion)
    "capture": "featviz.hooks",
    "Capture": "featviz.hooks",
    "to_numpy": "featviz.hooks",
    "resolve_layers": "featviz.hooks",
    "hookable": "featviz.hooks",
    # whole-dataset extraction
    "extract": "featviz.extraction",
    "FeatureSet": "featviz.featureset",
    "extract_ray": "featviz.extraction_ray",
    # class activation maps
    "grad_cam": "featviz.cam",
    "class_activation_map": "featviz.cam",
    "CAM": "featviz.cam",
    "NearZeroMapWarning": "featviz.cam",
    # feature maps and overlays
    "sum_channels": "featviz.featuremaps",
    "normalize": "featviz.featuremaps",
    "upsample": "featviz.featuremaps",
    "plot_feature_grid": "featviz.featuremaps",
    "colorize": "featviz.overlays",
    "overlay": "featviz.overlays",
    "plot_overlays": "featviz.overlays",
    # arrays <-> images
    "to_image": "featviz.imageio",
    "save_image": "featviz.imageio",
    "load_image": "featviz.imageio",
    "denormalize": "featviz.imageio",
    "unstandardize": "featviz.imageio",
    "IMAGENET_MEAN": "featviz.imageio",
    "IMAGENET_STD": "featviz.imageio",
    # image format conversion
    "convert_image": "featviz.convert",
    "convert_images": "featviz.convert",
    "ConversionReport": "featviz.convert",
    "SourceKeptWarning": "featviz.convert",
    # correlation heatmaps
    "correlation": "featviz.correlations",
    "plot_correlation": "featviz.correlations",
    "threshold_labels": "featviz.correlations",
    "plot_correlation_maps": "featviz.correlations",
    # projections
    "project": "featviz.projection",
    "Projection": "featviz.projection",
    "plot_projection": "featviz.projection",
    "plot_layer_projections": "featviz.projection",
    "project_steps": "featviz.projection",
    # interactive explorer and TensorBoard export
    "explore": "featviz.explorer",
    "ExploreView": "featviz.explorer",
    "to_tensorboard": "featviz.tensorboard",
    "TensorBoardExport": "featviz.tensorboard",
    # before/after comparisons
    "compare_cams": "featviz.compare",
    "compare_feature_maps": "featviz.compare",
    "compare_projections": "featviz.compare",
    # recording during training
    "Recorder": "featviz.recorder",
    # sanity checks of saliency maps
    "sanity_check": "featviz.sanity",
    "SanityReport": "featviz.sanity",
    "plot_sanity_maps": "featviz.sanity",
    "plot_sanity_curves": "featviz.sanity",
    # a small trained vision transformer (the transformer-native CAM methods' test bed)
    "TinyViT": "featviz.models_vit",
    "pretrained_tiny_vit": "featviz.models_vit",
    "train_tiny_vit": "featviz.models_vit",
}

_SUBMODULES = ("datasets", "models", "metrics", "targets")

__all__ = ["__version__", *_EXPORTS, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    """Import public names and submodules on first access (PEP 562)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"featviz.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'featviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - static view of the lazy names for IDEs and mypy
    from featviz import datasets, metrics, models, targets
    from featviz.cam import CAM, NearZeroMapWarning, class_activation_map, grad_cam
    from featviz.compare import compare_cams, compare_feature_maps, compare_projections
    from featviz.convert import (
        ConversionReport,
        SourceKeptWarning,
        convert_image,
        convert_images,
    )
    from featviz.correlations import (
        correlation,
        plot_correlation,
        plot_correlation_maps,
        threshold_labels,
    )
    from featviz.explorer import ExploreView, explore
    from featviz.extraction import extract
    from featviz.extraction_ray import extract_ray
    from featviz.featuremaps import normalize, plot_feature_grid, sum_channels, upsample
    from featviz.featureset import FeatureSet
    from featviz.hooks import Capture, capture, hookable, resolve_layers, to_numpy
    from featviz.imageio import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        denormalize,
        load_image,
        save_image,
        to_image,
        unstandardize,
    )
    from featviz.models_vit import TinyViT, pretrained_tiny_vit, train_tiny_vit
    from featviz.overlays import colorize, overlay, plot_overlays
    from featviz.projection import (
        Projection,
        plot_layer_projections,
        plot_projection,
        project,
        project_steps,
    )
    from featviz.recorder import Recorder
    from featviz.sanity import SanityReport, plot_sanity_curves, plot_sanity_maps, sanity_check
    from featviz.tensorboard import TensorBoardExport, to_tensorboard
