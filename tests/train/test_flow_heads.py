"""The flow heads' learning rate (TrainConfig.flow_head_lr_scale), on the full network.

With every weight at the recipe's lr, Adam's first steps (about lr per weight, whatever the
gradient's size) push the coarsest head's flow several pixels per step until its tanh
saturates; this is what an H200 run did (val EPE 45 px, runs/h200-a-three-pairs/). The test
reproduces it on CPU at 128² and checks that the default keeps the field at the identity.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bsafusion.config import TrainConfig
from bsafusion.data import load_pairs
from bsafusion.errors import ConfigError
from bsafusion.losses import BSAFusionLoss
from bsafusion.model import BSAFusion
from bsafusion.train.step import TERMS, freeze_parts, param_groups, training_step


def test_param_groups_put_the_ten_heads_apart():
    model = BSAFusion()
    config = TrainConfig(lr=5e-5)
    rest, heads = param_groups(model, config)
    assert "lr" not in rest and heads["lr"] == pytest.approx(5e-5 * config.flow_head_lr_scale)
    assert len(heads["params"]) == 20  # 5 levels x 2 sides x (weight, bias)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(rest["params"]) + len(heads["params"]) == len(trainable)


def _epe_after_steps(aanlib_dir, scale: float, steps: int = 3) -> float:
    config = TrainConfig(pair="ct", data_dir=str(aanlib_dir), image_size=128,
                         flow_head_lr_scale=scale)
    torch.manual_seed(0)
    model = BSAFusion(config.model).train()
    optimizer = torch.optim.Adam(param_groups(model, config), lr=config.lr)
    data = load_pairs(aanlib_dir, "ct", "train", image_size=128, max_pairs=4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        sums = training_step(model, BSAFusionLoss(), optimizer, data.fixed, data.moving,
                             config=dataclasses.replace(config, augment=False),
                             generator=generator)
    return float(sums[TERMS.index("epe")] / sums[-1])  # the last step's forward


def test_default_head_lr_keeps_the_identity_where_full_lr_saturates(aanlib_dir):
    full = _epe_after_steps(aanlib_dir, 1.0)
    default = _epe_after_steps(aanlib_dir, TrainConfig().flow_head_lr_scale)
    assert default < 4.0 and full > 8.0, (default, full)  # measured: 1.8 and 12.0 px


def test_frozen_trunk_leaves_fusion_fixed_and_trains_the_registration_path():
    """``freeze``: a registration-only step with the trunk frozen moves BSFA and the transfer
    stacks, not the encoder, classifier or decoder (so fusion changes only via the flow)."""
    torch.manual_seed(0)
    model = BSAFusion(TrainConfig().model).train()
    config = TrainConfig(lr=1e-3, epe_weight=1.0, augment=False,
                         freeze=["encoder", "classifier", "decoder"])
    assert config.freeze == ("encoder", "classifier", "decoder")
    freeze_parts(model, config.freeze)
    groups = param_groups(model, config)
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert not any(id(p) in in_groups for p in model.encoder.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 1, 32, 32)
    optimizer = torch.optim.Adam(groups, lr=config.lr)
    training_step(model, BSAFusionLoss(epe_weight=1.0), optimizer, x, x.flip(-1),
                  config=config, generator=torch.Generator().manual_seed(0), with_fusion=False)
    after = model.state_dict()
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert moved and moved <= {"transfer_a", "transfer_b", "bsfa"}, moved
    assert {"bsfa", "transfer_a"} <= moved


def test_freeze_names_are_checked():
    with pytest.raises(ConfigError, match="freeze"):
        TrainConfig(freeze=("encoder", "head"))
