"""Our safetensors weights: round trip, sha256 check, corrupt and foreign files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from bsafusion import BSAFusion
from bsafusion.errors import WeightsError
from bsafusion.weights import load_weights, resolve_weights, sha256_file


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = BSAFusion().eval()
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    digest = model.save_pretrained(path)
    return model, path, digest


def test_round_trip_is_exact_in_fp32(saved):
    model, path, digest = saved
    assert sha256_file(path) == digest
    assert path.with_name("model.safetensors.sha256").read_text().startswith(digest)
    loaded = BSAFusion.from_pretrained(path)
    expected, actual = model.state_dict(), loaded.state_dict()
    assert list(expected) == list(actual)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert not loaded.training


def test_fp16_export_is_half_size_and_close(saved, tmp_path):
    model, path, _ = saved
    half = tmp_path / "half.safetensors"
    model.save_pretrained(half, dtype=torch.float16)
    assert half.stat().st_size < 0.55 * path.stat().st_size
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        a = model(x, x).fused
        b = BSAFusion.from_pretrained(half)(x, x).fused
    torch.testing.assert_close(a, b, rtol=0, atol=1e-2)


def test_sha256_mismatch_is_refused(saved, tmp_path):
    _, path, _ = saved
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(path.read_bytes())
    (tmp_path / "copy.safetensors.sha256").write_text("0" * 64 + "  copy.safetensors\n")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        BSAFusion.from_pretrained(copy)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_weights(path, sha256="f" * 64)


def test_truncated_file_is_refused(saved, tmp_path):
    _, path, _ = saved
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="not a readable safetensors") as info:
        BSAFusion.from_pretrained(bad)
    assert info.value.where == str(bad)


def test_foreign_safetensors_is_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsError, match="not a bsafusion weights file"):
        BSAFusion.from_pretrained(foreign)


def test_wrong_keys_are_refused_strictly(saved, tmp_path):
    model, _, _ = saved
    state = dict(model.state_dict())
    state.pop("decoder.out_blocks.1.proj_in.bias")
    from bsafusion.weights import save_weights

    path = tmp_path / "partial.safetensors"
    save_weights(state, model.config, path)
    with pytest.raises(WeightsError, match="missing"):
        BSAFusion.from_pretrained(path)


def test_unknown_name_lists_what_is_bundled():
    with pytest.raises(WeightsError, match="bundled"):
        resolve_weights("no-such-weights")
