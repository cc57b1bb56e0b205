#!/usr/bin/env bash
# One device call: train several pairs at once on one GPU, then benchmark, then pack.
#
#   BUDGET_S=420 scripts/gpu_all.sh ct pet spect
#   ARGS_ct_a='--lr 1e-4' ARGS_ct_b='--lr 3e-4' scripts/gpu_all.sh ct_a=ct ct_b=ct
#
# Starts scripts/gpu_train.sh for each PAIR (or NAME=PAIR: several runs of one pair)
# concurrently (each fits its schedule to the same BUDGET_S; extra train options for all in
# $TRAIN_ARGS and for run NAME in $ARGS_<NAME>, split on spaces; logs in
# .cache/out/train-<name>.log), waits,
# packs .cache/out/ (weights, config, logs, curves) into $OUT as out.tgz.part-aa, -ab, ... of
# at most 15 MiB each (the device tool returns files of up to 16 MiB; reassemble with
# `cat out.tgz.part-* | tar xz`), then writes the GPU benchmarks to $OUT (skip with BENCH=0).
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: scripts/gpu_all.sh PAIR [PAIR...]" >&2; exit 2; }
export PYTHONPATH=src PYTHONUNBUFFERED=1
work=.cache/out
mkdir -p "$work"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$work/gpu.txt" 2>&1
python -c "import torch; print('torch', torch.__version__)" >> "$work/gpu.txt" 2>&1
pids=()
for spec in "$@"; do
  name=${spec%%=*} pair=${spec#*=}
  own="ARGS_$name"
  RUN=$name OUT="$work/$name" bash scripts/gpu_train.sh "$pair" ${TRAIN_ARGS:-} ${!own:-} \
    > "$work/train-$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || echo "a training process exited with $?" >&2; done
for log in "$work"/*/log.csv; do  # the first and last validated epochs of each run
  echo "== $log"; head -1 "$log"; grep -v ',,*$' "$log" | sed -n '2p;$p'
done
# the runs come back first, even if the benchmarks below run out of time
tar czf - "$work" | split -b 15M - "${OUT:?}/out.tgz.part-"
if [ "${BENCH:-1}" = 1 ]; then
  timeout 100 python benchmarks/inference.py --device cuda --amp --batches 1 256 \
    --sizes 256 > "$OUT/bench-inference-cuda-256.txt" 2>&1
  timeout 50 python benchmarks/inference.py --device cuda --amp --batches 1 16 \
    --sizes 512 > "$OUT/bench-inference-cuda-512.txt" 2>&1
  timeout 50 python benchmarks/train_throughput.py --device cuda --batch-sizes 32 64 \
    --steps 10 --warmup 3 > "$OUT/bench-train-cuda.txt" 2>&1
fi
ls -la "$OUT"
