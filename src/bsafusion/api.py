"""Pre/post-processing around the network: colour handling (architecture.md §7)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from bsafusion import compat
from bsafusion.config import ColorConvention, FeatureWarp
from bsafusion.model.bsafusion import BSAFusion, BSAFusionOutput
from bsafusion.ops.checks import check_shape
from bsafusion.ops.color import BT601_Y_GREEN, rgb_to_ycbcr, ycbcr_to_rgb
from bsafusion.ops.warp import warp

__all__ = ["ColorFusion", "fuse_color"]


class ColorFusion(NamedTuple):
    """Result of :func:`fuse_color`."""

    fused_rgb: Tensor  # (B, 3, H, W) fused Y recombined with the aligned Cb/Cr
    aligned_rgb: Tensor  # (B, 3, H, W) the colour moving image in the fixed frame
    output: BSAFusionOutput  # the network's output on (fixed, Y of moving)


def fuse_color(model: BSAFusion, fixed: Tensor, moving_rgb: Tensor, *,
               clamp: bool = True) -> ColorFusion:
    """Fuse an MRI with a pseudo-colour PET/SPECT image (architecture.md §1, §7).

    The moving image goes to YCbCr; only Y enters the network. Cb/Cr are warped by the
    predicted flow with the exact warp (border padding, so the margin keeps neutral chroma
    where the image had it) and recombined with the fused Y.

    Args:
        model: the network; ``model.config.color`` picks the Y weights (§8.5).
        fixed: (B, 1, H, W) in [0, 1].
        moving_rgb: (B, 3, H, W) in [0, 1].
        clamp: clamp the RGB results to [0, 1] (the release does not).
    Returns:
        :class:`ColorFusion`.
    """
    check_shape(moving_rgb, "B 3 H W", "moving_rgb")
    # §8.5: the release's slip in Y, reproduced only for release checkpoints.
    y_green = compat.RELEASE_Y_GREEN if model.config.color is ColorConvention.RELEASE else BT601_Y_GREEN
    ycbcr = rgb_to_ycbcr(moving_rgb, y_green=y_green)
    out = model(fixed, ycbcr[:, :1])
    chroma = warp(ycbcr[:, 1:], out.flow)
    fused_rgb = ycbcr_to_rgb(torch.cat((out.fused, chroma), dim=1), clamp=clamp)
    aligned_luma = out.aligned if model.config.feature_warp is FeatureWarp.EXACT else warp(
        ycbcr[:, :1], out.flow)
    aligned_rgb = ycbcr_to_rgb(torch.cat((aligned_luma, chroma), dim=1), clamp=clamp)
    return ColorFusion(fused_rgb=fused_rgb, aligned_rgb=aligned_rgb, output=out)
