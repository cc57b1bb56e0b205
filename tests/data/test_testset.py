"""``make-testset``: deterministic, ground truth recovers the label (architecture.md §6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from bsafusion.io.image import read_image
from bsafusion.ops.warp import warp


def _make(aanlib_dir, out, pair="PET", seed=0):
    cmd = [sys.executable, "-m", "bsafusion", "make-testset", "--pair", pair, "--split", "val",
           "--seed", str(seed), "--image-size", "64", "--data", str(aanlib_dir), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # no OpenMP spinning on a shared box
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def testset(aanlib_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("testset") / "pet"
    proc = _make(aanlib_dir, out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_layout_and_meta(testset):
    names = sorted(p.stem for p in (testset / "fixed").glob("*.png"))
    assert len(names) == 20
    for sub, suffix in (("moving", ".png"), ("label", ".png"), ("flow", ".npy")):
        assert sorted(p.stem for p in (testset / sub).glob(f"*{suffix}")) == names
    meta = json.loads((testset / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["deform"]["elastic_px"] == [10.0, 10.0]
    assert read_image(testset / "moving" / f"{names[0]}.png").shape == (64, 64, 3)  # colour kept


def test_deterministic_for_a_seed(testset, aanlib_dir, tmp_path):
    again = tmp_path / "again"
    assert _make(aanlib_dir, again).returncode == 0
    for path in (testset / "flow").glob("*.npy"):
        np.testing.assert_array_equal(np.load(path), np.load(again / "flow" / path.name))
    for path in (testset / "moving").glob("*.png"):
        np.testing.assert_array_equal(read_image(path), read_image(again / "moving" / path.name))
    other = tmp_path / "other"
    assert _make(aanlib_dir, other, seed=1).returncode == 0
    name = next((testset / "flow").glob("*.npy")).name
    assert not np.array_equal(np.load(testset / "flow" / name), np.load(other / "flow" / name))


def test_warping_moving_by_the_gt_flow_recovers_the_label(testset):
    errs, changes = [], []
    for path in sorted((testset / "flow").glob("*.npy")):
        flow = torch.from_numpy(np.load(path))[None]
        moving = torch.from_numpy(read_image(testset / "moving" / f"{path.stem}.png"))
        label = torch.from_numpy(read_image(testset / "label" / f"{path.stem}.png"))
        moving, label = moving.permute(2, 0, 1)[None], label.permute(2, 0, 1)[None]
        inner = (..., slice(4, -4), slice(4, -4))
        errs.append(float((warp(moving, flow) - label)[inner].abs().mean()))
        changes.append(float((moving - label)[inner].abs().mean()))
    assert np.mean(errs) < 0.35 * np.mean(changes), (np.mean(errs), np.mean(changes))


def test_refuses_to_overwrite(testset, aanlib_dir):
    proc = _make(aanlib_dir, testset)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert proc.stderr.count("\n") == 1
