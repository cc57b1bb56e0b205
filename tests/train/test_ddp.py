"""Two-process DistributedDataParallel training on CPU (gloo) through torchrun."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from bsafusion.train import load_checkpoint

TINY_JSON = json.dumps({"embed_dim": 32, "num_heads": 2, "reg_channels": [32, 16, 16, 8, 8],
                        "fusion_channels": [8, 8, 8, 4]})


def _torchrun(aanlib_dir, run, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "bsafusion", "train", "--pair", "ct", "--data", str(aanlib_dir),
           "--out", str(run), "--image-size", "32", "--max-train-pairs", "8",
           "--batch-size", "4", "--num-epochs", "2", "--val-every", "2", "--device", "cpu",
           "--checkpoint-every", "1", "--model-config", TINY_JSON, "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.ddp
def test_torchrun_two_processes_gloo_and_bit_exact_resume(aanlib_dir, tmp_path):
    proc = _torchrun(aanlib_dir, tmp_path / "full")
    assert proc.stdout.count("best val EPE") == 1  # only rank 0 reports
    state = load_checkpoint(tmp_path / "full" / "last.pt")
    assert state["world_size"] == 2 and state["epoch"] == 2
    assert len(state["rng"]["ranks"]) == 2  # both ranks' generators, for resume
    with open(tmp_path / "full" / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and float(rows[-1]["val_epe_mean"]) > 0
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    # interrupted after one epoch, resumed with two processes: the same weights
    _torchrun(aanlib_dir, tmp_path / "part", "--stop-after", "1")
    _torchrun(aanlib_dir, tmp_path / "part", "--resume")
    resumed = load_checkpoint(tmp_path / "part" / "last.pt")
    for key, value in state["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


@pytest.mark.ddp
def test_torchrun_fits_a_time_budget_on_every_rank_alike(aanlib_dir, tmp_path):
    # the fit is a collective decision (a vote, a validation, a checkpoint): a rank deciding
    # alone would hang the other at its next all-reduce
    _torchrun(aanlib_dir, tmp_path / "run", "--num-epochs", "100000", "--time-budget", "6",
              "--val-every", "5", "--checkpoint-every", "0")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["budget_fitted"] and state["epoch"] == saved["num_epochs"] < 100000
