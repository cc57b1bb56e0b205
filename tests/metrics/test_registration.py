"""Registration metrics against hand-computed values (bsafusion.metrics.registration)."""

from __future__ import annotations

import math

import pytest
import torch

from bsafusion.metrics.registration import (
    endpoint_error,
    endpoint_error_stats,
    folding_percent,
    jacobian_determinant,
    mse,
    ncc,
    registration_metrics,
    ssim,
)


def test_ncc_hand_values():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    torch.testing.assert_close(ncc(x, 2 * x + 1), torch.tensor([1.0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(ncc(x, -x), torch.tensor([-1.0]), rtol=0, atol=1e-6)
    y = torch.tensor([1.0, 3.0, 2.0, 4.0]).view(1, 1, 2, 2)
    # centred: (-1.5, -.5, .5, 1.5) . (-1.5, .5, -.5, 1.5) = 4 / 5 = 0.8
    torch.testing.assert_close(ncc(x, y), torch.tensor([0.8]), rtol=0, atol=1e-6)


def test_mse_per_sample():
    x = torch.zeros(2, 1, 2, 2)
    y = torch.stack((torch.zeros(1, 2, 2), torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])))
    torch.testing.assert_close(mse(x, y), torch.tensor([0.0, 0.5]), rtol=0, atol=0)


def test_ssim_identical_and_flat():
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim(x, x), torch.ones(2), rtol=0, atol=1e-5)
    # float64: flat images have zero variance, which float32 moments resolve only to ~1e-7
    a = torch.full((1, 1, 12, 12), 0.6, dtype=torch.float64)
    b = torch.full((1, 1, 12, 12), 0.2, dtype=torch.float64)
    expected = (2 * 0.6 * 0.2 + 1e-4) / (0.36 + 0.04 + 1e-4)
    torch.testing.assert_close(ssim(a, b), torch.tensor([expected], dtype=torch.float64),
                               rtol=0, atol=1e-7)  # eps 1e-12 in the denominator


def test_endpoint_error_hand_values():
    flow = torch.zeros(1, 2, 4, 5)
    gt = torch.zeros(1, 2, 4, 5)
    gt[:, 0], gt[:, 1] = 3.0, 4.0  # |(3, 4)| = 5 everywhere
    torch.testing.assert_close(endpoint_error(flow, gt), torch.full((1, 4, 5), 5.0),
                               rtol=0, atol=0)
    gt[0, :, 0, 0] = 0.0  # one pixel right: mean = 19 * 5 / 20
    mean, p95 = endpoint_error_stats(flow, gt)
    torch.testing.assert_close(mean, torch.tensor([4.75]), rtol=0, atol=1e-6)
    torch.testing.assert_close(p95, torch.tensor([5.0]), rtol=0, atol=1e-6)
    mask = torch.zeros(1, 1, 4, 5, dtype=torch.bool)
    mask[..., 0, :2] = True  # the zero pixel and one 5-pixel
    mean, _ = endpoint_error_stats(flow, gt, mask)
    torch.testing.assert_close(mean, torch.tensor([2.5]), rtol=0, atol=1e-6)


def test_jacobian_of_identity_scaling_and_shear():
    h, w = 6, 7
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    zero = torch.zeros(1, 2, h, w)
    torch.testing.assert_close(jacobian_determinant(zero), torch.ones(1, h, w), rtol=0, atol=0)
    # p -> 2p: u = x, v = y; det = 2 * 2 = 4
    scale = torch.stack((xs, ys))[None]
    torch.testing.assert_close(jacobian_determinant(scale), torch.full((1, h, w), 4.0),
                               rtol=0, atol=1e-6)
    # u = 0.5 y, v = 0.5 x: det = 1 - 0.25
    shear = torch.stack((0.5 * ys, 0.5 * xs))[None]
    torch.testing.assert_close(jacobian_determinant(shear), torch.full((1, h, w), 0.75),
                               rtol=0, atol=1e-6)
    # mirror: u = -2x, i.e. x -> -x: det = -1 everywhere -> 100 % folding
    mirror = torch.stack((-2 * xs, torch.zeros_like(ys)))[None]
    torch.testing.assert_close(folding_percent(torch.cat((mirror, zero))),
                               torch.tensor([100.0, 0.0]), rtol=0, atol=0)


def test_registration_metrics_keys():
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    flow = torch.zeros(3, 2, 16, 16)
    out = registration_metrics(x, x, flow, flow)
    assert set(out) == {"ncc", "mse", "ssim", "folding_pct", "epe_mean", "epe_p95"}
    assert all(v.shape == (3,) for v in out.values())
    assert math.isclose(float(out["epe_mean"].sum()), 0.0)


@pytest.mark.parametrize("fn", [ncc, mse, ssim])
def test_symmetric(fn):
    gen = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 1, 16, 16, generator=gen), torch.rand(2, 1, 16, 16, generator=gen)
    torch.testing.assert_close(fn(x, y), fn(y, x), rtol=1e-6, atol=1e-6)
