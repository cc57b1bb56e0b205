"""Local correlation (cost volume) against hand-made shifts."""

from __future__ import annotations

import torch

from bsafusion.ops.correlation import local_correlation


def test_peak_at_the_true_offset_and_hand_values():
    torch.manual_seed(0)
    a = torch.randn(1, 4, 9, 9)
    b = torch.roll(a, shifts=(1, -2), dims=(-2, -1))  # b(p + (dx=-2, dy=1)) = a(p)
    corr = local_correlation(a, b, radius=2)
    assert corr.shape == (1, 25, 9, 9)
    inner = corr[..., 2:-2, 2:-2]  # away from the zero padding and the roll's wrap
    best = inner.argmax(dim=1)
    assert (best == (1 + 2) * 5 + (-2 + 2)).all()
    torch.testing.assert_close(inner.amax(dim=1), torch.ones_like(inner[:, 0]))
    # zero padding: offset (dx=+2) at the last column sees nothing
    assert corr[0, 2 * 5 + 4, :, -1].abs().max() == 0
