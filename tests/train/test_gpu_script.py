"""scripts/gpu_train.sh, the one-command GPU run, exercised on CPU with a tiny config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bsafusion import BSAFusion

REPO = Path(__file__).resolve().parents[2]
TINY = {"embed_dim": 32, "num_heads": 2, "reg_channels": [32, 16, 16, 8, 8],
        "fusion_channels": [8, 8, 8, 4]}


def test_gpu_script_trains_resumes_and_exports(tmp_path, aanlib_dir):
    work = tmp_path / "repo"
    (work / ".cache").mkdir(parents=True)
    shutil.copytree(REPO / "src", work / "src")
    shutil.copytree(REPO / "scripts", work / "scripts")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "DATA": str(aanlib_dir), "OMP_NUM_THREADS": "1",
           "BUDGET_S": "120", "CUDA_VISIBLE_DEVICES": ""}
    args = ["bash", "scripts/gpu_train.sh", "ct", "--num-epochs", "2", "--batch-size", "4",
            "--image-size", "32", "--max-train-pairs", "4", "--val-every", "1",
            "--model-config", json.dumps(TINY)]
    first = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert {"ct.safetensors", "config.json", "log.csv"} <= {p.name for p in out.iterdir()}
    model = BSAFusion.from_pretrained(out / "ct.safetensors")  # strict, sha256-checked
    assert model.config.embed_dim == 32
    # a second call continues the run in place (the schedule is done: nothing left to train)
    again = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "train exit status: 0" in again.stdout
    epochs = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2"]  # resumed from last.pt, not restarted


def test_gpu_all_script_packs_runs_into_returnable_pieces(tmp_path, aanlib_dir):
    work = tmp_path / "repo"
    (work / ".cache").mkdir(parents=True)
    for name in ("src", "scripts", "benchmarks"):
        shutil.copytree(REPO / name, work / name)
    out = tmp_path / "out"
    out.mkdir()
    train_args = ("--num-epochs 2 --batch-size 4 --image-size 32 --max-train-pairs 4 "
                  "--val-every 1 --model-config " + json.dumps(TINY).replace(" ", ""))
    env = {**os.environ, "OUT": str(out), "DATA": str(aanlib_dir), "OMP_NUM_THREADS": "1",
           "BUDGET_S": "120", "CUDA_VISIBLE_DEVICES": "", "BENCH": "0",
           "TRAIN_ARGS": train_args, "ARGS_ct_b": "--lr 1e-4"}  # NAME=PAIR: a second CT run
    proc = subprocess.run(["bash", "scripts/gpu_all.sh", "ct", "ct_b=ct"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parts = sorted(out.glob("out.tgz.part-*"))
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    cat = subprocess.run(f"cat {' '.join(map(str, parts))} | tar xz -C {unpacked}", shell=True,
                         capture_output=True, text=True)
    assert cat.returncode == 0, cat.stderr
    lrs = {}
    for run in ("ct", "ct_b"):
        folder = unpacked / ".cache" / "out" / run
        assert {"config.json", "log.csv"} <= {p.name for p in folder.iterdir()}
        assert BSAFusion.from_pretrained(folder / "ct.safetensors").config.embed_dim == 32
        lrs[run] = json.loads((folder / "config.json").read_text())["lr"]
        assert f"== .cache/out/{run}/log.csv" in proc.stdout  # its validated epochs printed
    assert lrs == {"ct": 5e-5, "ct_b": 1e-4}  # ARGS_ct_b reached only the run ct_b
