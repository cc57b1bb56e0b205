"""bf16 autocast and the warp's coordinate precision (a known limitation, see the xfail).

Under autocast the network's flows come out in bf16, and ``ops.warp.warp`` builds its pixel
coordinates in the flow's dtype. bf16 keeps 8 significant bits: beyond x = 128 a sampling
position is rounded to whole pixels, so sub-pixel displacements are lost in half the image
(measured on CT: the warp error of the ground-truth field doubles, 2.6 -> 5.7 / 255). The
trainer therefore re-warps ``aligned`` in float32 after a bf16 forward, so the losses and
validation metrics are exact; the network's internal feature warps stay bf16. The full fix
belongs in ``ops/warp.py`` (build the grid and sample in float32, cast back), which leaves
float32 results bit-identical; ``bsafusion train --no-amp`` trains in float32 (+ TF32).
"""

from __future__ import annotations

import pytest
import torch

from bsafusion.ops.warp import warp


@pytest.mark.xfail(reason="ops.warp computes coordinates in the flow's dtype (bf16 under "
                          "autocast); owner of ops/warp.py to fix", strict=False)
def test_warp_keeps_subpixel_accuracy_with_bf16_flows():
    ramp = torch.arange(256, dtype=torch.float32).expand(1, 1, 8, 256).contiguous()
    flow = torch.zeros(1, 2, 8, 256)
    flow[:, 0] = 0.3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = warp(ramp, flow.bfloat16())
    torch.testing.assert_close(out.float()[..., :-1], ramp[..., :-1] + 0.3, rtol=0, atol=0.05)


def test_trainer_rewarps_aligned_in_float32_after_a_bf16_forward():
    from bsafusion.config import ModelConfig
    from bsafusion.model import BSAFusion
    from bsafusion.train.trainer import _aligned_in_float32

    model = BSAFusion(ModelConfig(embed_dim=32, num_heads=2, reg_channels=(32, 16, 16, 8, 8),
                                  fusion_channels=(8, 8, 8, 4))).train()
    gen = torch.Generator().manual_seed(0)
    fixed, moving = torch.rand(1, 1, 32, 32, generator=gen), torch.rand(1, 1, 32, 32, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(fixed, moving)
    exact = _aligned_in_float32(out, moving)
    assert type(exact) is type(out) and exact.aligned.dtype == torch.float32
    torch.testing.assert_close(exact.aligned, warp(moving, out.flow.float()), rtol=0, atol=0)
