"""Release compatibility: the reference fixture is reproduced intermediate by intermediate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bsafusion import BSAFusion, ModelConfig, compat
from bsafusion.config import ColorConvention, FeatureWarp, TokenOrder
from bsafusion.errors import WeightsError
from bsafusion.infer.procedure import fuse_color
from bsafusion.ops.color import rgb_to_ycbcr
from bsafusion.ops.warp import warp

RELEASE_VALUES = 10_028_296  # every value in the release checkpoint, unused ones included
# norm_layer1, classifier.norm, modal_dis.norm, modal_dis.embedding (267,520) and the last
# level's unused state projections f1_FR5.up1 / f2_FR5.up1 (2 x 9)
RELEASE_UNUSED = 267_538
OURS = 9_764_854  # = RELEASE_VALUES - RELEASE_UNUSED + 8 ViT blocks x 512 (our norm1 is used)
TOL = 1e-4  # max abs error relative to each reference array's range


@pytest.fixture(scope="module")
def release_model(reference_checkpoint) -> BSAFusion:
    return BSAFusion.from_release_checkpoint(reference_checkpoint)


def assert_matches(name: str, actual: torch.Tensor, ref: dict[str, np.ndarray]) -> None:
    expected = ref[name]
    actual = actual.detach().cpu().numpy()
    assert actual.shape == expected.shape, name
    span = float(expected.max() - expected.min()) or 1.0
    err = float(np.abs(actual - expected).max()) / span
    assert err <= TOL, f"{name}: max abs error {err:.2e} x range > {TOL:g}"


def _inputs(prefix: str, ref, model: BSAFusion) -> tuple[torch.Tensor, torch.Tensor]:
    fixed = torch.from_numpy(ref[prefix + "input_fixed"])
    if prefix + "input_moving_rgb" in ref:  # the network sees Y of the colour PET (§7, §8.5)
        rgb = torch.from_numpy(ref[prefix + "input_moving_rgb"])
        return fixed, rgb_to_ycbcr(rgb, y_green=compat.RELEASE_Y_GREEN)[:, :1]
    return fixed, torch.from_numpy(ref[prefix + "input_moving"])


@pytest.mark.parametrize("prefix", ["ct__", "pet__", "ct128__"])
def test_release_checkpoint_reproduces_every_intermediate(prefix, release_model, reference_outputs):
    ref = reference_outputs
    fixed, moving = _inputs(prefix, ref, release_model)
    with torch.no_grad():
        out = release_model(fixed, moving, return_transfer_logits=True)
        enc_a = release_model.encoder(fixed)[1]
        enc_b = release_model.encoder(moving)[1]
    checks = {
        "shallow_a": out.shallow_a, "shallow_b": out.shallow_b,
        "embed_in_a": enc_a, "embed_in_b": enc_b,
        "logits_a": out.logits_a, "logits_b": out.logits_b,
        "transfer_logits_a": out.transfer_logits_a, "transfer_logits_b": out.transfer_logits_b,
        "tokens_a": out.tokens_a, "tokens_b": out.tokens_b,
        "transferred_a": out.transferred_a, "transferred_b": out.transferred_b,
        "flow_a": out.flow_a, "flow_b": out.flow_b, "flow": out.flow,
        "fused": out.fused, "aligned_gridsample": out.aligned,
        "aligned_exact": warp(moving, out.flow),
    }
    for i in range(5):  # odd = side A, even = side B, coarse to fine
        checks[f"level_flow_{2 * i + 1}"] = out.flows_a[i]
        checks[f"level_flow_{2 * i + 2}"] = out.flows_b[i]
    expected_names = {k[len(prefix):] for k in ref if k.startswith(prefix)}
    expected_names -= {"input_fixed", "input_moving", "input_moving_rgb", "fused_rgb"}
    assert expected_names <= set(checks), f"unchecked arrays: {expected_names - set(checks)}"
    for name, value in checks.items():
        assert_matches(prefix + name, value, ref)


def test_release_colour_path_reproduces_fused_rgb(release_model, reference_outputs):
    ref = reference_outputs
    fixed = torch.from_numpy(ref["pet__input_fixed"])
    rgb = torch.from_numpy(ref["pet__input_moving_rgb"])
    with torch.no_grad():
        res = fuse_color(release_model, fixed, rgb, clamp=False)  # the release does not clamp
    assert_matches("pet__fused_rgb", res.fused_rgb, ref)
    assert_matches("pet__fused", res.output.fused, ref)


def test_parameter_count(release_model, reference_checkpoint):
    ckpt = compat.load_release_checkpoint(reference_checkpoint)
    total = sum(v.numel() for section in ckpt.values() for v in section.values())
    print(f"release checkpoint: {total:,} values; ours: "
          f"{sum(p.numel() for p in release_model.parameters()):,} parameters")
    assert total == RELEASE_VALUES
    dropped = sum(
        v.numel() for name, ns in compat.RELEASE_SECTIONS.items()
        for k, v in ckpt[name].items() if compat.UNUSED_RELEASE_KEYS.search(ns + k)
    )
    assert dropped == RELEASE_UNUSED
    assert sum(p.numel() for p in release_model.parameters()) == OURS
    assert sum(p.numel() for p in BSAFusion().parameters()) == OURS


def test_converter_maps_every_key_once(reference_checkpoint):
    ckpt = compat.load_release_checkpoint(reference_checkpoint)
    state = compat.convert_release_state_dict(ckpt)
    assert set(state) == set(BSAFusion().state_dict())
    # §8.1: norm_layer2 feeds both norms
    n2 = ckpt["transfer_state_dict"]["transfer.VitBLK1.vit0.norm_layer2.weight"]
    torch.testing.assert_close(state["transfer_a.blocks.0.norm1.weight"], n2, rtol=0, atol=0)
    torch.testing.assert_close(state["transfer_a.blocks.0.norm2.weight"], n2, rtol=0, atol=0)
    # no release key name survives as one of ours
    assert not any(bad in k for k in state for bad in ("rb1", "FR", "Dconv", "mdta", "vit_blks"))


def test_release_config_switches_quirks_on_and_default_is_clean():
    assert compat.RELEASE_CONFIG.token_order is TokenOrder.RELEASE
    assert compat.RELEASE_CONFIG.feature_warp is FeatureWarp.RELEASE
    assert compat.RELEASE_CONFIG.color is ColorConvention.RELEASE
    assert not ModelConfig().is_release


def test_default_config_never_calls_release_kernels(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a release kernel ran in the clean design")

    monkeypatch.setattr(compat, "release_warp", boom)
    monkeypatch.setattr(compat, "release_token_sequence", boom)
    model = BSAFusion().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), return_transfer_logits=True)
    assert torch.isfinite(out.fused).all()


def test_safetensors_round_trip_reproduces_release(tmp_path, release_model, reference_outputs):
    path = tmp_path / "release.safetensors"
    release_model.save_pretrained(path)
    loaded = BSAFusion.from_pretrained(path)
    assert loaded.config == release_model.config
    fixed = torch.from_numpy(reference_outputs["ct128__input_fixed"])
    moving = torch.from_numpy(reference_outputs["ct128__input_moving"])
    with torch.no_grad():
        out = loaded(fixed, moving)
    assert_matches("ct128__fused", out.fused, reference_outputs)
    assert_matches("ct128__flow", out.flow, reference_outputs)


@pytest.mark.parametrize("content, problem", [
    (b"", "not a loadable release checkpoint"),
    (b"garbage bytes, not a zip", "not a loadable release checkpoint"),
])
def test_bad_release_checkpoint_raises_weights_error(tmp_path, content, problem):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=problem) as info:
        BSAFusion.from_release_checkpoint(path)
    assert info.value.where == str(path)


def test_release_checkpoint_with_wrong_layout(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save({"encoder_state_dict": {}}, path)
    with pytest.raises(WeightsError, match="expected a dict with"):
        BSAFusion.from_release_checkpoint(path)
    with pytest.raises(WeightsError, match="no such file"):
        BSAFusion.from_release_checkpoint(tmp_path / "missing.pt")
