"""Tensor-level inference at any size: working resolution, colour, pre-alignment (style.md §7).

The network needs multiples of 16 and was trained on 256 x 256 slices, so each pair runs at a
*working resolution*: the longer side is scaled to ``work_size`` and the shorter one keeps the
aspect ratio, rounded to a multiple of 16. The network's flow is resampled to the native grid
with :func:`~bsafusion.ops.grid.resize_flow` (magnitudes rescaled per axis) and the moving
image is warped **at native resolution** with the exact warp (§2); the fused image is the
network's, resampled to the native grid. When the native size equals the working size nothing
is resampled and the outputs are the network's own (as :func:`fuse_color`).

Colour (architecture.md §7) lives here and only here: :func:`split_color` turns RGB into the
Y the network sees and the Cb/Cr it does not, with the Y weights of the model's
:class:`~bsafusion.config.ColorConvention`; :func:`recombine_color` warps Cb/Cr by the flow
and puts them back with a fused or aligned Y.

Flows are (B, 2, H, W) in native pixels, channel 0 = x (columns), 1 = y (rows), sampling the
moving image: ``aligned = warp(moving, flow)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from bsafusion import compat
from bsafusion.config import ColorConvention, FeatureWarp
from bsafusion.infer.result import FusionResult
from bsafusion.model.bsafusion import BSAFusion, BSAFusionOutput
from bsafusion.ops.checks import check_shape
from bsafusion.ops.color import BT601_Y_GREEN, rgb_to_ycbcr, ycbcr_to_rgb
from bsafusion.ops.grid import pixel_grid, resize_flow
from bsafusion.ops.warp import warp

__all__ = [
    "DEFAULT_WORK_SIZE",
    "ColorFusion",
    "affine_flow",
    "align_and_fuse",
    "fuse_color",
    "luma_to_rgb",
    "recombine_color",
    "resize_image",
    "split_color",
    "to_luma",
    "work_shape",
]

DEFAULT_WORK_SIZE = 256


def work_shape(height: int, width: int, work_size: int | None = DEFAULT_WORK_SIZE
               ) -> tuple[int, int]:
    """Working (h, w): longer side -> ``work_size``, aspect kept, multiples of 16.

    ``work_size=None`` (or 0) keeps the native size, rounded to multiples of 16.
    """
    scale = work_size / max(height, width) if work_size else 1.0
    return (max(16, round(height * scale / 16) * 16), max(16, round(width * scale / 16) * 16))


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (B, C, H, W) to ``size`` on the corner-aligned grid of §2.

    ``align_corners=True`` matches the warp's pixel convention (pixel p <-> 2p/(N-1) - 1);
    downsampling is antialiased. Returns ``image`` itself when the size already matches.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(image.shape[-2:]) == size:
        return image
    smaller = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=True, antialias=smaller)


def affine_flow(matrix: Tensor, offset: Tensor, flow: Tensor | None = None,
                size: tuple[int, int] | None = None) -> Tensor:
    """The field of ``p -> A (p + flow(p)) + t``: a global transform after a network flow.

    Args:
        matrix: (B, 2, 2) A acting on pixel (x, y) of the fixed grid.
        offset: (B, 2) t in pixels, (x, y).
        flow: (B, 2, H, W) px, applied first (None = identity).
        size: (H, W) when ``flow`` is None.
    Returns:
        (B, 2, H, W) px, channel 0 = x: ``warp(moving, result)`` samples ``moving`` at
        ``A (p + flow(p)) + t``, i.e. both fields composed into one resampling.
    """
    if flow is None:
        grid = pixel_grid(*size, device=matrix.device, dtype=torch.float32)
        points = grid.expand(matrix.shape[0], -1, -1, -1)
    else:
        grid = pixel_grid(*flow.shape[-2:], device=flow.device, dtype=flow.dtype)
        points = grid + flow
    moved = torch.einsum("bij,bjhw->bihw", matrix.to(points), points)
    return moved + offset.to(points)[:, :, None, None] - grid


def split_color(image: Tensor, convention: ColorConvention = ColorConvention.BT601
                ) -> tuple[Tensor, Tensor | None]:
    """(B, C, H, W) -> (Y (B, 1, H, W), CbCr (B, 2, H, W) or None for a grey image).

    ``convention`` picks the Y weights: BT.601, or the release's slip (§8.5, release
    checkpoints only).
    """
    if image.shape[1] == 1:
        return image, None
    release = ColorConvention(convention) is ColorConvention.RELEASE
    ycbcr = rgb_to_ycbcr(image, y_green=compat.RELEASE_Y_GREEN if release else BT601_Y_GREEN)
    return ycbcr[:, :1], ycbcr[:, 1:]


def to_luma(model: BSAFusion, moving: Tensor) -> tuple[Tensor, Tensor | None]:
    """:func:`split_color` with the colour convention of ``model.config``."""
    return split_color(moving, model.config.color)


def align_and_fuse(model: BSAFusion, fixed: Tensor, moving: Tensor, *,
                   work_size: int | None = DEFAULT_WORK_SIZE,
                   prealign: tuple[Tensor, Tensor] | None = None) -> FusionResult[Tensor]:
    """Register ``moving`` to ``fixed`` and fuse them, at any size.

    Args:
        model: the network (eval mode; the caller owns ``inference_mode``).
        fixed: (B, 1, H, W) MRI in [0, 1].
        moving: (B, 1 or 3, H, W) CT, or RGB PET/SPECT, in [0, 1], on the fixed grid.
        work_size: the working resolution's longer side (multiple of 16), None = native.
        prealign: (A (B, 2, 2), t (B, 2)) a global transform fixed pixel -> moving pixel,
            applied before the network and composed into the returned flow.
    Returns:
        :class:`~bsafusion.infer.result.FusionResult` of (B, C, H, W) tensors; ``fused_y`` and
        ``aligned_y`` for a colour pair; ``reverse`` without ``prealign`` (and without
        ``reg_affine``); ``meta["work_size"]`` = (h, w) the network ran at.
    """
    size = (int(fixed.shape[-2]), int(fixed.shape[-1]))
    luma, chroma = to_luma(model, moving)
    pre_flow = affine_flow(*prealign, size=size) if prealign is not None else None
    net_moving = warp(luma, pre_flow) if pre_flow is not None else luma
    work = work_shape(*size, work_size)
    out = model(resize_image(fixed, work), resize_image(net_moving, work))
    # phi_BA (§3.4); BSFA's alone, so none where a global step (prealign, the affine head)
    # follows it
    reverse = (out.flow_a - out.flow_b if prealign is None and not model.config.reg_affine
               else None)
    if work == size:
        flow, fused_y = out.flow, out.fused
    else:
        flow = resize_flow(out.flow, size, align_corners=True)
        fused_y = resize_image(out.fused, size).clamp(0.0, 1.0)
        reverse = None if reverse is None else resize_flow(reverse, size, align_corners=True)
    if prealign is not None:
        flow = affine_flow(*prealign, flow=flow)
    exact = model.config.feature_warp is FeatureWarp.EXACT
    if work == size and prealign is None and (chroma is None or exact):
        aligned_y = out.aligned  # the network's own (release warp for release checkpoints)
    else:
        aligned_y = warp(luma, flow)
    meta = {"work_size": work}
    if chroma is None:
        return FusionResult(fused_y, aligned_y, flow, meta, reverse=reverse)
    fused, aligned = recombine_color(fused_y, aligned_y, chroma, flow)
    return FusionResult(fused, aligned, flow, meta, fused_y, aligned_y, reverse)


class ColorFusion(NamedTuple):
    """Result of :func:`fuse_color`."""

    fused_rgb: Tensor  # (B, 3, H, W) fused Y recombined with the aligned Cb/Cr
    aligned_rgb: Tensor  # (B, 3, H, W) the colour moving image in the fixed frame
    output: BSAFusionOutput  # the network's output on (fixed, Y of moving)


def fuse_color(model: BSAFusion, fixed: Tensor, moving_rgb: Tensor, *,
               clamp: bool = True) -> ColorFusion:
    """Fuse an MRI with a pseudo-colour PET/SPECT image at the network's size (§1, §7).

    The moving image goes to YCbCr; only Y enters the network. Cb/Cr are warped by the
    predicted flow with the exact warp (border padding, so the margin keeps neutral chroma
    where the image had it) and recombined with the fused Y.

    Args:
        model: the network; ``model.config.color`` picks the Y weights (§8.5).
        fixed: (B, 1, H, W) in [0, 1], H, W multiples of 16.
        moving_rgb: (B, 3, H, W) in [0, 1].
        clamp: clamp the RGB results to [0, 1] (the release does not).
    Returns:
        :class:`ColorFusion`.
    """
    check_shape(moving_rgb, "B 3 H W", "moving_rgb")
    luma, chroma = to_luma(model, moving_rgb)
    out = model(fixed, luma)
    exact = model.config.feature_warp is FeatureWarp.EXACT
    aligned_luma = out.aligned if exact else warp(luma, out.flow)
    fused_rgb, aligned_rgb = recombine_color(out.fused, aligned_luma, chroma, out.flow,
                                             clamp=clamp)
    return ColorFusion(fused_rgb=fused_rgb, aligned_rgb=aligned_rgb, output=out)


def recombine_color(fused_y: Tensor, aligned_y: Tensor, chroma: Tensor, flow: Tensor | None, *,
                    clamp: bool = True) -> tuple[Tensor, Tensor]:
    """Warp Cb/Cr by ``flow`` (exact warp, §2) and recombine them with two Y channels (§7).

    Args:
        fused_y, aligned_y: (B, 1, H, W) the fused and the aligned luma.
        chroma: (B, 2, H, W) Cb/Cr of the moving image, in its own frame.
        flow: (B, 2, H, W) px, channel 0 = x; samples the moving image. None: no
            registration, ``chroma`` is used as it is.
        clamp: clamp RGB to [0, 1] (the release does not).
    Returns:
        (fused RGB, aligned RGB), each (B, 3, H, W).
    """
    if flow is not None:
        chroma = warp(chroma, flow)  # once, for both
    return (luma_to_rgb(fused_y, chroma, clamp=clamp),
            luma_to_rgb(aligned_y, chroma, clamp=clamp))


def luma_to_rgb(luma: Tensor, chroma: Tensor, flow: Tensor | None = None, *,
                clamp: bool = True) -> Tensor:
    """Recombine a Y channel with Cb/Cr into RGB (§7), warping Cb/Cr by ``flow`` first.

    Args:
        luma: (B, 1, H, W) Y in the fixed frame.
        chroma: (B, 2, H, W) Cb/Cr; in the moving frame when ``flow`` is given, else already
            in the fixed frame.
        flow: (B, 2, H, W) px, channel 0 = x, samples the moving image; None = no warp.
        clamp: clamp RGB to [0, 1].
    Returns:
        (B, 3, H, W) RGB.
    """
    if flow is not None:
        chroma = warp(chroma, flow)
    return ycbcr_to_rgb(torch.cat((luma, chroma), dim=1), clamp=clamp)
