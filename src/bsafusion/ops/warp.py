"""The exact bilinear warp and the integration of level flows (architecture.md §2, §3.4).

Convention: ``warp(I, flow)(p) = I(p + flow(p))``; flows are (B, 2, H, W) in pixels of their
own grid, channel 0 = x (columns), channel 1 = y (rows). A flow is named for the image it
samples: ``aligned = warp(moving, flow_ab)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from bsafusion.ops.grid import pixel_grid, pixel_to_normalized, resize_flow

__all__ = ["integrate_flows", "sampling_dtype", "warp"]


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Sample ``image`` at ``p + flow(p)``, bilinear, border clamp (architecture.md §2).

    Pixel ``p`` maps to ``2p/(N-1) - 1`` and is sampled with ``align_corners=True``, so a zero
    flow returns ``image`` up to float32 rounding (~1e-6 relative); samples outside the image
    take the nearest edge value. Coordinates and sampling are always float32 (also under
    autocast, where a bf16 flow would round positions beyond x = 128 to whole pixels); the
    result has ``image``'s dtype.

    Args:
        image: (B, C, H, W).
        flow: (B, 2, H, W) in pixels; channel 0 = x (columns), 1 = y (rows).
    Returns:
        (B, C, H, W).
    """
    h, w = flow.shape[-2:]
    dtype = sampling_dtype(image, flow)
    with torch.autocast(device_type=image.device.type, enabled=False):
        coords = pixel_grid(h, w, device=flow.device, dtype=dtype) + flow.to(dtype)
        out = F.grid_sample(image.to(dtype), pixel_to_normalized(coords), mode="bilinear",
                            padding_mode="border", align_corners=True)
    return out.to(image.dtype)


def sampling_dtype(image: Tensor, flow: Tensor) -> torch.dtype:
    """The dtype for sampling coordinates and ``grid_sample``: at least float32 (float64
    stays float64), whatever autocast made of ``image`` and ``flow``."""
    return torch.promote_types(torch.promote_types(image.dtype, flow.dtype), torch.float32)


def integrate_flows(level_flows: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """Sum per-level flows on the full grid (path independence of displacement, §3.4).

    Each level flow is upsampled to ``size`` (bilinear, ``align_corners=True``) and its
    magnitudes scaled by the size ratio (2^(5-k) for level k of 5 on a multiple-of-16 input).

    Args:
        level_flows: K tensors (B, 2, h_k, w_k), coarse to fine, each in pixels of its grid.
        size: (H, W) of the full-resolution grid.
    Returns:
        (B, 2, H, W) in full-resolution pixels; channel 0 = x, 1 = y.
    """
    total = None
    for flow in level_flows:
        up = resize_flow(flow, size, align_corners=True)
        total = up if total is None else total + up
    if total is None:
        raise ValueError("integrate_flows needs at least one level flow")
    return total
