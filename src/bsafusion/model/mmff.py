"""MMFF: the multi-modal feature fusion decoder (architecture.md §3.5).

It fuses A's features with B's features warped by the flow at four token-map resolutions
(H/16 .. H/2), then with the full-resolution shallow features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bsafusion.layers.restormer import RestormerBlock
from bsafusion.ops.grid import resize_flow, upsample2

__all__ = ["FusionDecoder"]

WarpFn = Callable[[Tensor, Tensor], Tensor]


class FusionDecoder(nn.Module):
    """Restormer levels over concat(F-hat_A, warp(F-hat_B), G), upsampled x2 between levels.

    Args:
        token_dim: width D of the classifier's token maps.
        shallow_channels: channels of the shallow features F^s.
        widths: output widths of the four levels, e.g. (64, 32, 16, 12).
        warp_fn: the feature warp (exact by default; the release's in compat mode, §8.3).
    """

    def __init__(self, *, token_dim: int = 256, shallow_channels: int = 8,
                 widths: tuple[int, ...] = (64, 32, 16, 12), warp_fn: WarpFn) -> None:
        super().__init__()
        token_widths = (token_dim, *widths[:-1])  # width of each side's tokens at each level
        in_widths = (2 * token_dim, *(3 * w for w in widths[:-1]))
        self.levels = nn.ModuleList(
            RestormerBlock(i, o) for i, o in zip(in_widths, widths, strict=True)
        )
        self.token_ups = nn.ModuleList(
            nn.Conv2d(i, o, 1) for i, o in zip(token_widths[:-1], widths[:-1], strict=True)
        )
        self.feat_ups = nn.ModuleList(nn.Conv2d(w, w, 1) for w in widths[:-1])
        self.out_blocks = nn.Sequential(
            RestormerBlock(widths[-1] + 2 * shallow_channels, widths[-1]),
            RestormerBlock(widths[-1], 1),
        )
        self.warp_fn = warp_fn

    def forward(self, shallow_a: Tensor, shallow_b: Tensor, tokens_a: Tensor, tokens_b: Tensor,
                flow: Tensor) -> Tensor:
        """Fuse A with B in A's frame.

        Args:
            shallow_a, shallow_b: (B, 8, H, W) shallow features F^s.
            tokens_a, tokens_b: (B, D, H/16, W/16) un-transferred classifier token maps F-hat.
            flow: (B, 2, H, W) flow_ab in pixels (channel 0 = x, 1 = y), samples B.
        Returns:
            (B, 1, H, W) fused image in (0, 1).
        """
        feat = None
        for i, level in enumerate(self.levels):
            if i > 0:  # one token conv for both sides: lift them as one batch
                tokens = torch.cat((tokens_a, tokens_b))
                tokens = F.relu(self.token_ups[i - 1](upsample2(tokens, align_corners=False)))
                tokens_a, tokens_b = tokens.chunk(2)
                feat = F.relu(self.feat_ups[i - 1](upsample2(feat, align_corners=False)))
            level_flow = resize_flow(flow, tokens_b.shape[-2:], align_corners=False)
            parts = [tokens_a, self.warp_fn(tokens_b, level_flow)]
            feat = level(torch.cat(parts if feat is None else [*parts, feat], dim=1))
        feat = upsample2(feat, align_corners=False)
        x = torch.cat((feat, shallow_a, self.warp_fn(shallow_b, flow)), dim=1)
        return torch.sigmoid(self.out_blocks(x))
