"""Synthetic deformation and its ground truth (architecture.md §6)."""

from __future__ import annotations

import pytest
import torch

from bsafusion.config import DeformConfig
from bsafusion.data.deform import deform, inverse_residual, invert_flow, random_flow
from bsafusion.errors import ConfigError, InputError
from bsafusion.ops.warp import warp

SMALL = DeformConfig(elastic_px=(4.0, 4.0), translation=0.02, kernel_size=31, sigma=5.0,
                     reference_size=None)  # amplitudes in px of the test image


def _blobs(b: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth test images: blurred noise, rescaled to [0, 1]."""
    from bsafusion.ops.filters import gaussian_blur

    x = gaussian_blur(torch.rand(b, 1, size, size, generator=generator), 17, 4.0)
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo)


def test_inverse_within_tolerance(generator):
    cfg = DeformConfig(elastic_px=(4.0, 4.0), kernel_size=41, sigma=8.0, rotation_deg=3.0,
                       reference_size=None)
    flow = random_flow(3, 48, 40, cfg, generator=generator)
    inv = invert_flow(flow, tol=0.01)
    assert inverse_residual(flow, inv).max() <= 0.01
    # and it is an inverse, not a trivial fixed point: composing the maps gives the identity
    ident = inv + warp(flow, inv)
    assert ident.abs().max() <= 0.01


def test_inverse_at_the_published_level_and_the_top_of_the_training_range(generator):
    for amplitude in (10.0, DeformConfig.training().elastic_px[1]):
        flow = random_flow(2, 128, 128, DeformConfig(elastic_px=(amplitude, amplitude)),
                           generator=generator)
        assert inverse_residual(flow, invert_flow(flow, tol=0.01)).max() <= 0.01


def test_warping_the_deformed_image_by_the_gt_flow_recovers_it(generator):
    images = _blobs(2, 64, generator)
    out = deform(images, SMALL, generator=generator)
    assert out.deformed.shape == images.shape and out.flow.shape == (2, 2, 64, 64)
    moved = (out.deformed - images).abs().mean()
    recovered = warp(out.deformed, out.flow)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from the border clamp
    err = (recovered - images)[inner].abs().mean()
    assert moved > 0.02 and err < 0.15 * moved, (float(moved), float(err))


def test_flow_matches_the_network_convention_for_a_translation(generator):
    # a pure translation: the deformed image is the image shifted by -t, so the flow is +t
    cfg = DeformConfig(elastic_px=(0.0, 0.0), translation=0.1)
    images = torch.arange(32.0).view(1, 1, 1, 32).expand(1, 1, 32, 32).contiguous()
    out = deform(images, cfg, generator=generator)
    t = out.flow[0, :, 0, 0]
    torch.testing.assert_close(out.flow, t.view(1, 2, 1, 1).expand(1, 2, 32, 32),
                               rtol=0, atol=1e-5)
    inner = out.deformed[0, 0, 6:-6, 6:-6]
    torch.testing.assert_close(inner, images[0, 0, 6:-6, 6:-6] - t[0], rtol=0, atol=1e-4)


def test_amplitude_and_translation_bounds(generator):
    cfg = DeformConfig(elastic_px=(5.0, 5.0), translation=0.0, kernel_size=21, sigma=4.0,
                       reference_size=None)
    flow = random_flow(4, 40, 40, cfg, generator=generator)
    peak = flow.norm(dim=1).amax(dim=(-2, -1))
    torch.testing.assert_close(peak, torch.full((4,), 5.0), rtol=1e-5, atol=1e-5)
    cfg = DeformConfig(elastic_px=(0.0, 0.0), translation=0.05)
    flow = random_flow(64, 20, 40, cfg, generator=generator)
    assert flow[:, 0].abs().max() <= 0.05 * 40 + 1e-5 and flow[:, 1].abs().max() <= 1.0 + 1e-5


def test_amplitude_scales_with_the_image_size(generator):
    cfg = DeformConfig(elastic_px=(8.0, 8.0), translation=0.0)  # given for 256 x 256
    flow = random_flow(2, 64, 64, cfg, generator=generator)
    torch.testing.assert_close(flow.norm(dim=1).amax(dim=(-2, -1)), torch.full((2,), 2.0),
                               rtol=1e-5, atol=1e-5)


def test_seeded_and_batched(generator):
    a = random_flow(2, 32, 32, SMALL, generator=torch.Generator().manual_seed(3))
    b = random_flow(2, 32, 32, SMALL, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a[0] - a[1]).abs().max() > 0.1  # different fields per sample


def test_default_is_the_published_test_level():
    cfg = DeformConfig()
    assert cfg.elastic_px == (10.0, 10.0) and cfg.translation == 0.01
    assert cfg.kernel_size == 101 and cfg.sigma == 16.0
    lo, hi = DeformConfig.training().elastic_px
    assert lo <= 10.0 <= hi


def test_errors(generator):
    with pytest.raises(InputError):
        deform(torch.rand(1, 8, 8), generator=generator)
    with pytest.raises(ConfigError):
        DeformConfig(elastic_px=(5.0, 1.0))
    with pytest.raises(ConfigError):
        DeformConfig(kernel_size=100)
