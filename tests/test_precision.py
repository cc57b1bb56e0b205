"""Inference precision and backends (issue 19): the default path and the ONNX backends stay
within the accuracy bounds against eager fp32 on the bundled weights and sample pairs;
``precision`` and ``backend`` are validated and passed on."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bsafusion import BSAFusion
from bsafusion.cli import build_parser
from bsafusion.cli.common import UsageError
from bsafusion.errors import InputError
from bsafusion.infer import Fuser
from bsafusion.infer.demo import demo_deformation
from bsafusion.infer.fast.precision import ACCURACY_BOUNDS, agreement, native_bf16
from bsafusion.io import load_image
from bsafusion.metrics.fusion import qabf
from bsafusion.metrics.registration import ncc
from bsafusion.model.build import build_bsafusion
from bsafusion.ops.warp import warp
from bsafusion.samples import sample_pairs
from bsafusion.weights import available_weights


def _grey(x: torch.Tensor) -> torch.Tensor:  # as evaluate scores: 8-bit grey levels
    return torch.round(x.clamp(0, 1) * 255) / 255


@pytest.fixture(scope="module")
def ct_pairs():
    """(fixed, moving deformed by the demo field, undeformed moving), each (3, 1, H, W)."""
    if "ct" not in available_weights():
        pytest.skip("no bundled CT weights")
    load = lambda p: torch.from_numpy(np.asarray(load_image(p).array, np.float32))  # noqa: E731
    pairs = sample_pairs("ct")
    fixed = torch.stack([load(p.fixed) for p in pairs])[:, None]
    label = torch.stack([load(p.moving) for p in pairs])[:, None]
    field = demo_deformation(*label.shape[-2:]).expand(len(pairs), -1, -1, -1)
    return fixed, warp(label, field), label


@pytest.fixture(scope="module")
def ct_model():
    return build_bsafusion(weights="ct")


@pytest.fixture(scope="module")
def ct_reference(ct_model, ct_pairs):
    """Eager fp32 results of the three pairs, one by one."""
    reference = Fuser(ct_model, device="cpu", fast=False, precision="fp32")
    fixed, moving, _ = ct_pairs
    return [reference.fuse_tensors(fixed[i:i + 1], moving[i:i + 1]) for i in range(len(fixed))]


def _assert_within_bounds(fuser: Fuser, references, pairs) -> None:
    """``fuser`` agrees with eager fp32 within issue 19's bounds on every pair, and moves
    evaluate's NCC and Qabf by <= 0.002."""
    fixed, moving, label = pairs
    for i, ref in enumerate(references):
        out = fuser.fuse_tensors(fixed[i:i + 1], moving[i:i + 1])
        assert agreement(ref, out).failures() == [], agreement(ref, out)
        d_ncc = ncc(_grey(out.aligned), label[i:i + 1]) - ncc(_grey(ref.aligned), label[i:i + 1])
        assert abs(float(d_ncc)) <= 0.002
        q = [qabf(fixed[i, 0], label[i, 0], _grey(r.fused)[0, 0]) for r in (ref, out)]
        assert abs(q[1] - q[0]) <= 0.002


def test_default_precision_meets_the_bounds_on_bundled_weights(ct_model, ct_reference, ct_pairs):
    """Whatever ``Fuser`` runs by default stays within the bounds of eager fp32 (bundled CT
    weights, whichever are bundled; the three CT sample pairs)."""
    _assert_within_bounds(Fuser(ct_model, device="cpu"), ct_reference, ct_pairs)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_exported_backends_meet_the_bounds_on_bundled_weights(backend, ct_model, ct_reference,
                                                              ct_pairs):
    """The ONNX export run by ONNX Runtime (test extra) or OpenVINO (where installed)."""
    pytest.importorskip(backend)
    fuser = Fuser(ct_model, device="cpu", backend=backend)
    _assert_within_bounds(fuser, ct_reference, ct_pairs)


def test_backend_needs_cpu_fp32_and_a_known_name():
    model = BSAFusion().eval()
    with pytest.raises(InputError, match="fp32 only"):
        Fuser(model, device="cpu", backend="onnxruntime", precision="bf16")
    with pytest.raises(InputError, match="unknown runtime"):
        Fuser(model, device="cpu", backend="tensorrt")


def test_agreement_values_and_failures():
    flow = torch.zeros(1, 2, 2, 2)
    ref = SimpleNamespace(fused=torch.zeros(1, 1, 2, 2), flow=flow)
    moved = flow.clone()
    moved[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # one vector 5 px off
    out = SimpleNamespace(fused=torch.tensor([[[[0.0, 2 / 255], [0.0, 6 / 255]]]]), flow=moved)
    got = agreement(ref, out)
    assert got.fused_mean == pytest.approx(2 / 255) and got.fused_max == pytest.approx(6 / 255)
    assert got.epe_mean == pytest.approx(1.25) and got.epe_max == pytest.approx(5.0)
    assert got.failures() == ["fused_mean", "fused_max", "epe_mean", "epe_max"]
    assert agreement(ref, ref).failures() == []
    assert set(ACCURACY_BOUNDS) == set(got._fields)


def test_bf16_runs_and_unknown_precision_is_rejected(caplog):
    torch.manual_seed(0)
    model = BSAFusion().eval()
    with pytest.raises(InputError, match="precision"):
        Fuser(model, device="cpu", precision="fp16")
    with caplog.at_level(logging.WARNING, logger="bsafusion"):
        fuser = Fuser(model, device="cpu", work_size=32, precision="bf16")
    assert ("no native bf16" in caplog.text) != native_bf16()
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    res = fuser.fuse_tensors(x, x.flip(-1))
    fp32 = Fuser(model, device="cpu", work_size=32).fuse_tensors(x, x.flip(-1))
    assert res.fused.dtype == torch.float32 and res.flow.dtype == torch.float32
    torch.testing.assert_close(res.fused, fp32.fused, rtol=0, atol=0.5)  # runs; not bounded


@pytest.mark.parametrize("command", ["fuse", "register", "evaluate"])
def test_cli_precision_flag(command):
    parser = build_parser()
    rest = ["-o", "out"]
    assert parser.parse_args([command, *rest]).precision == "fp32"
    assert parser.parse_args([command, *rest, "--precision", "bf16"]).precision == "bf16"
    with pytest.raises(UsageError, match="--precision: invalid choice: 'int8'"):
        parser.parse_args([command, *rest, "--precision", "int8"])
    if command != "evaluate":
        args = parser.parse_args([command, *rest, "--backend", "onnxruntime"])
        assert args.backend == "onnxruntime"
