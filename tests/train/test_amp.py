"""bf16 autocast and the warp's coordinate precision (a known limitation, see the xfail).

Under autocast the network's flows come out in bf16, and ``ops.warp.warp`` builds its pixel
coordinates in the flow's dtype. bf16 keeps 8 significant bits: beyond x = 128 a sampling
position is rounded to whole pixels, so sub-pixel displacements are lost in half the image
(measured on CT: the warp error of the ground-truth field doubles, 2.6 -> 5.7 / 255). The fix
belongs in ``ops/warp.py`` (build the grid and sample in float32, cast back), which leaves
float32 results bit-identical; until it lands, ``bsafusion train --no-amp`` trains in
float32 (+ TF32 on CUDA).
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
