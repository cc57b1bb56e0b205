"""MDF-FR: patch tokens, modality classifier, injection and transfer (architecture.md §3.3).

Shapes: h, w = H/16, W/16; N = h*w tokens of width D = 256.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bsafusion import compat
from bsafusion.config import TokenOrder
from bsafusion.layers.vit import ViTBlock

__all__ = [
    "ModalityClassifier",
    "PatchEmbed",
    "TokenClassifier",
    "TransferStack",
    "map_to_tokens",
    "tokens_to_map",
]


def tokens_to_map(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """Reshape row-major tokens (B, N, D) to a map (B, D, h, w)."""
    b, n, d = tokens.shape
    return tokens.transpose(1, 2).reshape(b, d, *grid)


def map_to_tokens(feature_map: Tensor) -> Tensor:
    """Flatten a map (B, D, h, w) to row-major tokens (B, N, D)."""
    return feature_map.flatten(2).transpose(1, 2)


def _blocks(dim: int, num_heads: int, num_blocks: int, attn_drop: float) -> nn.ModuleList:
    return nn.ModuleList(
        ViTBlock(dim, num_heads, mlp_ratio=1.0, attn_drop=attn_drop) for _ in range(num_blocks)
    )


class PatchEmbed(nn.Module):
    """Add the learned positional map to Fe, then a 16x16 stride-16 conv to D channels.

    The positional map (1, 1, S, S) is resized to H x W (bilinear, ``align_corners=True``) on
    every call and broadcast over Fe's channels, so any multiple-of-16 size works.
    """

    def __init__(self, *, in_channels: int = 3, dim: int = 256, patch_size: int = 16,
                 pos_size: int = 256) -> None:
        super().__init__()
        self.pos_map = nn.Parameter(torch.zeros(1, 1, pos_size, pos_size))
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)

    def forward(self, enc: Tensor) -> Tensor:
        """Args: enc: (B, 3, H, W) Fe. Returns: (B, N, D) patch tokens."""
        pos = self.pos_map
        if pos.shape[-2:] != enc.shape[-2:]:
            size = (int(enc.shape[-2]), int(enc.shape[-1]))  # ints: static in an ONNX trace
            pos = F.interpolate(pos, size=size, mode="bilinear", align_corners=True)
        return map_to_tokens(self.proj(enc + pos))


class TokenClassifier(nn.Module):
    """Class token + ViT blocks + MLP head; the modality head stack (also the discriminator).

    Args:
        dim: token width D.
        num_heads: attention heads.
        num_blocks: ViT blocks.
        num_classes: logits (2: MRI is class 1).
        attn_drop: attention dropout while training.
    """

    def __init__(self, *, dim: int = 256, num_heads: int = 4, num_blocks: int = 2,
                 num_classes: int = 2, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = _blocks(dim, num_heads, num_blocks, attn_drop)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, num_classes))

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Classify a token sequence.

        Args:
            tokens: (B, N, D).
        Returns:
            logits: (B, num_classes).
            cls_out: (B, D) output class token (the MFRH h).
            patches: (B, N, D) output patch tokens.
        """
        x = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        for block in self.blocks:
            x = block(x)
        cls_out = x[:, 0]
        return self.head(cls_out), cls_out, x[:, 1:]


class ModalityClassifier(nn.Module):
    """Patch embedding followed by the modality head stack (shared by both images)."""

    def __init__(self, *, patch_embed: PatchEmbed, stack: TokenClassifier) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.stack = stack

    def forward(self, enc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Args: enc: (B, 3, H, W) Fe.

        Returns:
            logits: (B, 2); modality_token: (B, D) the MFRH h; tokens: (B, N, D) F-hat.
        """
        return self.stack(self.patch_embed(enc))


class TransferStack(nn.Module):
    """Inject the other image's MFRH into every token, then ViT blocks with a learned token.

    Args:
        dim: token width D.
        num_heads: attention heads.
        num_blocks: ViT blocks.
        token_order: where the learned token goes (§8.2; ``CLEAN`` prepends it).
    """

    def __init__(self, *, dim: int = 256, num_heads: int = 4, num_blocks: int = 2,
                 token_order: TokenOrder = TokenOrder.CLEAN) -> None:
        super().__init__()
        self.token_order = TokenOrder(token_order)
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = _blocks(dim, num_heads, num_blocks, 0.0)

    def forward(self, tokens: Tensor, modality_token: Tensor) -> Tensor:
        """Transfer one side's tokens.

        Args:
            tokens: (B, N, D) this image's F-hat.
            modality_token: (B, D) the *other* image's MFRH.
        Returns:
            (B, N, D) modality-free tokens F-bar, row-major.
        """
        patches = tokens + modality_token.unsqueeze(1)
        token = self.token.expand(tokens.shape[0], -1, -1)
        if self.token_order is TokenOrder.RELEASE:  # §8.2: token appended, output shifted
            x = compat.release_token_sequence(patches, token)
        else:
            x = torch.cat((token, patches), dim=1)
        for block in self.blocks:
            x = block(x)
        return x[:, 1:]
