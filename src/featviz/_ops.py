"""Shared tensor primitives: grad mode, eval mode, min-max scaling, resizing.

A private module that every other featviz module may import (and the only place these
rules are written). Each primitive has one rule:

- `grad_enabled` / `autograd_input`: code that needs autograd works the same when the
  caller is inside `torch.no_grad` or `torch.inference_mode`.
- `eval_mode`: every module's train/eval flag is saved and restored, also on errors.
- `kept_buffers`: every buffer (BatchNorm running statistics, ...) is restored, also on
  errors, when a forward pass in training mode may change it.
- `minmax`: scaling to [0, 1] with one rule for constant maps and non-finite values.
- `resize`: bilinear (or other) resizing of the last two axes.
- `progress_bar`: every tqdm bar; drawn only on a terminal or in a notebook, so a log
  file gets no screen-control lines.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "CONSTANT_RTOL",
    "autograd_input",
    "check_autograd_model",
    "eval_mode",
    "finite_or_zero",
    "grad_enabled",
    "kept_buffers",
    "minmax",
    "progress_bar",
    "resize",
    "shows_progress",
]


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
            try:
                model.eval()
            except NotImplementedError as exc:  # torch.export programs: mode fixed at export
                raise TypeError(
                    f"The model ({type(model).__name__}) cannot be switched to eval mode "
                    f"({exc}); a torch.export program keeps the mode it was exported in. "
                    "Pass eval_mode=False, or export the model in eval mode and pass "
                    "torch.export.unflatten(program)."
                ) from exc
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


@contextlib.contextmanager
def kept_buffers(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every buffer of ``model`` after the block, bit for bit, also on errors.

    Only when some module is in training mode on entry (a BatchNorm then updates its
    running statistics and ``num_batches_tracked``); otherwise nothing is copied. Each
    buffer is written back in place (the same tensor object, so references to it stay
    valid); a buffer the block replaced by another tensor is put back as the original.

    Args:
        model: The model.

    Yields:
        ``model``.
    """
    if not any(m.training for m in model.modules()):
        yield model
        return
    saved = [
        (module, name, buf, buf.detach().clone())
        for module in model.modules()
        for name, buf in module._buffers.items()
        if buf is not None
    ]
    try:
        yield model
    finally:
        for module, name, buf, copy in saved:
            with torch.inference_mode(buf.is_inference()), torch.no_grad():
                buf.copy_(copy)
            module._buffers[name] = buf


#: A map whose range is at most this fraction of its magnitude counts as constant.
CONSTANT_RTOL = 1e-5


def minmax(t: torch.Tensor, *, per_item: bool = True, what: str = "map") -> torch.Tensor:
    """Scale to [0, 1] by the minimum and maximum: the one rule featviz uses everywhere.

    - Each item of the first axis is scaled alone with ``per_item`` (a batch of maps),
      else one minimum and maximum serve the whole tensor.
    - A constant map (range at most `CONSTANT_RTOL` times its magnitude, which holds at
      any scale and in float16) becomes all zeros, never NaN.
    - Non-finite values (NaN, inf) do not count towards the minimum and maximum and come
      out as 0, with a `RuntimeWarning` naming ``what``; an item with no finite value
      becomes all zeros.

    The arithmetic runs in float32 (float64 stays float64); the result has the input's
    float dtype (float32 for integer input), shape and device. The input is not modified.

    Args:
        t: Tensor of any shape; (N, ...) with ``per_item`` (empty input gives an empty result).
        per_item: Scale each ``t[i]`` separately.
        what: How the warning names the data (for example ``"heatmap"``).

    Returns:
        Tensor of the same shape with values in [0, 1].
    """
    out_dtype = t.dtype if t.is_floating_point() else torch.float32
    if t.numel() == 0:
        return torch.zeros(t.shape, dtype=out_dtype, device=t.device)
    x = t if t.dtype in (torch.float32, torch.float64) else t.float()
    flat = x.reshape(x.shape[0] if per_item and x.ndim > 0 else 1, -1)
    finite = torch.isfinite(flat)
    if bool(finite.all()):
        lo, hi = torch.aminmax(flat, dim=1)
        finite_mask = None
    else:
        bad = int((~finite).sum())
        warnings.warn(
            f"featviz: {bad} non-finite value(s) (NaN or inf) in the {what} were ignored "
            "for its minimum and maximum and set to 0.",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )
        inf = torch.tensor(math.inf, dtype=flat.dtype, device=flat.device)
        lo = torch.where(finite, flat, inf).amin(1)
        hi = torch.where(finite, flat, -inf).amax(1)
        finite_mask = finite
    span = hi - lo
    ok = span > CONSTANT_RTOL * torch.maximum(hi.abs(), lo.abs())
    # a constant (or empty) item: subtract 0 and divide by inf -> exact zeros
    lo = torch.where(ok, lo, torch.zeros_like(lo))
    span = torch.where(ok, span, torch.full_like(span, math.inf))
    out = (flat - lo[:, None]).div_(span[:, None])
    if finite_mask is not None:
        out = torch.where(finite_mask, out, torch.zeros_like(out))
    return out.reshape(x.shape).to(out_dtype)


