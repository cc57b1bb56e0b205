"""Restormer block R(cin, cout): input conv, MDTA, GDFN (architecture.md §3.1).

Attention is over channels (a C x C map), so the cost is linear in the number of pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bsafusion.ops.filters import spatial_layer_norm

__all__ = ["GDFN", "MDTA", "RestormerBlock"]


def _conv1x1_3x3(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
    )


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: one softmax over all C^2 channel affinities.

    ``A[i, j] = sum_p k[i, p] q[j, p]``, softmax over the flattened C x C matrix (no
    temperature), ``out = A^T v``, then a 1x1 projection. The residual is added by the caller.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.to_q = _conv1x1_3x3(dim, dim)
        self.to_k = _conv1x1_3x3(dim, dim)
        self.to_v = _conv1x1_3x3(dim, dim)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, C, H, W), already normalised. Returns: (B, C, H, W)."""
        b, c, h, w = x.shape
        q = self.to_q(x).flatten(2)  # B C HW
        k = self.to_k(x).flatten(2)
        v = self.to_v(x).flatten(2)
        attn = torch.bmm(k, q.transpose(1, 2))  # B C C, attn[i, j] = <k_i, q_j>
        attn = attn.flatten(1).softmax(dim=-1).view(b, c, c)
        out = torch.bmm(attn.transpose(1, 2), v)  # B C HW
        return self.proj(out.view(b, c, h, w))


class GDFN(nn.Module):
    """Gated feed-forward: ``proj(GELU(gate(x)) * value(x))`` with 4x expansion, full 3x3 convs."""

    def __init__(self, dim: int, expansion: int = 4) -> None:
        super().__init__()
        hidden = dim * expansion
        self.gate = _conv1x1_3x3(dim, hidden)
        self.value = _conv1x1_3x3(dim, hidden)
        self.proj = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, C, H, W), already normalised. Returns: (B, C, H, W)."""
        return self.proj(F.gelu(self.gate(x)) * self.value(x))


class RestormerBlock(nn.Module):
    """``R(cin, cout)``: 1x1 input conv, then pre-norm MDTA and GDFN residual sub-layers.

    Args:
        in_channels: cin.
        out_channels: cout (the width of both sub-layers).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(in_channels, out_channels, 1)
        self.attn = MDTA(out_channels)
        self.ffn = GDFN(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, cin, H, W). Returns: (B, cout, H, W)."""
        x = self.proj_in(x)
        x = x + self.attn(spatial_layer_norm(x))
        return x + self.ffn(spatial_layer_norm(x))
