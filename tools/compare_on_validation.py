"""Model selection on validation data only (never the test sets): mean AbsRel / RMSE / δ<1.25 of
each model on every k-th sequence of a generated validation folder and on DFD indoor scenes that
the committed DFD table does not use (``dfd:6:3`` = pairs[3::6]; see tools/validation_sets.py).
How v3 was chosen over v2 (v2 was named sweepnet_default at the time):

  OMP_NUM_THREADS=1 python tools/compare_on_validation.py sweepnet_default_v2,runs/sweepnet_v3/checkpoints/best.pt,classical \\
      dfd:6:3 data/cpu_val_v2:10:2 > results/default_selection/v2_vs_v3.txt
  OMP_NUM_THREADS=1 python tools/compare_on_validation.py sweepnet_default_v2,runs/sweepnet_v3/checkpoints/best.pt \\
      data/cpu_val:5:2 >> results/default_selection/v2_vs_v3.txt
"""

from __future__ import annotations

import sys

import torch

from focaldepth.predict import load_model
from validation_sets import report, score, stacks


def main(model_specs: str, set_specs: list[str]) -> None:
    torch.set_num_threads(1)
    models = {spec: load_model(spec).eval() for spec in model_specs.split(",")}
    for set_spec in set_specs:
        results: dict[str, list] = {}
        for stack in stacks(set_spec):
            for name, model in models.items():
                with torch.no_grad():
                    score(results, name, model(*stack[:3])["depth_m"], stack)
        report(set_spec, results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
