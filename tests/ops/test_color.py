"""RGB <-> YCbCr, BT.601 studio range (architecture.md §7)."""

from __future__ import annotations

import torch

from bsafusion.compat import RELEASE_Y_GREEN
from bsafusion.ops.color import rgb_to_ycbcr, ycbcr_to_rgb


def test_known_values():
    # three pixels in a row: white, black, red; channels R, G, B
    rgb = torch.tensor([[[[1.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]]]])
    ycc = rgb_to_ycbcr(rgb)
    white, black, red = ycc[0, :, 0].T
    torch.testing.assert_close(white, torch.tensor([0.9215, 0.5, 0.5]), rtol=0, atol=1e-6)
    torch.testing.assert_close(black, torch.tensor([0.0625, 0.5, 0.5]), rtol=0, atol=1e-6)
    torch.testing.assert_close(red, torch.tensor([0.3195, 0.352, 0.939]), rtol=0, atol=1e-6)


def test_round_trip(generator):
    rgb = torch.rand(2, 3, 8, 8, generator=generator)
    back = ycbcr_to_rgb(rgb_to_ycbcr(rgb))
    torch.testing.assert_close(back, rgb, rtol=0, atol=2e-3)  # 3-digit published constants


def test_release_slip_changes_only_y(generator):
    rgb = torch.rand(1, 3, 4, 4, generator=generator)
    clean, slip = rgb_to_ycbcr(rgb), rgb_to_ycbcr(rgb, y_green=RELEASE_Y_GREEN)
    torch.testing.assert_close(slip[:, 1:], clean[:, 1:], rtol=0, atol=0)
    torch.testing.assert_close(slip[:, 0] - clean[:, 0], 0.06 * rgb[:, 1], rtol=0, atol=1e-6)


def test_clamp():
    out = ycbcr_to_rgb(torch.tensor([1.0, 0.5, 1.0]).view(1, 3, 1, 1))
    assert out.min() >= 0 and out.max() <= 1
    raw = ycbcr_to_rgb(torch.tensor([1.0, 0.5, 1.0]).view(1, 3, 1, 1), clamp=False)
    assert raw.max() > 1
