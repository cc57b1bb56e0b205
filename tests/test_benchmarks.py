"""The benchmark scripts run end to end (tiny sizes on CPU), so a GPU session finds them working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_gpu_paths_script_times_every_path():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_paths import PATHS
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    stdout = _run("benchmarks/gpu_paths.py", "--device", "cpu", "--size", "32", "--batches",
                  "1", "--repeats", "1", "--warmup", "0")
    rows = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert "failed" not in stdout, stdout
    timed = {row.split(" | ")[0][2:] for row in rows[1:]}
    assert timed == {name for name, spec in PATHS.items() if not spec.get("compile")}


def test_inference_script_prints_the_side_by_side_table():
    stdout = _run("benchmarks/inference.py", "--sizes", "32", "--batches", "1", "--repeats", "1",
                  "--warmup", "0", "--no-tuned")
    row = next(line for line in stdout.splitlines() if line.startswith("| 1 | 32²"))
    assert "MISMATCH" not in row and row.count("x |") == 1, stdout
    assert "peak RSS, one 32² pair" in stdout
