"""Does SweepNet's extrapolation head help? Scores one checkpoint trained with the head
(runs/sweepnet_v2_stage1/checkpoints/last.pt) as trained, with a higher floor behind the farthest
focus (the head may reach at most 1/floor times the farthest focus distance), and with the head
switched off (zeroed: the pure focus-distance vote), on every third sequence of the held-out
test sets and on 7 DFD indoor scenes (every 12th; see tools/validation_sets.py).

  OMP_NUM_THREADS=1 python tools/ablate_extrapolation.py runs/sweepnet_v2_stage1/checkpoints/last.pt \\
      data/cpu_test_blender:5 dfd:12:0 data/cpu_test_v2:10 data/cpu_test:5 > results/extrapolation_head/output.txt
"""

from __future__ import annotations

import copy
import sys

import torch

from focaldepth.models import sweepnet
from focaldepth.predict import load_model
from validation_sets import report, score, stacks


def head_off(model: torch.nn.Module) -> torch.nn.Module:
    model = copy.deepcopy(model)
    torch.nn.init.zeros_(model.offset_head.weight)
    torch.nn.init.zeros_(model.offset_head.bias)
    return model


def main(checkpoint: str, set_specs: list[str]) -> None:
    torch.set_num_threads(1)
    trained = load_model(checkpoint).eval()
    # name -> (model, fraction of the farthest focus's inverse depth below which it never goes)
    variants = {"as_trained": (trained, 0.25), "floor0.5": (trained, 0.5), "floor0.8": (trained, 0.8),
                "head_off": (head_off(trained), 0.25)}
    for set_spec in set_specs:
        results: dict[str, list] = {}
        for stack in stacks(set_spec):
            for name, (model, floor) in variants.items():
                sweepnet.FARTHEST_FRACTION = floor
                with torch.no_grad():
                    score(results, name, model(*stack[:3])["depth_m"], stack)
        report(set_spec.replace(":12:0", ""), results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
