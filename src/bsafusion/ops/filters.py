"""Normalisation filters (architecture.md §2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["spatial_layer_norm"]


def spatial_layer_norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Normalise each H x W map to zero mean and unit (population) variance, no affine.

    Args:
        x: (B, C, H, W).
    Returns:
        (B, C, H, W).
    """
    return F.layer_norm(x, x.shape[-2:], eps=eps)