def resize(
    t: torch.Tensor,
    size: Sequence[int],
    mode: str = "bilinear",
    *,
    antialias: bool = False,
) -> torch.Tensor:
    """Resize the last two axes of a float tensor of rank 2-4: the one resize featviz uses.

    Bilinear and bicubic use ``align_corners=False`` (OpenCV's ``INTER_LINEAR`` when
    enlarging); ``antialias`` low-pass filters when shrinking. float16/bfloat16 on the
    CPU are resized in float32 and cast back. Same size: ``t`` itself is returned.

    Args:
        t: (H, W), (N, H, W) or (N, C, H, W) float tensor.
        size: Output ``(height, width)``.
        mode: A ``torch.nn.functional.interpolate`` mode.
        antialias: Low-pass filter when shrinking (bilinear and bicubic only).

    Returns:
        Tensor (..., height, width) of ``t``'s dtype and device.
    """
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    import torch.nn.functional as F

    shape = t.shape
    x = t.reshape((-1, 1, *shape[-2:])) if t.ndim != 4 else t
    half = x.dtype in (torch.float16, torch.bfloat16) and x.device.type == "cpu"
    if half:
        x = x.float()
    kw: dict[str, Any] = {}
    if mode in ("bilinear", "bicubic"):
        kw = {"align_corners": False, "antialias": antialias}
    hw = (int(size[0]), int(size[1]))
    y = F.interpolate(x, size=hw, mode=mode, **kw)
    if half:
        y = y.to(t.dtype)
    return y.reshape((*shape[:-2], *hw))


def finite_or_zero(t: torch.Tensor, *, what: str = "map") -> torch.Tensor:
    """``t`` with NaN and inf set to 0 (with a `RuntimeWarning` naming ``what``), else ``t``.

    The same rule as `minmax` for data that is used without scaling.

    Args:
        t: Float tensor of any shape.
        what: How the warning names the data.

    Returns:
        ``t`` itself when every value is finite, else a new tensor.
    """
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return t
    warnings.warn(
        f"featviz: {int((~finite).sum())} non-finite value(s) (NaN or inf) in the {what} "
        "were set to 0.",
        RuntimeWarning,
        stacklevel=user_stacklevel(),
    )
    return torch.where(finite, t, torch.zeros_like(t))


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the user's line.

    For the caller of this function (which then calls `warnings.warn` itself): the level
    of the first frame outside featviz and torch, however deep their call machinery is
    (hooks run inside ``nn.Module.__call__``, CAMs inside wrappers and context managers).

    Returns:
        An int >= 1 for ``warnings.warn(..., stacklevel=...)``.
    """
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    skip = (os.path.dirname(torch.__file__) + os.sep, here)
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


def shows_progress() -> bool:
    """Whether a progress bar can be drawn: stderr is a terminal, or a Jupyter kernel runs.

    Redirected to a file or a pipe, a tqdm bar writes one line per refresh (with
    ``ESC[A`` cursor moves): 254 lines for one training run in a log file.
    """
    if "ipykernel" in sys.modules:
        from IPython import get_ipython

        if type(get_ipython()).__name__ == "ZMQInteractiveShell":
            return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar, disabled unless ``enabled`` and `shows_progress`.

    Args:
        iterable: What to iterate, or None for a manual bar (``total=``, ``update``).
        enabled: The caller's ``progress`` argument.
        **kwargs: Passed to ``tqdm`` (``desc``, ``total``, ``unit``, ``leave``, ...).

    Returns:
        The tqdm bar (a pass-through when disabled).
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not (enabled and shows_progress()), **kwargs)
