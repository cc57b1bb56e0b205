"""Registration metrics: similarity of aligned vs undeformed images, field accuracy, folding.

Every function is vectorised over the batch and returns one value per sample, shape (B,);
average over the batch yourself. Images are (B, C, H, W) in [0, 1]; flows (B, 2, H, W) in
pixels, channel 0 = x (columns), 1 = y (rows), in the network's convention
``warp(moving, flow)(p) = moving(p + flow(p))`` (architecture.md §2).

Stable public names (other modules and the evaluation report rely on them): :func:`ncc`,
:func:`mse`, :func:`ssim`, :func:`endpoint_error`, :func:`endpoint_error_stats`,
:func:`jacobian_determinant`, :func:`folding_percent`, :func:`registration_metrics`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bsafusion.ops.filters import ssim_map
from bsafusion.ops.warp import warp

__all__ = [
    "endpoint_error",
    "endpoint_error_stats",
    "folding_percent",
    "inverse_consistency",
    "jacobian_determinant",
    "landmark_tre",
    "mse",
    "ncc",
    "registration_metrics",
    "ssim",
]


def ncc(x: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """Global normalised cross-correlation (Pearson's r) of each pair of images.

    ``NCC = sum((x - mean x)(y - mean y)) / sqrt(sum((x - mean x)^2) sum((y - mean y)^2))``
    over all pixels and channels of a sample; 1 for identical images (up to ``eps``).

    Args:
        x, y: (B, C, H, W).
    Returns:
        (B,) in [-1, 1].
    """
    xc = x.flatten(1) - x.flatten(1).mean(dim=1, keepdim=True)
    yc = y.flatten(1) - y.flatten(1).mean(dim=1, keepdim=True)
    num = (xc * yc).sum(dim=1)
    den = (xc.square().sum(dim=1) * yc.square().sum(dim=1)).sqrt()
    return num / (den + eps)


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error ``mean((x - y)^2)`` over pixels and channels of each sample.

    Args:
        x, y: (B, C, H, W).
    Returns:
        (B,).
    """
    return (x - y).square().flatten(1).mean(dim=1)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Mean SSIM (Wang et al. 2004) of each pair: 11x11 Gaussian window, sigma 1.5,
    ``c1 = 0.01^2``, ``c2 = 0.03^2`` (data range 1), reflect padding; the mean of
    :func:`bsafusion.ops.filters.ssim_map` (= ``kornia.metrics.ssim``) over pixels and
    channels.

    Args:
        x, y: (B, C, H, W) in [0, 1], H, W > 5.
    Returns:
        (B,).
    """
    return ssim_map(x, y).flatten(1).mean(dim=1)


def endpoint_error(flow: Tensor, flow_gt: Tensor) -> Tensor:
    """Per-pixel end-point error ``|flow(p) - flow_gt(p)|_2`` in pixels.

    Both fields must follow the same convention (the network's ``flow`` and the ground truth
    of :func:`bsafusion.data.deform.deform` do).

    Args:
        flow, flow_gt: (B, 2, H, W) px.
    Returns:
        (B, H, W) px.
    """
    return (flow - flow_gt).norm(dim=1)


def endpoint_error_stats(flow: Tensor, flow_gt: Tensor, mask: Tensor | None = None
                         ) -> tuple[Tensor, Tensor]:
    """Mean and 95th percentile of the end-point error of each sample.

    Args:
        flow, flow_gt: (B, 2, H, W) px.
        mask: optional (B, 1, H, W) or (B, H, W) bool, the pixels to count (e.g. the
            foreground); None counts every pixel. A sample with an empty mask gives NaN.
    Returns:
        (mean, p95): two (B,) tensors in px (p95 by linear interpolation, as
        ``torch.quantile``).
    """
    epe = endpoint_error(flow, flow_gt).flatten(1)
    if mask is None:
        return epe.mean(dim=1), epe.quantile(0.95, dim=1)
    keep = mask.reshape(epe.shape).bool()
    masked = epe.masked_fill(~keep, float("nan"))
    return masked.nanmean(dim=1), masked.nanquantile(0.95, dim=1)


def jacobian_determinant(flow: Tensor) -> Tensor:
    """Determinant of the Jacobian of the map ``p -> p + flow(p)``.

    ``det J = (1 + du/dx)(1 + dv/dy) - (du/dy)(dv/dx)`` with u = channel 0 (x), v =
    channel 1 (y), derivatives by central differences inside and one-sided differences at
    the border (``torch.gradient``). 1 for the identity; <= 0 where the map folds.

    Args:
        flow: (B, 2, H, W) px, H, W >= 2.
    Returns:
        (B, H, W).
    """
    du_dy, du_dx = torch.gradient(flow[:, 0], dim=(-2, -1))
    dv_dy, dv_dx = torch.gradient(flow[:, 1], dim=(-2, -1))
    return (1.0 + du_dx) * (1.0 + dv_dy) - du_dy * dv_dx


def folding_percent(flow: Tensor) -> Tensor:
    """Percentage of pixels where the map folds: ``100 * mean(det J <= 0)``.

    Args:
        flow: (B, 2, H, W) px.
    Returns:
        (B,) in [0, 100].
    """
    return (jacobian_determinant(flow) <= 0).flatten(1).float().mean(dim=1) * 100.0


def registration_metrics(aligned: Tensor, label: Tensor, flow: Tensor | None = None,
                         flow_gt: Tensor | None = None) -> dict[str, Tensor]:
    """All registration metrics of a batch, each (B,).

    Args:
        aligned: (B, C, H, W) the moving image warped by ``flow``.
        label: (B, C, H, W) the undeformed moving image.
        flow: (B, 2, H, W) px, the predicted field (adds ``folding_pct``).
        flow_gt: (B, 2, H, W) px, the ground truth (adds ``epe_mean``, ``epe_p95``).
    Returns:
        ``{"ncc", "mse", "ssim"[, "folding_pct"][, "epe_mean", "epe_p95"]}``.
    """
    out = {"ncc": ncc(aligned, label), "mse": mse(aligned, label), "ssim": ssim(aligned, label)}
    if flow is not None:
        out["folding_pct"] = folding_percent(flow)
        if flow_gt is not None:
            out["epe_mean"], out["epe_p95"] = endpoint_error_stats(flow, flow_gt)
    return out


def inverse_consistency(flow_ab: Tensor, flow_ba: Tensor) -> Tensor:
    """Mean inverse-consistency error ``|flow_ab(p) + flow_ba(p + flow_ab(p))|`` in px.

    0 when the map of ``flow_ba`` inverts the map of ``flow_ab``. ``flow_ba`` is sampled at
    ``p + flow_ab(p)`` with the exact warp (bilinear, border clamp).

    Args:
        flow_ab: (B, 2, H, W) px, samples B in A's frame (channel 0 = x).
        flow_ba: (B, 2, H, W) px, the reverse field (samples A in B's frame).
    Returns:
        (B,) px.
    """
    return (flow_ab + warp(flow_ba, flow_ab)).norm(dim=1).flatten(1).mean(dim=1)


def landmark_tre(flow: Tensor, points: Tensor) -> Tensor:
    """Target registration error of one field on landmark pairs, in px.

    A fixed landmark p maps to ``p + flow(p)`` in the moving image (the field sampled
    bilinearly at p, border clamp); TRE is the distance to the matching moving landmark.

    Args:
        flow: (1, 2, H, W) or (2, H, W) px, channel 0 = x, samples the moving image.
        points: (K, 4) px: fixed_x, fixed_y, moving_x, moving_y.
    Returns:
        (K,) px (average it for the pair's mean TRE).
    """
    flow = flow.reshape(1, 2, *flow.shape[-2:])
    pts = torch.as_tensor(points, dtype=flow.dtype, device=flow.device).reshape(-1, 4)
    h, w = flow.shape[-2:]
    grid = torch.stack((pts[:, 0] * 2 / max(w - 1, 1) - 1, pts[:, 1] * 2 / max(h - 1, 1) - 1), -1)
    sampled = F.grid_sample(flow, grid.view(1, 1, -1, 2), mode="bilinear",
                            padding_mode="border", align_corners=True)[0, :, 0]
    return (pts[:, :2] + sampled.T - pts[:, 2:]).norm(dim=1)
