"""Training end to end on a tiny config, bit-exact resume, export (architecture.md §5)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bsafusion.config import ModelConfig, TrainConfig
from bsafusion.errors import ConfigError, InputError
from bsafusion.infer import Fuser
from bsafusion.model import BSAFusion
from bsafusion.train import export_weights, load_checkpoint, train
from bsafusion.weights import weights_info


def test_tiny_run_end_to_end(tiny_config, tmp_path):
    result = train(tiny_config, device="cpu", progress=False)
    run = tmp_path / "run"
    assert result.epoch == 4 and {"best.pt", "last.pt", "log.csv", "config.json"} <= {
        p.name for p in run.iterdir()}
    saved = json.loads((run / "config.json").read_text())
    assert saved["image_size"] == 32 and saved["model"] == tiny_config.model.to_dict()
    with open(run / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    for key in ("train_total", "train_reg", "train_fus", "train_epe", "p", "lr"):
        assert all(math.isfinite(float(r[key])) for r in rows)
    assert rows[1]["val_epe_mean"] and rows[1]["val_folding_pct"] and not rows[0]["val_ssim"]
    assert float(rows[-1]["lr"]) == pytest.approx(1e-6)  # cosine down to lr * 1e-2
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 4 and state["train_config"]["image_size"] == 32
    # the discriminator was refreshed from the classifier at the last epoch end
    model = state["model"]
    for key, value in model.items():
        if key.startswith("discriminator."):
            twin = "classifier.stack." + key.removeprefix("discriminator.")
            torch.testing.assert_close(value, model[twin], rtol=0, atol=0)
    # a second run in the same folder must be asked to resume
    with pytest.raises(InputError, match="--resume"):
        train(tiny_config, device="cpu", progress=False)


def test_resume_is_bit_exact(tiny_config, tmp_path):
    full = dataclasses.replace(tiny_config, out_dir=str(tmp_path / "full"))
    train(full, device="cpu", progress=False)
    part = dataclasses.replace(tiny_config, out_dir=str(tmp_path / "part"), stop_after=1)
    assert train(part, device="cpu", progress=False).epoch == 1
    assert train(part, resume=True, device="cpu", progress=False).epoch == 2  # 1 more
    resumed = dataclasses.replace(part, stop_after=None)
    assert train(resumed, resume=True, device="cpu", progress=False).epoch == 4
    a, b = load_checkpoint(tmp_path / "full/last.pt"), load_checkpoint(tmp_path / "part/last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["p"] == b["p"] and a["epoch"] == b["epoch"] == 4

    def untimed(history):
        return [{k: v for k, v in row.items() if k not in ("pairs_per_s", "seconds")}
                for row in history]
    assert untimed(a["history"]) == untimed(b["history"])
    assert torch.equal(a["rng"]["generator"], b["rng"]["generator"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])


def test_time_budget_fits_the_schedule(tiny_config, tmp_path):
    budget = 8.0
    config = dataclasses.replace(tiny_config, num_epochs=100_000, val_every=5,
                                 checkpoint_every=0, time_budget_s=budget)
    start = time.perf_counter()
    result = train(config, device="cpu", progress=False)
    elapsed = time.perf_counter() - start
    saved = json.loads((tmp_path / "run/config.json").read_text())
    assert saved["budget_fitted"] and 4 < saved["num_epochs"] == result.epoch < 100_000
    assert elapsed < 3 * budget  # fitted from measured costs (loose: a shared CI box)
    state = load_checkpoint(tmp_path / "run/last.pt")
    assert state["history"][-1]["lr"] == pytest.approx(config.lr * config.lr_min_ratio)
    assert "val_epe_mean" in state["history"][-1]  # the last epoch is validated
    # a resumed run keeps the fitted length: nothing is left to do
    assert train(config, resume=True, device="cpu", progress=False).epoch == result.epoch


def test_export_loads_strictly_and_matches(tiny_config, tmp_path):
    train(dataclasses.replace(tiny_config, num_epochs=2), device="cpu", progress=False)
    out = tmp_path / "w.safetensors"
    path, _, epoch = export_weights(tmp_path / "run", out)
    assert path.name == "best.pt" and epoch == 2
    loaded = BSAFusion.from_pretrained(out)
    state = load_checkpoint(path)
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state["model"][key], rtol=0, atol=0)
    half = tmp_path / "w16.safetensors"
    export_weights(tmp_path / "run", half, fp16=True, which="last")
    assert half.stat().st_size < 0.6 * out.stat().st_size
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = loaded(x, x), BSAFusion.from_pretrained(half)(x, x)
    torch.testing.assert_close(b.fused, a.fused, rtol=0, atol=5e-3)
    with pytest.raises(InputError, match="overwrite"):
        export_weights(tmp_path / "run", out)
    # the weights record the size they were trained at; the Fuser runs there by default
    assert weights_info(out).work_size == 32
    assert Fuser.from_pretrained(out).work_size == 32
    assert Fuser.from_pretrained(out, work_size=64).work_size == 64


TINY_JSON = json.dumps({"embed_dim": 32, "num_heads": 2, "reg_channels": [32, 16, 16, 8, 8],
                        "fusion_channels": [8, 8, 8, 4]})


def _cli(*args, block: Path | None = None):
    """Run ``python -m bsafusion``; with ``block``, a folder whose fake ``kornia`` raises."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if block is not None:
        (block / "kornia").mkdir(parents=True)
        (block / "kornia" / "__init__.py").write_text("raise ImportError('kornia blocked')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(block), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "bsafusion", *map(str, args)],
                          capture_output=True, text=True, env=env)


