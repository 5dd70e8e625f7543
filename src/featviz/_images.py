"""Shared image primitives: any PIL image to RGB, sizes, per-channel mean/std.

A private module that every featviz module may import; each rule is written here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["bomb_error", "mean_std", "pil_to_float", "pil_to_rgb", "size2", "unit_rgb"]


def pil_to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Any PIL image -> uint8 RGB (H, W, 3); transparency composited onto ``background``."""
    return np.clip(np.rint(pil_to_float(img, background) * 255.0), 0, 255).astype(np.uint8)


def pil_to_float(
    img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)
) -> np.ndarray:
    """Any PIL image -> float32 RGB (H, W, 3) in [0, 1], at full bit depth."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img).astype(np.float32)
        # 16-bit files: 0..65535; 32-bit "I" holding 8-bit data stays 0..255
        top = 255.0 if mode == "I" and a.size and a.max() <= 255 else 65535.0
        g = np.clip(a / top, 0.0, 1.0)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "F":
        g = np.asarray(img, dtype=np.float32)
        if g.size and g.max() > 1:  # float data stored as 0..255
            g = g / 255.0
        return np.repeat(np.clip(g, 0.0, 1.0)[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        a = rgba[..., 3:]
        bg = np.asarray(background, dtype=np.float32) / 255.0
        return (rgba[..., :3] * a + bg * (1.0 - a)).astype(np.float32)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def size2(size: Any, param: str, func: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or min(size) < 1
    ):
        raise ValueError(
            f"The {param!r} parameter of {func} must be an int >= 1 or a pair "
            f"(height, width) of ints >= 1. Got {size!r} instead."
        )
    return int(size[0]), int(size[1])


def mean_std(
    mean: Any, std: Any, channels: int, device: torch.device, func: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std as float32 (C', 1, 1) tensors, C' in {1, ``channels``}.

    One rule for every function that takes ``mean``/``std``: 1 or ``channels`` finite
    values each, and no std equal to 0 (dividing by it is undefined, and multiplying by
    it erases the image).

    Raises:
        ValueError: A wrong count, a non-finite value or a zero std; the message names
            ``func``.
    """
    try:
        m = torch.as_tensor(mean, dtype=torch.float32, device=device).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float32, device=device).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"The 'mean' and 'std' parameters of {func} must be numbers or sequences of "
            f"numbers. Got mean={mean!r}, std={std!r}."
        ) from exc
    if (
        m.numel() not in (1, channels)
        or s.numel() not in (1, channels)
        or not bool(torch.isfinite(m).all() and torch.isfinite(s).all())
        or bool((s == 0).any())
    ):
        raise ValueError(
            f"The 'mean' and 'std' parameters of {func} must have 1 or {channels} finite "
            f"values each (one per channel), with std != 0. Got mean={mean!r}, std={std!r}."
        )
    return m.reshape(-1, 1, 1), s.reshape(-1, 1, 1)


def unit_rgb(
    x: torch.Tensor, mean_std: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """Channel-first images (n, C, H, W), C in (1, 3, 4) -> float32 RGB in [0, 1].

    uint8 is divided by 255; floats are taken as [0, 1], or as standardised values when
    ``mean_std`` (from `mean_std`) is given (``x * std + mean``). Grey is repeated to
    RGB, alpha composited onto white; values are clipped to [0, 1].

    Args:
        x: (n, C, H, W) uint8 or float tensor.
        mean_std: ``(mean, std)`` float32 (C', 1, 1) tensors, or None.

    Returns:
        New float32 tensor (n, 3, H, W) on ``x``'s device.
    """
    out = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if mean_std is not None:
        m, s = mean_std
        out = out * s.to(out.device) + m.to(out.device)
    if out.shape[1] == 4:
        out = out[:, :3] * out[:, 3:] + (1 - out[:, 3:])
    elif out.shape[1] == 1:
        out = out.expand(-1, 3, -1, -1)
    return out.clamp(0, 1)


def bomb_error(path: Any, exc: BaseException) -> ValueError:
    """The one error for an image over PIL's decompression-bomb limit, naming the file.

    Args:
        path: The image file.
        exc: PIL's ``DecompressionBombError`` (or the warning turned into an error).

    Returns:
        A ValueError to raise ``from exc``.
    """
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ValueError(
        f"Refusing to read {str(path)!r}: it is too large to open safely ({detail}). If you "
        "trust the file, raise PIL.Image.MAX_IMAGE_PIXELS first."
    )
