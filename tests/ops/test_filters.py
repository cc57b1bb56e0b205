"""Gaussian blur, Sobel and SSIM in plain torch, pinned to kornia (architecture.md §4)."""

from __future__ import annotations

import pytest
import torch

from bsafusion.ops.filters import (
    gaussian_blur,
    gaussian_kernel1d,
    gradient_l1,
    sobel_xy,
    ssim_map,
)


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 3, 24, 40)])
def test_ssim_equals_kornia(shape, generator):
    kornia = pytest.importorskip("kornia")
    x = torch.rand(shape, generator=generator)
    y = (x + 0.2 * torch.rand(shape, generator=generator)).clamp(0, 1)
    expected = kornia.metrics.ssim(x, y, 11, max_val=1.0)
    torch.testing.assert_close(ssim_map(x, y), expected, rtol=0, atol=1e-5)


def test_sobel_and_blur_equal_kornia(generator):
    kornia = pytest.importorskip("kornia")
    x = torch.rand(2, 2, 20, 28, generator=generator)
    grads = kornia.filters.spatial_gradient(x, "sobel", normalized=False)
    torch.testing.assert_close(sobel_xy(x), grads, rtol=0, atol=1e-6)
    blur = kornia.filters.gaussian_blur2d(x, (7, 7), (1.3, 1.3), border_type="reflect")
    torch.testing.assert_close(gaussian_blur(x, 7, 1.3), blur, rtol=0, atol=1e-6)


def test_ssim_hand_values():
    x = torch.full((1, 1, 16, 16), 0.5)
    # identical images: exactly 1 (up to eps)
    torch.testing.assert_close(ssim_map(x, x), torch.ones_like(x), rtol=0, atol=1e-6)
    # two flat images a, b: only the luminance term remains, (2ab + c1) / (a^2 + b^2 + c1)
    x, y = x.double(), torch.full((1, 1, 16, 16), 0.25, dtype=torch.float64)
    expected = (2 * 0.5 * 0.25 + 1e-4) / (0.25 + 0.0625 + 1e-4)
    # atol: the eps of 1e-12 in the denominator
    torch.testing.assert_close(ssim_map(x, y), torch.full_like(x, expected), rtol=0, atol=1e-7)


def test_sobel_hand_values():
    ramp = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 1, 5, 6)  # d/dx = 1 per column
    g = sobel_xy(ramp)
    assert torch.all(g[0, 0, 0, :, 1:-1] == 8.0)  # (1 + 2 + 1) * 2 columns apart
    assert torch.all(g[0, 0, 1] == 0.0)
    assert torch.all(g[0, 0, 0, :, 0] == 4.0)  # replicate padding halves the edge difference
    torch.testing.assert_close(gradient_l1(ramp)[..., 1:-1], torch.full((1, 1, 5, 4), 8.0),
                               rtol=0, atol=0)


def test_gaussian_kernel():
    k = gaussian_kernel1d(5, 1.0)
    torch.testing.assert_close(k.sum(), torch.tensor(1.0), rtol=0, atol=1e-6)
    torch.testing.assert_close(k[1] / k[2], torch.exp(torch.tensor(-0.5)), rtol=1e-6, atol=0)
    with pytest.raises(ValueError):
        gaussian_kernel1d(4, 1.0)


def test_zero_padded_blur_allows_kernels_wider_than_the_image(generator):
    x = torch.rand(1, 2, 8, 8, generator=generator)
    out = gaussian_blur(x, 101, 16.0, padding="zeros")
    assert out.shape == x.shape and torch.isfinite(out).all()
