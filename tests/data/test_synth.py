"""The modality curriculum's random contrast (bsafusion.data.synth)."""

from __future__ import annotations

import torch

from bsafusion.data.synth import random_contrast, synthetic_fixed


def ramp(b: int = 3) -> torch.Tensor:
    return torch.linspace(0, 1, 64).view(1, 1, 8, 8).repeat(b, 1, 1, 1)


def test_two_knot_curve_is_the_image_or_its_inverse():
    # a 2-knot curve is a line: after min-max normalisation, x or 1 - x exactly
    x = ramp(8)
    out = random_contrast(x, generator=torch.Generator().manual_seed(0), knots=2)
    for y in out:
        assert torch.allclose(y, x[0], atol=1e-6) or torch.allclose(y, 1 - x[0], atol=1e-6)


def test_range_shape_and_seed():
    x = ramp()
    a = random_contrast(x, generator=torch.Generator().manual_seed(1))
    b = random_contrast(x, generator=torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert float(a.amin()) == 0.0 and float(a.amax()) == 1.0
    assert not torch.allclose(a[0], a[1])  # each sample draws its own curve


def test_synthetic_fixed_probability_bounds():
    fixed, label = torch.zeros(4, 1, 8, 8), ramp(4)
    gen = torch.Generator().manual_seed(0)
    assert synthetic_fixed(fixed, label, 0.0, generator=gen) is fixed
    every = synthetic_fixed(fixed, label, 1.0, generator=gen)
    assert all(float(y.amax()) == 1.0 for y in every)  # all replaced (fixed is all zero)
