"""Shared tensor primitives: grad mode, eval mode, min-max scaling, resizing.

A private module that every other featviz module may import (and the only place these
rules are written). Each primitive has one rule:

- `grad_enabled` / `autograd_input`: code that needs autograd works the same when the
  caller is inside `torch.no_grad` or `torch.inference_mode`.
- `eval_mode`: every module's train/eval flag is saved and restored, also on errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["autograd_input", "check_autograd_model", "eval_mode", "grad_enabled"]


@contextlib.contextmanager
def grad_enabled() -> Iterator[None]:
    """Autograd on for the block, whatever the caller's grad mode.

    Leaves `torch.inference_mode` (so new tensors are normal tensors that autograd can
    record) and enables gradients, even inside the caller's `torch.no_grad()`. The
    caller's modes are back in force after the block.
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield


def autograd_input(x: torch.Tensor) -> torch.Tensor:
    """``x``, or a clone of it when it was made under `torch.inference_mode`.

    Inference tensors cannot take part in a recorded autograd graph; a clone made inside
    `grad_enabled` is a normal tensor with the same values, and the caller's tensor is
    left untouched.

    Args:
        x: Any tensor.

    Returns:
        A tensor of the same shape, dtype and device as ``x``.
    """
    if x.is_inference():
        with torch.inference_mode(False):
            return x.clone()
    return x


def check_autograd_model(model: nn.Module, func: str) -> None:
    """Refuse a model whose parameters or buffers were made under `torch.inference_mode`.

    Args:
        model: The model.
        func: Name of the public function, for the message.

    Raises:
        RuntimeError: A parameter or buffer is an inference tensor (autograd cannot use it).
    """
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_inference():
            raise RuntimeError(
                f"{func} needs gradients, but the model's {name!r} was created inside "
                "torch.inference_mode(), so autograd cannot use it. Create or load the "
                "model outside inference_mode (torch.no_grad() is fine)."
            )


@contextlib.contextmanager
def eval_mode(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block; restore every module's flag after.

    Args:
        model: The model.
        enabled: False leaves the mode as it is (the flags are still restored).

    Yields:
        ``model``.
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        if enabled:
            model.eval()
        yield model
    finally:
        for module, flag in flags:
            module.training = flag
