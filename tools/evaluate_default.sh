#!/usr/bin/env bash
# The default model's accuracy tables (README "Accuracy"): the shipped model, the earlier
# defaults (sweepnet_default_v2, sweepnet_default_v1) and the classical baseline on every held-out test set, through
# the same flow alignment as `focaldepth predict` (--align). Resumable: an evaluation is skipped
# when its metrics.json exists. Then `focaldepth tables` builds results/tables_default.md.
#
#   tools/evaluate_default.sh                      # all methods
#   tools/evaluate_default.sh classical            # only these methods
#
# Test sets (focaldepth generate --config configs/data/NAME.yaml --out data/NAME):
#   cpu_test (5-frame ramps), cpu_test_v2 (10-frame ramps; photos, sweeps not bracketing the
#   scene), cpu_test_blender (Cycles, 5 frames), cpu_test_blender_v2 (Cycles, 8 frames; needs bpy).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
METHODS=${*:-sweepnet_default sweepnet_default_v4 sweepnet_default_v2 sweepnet_default_v1 classical}
SETS="cpu_test:5 cpu_test_v2:10 cpu_test_blender:5 cpu_test_blender_v2:8"
for method in $METHODS; do
  for entry in $SETS; do
    set_name=${entry%%:*} frames=${entry##*:}
    out=results/default/${method}_${set_name}_${frames}f
    [ -f "$out/metrics.json" ] && continue
    if [ ! -f "data/$set_name/manifest.jsonl" ]; then
      echo "skipping $out: data/$set_name not generated" >&2; continue
    fi
    echo "+ evaluate --checkpoint $method --data data/$set_name --num-frames $frames --align --out $out" >&2
    $PY -m focaldepth.cli evaluate --checkpoint "$method" --data "data/$set_name" --out "$out" \
      --num-frames "$frames" --align --quiet
  done
done
$PY -m focaldepth.cli tables --spec configs/tables_default.yaml --out results/tables_default.md
