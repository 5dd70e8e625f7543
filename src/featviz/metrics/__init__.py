r"""Faithfulness and localisation metrics for heatmaps (saliency maps), batched.

Model-based metrics (the model is evaluated under `torch.no_grad` in eval mode, its
flags restored after):

- `deletion_auc` and `insertion_auc` (Petsiuk et al. 2018, RISE): remove (or insert)
  pixels in order of decreasing heat and integrate the class score curve.
- `average_drop` and `increase_in_confidence` (Chattopadhay et al. 2018, Grad-CAM++):
  compare the class confidence on the image and on the image multiplied by its map.
- `road` (Rong et al. 2022, ROAD): remove the most (or least) relevant pixels, fill them
  in with `noisy_linear_imputation`, and record the class score.

Localisation metrics against ground truth (boxes ``(x0, y0, x1, y1)`` with exclusive
ends, as `featviz.datasets.Shapes` gives them, or boolean masks):

- `pointing_game` (Zhang et al. 2016): is the map's maximum inside the object?
- `energy_in_box` (Wang et al. 2020, Score-CAM): the share of the map's mass inside.

Baselines: `baseline_maps` makes maps that explain nothing (random, a Sobel edge map, a
centred Gaussian) and `compare_baselines` scores any metric on them next to the
heatmaps, so that each score reads "method X beats an edge detector by Y".

Saliency maps are (N, h, w) tensors or arrays; the model-based metrics resize them
bilinearly to the images' size when needed.
"""

from __future__ import annotations

from featviz.metrics.baselines import BASELINE_KINDS, baseline_maps, compare_baselines
from featviz.metrics.curves import (
    CurveScores,
    average_drop,
    deletion_auc,
    increase_in_confidence,
    insertion_auc,
)
from featviz.metrics.localisation import energy_in_box, pointing_game
from featviz.metrics.road import RoadScores, noisy_linear_imputation, road

__all__ = [
    "BASELINE_KINDS",
    "CurveScores",
    "RoadScores",
    "average_drop",
    "baseline_maps",
    "compare_baselines",
    "deletion_auc",
    "energy_in_box",
    "increase_in_confidence",
    "insertion_auc",
    "noisy_linear_imputation",
    "pointing_game",
    "road",
]
