"""Built-in transformer: a tiny vision transformer trained on `Shapes`, to judge ViT maps.

`TinyViT` is a pre-norm ViT with a class token whose blocks use
``nn.MultiheadAttention(need_weights=False)`` (PyTorch's fused attention), so the
transformer-native CAM methods (``rollout``, ``relevance``) and Grad-CAM on token grids
are exercised on the path real models take. `pretrained_tiny_vit` trains it
deterministically on `featviz.datasets.Shapes` and caches the weights next to
`featviz.models.pretrained_tiny_cnn`'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from featviz._model_cache import cached_model
from featviz._ops import grad_enabled
from featviz._validation import check_int
from featviz.datasets import SHAPE_CLASSES, Shapes

__all__ = ["TinyViT", "pretrained_tiny_vit", "train_tiny_vit"]

logger = logging.getLogger(__name__)

# Bump when the architecture, data or training recipe changes: old caches are ignored.
_RECIPE_VERSION = 1


class _Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """Patch embedding -> class token + positions -> pre-norm blocks -> norm -> head.

    Layer names: ``patch_embed`` (a ``patch_size`` convolution), ``blocks.0`` ...
    ``blocks.{depth-1}`` (each with ``norm1``, ``attn`` an ``nn.MultiheadAttention``,
    ``norm2``, ``mlp``), ``norm``, ``head`` (on the class token). ``num_prefix_tokens``
    is 1 (the class token comes first).

    Args:
        num_classes: Number of output classes.
        size: Input height and width, a multiple of ``patch_size``.
        patch_size: Side of the square patches.
        width: Token width.
        depth: Number of blocks.
        heads: Attention heads per block (``width`` must be a multiple).
        mlp_width: Hidden width of the blocks' MLPs.

    Shapes:
        input (N, 3, size, size) float; output (N, num_classes) logits.
    """

    num_prefix_tokens = 1

    def __init__(
        self,
        num_classes: int = len(SHAPE_CLASSES),
        size: int = 64,
        patch_size: int = 8,
        width: int = 48,
        depth: int = 3,
        heads: int = 3,
        mlp_width: int = 96,
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("size", size), ("depth", depth)):
            check_int(value, name, "TinyViT", 1)
        for name, value in (("patch_size", patch_size), ("width", width), ("heads", heads)):
            check_int(value, name, "TinyViT", 1)
        check_int(mlp_width, "mlp_width", "TinyViT", 1)
        if size % patch_size or width % heads:
            raise ValueError(
                "The 'size' parameter of TinyViT must be a multiple of 'patch_size' and "
                f"'width' a multiple of 'heads'. Got size={size}, patch_size={patch_size}, "
                f"width={width}, heads={heads} instead."
            )
        dim, mlp = width, mlp_width
        tokens = (size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(_Block(dim, heads, mlp) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) for images (N, 3, H, W)."""
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(t))[:, 0])


def _recipe(seed: int, epochs: int, n_train: int, classes: tuple[str, ...]) -> dict[str, Any]:
    return {
        "model": "tiny_vit",
        "recipe": _RECIPE_VERSION,
        "seed": seed,
        "epochs": epochs,
        "n_train": n_train,
        "classes": list(classes),
        "size": 64,
        "batch_size": 64,
        "lr": 2e-3,
        "weight_decay": 0.05,
    }


def _check_recipe(seed: Any, epochs: Any, n_train: Any, func: str) -> None:
    check_int(seed, "random_state", func, 0, 2**63 - 1)  # torch.manual_seed's range
    check_int(epochs, "epochs", func, 1)
    check_int(n_train, "n_train", func, 64)


def train_tiny_vit(
    *,
    random_state: int = 0,
    epochs: int = 12,
    n_train: int = 6000,
    class_names: Sequence[str] = SHAPE_CLASSES,
    progress: bool = True,
) -> TinyViT:
    """Train a `TinyViT` on 64 px `Shapes` from scratch (no cache involved).

    Deterministic for a given ``random_state`` on a given machine: the global RNG state
    is saved and restored and data order uses a private generator. AdamW with a
    one-cycle schedule and random horizontal flips (every shape class is symmetric).

    Args:
        random_state: Seeds the data (``Shapes(n_train, random_state=...)``) and weights.
        epochs: Passes over the training set, >= 1.
        n_train: Training images, >= 64.
        class_names: Shape class names, as in `Shapes`; their order defines the labels.
        progress: Show a tqdm progress bar.

    Returns:
        The trained model, in eval mode, on the CPU.
    """
    _check_recipe(random_state, epochs, n_train, "train_tiny_vit")
    from tqdm.auto import tqdm

    classes = tuple(class_names)
    recipe = _recipe(random_state, epochs, n_train, classes)
    images, labels = Shapes(
        n_train, size=recipe["size"], random_state=random_state, class_names=classes
    ).tensors()
    with grad_enabled(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = TinyViT(len(classes), size=recipe["size"])
        gen = torch.Generator().manual_seed(random_state)
        opt = torch.optim.AdamW(
            model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"]
        )
        bs = recipe["batch_size"]
        steps = epochs * ((n_train + bs - 1) // bs)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        bar = tqdm(total=steps, disable=not progress, desc="training TinyViT")
        for _ in range(epochs):
            order = torch.randperm(n_train, generator=gen)
            for start in range(0, n_train, bs):
                idx = order[start : start + bs]
                flip = torch.rand(len(idx), generator=gen) < 0.5
                x = torch.where(flip[:, None, None, None], images[idx].flip(-1), images[idx])
                loss = loss_fn(model(x), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
        bar.close()
        opt.zero_grad(set_to_none=True)
    model.eval()
    return model


def pretrained_tiny_vit(
    *,
    random_state: int = 0,
    epochs: int = 12,
    n_train: int = 6000,
    class_names: Sequence[str] = SHAPE_CLASSES,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> TinyViT:
    """A `TinyViT` trained on 64 px `Shapes`, from the disk cache when possible.

    The first call trains (about 50 s on 2 idle CPU cores; held-out accuracy 0.98 on
    ``Shapes(256, random_state=1)`` for the defaults) and writes the weights atomically
    to ``cache_dir`` (default: `featviz.models.cache_dir()`) under a name hashing the
    recipe; later calls load them. A corrupt cache file is retrained and replaced, with
    a warning in the log; a cache that cannot be written is reported before training.

    Args:
        random_state: Seed of the training data and weights.
        epochs: Training epochs.
        n_train: Training images.
        class_names: Shape class names, as in `Shapes`; their order defines the labels.
        cache: Read and write the cache; ``False`` always trains and writes nothing.
        cache_dir: Cache folder; default: `featviz.models.cache_dir()`.
        progress: Show a progress bar while training.

    Returns:
        The model in eval mode on the CPU; ``model.classes`` holds the class names.
    """
    _check_recipe(random_state, epochs, n_train, "pretrained_tiny_vit")
    classes = tuple(class_names)
    recipe = _recipe(random_state, epochs, n_train, classes)
    return cached_model(
        "tiny_vit",
        recipe,
        lambda: TinyViT(len(classes), size=recipe["size"]),
        lambda: train_tiny_vit(
            random_state=random_state,
            epochs=epochs,
            n_train=n_train,
            class_names=classes,
            progress=progress,
        ),
        classes=classes,
        cache=cache,
        cache_dir=cache_dir,
        func="pretrained_tiny_vit",
    )
