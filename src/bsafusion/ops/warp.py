"""The exact bilinear warp and the integration of level flows (architecture.md §2, §3.4).

Convention: ``warp(I, flow)(p) = I(p + flow(p))``; flows are (B, 2, H, W) in pixels of their
own grid, channel 0 = x (columns), channel 1 = y (rows). A flow is named for the image it
samples: ``aligned = warp(moving, flow_ab)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from bsafusion.ops.grid import pixel_grid, pixel_to_normalized, resize_flow

__all__ = ["integrate_flows", "warp"]


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Sample ``image`` at ``p + flow(p)``, bilinear, border clamp (architecture.md §2).

    Pixel ``p`` maps to ``2p/(N-1) - 1`` and is sampled with ``align_corners=True``, so a zero
    flow returns ``image`` up to float32 rounding (~1e-6 relative); samples outside the image
    take the nearest edge value.

    Args:
        image: (B, C, H, W).
        flow: (B, 2, H, W) in pixels; channel 0 = x (columns), 1 = y (rows).
    Returns:
        (B, C, H, W).
    """
    h, w = flow.shape[-2:]
    coords = pixel_grid(h, w, device=flow.device, dtype=flow.dtype) + flow
    return F.grid_sample(
        image, pixel_to_normalized(coords), mode="bilinear", padding_mode="border",
        align_corners=True,
    )


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
