#!/usr/bin/env bash
# One command for a real training run on a lent GPU box (see README, "Training").
#
#   scripts/gpu_train.sh PAIR [extra `bsafusion train` options...]
#
# Runs from the repository root with no install (PYTHONPATH=src), reads the data from
# .cache/aanlib/<PAIR>-MRI/ (copy it there and `carry` .cache/aanlib), trains into
# .cache/runs/<pair>/ for at most $BUDGET_S seconds (default 480, under the tool's 10-minute
# limit), resuming bit-exactly if a run is already there, then exports fp16 inference weights
# (best on val if validated, else last; WHICH=last forces the last) and copies them with
# config.json, log.csv and loss.png to $OUT (default: the run folder's out/). A fresh run
# fits its cosine schedule into BUDGET_S - FIT_MARGIN_S seconds (default margin 60 s for
# start-up and export) unless --time-budget is given; call the script again on the same warm
# machine to continue a run.
set -euo pipefail
pair=${1:?usage: scripts/gpu_train.sh ct|pet|spect [train options...]}
shift
run=.cache/runs/${RUN:-$pair}  # RUN names the run folder (e.g. two variants of one pair)
out=${OUT:-$run/out}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
budget=${BUDGET_S:-480}
start=(--time-budget "$((budget - ${FIT_MARGIN_S:-60}))")  # a fresh run fits its schedule
[ -f "$run/last.pt" ] && start=(--resume)  # a resumed run keeps its stored one
status=0
timeout --signal=INT "$budget" python -m bsafusion train --pair "$pair" \
  --data "${DATA:-.cache/aanlib}" --out "$run" --no-progress "${start[@]}" "$@" || status=$?
echo "train exit status: $status (124 = stopped by the time budget; resume with the same command)"
[ -f "$run/last.pt" ] || { echo "no checkpoint written yet" >&2; exit 1; }
which=${WHICH:-}
if [ -z "$which" ]; then which=last; [ -f "$run/best.pt" ] && which=best; fi
python -m bsafusion export "$run" "$out/$pair.safetensors" --fp16 --which "$which" --overwrite
for f in config.json log.csv loss.png; do
  if [ -f "$run/$f" ]; then cp "$run/$f" "$out/"; fi
done
ls -la "$out"
