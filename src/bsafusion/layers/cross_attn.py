"""Spatial cross-attention CA of the BSFA registration layers (architecture.md §3.4)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["SpatialCrossAttention"]


def _conv3x3_relu(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU())


class SpatialCrossAttention(nn.Module):
    """``CA(u, w) = r(u) * softmax_HW(r(u) * s(w)) + u`` with r, s = ReLU(Conv3x3).

    The softmax runs over all spatial positions of each channel separately.

    Args:
        dim: channels C of both inputs.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.to_query = _conv3x3_relu(dim)  # r, applied to the first argument
        self.to_key = _conv3x3_relu(dim)  # s, applied to the second argument

    def forward(self, u: Tensor, w: Tensor) -> Tensor:
        """Args: u, w: (B, C, H, W). Returns: (B, C, H, W)."""
        r = self.to_query(u)
        weights = (r * self.to_key(w)).flatten(2).softmax(dim=-1).view_as(r)
        return r * weights + u
