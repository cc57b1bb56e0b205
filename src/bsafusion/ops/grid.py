"""Pixel grids, coordinate normalisation and flow resizing (architecture.md §2).

Convention: flows are (B, 2, H, W) in pixels of the grid they live on; channel 0 = x
(columns), channel 1 = y (rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["affine_basis", "pixel_grid", "pixel_to_normalized", "resize_flow", "upsample2"]


def pixel_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> Tensor:
    """Return the identity grid in pixels.

    Returns:
        (1, 2, H, W): channel 0 = x (column index), channel 1 = y (row index).
    """
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy)).unsqueeze(0)


def affine_basis(height: int, width: int, *, device=None, dtype=torch.float32) -> Tensor:
    """The functions ``1, x, y`` over the grid, x and y the pixel centres in [-1, 1] (as
    :func:`pixel_to_normalized`): a field ``sum_k c_k basis_k`` is affine.

    Returns:
        (3, H, W).
    """
    xy = pixel_to_normalized(pixel_grid(height, width, device=device, dtype=dtype))[0]
    return torch.cat((torch.ones_like(xy[None, ..., 0]), xy.permute(2, 0, 1)))


def pixel_to_normalized(coords: Tensor) -> Tensor:
    """Map pixel coordinates to ``grid_sample``'s [-1, 1] as for ``align_corners=True``.

    Pixel ``p`` on an axis of ``N`` samples maps to ``2p/(N-1) - 1`` (a 1-sample axis maps to 0).

    Args:
        coords: (B, 2, H, W) pixel coordinates, channel 0 = x, 1 = y.
    Returns:
        (B, H, W, 2) normalised grid in ``grid_sample``'s (x, y) order.
    """
    h, w = coords.shape[-2:]
    # python scales, not a new tensor: no host-to-device copy (CUDA graphs capture this)
    x, y = coords[:, 0] * (2.0 / max(w - 1, 1)) - 1.0, coords[:, 1] * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack((x, y), dim=-1)


def resize_flow(
    flow: Tensor, size: tuple[int, int], *, align_corners: bool, mode: str = "bilinear"
) -> Tensor:
    """Resample a flow to another grid and rescale its magnitudes to that grid's pixels.

    Each channel is multiplied by the ratio of new to old size along its own axis (x by
    W'/W, y by H'/H), so a displacement keeps its meaning in image fractions.

    Args:
        flow: (B, 2, H, W) in pixels of the H x W grid; channel 0 = x, 1 = y.
        size: (H', W') of the target grid.
        align_corners: passed to :func:`torch.nn.functional.interpolate`.
        mode: interpolation mode (``"bilinear"`` unless you know better).
    Returns:
        (B, 2, H', W') in pixels of the H' x W' grid.
    """
    h, w = flow.shape[-2:]
    out = F.interpolate(flow, size=size, mode=mode, align_corners=align_corners)
    sx, sy = size[1] / w, size[0] / h
    if sx == sy:
        return out * sx
    return torch.cat((out[:, :1] * sx, out[:, 1:] * sy), dim=1)


def upsample2(x: Tensor, *, align_corners: bool) -> Tensor:
    """Bilinear x2 upsampling: ``Up2 (ac)`` with ``align_corners=True``, ``Up2`` without.

    Args:
        x: (B, C, H, W).
    Returns:
        (B, C, 2H, 2W).
    """
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=align_corners)
