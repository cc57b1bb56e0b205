#!/usr/bin/env bash
# One device call for the GPU side of issue 9 (performance), results under $OUT:
#   gpu.txt                        the card, driver and torch
#   test-cuda.txt                  tests/test_cuda.py on the GPU (CUDA graph replay)
#   gpu-paths.txt                  benchmarks/gpu_paths.py: the GPU paths side by side at
#                                  batch 1 and 256, and the top kernels of one path
#   bench-inference-cuda-256.txt   benchmarks/inference.py: eager fp32 vs Fuser's default
#   gpu-paths-compile.txt          the torch.compile path at batch 256 (minutes to compile)
#
#   scripts/gpu_perf.sh            (at most ~9.5 minutes; step limits below; on 2026-11-26
#                                  compiling at batch 256 took over 180 s)
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
out=${OUT:?set OUT to the folder that comes back}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
python -c "import torch; print('torch', torch.__version__)" >> "$out/gpu.txt" 2>&1
if python -c "import pytest" 2>/dev/null; then
  timeout "${TEST_S:-45}" python -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    > "$out/test-cuda.txt" 2>&1
else  # no pytest on the box: call the GPU tests directly
  timeout "${TEST_S:-45}" python - > "$out/test-cuda.txt" 2>&1 <<'PY'
import sys; sys.path.insert(0, "tests")
import test_cuda as t
for amp in (False, True):
    t.test_graph_replay_matches_direct_calls_and_does_not_alias(amp); print("ok graph amp", amp)
t.test_graph_wrapper_skips_batches_above_its_limit(); print("ok max_batch")
PY
fi
echo "test-cuda exit $?" >> "$out/test-cuda.txt"
timeout "${PATHS_S:-150}" python benchmarks/gpu_paths.py --batches 1 256 --size 256 \
  --profile "fast bf16-autocast channels-last padded" > "$out/gpu-paths.txt" 2>&1
echo "gpu_paths exit $?" >> "$out/gpu-paths.txt"
timeout "${BENCH_S:-80}" python benchmarks/inference.py --device cuda --amp --batches 1 256 \
  --sizes 256 > "$out/bench-inference-cuda-256.txt" 2>&1
echo "inference exit $?" >> "$out/bench-inference-cuda-256.txt"
timeout "${COMPILE_S:-280}" python benchmarks/gpu_paths.py --batches 256 --size 256 --compile \
  --paths "eager fp32" "fast bf16-autocast channels-last padded compile" \
  > "$out/gpu-paths-compile.txt" 2>&1
echo "compile exit $?" >> "$out/gpu-paths-compile.txt"
ls -la "$out"
