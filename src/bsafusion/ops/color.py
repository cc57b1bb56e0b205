"""RGB <-> YCbCr, ITU-R BT.601 studio range, inputs in [0, 1] (architecture.md §7).

``kornia.color.rgb_to_ycbcr`` implements the full-range JPEG variant, not the studio-range
one the method and its test sets use, so the conversion is written here.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BT601_Y_GREEN", "rgb_to_ycbcr", "ycbcr_to_rgb"]

BT601_Y_GREEN = 0.504


def rgb_to_ycbcr(rgb: Tensor, *, y_green: float = BT601_Y_GREEN) -> Tensor:
    """Convert RGB to YCbCr (BT.601 studio range).

    ``Y = 0.257 R + y_green G + 0.098 B + 0.0625``, ``Cb = -0.148 R - 0.291 G + 0.439 B + 0.5``,
    ``Cr = 0.439 R - 0.368 G - 0.071 B + 0.5``.

    Args:
        rgb: (B, 3, H, W) in [0, 1].
        y_green: weight of G in Y; 0.504 (BT.601). The release used 0.564 (§8.5).
    Returns:
        (B, 3, H, W): Y, Cb, Cr.
    """
    r, g, b = rgb.unbind(dim=-3)
    y = 0.257 * r + y_green * g + 0.098 * b + 0.0625
    cb = -0.148 * r - 0.291 * g + 0.439 * b + 0.5
    cr = 0.439 * r - 0.368 * g - 0.071 * b + 0.5
    return torch.stack((y, cb, cr), dim=-3)


def ycbcr_to_rgb(ycbcr: Tensor, *, clamp: bool = True) -> Tensor:
    """Convert BT.601 studio-range YCbCr back to RGB.

    Args:
        ycbcr: (B, 3, H, W): Y, Cb, Cr.
        clamp: clamp the result to [0, 1] (the release does not).
    Returns:
        (B, 3, H, W) RGB.
    """
    y, cb, cr = ycbcr.unbind(dim=-3)
    y = 1.164 * (y - 0.0625)
    cb = cb - 0.5
    cr = cr - 0.5
    rgb = torch.stack((y + 1.596 * cr, y - 0.392 * cb - 0.813 * cr, y + 2.017 * cb), dim=-3)
    return rgb.clamp(0.0, 1.0) if clamp else rgb
