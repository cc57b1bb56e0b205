"""Learnability probe for issue 14: N registration-only steps on CT training pairs, printing
the training end-point error every 50 steps against the zero field's.

Runs BSAFusion (any ModelConfig / TrainConfig fields, as JSON) through the trainer's own
``training_step`` (registration-only: no fusion decoder), or the control of issue 14, a
small registration U-Net (early fusion of the two images, ~89k parameters) trained on the
same loss (L_reg + epe_weight * EPE + smoothness of its field). ``--mono`` uses the
undeformed moving image as the fixed one (monomodal) instead of the MRI.

    PYTHONPATH=src python scripts/probe_registration.py --size 64 --mono \\
        --json '{"lr": 2e-4, "epe_weight": 0.25, "model": {"reg_pyramid": "joint"}}'
    PYTHONPATH=src python scripts/probe_registration.py --size 64 --mono --unet --lr 1e-3 \\
        --json '{"epe_weight": 0.25}'
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from bsafusion.config import ModelConfig, TrainConfig
from bsafusion.data.deform import deform
from bsafusion.data.pairs import augment_pairs, load_pairs
from bsafusion.losses import BSAFusionLoss, endpoint_loss, registration_loss, smoothness
from bsafusion.model import BSAFusion
from bsafusion.ops.warp import warp
from bsafusion.train.step import TERMS, param_groups, training_step


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.LeakyReLU(0.2))


class UNet(nn.Module):
    """The control: 4 stride-2 encoder blocks on concat(fixed, moving), a decoder with skips,
    a near-zero flow head (VoxelMorph-like)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.ModuleList([_block(2, 16, 2), _block(16, 32, 2), _block(32, 32, 2),
                                   _block(32, 32, 2)])
        self.up = nn.ModuleList([_block(32, 32), _block(64, 32), _block(64, 32),
                                 _block(48, 32)])
        self.head = nn.Sequential(_block(34, 16), nn.Conv2d(16, 2, 3, 1, 1))
        nn.init.normal_(self.head[1].weight, std=1e-5)
        nn.init.zeros_(self.head[1].bias)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        skips, x = [pair], pair
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()
        for i, block in enumerate(self.up):
            x = block(x if i == 0 else torch.cat((x, skips.pop()), 1))
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(torch.cat((x, skips.pop()), 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default="{}", help="TrainConfig fields (with 'model': {...})")
    p.add_argument("--unet", action="store_true", help="train the U-Net control instead")
    p.add_argument("--mono", action="store_true", help="fixed = undeformed moving image")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, help="override lr")
    p.add_argument("--data", default=".cache/aanlib")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fields = json.loads(args.json)
    model_cfg = ModelConfig(**fields.pop("model", {}))
    if args.lr:
        fields["lr"] = args.lr
    cfg = TrainConfig(pair="ct", image_size=args.size, batch_size=8, model=model_cfg, **fields)
    torch.manual_seed(0)
    data = load_pairs(args.data, "CT", "train", image_size=args.size)
    gen = torch.Generator().manual_seed(0)
    zero = deform(data.moving[:32], cfg.train_deform, generator=torch.Generator().manual_seed(1))
    print(f"zero-field EPE ~ {float(zero.flow.norm(dim=1).mean()):.3f} px", flush=True)
    if args.unet:
        model = UNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    else:
        model = BSAFusion(model_cfg).train()
        optimizer = torch.optim.Adam(param_groups(model, cfg), lr=cfg.lr)
        criterion = BSAFusionLoss(epe_weight=cfg.epe_weight)
    start, epes = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(data.names), (8,), generator=gen)
        fixed = data.moving[idx] if args.mono else data.fixed[idx]
        if args.unet:
            fixed, label = augment_pairs((fixed, data.moving[idx]), generator=gen)
            moving, flow_gt, _ = deform(label, cfg.train_deform, generator=gen)
            flow = model(torch.cat((fixed, moving), 1))
            epe = endpoint_loss(flow, flow_gt)
            loss = (registration_loss(warp(moving, flow), label) + cfg.epe_weight * epe
                    + smoothness(flow))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epes.append(float(epe.detach()))
        else:
            sums = training_step(model, criterion, optimizer, fixed, data.moving[idx],
                                 config=cfg, generator=gen, with_fusion=False)
            epes.append(float(sums[TERMS.index("epe")] / sums[-1]))
        if step % 50 == 0:
            print(f"step {step} train EPE {sum(epes[-50:]) / 50:.3f} px "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
