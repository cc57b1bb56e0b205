"""Random intensity remapping for the modality curriculum (issue 14).

Monomodal registration is learnt within ~100 steps where cross-modal needs thousands; a
contrast-agnostic start (as SynthMorph's) lets the flow heads learn to register before the
cross-modal features exist: early in training the fixed image is, per sample, a random
remapping of the undeformed moving image instead of the MRI.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["random_contrast", "synthetic_fixed"]


def random_contrast(images: Tensor, *, generator: torch.Generator, knots: int = 6) -> Tensor:
    """Remap each image's intensities by its own random piecewise-linear curve.

    The curve takes ``knots`` evenly spaced intensities in [0, 1] to values drawn uniformly
    in [0, 1] (so it may invert or fold the contrast, as MRI vs CT does); the result is then
    min-max normalised per image.

    Args:
        images: (B, 1, H, W) in [0, 1], on the generator's device.
        generator: explicit RNG.
        knots: control points of the curve (>= 2).
    Returns:
        (B, 1, H, W) in [0, 1].
    """
    b = images.shape[0]
    values = torch.rand((b, knots), generator=generator, device=generator.device)
    values = values.to(images)
    pos = images.clamp(0, 1) * (knots - 1)
    lo = pos.floor().clamp(max=knots - 2)
    frac = pos - lo
    table = values.view(b, knots, 1, 1)
    idx = lo.long()
    left = table.expand(b, knots, *images.shape[-2:]).gather(1, idx)
    right = table.expand(b, knots, *images.shape[-2:]).gather(1, idx + 1)
    out = left + frac * (right - left)
    flat = out.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    scale = (high - low).clamp_min(1e-6)
    return (out - low.view(b, 1, 1, 1)) / scale.view(b, 1, 1, 1)


def synthetic_fixed(fixed: Tensor, label: Tensor, probability: float, *,
                    generator: torch.Generator) -> Tensor:
    """Replace each sample's fixed image, with ``probability``, by ``label`` itself (the
    undeformed moving image, aligned with ``fixed``: monomodal) or, with even odds, by a
    random contrast of it.

    Args:
        fixed, label: (B, 1, H, W).
        probability: in [0, 1]; 0 returns ``fixed`` unchanged (and draws nothing).
    Returns:
        (B, 1, H, W).
    """
    if probability <= 0:
        return fixed
    pick = torch.rand((fixed.shape[0], 1, 1, 1), generator=generator,
                      device=generator.device) < probability
    mono = torch.rand((fixed.shape[0], 1, 1, 1), generator=generator,
                      device=generator.device) < 0.5
    synthetic = torch.where(mono.to(fixed.device), label,
                            random_contrast(label, generator=generator))
    return torch.where(pick.to(fixed.device), synthetic, fixed)
