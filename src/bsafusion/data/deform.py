"""Synthetic deformation with its exact ground-truth field (architecture.md §6).

Convention (the network's, architecture.md §2): a flow is (B, 2, H, W) in pixels, channel
0 = x (columns), 1 = y (rows), and ``warp(I, flow)(p) = I(p + flow(p))``. :func:`deform`
draws the ground-truth field ``flow_gt`` first and returns

    ``deformed = warp(image, inverse)`` with ``inverse`` the numerical inverse of ``flow_gt``,

so that ``warp(deformed, flow_gt) == image`` (up to bilinear interpolation of the image):
``flow_gt`` is exactly what the network's ``flow`` (φ_AB) should predict for the pair
(fixed, deformed), and the end-point error compares the two directly.

Everything runs batched in torch on the device of the inputs, driven by an explicit
:class:`torch.Generator` on that device (no global RNG, no per-sample Python loop).
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch
from torch import Tensor

from bsafusion.config import DeformConfig
from bsafusion.errors import InputError
from bsafusion.ops.filters import gaussian_blur
from bsafusion.ops.grid import pixel_grid
from bsafusion.ops.warp import warp

__all__ = ["Deformation", "deform", "inverse_residual", "invert_flow", "random_flow"]

log = logging.getLogger(__name__)


class Deformation(NamedTuple):
    """Result of :func:`deform`.

    ``deformed``: (B, C, H, W) the moving image, deformed. ``flow``: (B, 2, H, W) px, the
    ground truth in the network's convention (``warp(deformed, flow) ≈ image``).
    ``inverse``: (B, 2, H, W) px, the field that made ``deformed`` (``warp(image, inverse)``).
    """

    deformed: Tensor
    flow: Tensor
    inverse: Tensor


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator,
             device, dtype) -> Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=dtype) * (high - low) + low


def random_flow(batch: int, height: int, width: int, config: DeformConfig | None = None, *,
                generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
    """Draw random smooth fields: affine (translation, rotation) + blurred-noise elastic part.

    Args:
        batch, height, width: size of the fields.
        config: amplitudes (default: the published test level, :class:`DeformConfig`).
        generator: source of randomness; its device is the device of the result.
    Returns:
        (B, 2, H, W) in pixels; channel 0 = x, 1 = y. The elastic part of each sample has a
        maximum displacement (L2 norm over the image) drawn in ``config.elastic_px`` (scaled
        by ``min(H, W) / config.reference_size`` when that is set, as are the kernel and
        sigma).
    """
    cfg = config or DeformConfig()
    device = generator.device
    shape = (batch, 2, height, width)
    scale = min(height, width) / cfg.reference_size if cfg.reference_size else 1.0
    kernel_size = max(1, round(cfg.kernel_size * scale) // 2 * 2 + 1)
    # elastic: uniform noise in [-1, 1] per pixel and direction, Gaussian-blurred (§6)
    noise = _uniform(shape, -1.0, 1.0, generator, device, dtype)
    elastic = gaussian_blur(noise, kernel_size, cfg.sigma * scale, padding="zeros")
    peak = elastic.square().sum(dim=1).amax(dim=(-2, -1)).sqrt().clamp_min(1e-12)
    lo, hi = (v * scale for v in cfg.elastic_px)
    amplitude = _uniform((batch,), lo, hi, generator, device, dtype)
    flow = elastic * (amplitude / peak).view(batch, 1, 1, 1)
    # affine: rotation about the centre + translation up to `translation` of the size
    size = torch.tensor([width, height], device=device, dtype=dtype).view(1, 2, 1, 1)
    shift = _uniform((batch, 2, 1, 1), -cfg.translation, cfg.translation, generator, device,
                     dtype) * size
    angle = _uniform((batch,), -1.0, 1.0, generator, device, dtype) * math.radians(
        cfg.rotation_deg)
    grid = pixel_grid(height, width, device=device, dtype=dtype)
    centre = (size - 1) / 2
    rel = grid - centre
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    rot_x = cos * rel[:, 0] - sin * rel[:, 1] - rel[:, 0]
    rot_y = sin * rel[:, 0] + cos * rel[:, 1] - rel[:, 1]
    return flow + shift + torch.stack((rot_x, rot_y), dim=1)


def invert_flow(flow: Tensor, *, tol: float = 0.01, max_iter: int = 100) -> Tensor:
    """Numerically invert a displacement field by fixed-point iteration.

    Finds ``inv`` with ``inv(q) + flow(q + inv(q)) = 0`` for every pixel q, i.e. the map
    ``q -> q + inv(q)`` inverts ``p -> p + flow(p)``: then ``warp(warp(I, inv), flow) = I``.
    Iterates ``inv <- -warp(flow, inv)`` (the field sampled with the exact warp, border
    clamp) until the largest residual is below ``tol`` px; this converges for smooth fields
    whose Jacobian stays away from folding (the case of :func:`random_flow`).

    Args:
        flow: (B, 2, H, W) px; channel 0 = x, 1 = y.
        tol: maximum residual |inv(q) + flow(q + inv(q))| in px.
        max_iter: iteration cap; the residual reached is logged when it is hit.
    Returns:
        (B, 2, H, W) px, the inverse field: the first iterate whose largest residual
        (:func:`inverse_residual`) is at most ``tol``.
    """
    inv = -flow
    residual = float("inf")
    for _ in range(max_iter):
        nxt = -warp(flow, inv)
        residual = float((nxt - inv).norm(dim=1).amax())  # = inverse_residual(flow, inv).max()
        if residual <= tol:
            return inv
        inv = nxt
    log.warning("flow inversion stopped at a residual of %.4f px (tol %.4f)", residual, tol)
    return inv


def inverse_residual(flow: Tensor, inverse: Tensor) -> Tensor:
    """Per-pixel |inverse(q) + flow(q + inverse(q))| in px: (B, H, W)."""
    return (inverse + warp(flow, inverse)).norm(dim=1)


def deform(images: Tensor, config: DeformConfig | None = None, *,
           generator: torch.Generator) -> Deformation:
    """Deform a batch of images with random fields and return the exact ground truth.

    Args:
        images: (B, C, H, W) undeformed moving images (every channel deformed alike, e.g.
            RGB or Y + CbCr); on the generator's device.
        config: amplitudes (default: the published test level).
        generator: explicit torch RNG on the images' device.
    Returns:
        :class:`Deformation` ``(deformed, flow, inverse)``; ``flow`` follows the network's
        convention: ``warp(deformed, flow) ≈ images``.
    Raises:
        InputError: ``images`` is not 4-D or not on the generator's device.
    """
    cfg = config or DeformConfig()
    if images.dim() != 4:
        raise InputError("images", f"expected (B, C, H, W), got shape {tuple(images.shape)}")
    if images.device.type != generator.device.type:
        raise InputError("generator", f"is on {generator.device}, images on {images.device}")
    b, _, h, w = images.shape
    flow = random_flow(b, h, w, cfg, generator=generator, dtype=images.dtype)
    inverse = invert_flow(flow, tol=cfg.inverse_tol, max_iter=cfg.inverse_max_iter)
    return Deformation(warp(images, inverse), flow, inverse)
