"""The weights cache of the built-in models: one loader, one writability check, one writer.

A private module every featviz module may import. `featviz.models.pretrained_tiny_cnn` and
`featviz.models_vit.pretrained_tiny_vit` both go through `cached_model`: the file name
hashes the training recipe (so a changed argument never reuses a stale file), a corrupt
file is retrained and replaced, an unwritable cache is reported before training, and the
weights are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from featviz._io import atomic_path
from featviz._ops import grad_enabled
from featviz._version import __version__

__all__ = ["cached_model", "default_cache_dir"]

logger = logging.getLogger("featviz.models")
M = TypeVar("M", bound=nn.Module)


def default_cache_dir() -> Path:
    """``$FEATVIZ_CACHE`` if set, else ``$XDG_CACHE_HOME/featviz``, else ``~/.cache/featviz``."""
    env = os.environ.get("FEATVIZ_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "featviz"


def cached_model(
    name: str,
    recipe: Mapping[str, Any],
    build: Callable[[], M],
    train: Callable[[], M],
    *,
    classes: tuple[str, ...],
    cache: bool,
    cache_dir: str | os.PathLike[str] | None,
    func: str,
) -> M:
    """The model of ``recipe``: loaded from the cache, or trained (and cached).

    Args:
        name: File name stem (``"tiny_cnn"``): the file is ``<name>-<recipe hash>.pt``.
        recipe: Everything that defines the weights (JSON-serialisable).
        build: Makes an untrained model of the recipe's shape, to load weights into.
        train: Trains the model (called only when no usable file is cached).
        classes: Class names, set as ``model.classes``.
        cache: Read and write the cache; False always trains and writes nothing.
        cache_dir: Cache folder; None: `default_cache_dir`.
        func: The public function, for error messages.

    Returns:
        The model in eval mode on the CPU.

    Raises:
        OSError: Nothing usable is cached and the folder cannot be written (before training).
    """
    key = hashlib.sha256(json.dumps(dict(recipe), sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{name}-{key}.pt"
    if cache and path.exists():
        model = _load(path, build)
        if model is not None:
            model.classes = classes  # type: ignore[assignment]
            return model
    if cache:
        _check_writable(folder, given=cache_dir is not None, func=func)
    start = time.perf_counter()
    model = train()
    logger.info("trained %s in %.1f s", name, time.perf_counter() - start)
    if cache:
        # umask mode, not mkstemp's 0600: a shared cache stays readable by its other users
        with atomic_path(path, overwrite=True) as tmp:
            torch.save(
                {"state_dict": model.state_dict(), "recipe": dict(recipe), "featviz": __version__},
                tmp,
            )
    model.classes = classes  # type: ignore[assignment]
    return model


def _load(path: Path, build: Callable[[], M]) -> M | None:
    """The cached weights in a fresh model, or None (with a log note) if unreadable."""
    # init draws from the global RNG; parameters made outside inference_mode stay
    # usable by autograd
    with grad_enabled(), torch.random.fork_rng(devices=[]):
        model = build()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        with torch.inference_mode(False), torch.no_grad():
            model.load_state_dict(state["state_dict"])
    except Exception as exc:  # corrupt or foreign file: retrained and replaced
        logger.warning("ignoring unreadable cache file %s (%s); retraining", path, exc)
        return None
    return model.eval()


def _check_writable(folder: Path, given: bool, func: str) -> None:
    """Fail before training, not after, when the cache folder cannot take the weights.

    Creates ``folder`` (and its parents) and a probe file in it, removed at once.

    Raises:
        OSError: Of the failure's class and errno, naming the folder and what to do.
    """
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".featviz-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        if given:
            text = (
                f"The 'cache_dir' parameter of {func} names {str(folder)!r}, which cannot be "
                f"written ({why}); nothing was trained. Pass a folder you can write, or "
                "cache=False to train without caching."
            )
        else:
            text = (
                f"The model cache {str(folder)!r} (FEATVIZ_CACHE, else the user cache "
                f"folder) cannot be written ({why}); nothing was trained. Set FEATVIZ_CACHE "
                "to a folder you can write, or pass cache_dir=... or cache=False."
            )
        new = type(exc)(text)
        new.errno = exc.errno
        raise new from None
