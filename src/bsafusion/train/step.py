"""One optimisation step of training (``training_step``) and what it needs: Adam's parameter
groups and the bf16 autocast switch. Shared by the trainer, the probes and the throughput
benchmark."""

from __future__ import annotations

import torch
from torch import Tensor

from bsafusion.config import TrainConfig
from bsafusion.data.deform import deform
from bsafusion.data.pairs import augment_pairs
from bsafusion.data.synth import synthetic_fixed
from bsafusion.losses import LOSS_TERMS, BSAFusionLoss
from bsafusion.model import BSAFusion

__all__ = ["TERMS", "bf16_autocast", "freeze_parts", "param_groups", "training_step"]

TERMS = LOSS_TERMS  # named in bsafusion.losses


def freeze_parts(model: BSAFusion, parts: tuple[str, ...]) -> None:
    """Keep ``parts`` (names of :data:`bsafusion.config.FREEZABLE`) fixed: no gradients, so
    they are left out of :func:`param_groups`."""
    for part in parts:
        for name in (("transfer_a", "transfer_b") if part == "transfer" else (part,)):
            module = getattr(model, name)
            if module is not None:  # no pyramid in the faithful network
                module.requires_grad_(False)


def param_groups(model: BSAFusion, config: TrainConfig) -> list[dict]:
    """Adam's groups: the flow heads at ``lr * flow_head_lr_scale``, the rest at ``lr``."""
    heads, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (heads if ".flow_head." in name else rest).append(param)
    return [{"params": rest},
            {"params": heads, "lr": config.lr * config.flow_head_lr_scale}]


def bf16_autocast(device: torch.device, config: TrainConfig) -> torch.autocast:
    """bf16 autocast on CUDA when ``config.amp``; a disabled (no-op) autocast otherwise."""
    return torch.autocast("cuda", dtype=torch.bfloat16,
                          enabled=device.type == "cuda" and config.amp)


def training_step(net: torch.nn.Module, criterion: BSAFusionLoss,
                  optimizer: torch.optim.Optimizer, fixed: Tensor, label: Tensor, *,
                  config: TrainConfig, generator: torch.Generator, p: float = 1.0,
                  synth_probability: float = 0.0, with_fusion: bool = True) -> Tensor:
    """Augment, deform, forward (bf16 autocast on CUDA if ``config.amp``), backward, step.

    Args:
        net: the network (or its DDP wrapper), in train mode.
        fixed, label: (B, 1, H, W) the MRI and the undeformed moving image, aligned.
        generator: RNG of the augmentation and the deformation, on the data's device.
        p: the fusion balance of this epoch.
        synth_probability: chance per sample that the fixed image is a random contrast of
            the label (the modality curriculum).
        with_fusion: False for a registration-only step (no fusion decoder, no cls/tr/fus).
    Returns:
        (len(TERMS) + 1,) float64 on the device: each term times B, then B (no host sync).
    """
    if config.augment:
        fixed, label = augment_pairs((fixed, label), generator=generator)
    fixed = synthetic_fixed(fixed, label, synth_probability, generator=generator)
    moving, flow_gt, _ = deform(label, config.train_deform, generator=generator)
    with bf16_autocast(fixed.device, config):
        out = net(fixed, moving, with_fusion=with_fusion,
                  return_transfer_logits=with_fusion)
    terms = criterion(out, fixed, label, p, flow_gt=flow_gt)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    optimizer.step()
    with torch.no_grad():
        values = torch.stack([terms[t].detach().double() for t in TERMS])
        b = fixed.shape[0]
        return torch.cat((values * b, values.new_tensor([b])))
