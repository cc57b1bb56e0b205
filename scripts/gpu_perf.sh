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
timeout "${TEST_S:-45}" python -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  > "$out/test-cuda.txt" 2>&1  # the device image has pytest (2026-11-26)
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
