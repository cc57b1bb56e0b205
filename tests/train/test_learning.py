"""A real learning test: overfitting a few deformed pairs recovers the deformation.

The network is trained with the full loss of §4 (through :class:`BSAFusionLoss`) on two CT-MRI
pairs (32x32) whose CT is deformed by known fields; after 120 Adam steps the predicted field
must be clearly closer to the ground truth than the zero field is (end-point error on the
head, where the images carry the signal).
"""

from __future__ import annotations

import torch

from bsafusion.config import DeformConfig, ModelConfig
from bsafusion.data import deform, load_pairs
from bsafusion.losses import BSAFusionLoss
from bsafusion.metrics.registration import endpoint_error
from bsafusion.model import BSAFusion

TINY = ModelConfig(embed_dim=32, num_heads=2, reg_channels=(32, 16, 16, 8, 8),
                   fusion_channels=(8, 8, 8, 4))
# ~1 px on a 32x32 image: relatively 2-3x the published test level, so 120 steps suffice
SHIFT = DeformConfig(elastic_px=(2.0, 2.0), translation=0.04, kernel_size=21, sigma=4.0,
                     reference_size=None)


def test_overfitting_deformed_pairs_beats_the_zero_field(aanlib_dir):
    torch.manual_seed(0)
    pairs = load_pairs(aanlib_dir, "ct", "train", image_size=32, max_pairs=2)
    truth = deform(pairs.moving, SHIFT, generator=torch.Generator().manual_seed(0))
    head = pairs.moving[:, 0] > 0.05
    identity = float(truth.flow.norm(dim=1)[head].mean())
    model = BSAFusion(TINY).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    criterion = BSAFusionLoss()
    losses = []
    for _ in range(120):
        out = model(pairs.fixed, truth.deformed)
        terms = criterion(out, pairs.fixed, pairs.moving)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        losses.append(float(terms["reg"].detach()))
    model.eval()
    with torch.no_grad():
        flow = model(pairs.fixed, truth.deformed).flow
    epe = float(endpoint_error(flow, truth.flow)[head].mean())
    assert identity > 0.8
    assert epe < 0.7 * identity, (epe, identity)
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])
