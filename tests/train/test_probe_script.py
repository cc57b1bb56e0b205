"""scripts/probe_registration.py runs end to end (issue 14's learnability probe)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


JOINT = '{"model": {"reg_pyramid": "joint"}}'


@pytest.mark.parametrize("extra", [["--unet", "--steps", "50"], ["--steps", "3", "--json", JOINT]])
def test_probe_runs(aanlib_dir, extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "scripts/probe_registration.py"),
                          "--size", "32", "--mono", "--data", str(aanlib_dir), *extra],
                         capture_output=True, text=True, env=env, timeout=300, check=True)
    assert "zero-field EPE" in out.stdout
    if "--unet" in extra:
        assert "step 50 train EPE" in out.stdout


def test_error_parts_probe_by_hand_and_end_to_end(aanlib_dir, tmp_path):
    """scripts/probe_error_parts.py: its affine fit recovers an affine field exactly (and
    ignores the pixels off the mask); end to end on a small val set it prints the rows."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from probe_error_parts import affine_part
    finally:
        sys.path.pop(0)
    import torch

    from bsafusion.model.affine import affine_field

    field = affine_field(torch.tensor([[1.0, -2.0, 0.5, 0.0, 0.25, -1.0]]), 12, 16)
    mask = torch.zeros(12, 16, dtype=torch.bool)
    mask[2:9, 3:12] = True
    noisy = field.clone()
    noisy[..., ~mask] += 100.0  # off the mask: not fitted
    torch.testing.assert_close(affine_part(noisy, mask), field, atol=1e-4, rtol=0)

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    testset = tmp_path / "val"
    subprocess.run([sys.executable, "-m", "bsafusion", "make-testset", "--pair", "ct",
                    "--split", "val", "--image-size", "64", "--data", str(aanlib_dir),
                    "-o", str(testset)], env=env, check=True, capture_output=True, timeout=300)
    out = subprocess.run([sys.executable, str(ROOT / "scripts/probe_error_parts.py"),
                          str(testset), "--weights", "ct"], capture_output=True, text=True,
                         env=env, timeout=300, check=True).stdout
    assert "network, error's affine part removed" in out and "slope" in out, out
