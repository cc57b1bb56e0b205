"""Local correlation (a cost volume, as in PWC-Net) between two feature maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["local_correlation"]


def local_correlation(a: Tensor, b: Tensor, radius: int) -> Tensor:
    """Cosine similarity of ``a(p)`` with ``b(p + d)`` for every offset d in a square window.

    Features are L2-normalised over channels first; ``b`` is zero outside the image.

    Args:
        a, b: (B, C, H, W).
        radius: r; offsets d = (dx, dy) with |dx|, |dy| <= r.
    Returns:
        (B, (2r+1)^2, H, W), channel ``(dy + r) * (2r + 1) + (dx + r)``, in [-1, 1].
    """
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    h, w = a.shape[-2:]
    padded = F.pad(b, (radius, radius, radius, radius))
    side = 2 * radius + 1
    return torch.stack([(a * padded[..., dy:dy + h, dx:dx + w]).sum(dim=1)
                        for dy in range(side) for dx in range(side)], dim=1)
