"""The exact warp (architecture.md §2), the release warp (§8.3) and flow integration."""

from __future__ import annotations

import pytest
import torch

from bsafusion.compat import release_warp
from bsafusion.ops.grid import pixel_grid, resize_flow
from bsafusion.ops.warp import integrate_flows, warp


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 3, 128, 128), (1, 8, 24, 40)])
def test_zero_flow_returns_input(shape, generator):
    image = torch.rand(shape, generator=generator)
    flow = torch.zeros(shape[0], 2, *shape[-2:])
    torch.testing.assert_close(warp(image, flow), image, rtol=0, atol=1e-5)


def test_constant_x_flow_moves_content_one_column_left(generator):
    image = torch.rand(1, 1, 16, 20, generator=generator)
    flow = torch.zeros(1, 2, 16, 20)
    flow[:, 0] = 1.0  # sample one column to the right
    out = warp(image, flow)
    torch.testing.assert_close(out[..., :-1], image[..., 1:], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[..., -1], image[..., -1], rtol=0, atol=1e-5)  # border clamp


def test_integer_translation_in_y_by_three_pixels(generator):
    image = torch.rand(1, 1, 20, 16, generator=generator)
    flow = torch.zeros(1, 2, 20, 16)
    flow[:, 1] = -3.0  # sample three rows up: content moves three rows down
    out = warp(image, flow)
    torch.testing.assert_close(out[..., 3:, :], image[..., :-3, :], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[..., :3, :], image[..., :1, :].expand(-1, -1, 3, -1),
                               rtol=0, atol=1e-5)


def test_half_pixel_flow_is_bilinear():
    image = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 4, 8).contiguous()
    flow = torch.zeros(1, 2, 4, 8)
    flow[:, 0] = 0.5
    out = warp(image, flow)
    expected = torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.0])
    torch.testing.assert_close(out[0, 0, 2], expected, rtol=0, atol=1e-5)


def test_warp_gradcheck():
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    # keep samples away from pixel boundaries, where bilinear is not differentiable
    flow = (0.3 + 0.2 * torch.rand(1, 2, 5, 6, generator=gen, dtype=torch.float64))
    flow.requires_grad_(True)
    assert torch.autograd.gradcheck(warp, (image, flow), eps=1e-6, atol=1e-5)


def test_release_warp_distorts_even_at_zero_flow(generator):
    image = torch.rand(1, 1, 32, 32, generator=generator)
    flow = torch.zeros(1, 2, 32, 32)
    out = release_warp(image, flow)
    assert (out - image).abs().max() > 1e-3  # the §8.3 half-pixel distortion
    # the corners are sampled half a pixel outside with zero padding: a quarter of the value
    torch.testing.assert_close(out[0, 0, 0, 0], image[0, 0, 0, 0] / 4, rtol=1e-5, atol=1e-6)


def test_pixel_grid_convention():
    grid = pixel_grid(3, 4)
    assert grid.shape == (1, 2, 3, 4)
    assert grid[0, 0, 2, 3] == 3 and grid[0, 1, 2, 3] == 2  # channel 0 = x, 1 = y


def test_resize_flow_rescales_magnitudes_per_axis():
    flow = torch.ones(1, 2, 8, 16)
    flow[:, 1] = 2.0
    out = resize_flow(flow, (32, 32), align_corners=True)
    assert out.shape == (1, 2, 32, 32)
    torch.testing.assert_close(out[:, 0], torch.full((1, 32, 32), 2.0), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:, 1], torch.full((1, 32, 32), 8.0), rtol=0, atol=1e-6)


def test_integrate_flows_scales_each_level():
    levels = [torch.full((1, 2, 4 * 2**i, 4 * 2**i), 0.5) for i in range(5)]
    total = integrate_flows(levels, (64, 64))
    # 0.5 * (16 + 8 + 4 + 2 + 1) = 15.5 px
    torch.testing.assert_close(total, torch.full((1, 2, 64, 64), 15.5), rtol=0, atol=1e-5)
