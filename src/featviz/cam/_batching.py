"""Score-CAM's batch size: masked inputs per forward pass, from memory and the model.

Score-CAM runs one forward pass per (image, channel) pair. Fewer, larger passes cost
less Python and dispatch overhead per pair, as long as they fit in memory: the batch
holds as many masked inputs as a quarter of the available memory (free device memory
on a GPU, available RAM on the CPU) takes, at the model's per-image footprint,
measured once per call by a forward pass of one image.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["activation_bytes", "available_bytes", "masked_batch_size"]

#: The share of the available memory the masked batches may take.
_SHARE = 0.25
#: The most masked inputs per pass (beyond it the overhead per pair is negligible).
_MOST = 256


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: the CUDA allocator's free bytes, else available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free) + int(
            torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        )
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency of most stacks
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages else 2**30


def activation_bytes(model: nn.Module, image: torch.Tensor) -> int:
    """Bytes one image's forward pass writes: its input and every leaf module's outputs.

    An upper bound of the memory a no-grad pass holds at once per image (outputs are
    freed as the pass goes; TorchScript submodules, which take no hooks, are not
    counted). Hooks are attached for this one pass only.

    Args:
        model: The model.
        image: (1, C, H, W) one input image.

    Returns:
        The bytes, at least those of the input.
    """
    total = [image.numel() * image.element_size()]

    def count(module: nn.Module, args: Any, output: Any) -> None:
        items = output if isinstance(output, (tuple, list)) else [output]
        total[0] += sum(t.numel() * t.element_size() for t in items if isinstance(t, torch.Tensor))

    # TorchScript modules (inside `featviz.hookable` wrappers) take no hooks: left out
    leaves = [
        m
        for m in model.modules()
        if next(m.children(), None) is None and not isinstance(m, torch.jit.ScriptModule)
    ]
    handles = []
    try:
        handles = [m.register_forward_hook(count) for m in leaves]
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def masked_batch_size(
    model: nn.Module,
    images: torch.Tensor,
    pairs: int,
    available: Callable[[torch.device], int] | None = None,
) -> int:
    """Masked inputs per Score-CAM forward pass for ``pairs`` (image, channel) pairs.

    Args:
        model: The model.
        images: (N, C, H, W) the images being explained.
        pairs: The number of masked inputs to run.
        available: Free memory of a device, in bytes; None: `available_bytes`.

    Returns:
        An int in [1, min(pairs, 256)]: a quarter of the available memory divided by one
        masked input's footprint (the mask, the masked input and the pass's
        activations).
    """
    if pairs <= 1:
        return 1
    one = images[:1]
    per_input = activation_bytes(model, one) + 2 * one.numel() * one.element_size()
    free = (available or available_bytes)(images.device)
    fits = int(_SHARE * free) // max(per_input, 1)
    return max(1, min(pairs, _MOST, fits))
