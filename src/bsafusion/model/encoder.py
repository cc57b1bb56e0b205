"""Encoder: two Restormer blocks shared by both images (architecture.md §3.2)."""

from __future__ import annotations

from torch import Tensor, nn

from bsafusion.layers.restormer import RestormerBlock

__all__ = ["Encoder"]


class Encoder(nn.Module):
    """``F^s = R(1 -> 8)(I)`` and ``Fe = R(8 -> 3)(F^s)``, both at full resolution.

    Args:
        in_channels: image channels (1: grey or the Y of YCbCr).
        shallow_channels: channels of the shallow features F^s.
        enc_channels: channels of Fe (the patch embedding's input).
    """

    def __init__(self, *, in_channels: int = 1, shallow_channels: int = 8, enc_channels: int = 3):
        super().__init__()
        self.shallow_block = RestormerBlock(in_channels, shallow_channels)
        self.enc_block = RestormerBlock(shallow_channels, enc_channels)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Encode one image.

        Args:
            image: (B, 1, H, W) in [0, 1].
        Returns:
            shallow: (B, 8, H, W) shallow features F^s (fed to the fusion decoder).
            enc: (B, 3, H, W) Fe (fed to the patch embedding).
        """
        shallow = self.shallow_block(image)
        return shallow, self.enc_block(shallow)
