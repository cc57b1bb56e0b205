"""Baselines: classic fusion rules, the zero-field network fusion, elastix (when installed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from bsafusion.errors import ConfigError
from bsafusion.evaluation import baselines
from bsafusion.model.bsafusion import BSAFusion


@pytest.fixture
def pair(generator):
    a = torch.rand(2, 1, 32, 48, generator=generator)
    b = torch.rand(2, 1, 32, 48, generator=generator)
    return a, b


def test_average_and_max_values():
    a = torch.tensor([[[[0.0, 0.2], [1.0, 0.5]]]])
    b = torch.tensor([[[[1.0, 0.4], [0.0, 0.5]]]])
    torch.testing.assert_close(baselines.fuse_average(a, b),
                               torch.tensor([[[[0.5, 0.3], [0.5, 0.5]]]]), rtol=0, atol=1e-7)
    torch.testing.assert_close(baselines.fuse_max(a, b),
                               torch.tensor([[[[1.0, 0.4], [1.0, 0.5]]]]), rtol=0, atol=0)


def test_laplacian_fusion_of_an_image_with_itself_is_the_image(pair):
    a, _ = pair
    torch.testing.assert_close(baselines.fuse_laplacian(a, a), a, rtol=0, atol=1e-5)


def test_laplacian_fusion_keeps_the_stronger_detail(pair):
    """A flat B contributes no detail: the result is A's detail on the mean base."""
    a, _ = pair
    flat = torch.full_like(a, 0.5)
    fused = baselines.fuse_laplacian(a, flat, levels=2)
    assert fused.shape == a.shape
    assert float((fused - a).abs().mean()) < float((baselines.fuse_average(a, flat) - a)
                                                   .abs().mean())
    with pytest.raises(ConfigError):
        baselines.fuse_laplacian(a, flat, levels=6)  # 32 px / 2^6 < 1


def test_network_zero_flow_equals_the_forward_when_the_flow_is_zero(generator):
    model = BSAFusion().eval()
    for level in model.bsfa.modules():
        if hasattr(level, "flow_head"):
            torch.nn.init.zeros_(level.flow_head.weight)
    a = torch.rand(1, 1, 32, 32, generator=generator)
    b = torch.rand(1, 1, 32, 32, generator=generator)
    with torch.inference_mode():
        out = model(a, b)
    assert float(out.flow.abs().max()) == 0.0
    # a zero flow warps up to float32 rounding (~1e-6, architecture.md §2)
    torch.testing.assert_close(baselines.fuse_network_zero_flow(model, a, b), out.fused,
                               rtol=0, atol=1e-5)


def test_missing_elastix_raises_config_error_with_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "itk", None)  # import itk -> ImportError
    with pytest.raises(ConfigError, match=r"bsafusion\[elastix\]"):
        baselines.elastix_register(np.zeros((32, 32)), np.zeros((32, 32)))


def test_bad_elastix_transform():
    with pytest.raises(ConfigError):
        baselines.elastix_register(np.zeros((8, 8)), np.zeros((8, 8)),
                                   baselines.ElastixSettings(transform="affine"))


def _blob(shift_x: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    img = np.exp(-(((xx - 32 - shift_x) / 12) ** 2 + ((yy - 30) / 9) ** 2))
    img += 0.6 * np.exp(-(((xx - 24 - shift_x) / 4) ** 2 + ((yy - 36) / 4) ** 2))
    return (img / img.max()).astype(np.float32)


def test_foreground_mask_fills_and_dilates():
    pytest.importorskip("scipy")
    img = np.zeros((40, 40), np.float32)
    img[10:30, 10:30] = 1.0
    img[18:22, 18:22] = 0.0  # a hole
    img[2, 2] = 1.0  # a speck outside the head
    mask = baselines.foreground_mask(img, dilate_px=2)
    assert mask[20, 20] == 1 and mask[2, 2] == 0
    assert mask[8, 20] == 1 and mask[6, 20] == 0  # dilated by 2 px


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # itk's SWIG types
def test_elastix_recovers_a_translation_in_our_flow_convention():
    """moving(x) = fixed(x - 3): aligned(p) = moving(p + flow) needs flow = +3 px in x."""
    pytest.importorskip("itk")
    pytest.importorskip("scipy")
    fixed, moving = _blob(), _blob(shift_x=3.0)
    flow = baselines.elastix_register(
        fixed, moving, baselines.ElastixSettings(transform="rigid", iterations=200))
    assert flow.shape == (2, 64, 64) and flow.dtype == np.float32
    head = fixed > 0.2
    assert float(flow[0][head].mean()) == pytest.approx(3.0, abs=0.3)
    assert float(np.abs(flow[1][head]).mean()) < 0.3
