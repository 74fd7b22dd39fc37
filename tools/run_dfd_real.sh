#!/usr/bin/env bash
# The DFD real-photo models of docs/dfd_real.md, one after another, one thread each, into
# runs/dfd_real/NAME (resumable: a finished run is skipped, a killed one continues from
# last.ckpt): for each input (f/2.8, f/8, f/8 + f/2.8) synthetic pre-training then fine-tuning
# on the real DFD train scenes. Then:
#   .venv/bin/python tools/ship_dfd_real.py      # weights + model cards into src/focaldepth/weights
#   .venv/bin/python tools/dfd_real_table.py     # results/dfd_real/table.md on the DFD test scenes
#
#   tools/run_dfd_real.sh                 # everything (renders data/dfd_synth first if missing)
#   tools/run_dfd_real.sh wide pair       # only these inputs
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
[ -f data/dfd_synth/pairs.csv ] || $PY tools/render_dfd_synthetic.py --out data/dfd_synth
MODES="wide pair sharp"
[ $# -gt 0 ] && MODES="$*"
for mode in $MODES; do
  for stage in dfd_real_${mode}_pretrain dfd_real_${mode}; do
    out=runs/dfd_real/$stage
    if [ -f "$out/summary.json" ]; then echo "== $stage: done"; continue; fi
    echo "== $stage ($(date +%T))"
    $PY -m focaldepth.cli train --config "configs/train/$stage.yaml" --out "$out" --resume
  done
done
