"""Pre/post-processing around the network: numpy in and out, colour handling (§7)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from bsafusion import compat
from bsafusion.config import ColorConvention, FeatureWarp
from bsafusion.errors import InputError
from bsafusion.model.bsafusion import BSAFusion, BSAFusionOutput
from bsafusion.ops.checks import check_shape, check_spatial_multiple
from bsafusion.ops.color import BT601_Y_GREEN, rgb_to_ycbcr, ycbcr_to_rgb
from bsafusion.ops.warp import warp

__all__ = ["ColorFusion", "Fuser", "FusionResult", "fuse_color"]


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


class FusionResult(NamedTuple):
    """Numpy result of :class:`Fuser` in the fixed image's frame."""

    fused: np.ndarray  # (H, W) grey, or (H, W, 3) RGB for a colour moving image; [0, 1]
    aligned: np.ndarray  # the moving image warped into the fixed frame, same layout
    flow: np.ndarray  # (2, H, W) float32 flow_ab in pixels, channel 0 = x, samples moving


class Fuser:
    """Numpy-facing wrapper: scale checks, colour handling, inference mode.

    Args:
        model: a :class:`BSAFusion` network.
        device: where to run it (default: the model's device).

    Example:
        >>> fuser = Fuser.from_pretrained("path/to/weights.safetensors")  # doctest: +SKIP
        >>> res = fuser(mri, ct)  # (H, W) arrays in [0, 1]  # doctest: +SKIP
    """

    def __init__(self, model: BSAFusion, device=None) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.eval().to(self.device)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device=None) -> Fuser:
        """Load our weights (path or bundled name) or, for ``.pt``, a release checkpoint."""
        from bsafusion.model.build import build_bsafusion

        return cls(build_bsafusion(weights=name_or_path), device)

    def __call__(self, fixed: np.ndarray, moving: np.ndarray) -> FusionResult:
        """Register ``moving`` to ``fixed`` and fuse them.

        Args:
            fixed: (H, W) MRI in [0, 1].
            moving: (H, W) grey or (H, W, 3) RGB in [0, 1]; H, W multiples of 16.
        Returns:
            :class:`FusionResult`.
        """
        fixed_t = _to_tensor(fixed, "fixed", self.device)
        moving_t = _to_tensor(moving, "moving", self.device)
        if fixed_t.shape[1] != 1:
            raise InputError("fixed", "the MRI must be a single-channel (grey) image")
        if fixed_t.shape[-2:] != moving_t.shape[-2:]:
            raise InputError("moving", f"size {tuple(moving_t.shape[-2:])} differs from the "
                             f"fixed image's {tuple(fixed_t.shape[-2:])}")
        with torch.inference_mode():
            if moving_t.shape[1] == 3:
                res = fuse_color(self.model, fixed_t, moving_t)
                fused, aligned, flow = res.fused_rgb, res.aligned_rgb, res.output.flow
            else:
                out = self.model(fixed_t, moving_t)
                fused, aligned, flow = out.fused, out.aligned, out.flow
        return FusionResult(_to_numpy(fused), _to_numpy(aligned), flow[0].float().cpu().numpy())


def _to_tensor(image: np.ndarray, name: str, device) -> Tensor:
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = arr.transpose(2, 0, 1)
    elif arr.ndim == 2:
        arr = arr[None]
    else:
        raise InputError(name, f"expected (H, W) or (H, W, 3), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(name, "contains NaN or infinite values")
    t = torch.from_numpy(np.ascontiguousarray(arr))[None].to(device)
    check_spatial_multiple(t, 16, name)
    return t


def _to_numpy(image: Tensor) -> np.ndarray:
    arr = image[0].float().clamp(0, 1).cpu().numpy()
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
