"""Built-in model: a tiny CNN with global average pooling, trained on `Shapes` in seconds.

`TinyCNN` ends in conv -> global average pool -> linear, so classic CAM applies, and
its layers have stable dotted names (``features.0`` ... ``features.13``, ``pool``,
``fc``). `pretrained_tiny_cnn` trains it deterministically on `featviz.datasets.Shapes`
and caches the weights in the user cache directory, so every later call loads them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featviz._model_cache import cached_model, default_cache_dir
from featviz._ops import grad_enabled
from featviz._validation import check_int, renamed
from featviz.datasets import SHAPE_CLASSES, Shapes

__all__ = ["TinyCNN", "cache_dir", "pretrained_tiny_cnn", "train_tiny_cnn"]

logger = logging.getLogger(__name__)

# Bump when the architecture, data or training recipe changes: old caches are ignored.
_RECIPE_VERSION = 2


class TinyCNN(nn.Module):
    """Four conv blocks -> global average pool -> linear classifier.

    Layer names: ``features.0`` conv 3->c, ``features.1`` BN, ``features.2`` ReLU,
    ``features.3`` max-pool; ``features.4``-``features.7`` the same with c->2c;
    ``features.8``-``features.10`` conv 2c->4c, BN, ReLU; ``features.11``-``features.13``
    conv 4c->4c with dilation 2, BN, ReLU (the last spatial layer, at 1/4 of the input
    size); ``pool``
    (global average pool), ``flatten``, ``fc`` (4c -> num_classes).

    Args:
        num_classes: Number of output classes.
        width: Channels of the first conv block (c above).

    Shapes:
        input (N, 3, H, W) float, H and W multiples of 4; output (N, num_classes) logits.
    """

    def __init__(self, num_classes: int = len(SHAPE_CLASSES), width: int = 16) -> None:
        super().__init__()
        num_classes = check_int(num_classes, "num_classes", "TinyCNN", 1)
        width = check_int(width, "width", "TinyCNN", 1)
        c = width

        def block(cin: int, cout: int, dilation: int = 1) -> list[nn.Module]:
            conv = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False)
            return [conv, nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, c),
            nn.MaxPool2d(2),
            *block(c, 2 * c),
            nn.MaxPool2d(2),
            *block(2 * c, 4 * c),
            # dilated: a wider receptive field centres the last maps on whole objects
            *block(4 * c, 4 * c, dilation=2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) for images (N, 3, H, W)."""
        return self.fc(self.flatten(self.pool(self.features(x))))


def cache_dir() -> Path:
    """Directory where featviz caches trained weights.

    ``$FEATVIZ_CACHE`` if set, else ``$XDG_CACHE_HOME/featviz``, else
    ``~/.cache/featviz``. Created on first write, not here.
    """
    return default_cache_dir()


def _recipe(seed: int, epochs: int, n_train: int, classes: tuple[str, ...]) -> dict[str, Any]:
    return {
        "recipe": _RECIPE_VERSION,
        "seed": seed,
        "epochs": epochs,
        "n_train": n_train,
        "classes": list(classes),
        "size": 64,
        "width": 16,
        "batch_size": 64,
        "lr": 3e-3,
    }


def _check_recipe(seed: Any, epochs: Any, n_train: Any, func: str) -> None:
    check_int(seed, "random_state", func, 0, 2**63 - 1)  # torch.manual_seed's range
    check_int(epochs, "epochs", func, 1)
    check_int(n_train, "n_train", func, 64)


@renamed(seed="random_state", classes="class_names")
def train_tiny_cnn(
    *,
    random_state: int = 0,
    epochs: int = 4,
    n_train: int = 4000,
    class_names: Sequence[str] = SHAPE_CLASSES,
    progress: bool = True,
) -> TinyCNN:
    """Train a `TinyCNN` on `Shapes` from scratch (no cache involved).

    Training is deterministic for a given ``random_state`` on a given machine: the global RNG state
    is saved and restored, data order uses a private generator, and torch's thread count
    is left as found.

    Args:
        random_state: Seeds the data (train set ``Shapes(n_train, random_state=...)``) and
            the weights.
        epochs: Passes over the training set, >= 1.
        n_train: Training images, >= 64.
        class_names: Shape class names, as in `Shapes`; their order defines the labels.
        progress: Show a tqdm progress bar.

    Returns:
        The trained model, in eval mode, on the CPU.
    """
    seed = random_state
    _check_recipe(seed, epochs, n_train, "train_tiny_cnn")
    from featviz._ops import progress_bar

    classes = tuple(class_names)
    recipe = _recipe(seed, epochs, n_train, classes)
    data = Shapes(n_train, size=recipe["size"], random_state=seed, class_names=classes)
    images, labels = data.tensors()
    # training needs autograd also when called inside no_grad() or inference_mode()
    with grad_enabled(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyCNN(len(classes), width=recipe["width"])
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
        bs = recipe["batch_size"]
        steps_per_epoch = (n_train + bs - 1) // bs
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe["lr"], total_steps=epochs * steps_per_epoch
        )
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        bar = progress_bar(
            enabled=progress, total=epochs * steps_per_epoch, desc="training TinyCNN"
        )
        for _ in range(epochs):
            order = torch.randperm(n_train, generator=gen)
            for start in range(0, n_train, bs):
                idx = order[start : start + bs]
                x = images[idx]
                # random horizontal flips keep the shapes' classes (all are symmetric)
                flip = torch.rand(len(idx), generator=gen) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                loss = loss_fn(model(x), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
        bar.close()
        # a trained model looks the same as one loaded from the cache: no .grad fields
        opt.zero_grad(set_to_none=True)
    model.eval()
    return model


@renamed(seed="random_state", directory="cache_dir", classes="class_names")
def pretrained_tiny_cnn(
    *,
    random_state: int = 0,
    epochs: int = 4,
    n_train: int = 4000,
    class_names: Sequence[str] = SHAPE_CLASSES,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> TinyCNN:
    """A `TinyCNN` trained on `Shapes`, from the disk cache when possible.

    The first call trains (about 20 s on 2 idle CPU cores) and writes the weights
    atomically to ``cache_dir`` (default: `featviz.models.cache_dir()`), under a name
    that hashes the training recipe, so changing any argument trains a new model and never reuses a
    stale file. Later calls load in well under a second. A corrupt cache file is
    retrained and replaced, with a warning in the log. A cache folder that cannot be
    written is reported before training starts (a read-only cache that already holds the
    model is fine).

    Held-out accuracy on ``Shapes(1000, random_state=random_state + 1)`` is >= 95% for the defaults.

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

    Raises:
        OSError: The model is not cached and the cache folder cannot be written
            (raised before training).
    """
    _check_recipe(random_state, epochs, n_train, "pretrained_tiny_cnn")
    classes = tuple(class_names)
    recipe = _recipe(random_state, epochs, n_train, classes)
    return cached_model(
        "tiny_cnn",
        recipe,
        lambda: TinyCNN(len(classes), width=recipe["width"]),
        lambda: train_tiny_cnn(
            random_state=random_state,
            epochs=epochs,
            n_train=n_train,
            class_names=classes,
            progress=progress,
        ),
        classes=classes,
        cache=cache,
        cache_dir=cache_dir,
        func="pretrained_tiny_cnn",
    )
