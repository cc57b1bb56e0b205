"""Global affine correction of the flow (ours; off for release checkpoints).

On val, most of the end-point error the trained networks leave is affine: fitting and removing
an affine field from the error over the head would take CT from -19 % to -29 %, SPECT from -14 %
to -30 % and PET from -23 % to -41 % (zero field = 0 %), and the mean displacement over the
head is recovered only at a slope of 0.3-0.6. BSFA's levels see local features only, so a
shift that shows only at the head's outline does not reach its flat interior.
``ModelConfig.reg_affine`` adds :class:`GlobalAffine`: a small strided CNN over both images'
shallow features F^s (the moving one warped by BSFA's flow) whose per-cell votes for six
affine parameters are averaged with a softmax over the cells (confident cells, e.g. at the
outline, dominate). The correction ``r`` is composed with BSFA's flow,
``flow'(p) = r(p) + flow(p + r(p))``. Its vote layer starts at zero: the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bsafusion.ops.grid import affine_basis

__all__ = ["GlobalAffine", "affine_field"]

_SLOPE = 0.01


def affine_field(params: Tensor, height: int, width: int) -> Tensor:
    """The displacement field of affine parameters.

    Args:
        params: (B, 6) ``(t_x, t_y, a_xx, a_xy, a_yx, a_yy)`` in pixels: ``u = t_x + a_xx x +
            a_xy y``, ``v = t_y + a_yx x + a_yy y`` with x, y the pixel centres in [-1, 1].
        height, width: size of the field.
    Returns:
        (B, 2, H, W) px; channel 0 = x, 1 = y.
    """
    basis = affine_basis(height, width, device=params.device, dtype=params.dtype)
    coef = params[:, [0, 1, 2, 4, 3, 5]].view(-1, 3, 2)  # rows 1, x, y; columns u, v
    return torch.einsum("bkc,khw->bchw", coef, basis)


class GlobalAffine(nn.Module):
    """Predict a global affine correction from F^s of A and the warped F^s of B.

    Args:
        in_channels: channels of each side's F^s.
        widths: widths of the strided convs (each halves the size, after a first 2x average
            pooling): at 256 px the votes are cast on a 256 / 2^(1 + len(widths)) grid.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (24, 32, 48, 64)) -> None:
        super().__init__()
        ins = (2 * in_channels, *widths[:-1])
        self.downs = nn.ModuleList(nn.Conv2d(i, o, 3, stride=2, padding=1)
                                   for i, o in zip(ins, widths, strict=True))
        self.votes = nn.Conv2d(widths[-1], 6, 1)
        self.confidence = nn.Conv2d(widths[-1], 1, 1)
        self.init_weights()

    def init_weights(self) -> None:
        """Votes at exactly zero (the identity), confidences uniform."""
        for conv in (self.votes, self.confidence):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, shallow_a: Tensor, warped_b: Tensor) -> Tensor:
        """Args: shallow_a, warped_b: (B, C, H, W). Returns: (B, 2, H, W) px, the correction."""
        x = F.avg_pool2d(torch.cat((shallow_a, warped_b), dim=1), 2)
        for down in self.downs:
            x = F.leaky_relu(down(x), _SLOPE)
        weight = self.confidence(x).flatten(2).softmax(dim=-1)  # (B, 1, n)
        params = (self.votes(x).flatten(2) * weight).sum(dim=-1)  # (B, 6)
        return affine_field(params, *shallow_a.shape[-2:])
