"""bf16 autocast keeps the warp's sub-pixel accuracy (coordinates are always float32)."""

from __future__ import annotations

import torch

from bsafusion.compat import release_warp
from bsafusion.config import ModelConfig
from bsafusion.model import BSAFusion
from bsafusion.ops.warp import warp


def test_warp_keeps_subpixel_accuracy_with_bf16_flows():
    # bf16 has 8 significant bits: x + 0.3 beyond x = 128 would round to whole pixels
    ramp = torch.arange(256, dtype=torch.float32).expand(1, 1, 8, 256).contiguous()
    flow = torch.zeros(1, 2, 8, 256)
    flow[:, 0] = 0.3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = warp(ramp, flow.bfloat16())
        legacy = release_warp(ramp, flow.bfloat16())
    assert out.dtype == torch.float32 and legacy.dtype == torch.float32
    torch.testing.assert_close(out[..., :-1], ramp[..., :-1] + 0.3, rtol=0, atol=0.05)
    torch.testing.assert_close(legacy, release_warp(ramp, flow.bfloat16().float()), rtol=0, atol=0)


def test_aligned_is_float32_and_exact_after_a_bf16_forward():
    model = BSAFusion(ModelConfig(embed_dim=32, num_heads=2, reg_channels=(32, 16, 16, 8, 8),
                                  fusion_channels=(8, 8, 8, 4))).train()
    gen = torch.Generator().manual_seed(0)
    fixed, moving = torch.rand(1, 1, 32, 32, generator=gen), torch.rand(1, 1, 32, 32, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(fixed, moving)
    assert out.aligned.dtype == torch.float32
    torch.testing.assert_close(out.aligned, warp(moving, out.flow.float()), rtol=0, atol=0)
