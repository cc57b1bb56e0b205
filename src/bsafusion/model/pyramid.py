"""Image-feature pyramid for BSFA levels 2-5 (ours; off for release checkpoints).

The faithful BSFA sees the images only through the H/16 token maps: every finer level works
on features upsampled from those tokens. ``ModelConfig.reg_pyramid`` adds a small strided
convolution pyramid over the shared shallow features F^s, one map per finer level (H/8 ...
H), which BSFA adds to each side's features after warping it by that side's flow so far
(issue 14, "if the architecture is the bottleneck").
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FeaturePyramid"]

_SLOPE = 0.01


class FeaturePyramid(nn.Module):
    """F^s (full resolution) -> maps at H/2^(L-1) ... H, coarse to fine.

    Args:
        in_channels: channels of F^s.
        widths: output widths coarse to fine, e.g. (64, 32, 16, 8) for H/8, H/4, H/2, H.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        fine_to_coarse = tuple(reversed(widths))
        self.stem = nn.Conv2d(in_channels, fine_to_coarse[0], 3, padding=1)
        self.downs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
            for c_in, c_out in zip(fine_to_coarse[:-1], fine_to_coarse[1:], strict=True))
        self.mixes = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for c in fine_to_coarse)

    def forward(self, shallow: Tensor) -> list[Tensor]:
        """Args: shallow: (B, C, H, W). Returns: maps coarse to fine, level i of shape
        (B, widths[i], H / 2^(L-1-i), W / 2^(L-1-i))."""
        x = F.leaky_relu(self.stem(shallow), _SLOPE)
        maps = [F.leaky_relu(self.mixes[0](x), _SLOPE)]
        for down, mix in zip(self.downs, self.mixes[1:], strict=True):
            x = F.leaky_relu(down(x), _SLOPE)
            maps.append(F.leaky_relu(mix(x), _SLOPE))
        return maps[::-1]
