"""The benchmark scripts run end to end (tiny sizes on CPU), so a GPU session finds them working."""

from __future__ import annotations

import importlib.util
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
    """Every CPU path at 32², the ONNX export included where its runtimes are installed
    (onnx + onnxruntime are in the ``test`` extra; openvino is optional)."""
    paths = ["authors", "eager", "fast", "int8"]
    for path in ("onnxruntime", "openvino"):
        if importlib.util.find_spec(path) and importlib.util.find_spec("onnx"):
            paths.append(path)
    common = ("benchmarks/inference.py", "--sizes", "32", "--batches", "1", "--repeats", "1",
              "--warmup", "0", "--no-tuned")
    stdout = _run(*common, "--no-memory", "--paths", *paths)
    rows = {line.split(" | ")[2]: line for line in stdout.splitlines()
            if line.startswith("| 1 | 32²")}
    assert set(rows) == set(paths), stdout
    assert "failed" not in stdout and rows["authors"].count("1.00x") == 1, stdout
    assert rows["fast"].endswith("| met |"), rows["fast"]  # exact rewrite: within the bounds
    stdout = _run(*common, "--paths", "fast")
    assert "peak RSS, one 32² pair (fresh process): fast" in stdout, stdout