def test_cli_train_export_and_errors(aanlib_dir, tmp_path, capsys):
    from bsafusion.cli import main

    run = tmp_path / "run"
    common = ("--pair", "ct", "--data", aanlib_dir, "--out", run, "--image-size", "32",
              "--max-train-pairs", "4", "--batch-size", "4", "--val-every", "1",
              "--model-config", TINY_JSON, "--no-progress", "--device", "cpu")
    # the real entry point, where kornia cannot be imported (the GPU box has none)
    proc = _cli("train", *common, "--num-epochs", "2", "--stop-after", "1",
                block=tmp_path / "blocked")
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1" in proc.stdout
    args = [str(a) for a in common]
    assert main(["train", *args, "--num-epochs", "2"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", *args, "--num-epochs", "2", "--resume"]) == 0
    assert "epoch 2" in capsys.readouterr().out
    assert main(["export", str(run), str(tmp_path / "w.safetensors"), "--fp16"]) == 0
    assert BSAFusion.from_pretrained(tmp_path / "w.safetensors").config.embed_dim == 32
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "x.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("bsafusion: error:")
    bad_data = ["--pair", "ct", "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    assert main(["train", *bad_data]) == 2
    assert "MRI/" in capsys.readouterr().err


def test_cli_train_interrupted_says_how_to_resume(aanlib_dir, tmp_path):
    # what `timeout --signal=INT` does to scripts/gpu_train.sh's run at the end of its budget
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "bsafusion", "train", "--pair", "ct", "--data", str(aanlib_dir),
           "--out", str(run), "--image-size", "32", "--max-train-pairs", "4", "--batch-size",
           "4", "--num-epochs", "100000", "--val-every", "1", "--model-config", TINY_JSON,
           "--no-progress", "--device", "cpu"]
    # SIGINT at its default disposition: a shell's background job (CI's or ours) starts with it
    # ignored, which the child would inherit and keep
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (run / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint's rename finish and the next epoch start
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith("bsafusion:")]
    assert len(said) == 1 and "interrupted" in said[0] and "--resume" in said[0], err[-2000:]
    assert "Traceback" not in err
    assert load_checkpoint(run / "last.pt")["epoch"] >= 1


def test_curriculum_probability_falls_linearly_to_zero():
    cfg = TrainConfig(synth_fixed_epochs=4, synth_fixed_start=0.8)
    assert [cfg.synth_fixed_probability(e) for e in range(6)] == pytest.approx(
        [0.8, 0.6, 0.4, 0.2, 0.0, 0.0])
    assert TrainConfig().synth_fixed_probability(0) == 0.0
    with pytest.raises(ConfigError, match="synth_fixed_start"):
        TrainConfig(synth_fixed_start=1.5)


def test_fast_recipe_levers_run_and_log(tiny_config, tmp_path):
    """Registration-first epochs skip fusion; the curriculum, warm-up and EPE term run;
    validation logs edge EPE, flow magnitude and the identity's NCC."""
    config = dataclasses.replace(
        tiny_config, num_epochs=3, val_every=1, epe_weight=0.25, reg_first_epochs=2,
        synth_fixed_epochs=2, warmup_epochs=1,
        model=ModelConfig(**{**tiny_config.model.to_dict(), "reg_pyramid": "joint"}))
    train(config, device="cpu", progress=False)
    with open(Path(config.out_dir) / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["train_fus"]) for r in rows[:2]] == [0.0, 0.0]
    assert float(rows[2]["train_fus"]) > 0
    for key in ("val_epe_edge", "val_flow_mag", "val_ncc_identity", "val_epe_edge_identity",
                "val_epe_head", "val_epe_head_identity"):
        assert all(math.isfinite(float(r[key])) for r in rows)
