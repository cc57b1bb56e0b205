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


def test_error_parts_probe_end_to_end(aanlib_dir, tmp_path):
    """scripts/probe_error_parts.py on a small val set prints its rows (its affine fit,
    :func:`bsafusion.losses.affine_part`, is checked by hand in tests/test_losses.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    testset = tmp_path / "val"
    subprocess.run([sys.executable, "-m", "bsafusion", "make-testset", "--pair", "ct",
                    "--split", "val", "--image-size", "64", "--data", str(aanlib_dir),
                    "-o", str(testset)], env=env, check=True, capture_output=True, timeout=300)
    out = subprocess.run([sys.executable, str(ROOT / "scripts/probe_error_parts.py"),
                          str(testset), "--weights", "ct"], capture_output=True, text=True,
                         env=env, timeout=300, check=True).stdout
    assert "network, error's affine part removed" in out and "slope" in out, out
