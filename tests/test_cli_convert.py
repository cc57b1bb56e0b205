"""``bsafusion convert`` run as a subprocess on the reference checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from bsafusion import BSAFusion
from bsafusion.weights import weights_info


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bsafusion", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_convert_writes_weights_that_reproduce_the_release(tmp_path, reference_checkpoint,
                                                           reference_outputs):
    out = tmp_path / "release.safetensors"
    proc = run_cli("convert", str(reference_checkpoint), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "9,764,854 parameters" in proc.stdout
    assert out.is_file() and (tmp_path / "release.safetensors.sha256").is_file()
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # 0644 as usual, not safetensors' 0600
    assert weights_info(out).status == "release"
    model = BSAFusion.from_pretrained(out)
    assert model.config.is_release
    fixed = torch.from_numpy(reference_outputs["ct128__input_fixed"])
    moving = torch.from_numpy(reference_outputs["ct128__input_moving"])
    with torch.no_grad():
        fused = model(fixed, moving).fused.numpy()
    ref = reference_outputs["ct128__fused"]
    assert np.abs(fused - ref).max() <= 1e-4 * (ref.max() - ref.min())

    again = run_cli("convert", str(reference_checkpoint), str(out))
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"bsafusion: error: {out}: exists (pass --overwrite to replace it)")


def test_convert_bad_checkpoint_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00not a checkpoint")
    out = tmp_path / "out.safetensors"
    proc = run_cli("convert", str(bad), str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bsafusion: error: {bad}: not a loadable")
    assert list(tmp_path.iterdir()) == [bad]  # nothing half-written


def test_help_is_fast_and_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "convert" in proc.stdout and "fuse" in proc.stdout
