"""The clean network: shapes, gradients, initialisation, input validation, config."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bsafusion import BSAFusion, ModelConfig, build_bsafusion
from bsafusion.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def model() -> BSAFusion:
    torch.manual_seed(0)
    return BSAFusion().eval()


@pytest.mark.parametrize("size", [(128, 128), (256, 256), (320, 192)])
def test_output_shapes(model, size):
    h, w = size
    with torch.no_grad():
        out = model(torch.rand(1, 1, h, w), torch.rand(1, 1, h, w))
    assert out.flow.shape == out.flow_a.shape == out.flow_b.shape == (1, 2, h, w)
    assert out.fused.shape == out.aligned.shape == (1, 1, h, w)
    assert out.shallow_a.shape == (1, 8, h, w)
    n = (h // 16) * (w // 16)
    assert out.tokens_a.shape == out.transferred_b.shape == (1, n, 256)
    assert [f.shape[-2:] for f in out.flows_a] == [(h >> s, w >> s) for s in (4, 3, 2, 1, 0)]
    assert out.logits_a.shape == (1, 2)
    assert out.transfer_logits_a is None  # eval mode skips the discriminator
    assert torch.isfinite(out.fused).all() and 0 <= out.fused.min() and out.fused.max() <= 1


def test_flow_starts_near_identity(model):
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64))
    assert out.flow.abs().max() < 0.05  # near-zero flow heads (spec §6)


def test_every_trainable_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = BSAFusion().train()
    out = model(torch.rand(2, 1, 32, 48), torch.rand(2, 1, 32, 48))
    loss = out.fused.mean() + out.aligned.mean() + out.logits_a.sum() + out.logits_b.sum()
    loss = loss + out.transfer_logits_a.sum() + out.transfer_logits_b.sum()
    loss = loss + sum(f.sum() for f in out.flows_a + out.flows_b)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("discriminator.") for n in frozen)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_discriminator_refresh_copies_classifier():
    model = BSAFusion()
    with torch.no_grad():
        model.classifier.stack.head[0].weight.add_(1.0)
    disc, clf = model.discriminator.head[0], model.classifier.stack.head[0]
    assert not torch.equal(disc.weight, clf.weight)
    model.refresh_discriminator()
    assert torch.equal(disc.weight, clf.weight)


@pytest.mark.parametrize("fixed, moving, problem", [
    ((1, 1, 30, 32), (1, 1, 30, 32), "multiples of 16"),
    ((1, 3, 32, 32), (1, 3, 32, 32), "expected shape"),
    ((1, 1, 32, 32), (1, 1, 32, 48), "expected shape"),
    ((2, 1, 32, 32), (1, 1, 32, 32), "expected shape"),
    ((1, 32, 32), (1, 32, 32), "expected shape"),
])
def test_bad_input_shapes_raise_input_error(model, fixed, moving, problem):
    with pytest.raises(InputError, match=problem):
        model(torch.rand(fixed), torch.rand(moving))


@pytest.mark.parametrize("change, field", [
    ({"reg_channels": (256, 64, 32)}, "reg_channels"),
    ({"reg_channels": (128, 64, 32, 16, 8)}, "reg_channels"),
    ({"fusion_channels": (64, 32)}, "fusion_channels"),
    ({"num_heads": 3}, "num_heads"),
    ({"patch_size": 8}, "patch_size"),
    ({"token_order": "sideways"}, "token_order"),
])
def test_invalid_config_raises_config_error(change, field):
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(ModelConfig(), **change)
    assert info.value.where == field


def test_config_json_round_trip_and_unknown_field():
    cfg = ModelConfig(token_order="release", fusion_channels=(64, 32, 16, 12))
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        ModelConfig.from_dict({"embed_dimension": 3})


def test_build_returns_eval_model():
    assert not build_bsafusion().training


@pytest.mark.parametrize("kind,corr", [("siamese", 0), ("siamese", 2), ("joint", 0)])
def test_reg_pyramid_variant_shapes_gradients_and_fusion_switch(kind, corr):
    torch.manual_seed(0)
    model = BSAFusion(ModelConfig(reg_pyramid=kind, reg_correlation=corr)).train()
    assert BSAFusion().config.reg_pyramid == "none"  # off by default (release checkpoints)
    out = model(torch.rand(2, 1, 32, 48), torch.rand(2, 1, 32, 48))
    assert out.flow.shape == (2, 2, 32, 48) and out.fused.shape == (2, 1, 32, 48)
    sum(f.sum() for f in out.flows_a + out.flows_b).backward()
    pyramid = [n for n, p in model.named_parameters() if n.startswith("pyramid.")]
    assert pyramid and all(model.get_parameter(n).grad is not None for n in pyramid)
    reg_only = model(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), with_fusion=False)
    assert reg_only.fused is None and reg_only.flow.shape == (1, 2, 32, 32)


def test_reg_pyramid_config_checks_and_old_bool_spelling():
    assert ModelConfig(reg_pyramid=True).reg_pyramid == "siamese"
    assert ModelConfig(reg_pyramid=False).reg_pyramid == "none"
    with pytest.raises(ConfigError, match="reg_pyramid"):
        ModelConfig(reg_pyramid="pyramid")
    with pytest.raises(ConfigError, match="reg_correlation"):
        ModelConfig(reg_pyramid="joint", reg_correlation=2)
