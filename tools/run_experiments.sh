#!/usr/bin/env bash
# Issue 5's experiments at the CPU budget, end to end: data, training, evaluation, tables.
#
#   tools/run_experiments.sh            # everything (resumes whatever was already done)
#   JOBS=1 tools/run_experiments.sh     # one training at a time (default 2: one per core)
#   tools/run_experiments.sh poolnet_cpu ablation_loss_l1_cpu   # only these experiments
#   JOBS=1 tools/run_experiments.sh poolnet_cpu_seed1 poolnet_cpu_seed2 sweepnet_cpu_seed1 \
#     sweepnet_cpu_seed2                 # only the seed repeats (SEEDS below)
#
# Every step is resumable: generation skips finished sequences, `train --resume` continues
# from runs/NAME/checkpoints/last.ckpt (a finished run only re-exports its summary), and an
# evaluation is redone only when its checkpoint is newer than its metrics.json. The exact
# commands are printed as they run. Outputs: runs/NAME (checkpoints, logs; not committed),
# results/NAME (metrics.json, per_sequence.csv, metrics.md, plots, and train/ with the run's
# config.yaml, summary.json, loss_curves.png and CSV logs: committed), results/tables.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-2}
FD="$PY -m focaldepth.cli"
export OMP_NUM_THREADS=1  # the CPU configs train with torch_threads: 1; JOBS runs share the cores

ARCHITECTURES="ddffnet_cpu lstm_ddff_cpu recurrent_ae_small_cpu recurrent_ae_small_large_cpu poolnet_cpu
  sweepnet_cpu"
ABLATIONS="ablation_coc_decoder_cpu ablation_no_focus_channel_cpu ablation_frames2_cpu
  ablation_frames3_cpu ablation_frames5_cpu ablation_loss_l1_cpu ablation_loss_silog_cpu
  ablation_loss_gradient_cpu ablation_unmasked_cpu ablation_static_only_cpu"
# Seed repeats of PoolNet and SweepNet (seed 0 = poolnet_cpu / sweepnet_cpu): the
# seed_repeats table reports mean ± std over seeds 0-2, so differences can be told from noise.
SEEDS="poolnet_cpu_seed1 poolnet_cpu_seed2 sweepnet_cpu_seed1 sweepnet_cpu_seed2"
EXPERIMENTS=${*:-$ARCHITECTURES $ABLATIONS $SEEDS}

run() { echo "+ $*" >&2; "$@"; }

# 1. data (CPU budget: 128x128; see configs/data/cpu_*.yaml)
for name in cpu_train_small cpu_train_small_large cpu_val cpu_test; do
  run $FD generate --config "configs/data/$name.yaml" --out "data/$name" --workers 2 --quiet
done

# 2. training, JOBS at a time
train_one() {
  set -euo pipefail
  name=$1
  echo "+ $FD train --config configs/train/$name.yaml --out runs/$name --resume" >&2
  $FD train --config "configs/train/$name.yaml" --out "runs/$name" --resume \
    --set trainer.enable_progress_bar=false > "runs/$name.log" 2>&1 \
    || { echo "training $name failed: see runs/$name.log" >&2; return 1; }
}
export -f train_one
export FD
mkdir -p runs
printf '%s\n' $EXPERIMENTS | xargs -P "$JOBS" -I{} bash -c 'train_one {}'

# 3. evaluation on the held-out test set (full 128x128 frames, the best checkpoint on val)
evaluate_one() {
  name=$1 checkpoint=$2
  if [ -f "results/$name/metrics.json" ] && [ "results/$name/metrics.json" -nt "$checkpoint" ]; then
    return 0
  fi
  run $FD evaluate --checkpoint "$checkpoint" --data data/cpu_test --out "results/$name"
}
for name in $EXPERIMENTS; do
  evaluate_one "$name" "runs/$name/checkpoints/best.pt"
  mkdir -p "results/$name/train"
  cp "runs/$name/config.yaml" "runs/$name/summary.json" "runs/$name/loss_curves.png" \
    "results/$name/train/"
  for log in runs/"$name"/logs/csv/version_*/metrics.csv; do
    cp "$log" "results/$name/train/metrics_$(basename "$(dirname "$log")").csv"
  done
done
if [ ! -f results/classical/metrics.json ]; then
  run $FD evaluate --checkpoint classical --data data/cpu_test --out results/classical
fi

# 4. tables (no number typed by hand)
run $FD tables --spec configs/tables.yaml --out results/tables.md
