r"""Class activation maps: Grad-CAM, CAM and the family, batched, on the images' device.

Every method computes a map for each image as a weighted sum of a layer's activation
channels, $L = \mathrm{ReLU}(\sum_k w_k A_k)$, and differs only in how the
weights $w$ are found (see ``docs/cam.md`` for the formulas). The package has three
rooms:

- ``_methods``: the methods registry, one channel-weight function and one row of
  ``_METHODS`` per method (a new method is one function and one row);
- ``_attention``: the transformer-native maps (attention rollout, gradient-weighted
  attention relevance), rows of the same registry (`ATTENTION_METHODS`);
- ``_layers``: layer finding (the auto layer), token grids and channel-last outputs;
- ``_pipeline``: `CAM`, `grad_cam` and `class_activation_map`: hooks (attached only
  during a call, via `featviz.capture`), target scores (the one scoring path shared
  with the metrics), gradients with `torch.autograd.grad` (never ``.backward()``, so
  parameters' ``.grad`` fields are untouched), fusion of several layers, bilinear
  resizing and per-image min-max normalisation.

Example:
    >>> maps = featviz.grad_cam(model, images, layers="features.13")  # doctest: +SKIP
    >>> maps.shape  # (N, H, W), float32 in [0, 1]  # doctest: +SKIP
    torch.Size([8, 64, 64])
"""

from __future__ import annotations

from featviz.cam._methods import ATTENTION_METHODS, METHODS
from featviz.cam._pipeline import CAM, NearZeroMapWarning, class_activation_map, grad_cam

__all__ = [
    "ATTENTION_METHODS",
    "CAM",
    "METHODS",
    "NearZeroMapWarning",
    "class_activation_map",
    "grad_cam",
]
