"""Demo section: Grad-CAM of a vision transformer, layer and token reshape chosen automatically."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from featviz.demo_sections._context import DemoContext

ORDER = 32
TITLE = "Vision transformer (random weights)"

_SIZE = 224  # the ViT's input size; torchvision's VisionTransformer accepts no other
_BLOCKS = 6  # ViT-Ti/16 has 12; half keeps the section quick


def _images(ctx: DemoContext) -> tuple[torch.Tensor, list[str]]:
    """The sample photos (centre square), then Shapes images (none with ``fast``).

    Returns:
        float images (N, 3, 224, 224) in [0, 1] on ``ctx.device``, and one name per image.
    """
    photos = ctx.photos
    x = torch.from_numpy(np.stack(list(photos.values()))).permute(0, 3, 1, 2)  # (2, 3, H, W)
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side].float().div(255)
    x = F.interpolate(x, size=(_SIZE, _SIZE), mode="bilinear", antialias=True, align_corners=False)
    n = ctx.sized(0, 2, 2)
    shapes = F.interpolate(ctx.data.tensors()[0][:n], size=(_SIZE, _SIZE), mode="nearest")
    names = [*photos, *(f"Shapes: {ctx.data.classes[int(y)]}" for y in ctx.data.labels[:n])]
    return torch.cat([x, shapes]).to(ctx.device), names


def run(ctx: DemoContext) -> None:
    """Grad-CAM with ``layers=None`` of a random-weight ViT/16 over photos and Shapes."""
    from torchvision.models import VisionTransformer

    from featviz.cam import CAM
    from featviz.featuremaps import plot_overlays

    # random weights, seeded without touching the global RNG; torchvision initialises the
    # classifier head to zeros, which makes every gradient (so every map) zero: draw it too
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = VisionTransformer(
            _SIZE, patch_size=16, num_layers=_BLOCKS, num_heads=3, hidden_dim=192, mlp_dim=768
        )
        torch.nn.init.normal_(vit.heads.head.weight, std=0.02)
    vit = vit.eval().to(ctx.device)
    images, names = _images(ctx)
    cam = CAM(vit, layers=None, progress=False)
    with warnings.catch_warnings():
        # the automatic choice is shown in the title and caption instead
        warnings.filterwarnings("ignore", message="CAM: no layer given", category=UserWarning)
        maps = cam(images)  # (N, 224, 224), target: the arg-max class
    layer, reshape = (cam.layers_ or ["?"])[0], cam.reshapes_[0]

    fig = plot_overlays(images, maps, titles=names, alpha=0.5)
    fig.suptitle(
        f"Grad-CAM of a ViT/16 ({_BLOCKS} blocks, width 192), random weights, layers=None\n"
        f"chosen layer {layer}, reshape {reshape}",
        fontsize=10,
    )
    ctx.save_figure(
        fig,
        "vit_gradcam.png",
        f"Grad-CAM of a torchvision VisionTransformer (patch 16, {_BLOCKS} blocks, width 192) "
        f"with layers=None: featviz chose {layer} and reshaped its output with {reshape}. "
        "The weights are random, so the maps show the pipeline, not what a trained ViT "
        "looks at",
    )
