"""Pre-norm ViT block used by the classifier, transfer stacks and discriminator (§3.3)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Mlp", "SelfAttention", "ViTBlock"]


class SelfAttention(nn.Module):
    """Multi-head self-attention with a bias-free qkv projection laid out [q|k|v].

    Args:
        dim: token width D.
        num_heads: heads; head dim = D / num_heads, scale = head_dim ** -0.5.
        attn_drop: dropout on the attention weights while training.
    """

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, N, D). Returns: (B, N, D)."""
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B heads N hd
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """``Linear(D -> hidden) -> GELU -> Linear(hidden -> D)``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, N, D). Returns: (B, N, D)."""
        return self.fc2(F.gelu(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-norm transformer block: ``x += MHSA(LN1(x)); x += MLP(LN2(x))``.

    Args:
        dim: token width D.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP as a multiple of D (1 in BSAFusion).
        attn_drop: attention dropout while training.
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 1.0, attn_drop: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = SelfAttention(dim, num_heads, attn_drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, N, D). Returns: (B, N, D)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
