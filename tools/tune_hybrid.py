"""Choose the fusion numbers of ``sweepnet_physics`` on validation data only.

SweepNet's vote (the shipped v3 weights) and the physics plane sweep run once per validation
stack; every fusion setting of a small grid is then scored on the cached outputs (AbsRel, δ1,
AbsRel inside the swept range and beyond it, up to twice the farthest focus).

  OMP_NUM_THREADS=1 python tools/tune_hybrid.py dfd:6:3 data/cpu_val_v2:10:2 > results/default_selection/v4_fusion.txt

Session 4 (v6): ``--vote NAME`` fuses another vote (``sweepnet_real_vote``), ``--inside``
adds the grid of ``physics_inside_weight`` (the physics' weight inside the sweep):

  OMP_NUM_THREADS=1 python tools/tune_hybrid.py --vote sweepnet_real_vote --weights 1,2,4 \
      --powers 1 --inside 0,0.25,0.5,1 dfd:6:3 data/cpu_val_v2:10:2 data/cpu_val_blender:5:1
"""
from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
import torch

sys.path.insert(0, "tools")
from validation_sets import scores_inside_beyond as scores  # noqa: E402
from validation_sets import stacks  # noqa: E402

from focaldepth.defocus_volume import defocus_volume_depth  # noqa: E402
from focaldepth.models.hybrid import SweepNetPhysics  # noqa: E402
from focaldepth.predict import load_model  # noqa: E402

WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
POWERS = (0.5, 1.0, 2.0)


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def main(specs: list[str], vote_name: str = "sweepnet_default", weights=WEIGHTS, powers=POWERS,
         insides=(1.0,)) -> None:
    torch.set_num_threads(1)
    net = load_model(vote_name).eval()
    classical = load_model("classical")
    for spec in specs:
        cached = []
        rows: dict = {}
        for stack in stacks(spec):
            frames, focus, camera = stack[:3]
            with torch.no_grad():
                vote = net(frames, focus, camera)
                physics = defocus_volume_depth(frames, focus, camera, smooth=False)
                physics_smooth = defocus_volume_depth(frames, focus, camera)
                rows.setdefault("classical", []).append(scores(classical(frames, focus, camera)["depth_m"], stack))
            rows.setdefault(f"{vote_name} (vote)", []).append(scores(vote["depth_m"], stack))
            rows.setdefault("physics alone", []).append(scores(physics_smooth["depth_m"], stack))
            cached.append((stack, vote, physics))
        for weight, power, inside in itertools.product(weights, powers, insides):
            if weight == 0.0 and (power != 1.0 or inside != 1.0):
                continue
            model = SweepNetPhysics(physics_weight=weight, physics_power=power, physics_inside_weight=inside)
            name = f"fused w={weight:g} p={power:g} in={inside:g}"
            for stack, vote, physics in cached:
                with torch.no_grad():
                    rows.setdefault(name, []).append(scores(model.combine(*stack[:3], vote, physics)["depth_m"], stack))
        print(f"{spec} ({len(cached)} stacks)")
        for name, r in rows.items():
            r = np.array(r)
            with np.errstate(all="ignore"):
                print(f"  {name:32s} AbsRel {r[:, 0].mean():.3f} d1 {r[:, 1].mean():.3f} "
                      f"inside {np.nanmean(r[:, 2]):.3f} beyond {np.nanmean(r[:, 3]):.3f} "
                      f"(n {np.isfinite(r[:, 3]).sum()})", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("specs", nargs="+", help="validation sets (tools/validation_sets.py)")
    parser.add_argument("--vote", default="sweepnet_default", help="the vote's model name or file")
    parser.add_argument("--weights", type=floats, default=WEIGHTS)
    parser.add_argument("--powers", type=floats, default=POWERS)
    parser.add_argument("--inside", type=floats, default=(1.0,), help="physics_inside_weight values")
    args = parser.parse_args()
    main(args.specs, args.vote, args.weights, args.powers, args.inside)
