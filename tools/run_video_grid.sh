#!/usr/bin/env bash
# The video depth grid of results/video_depth.md (issue 11, part 2): every configs/train/video_*.yaml
# cell trained one after another, one thread each, into runs/video/NAME (resumable: a finished run
# is skipped, a killed one continues from last.ckpt). Then `python tools/video_table.py` scores the
# runs and writes the table.
#
#   tools/run_video_grid.sh                      # the whole grid, in the order below
#   tools/run_video_grid.sh video_vd_sup         # only these cells
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
# Priority order: the defocus comparison per loss (the costly defocus-reconstruction cells
# last), seed repeats. The seed models run as a second queue beside it when the grid is late:
#   tools/run_video_grid.sh video_rae_sup video_lstm_sup video_rae_temporal video_lstm_temporal
CELLS="video_vd_sup video_vdd_sup video_vd_temporal video_vdd_temporal video_vd_geometry
  video_vdd_geometry video_vd_photometric video_vdd_photometric video_vd_sup_seed1
  video_vdd_sup_seed1 video_vd_defocus video_vdd_defocus video_vd_sup_seed2 video_vdd_sup_seed2
  video_rae_sup video_lstm_sup video_rae_temporal video_lstm_temporal"
[ $# -gt 0 ] && CELLS="$*"
for name in $CELLS; do
  out=runs/video/$name
  if [ -f "$out/summary.json" ]; then echo "== $name: done"; continue; fi
  echo "== $name ($(date +%T))"
  $PY -m focaldepth.cli train --config "configs/train/$name.yaml" --out "$out" --resume
done
