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
