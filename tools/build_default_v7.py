"""Build the v7 model files: v6 (``sweepnet_real_vote`` in the analytic fusion with the
relative-blur plane sweep, tools/build_default_v6.py) with the plane sweep run at half the
working resolution (``SweepNetPhysics(physics_scale=0.5)``: frames area-resized, pixel pitch
doubled, inverse depth, confidence and all-in-focus image upsampled bilinearly;
``models/hybrid.physics_at_scale``).

Why: the plane sweep is most of the default model's time per frame (results/default_selection/
v6_physics_cost.txt), and on the four validation sets half resolution scores the same mean
AbsRel as full resolution with the same vote (0.251 vs 0.251, mean δ<1.25 0.676 vs 0.679;
results/default_selection/v7_validation.txt). No weights change; the vote is v6's.

  python tools/build_default_v7.py --out src/focaldepth/weights/sweepnet_default_v7.pt \
      --temporal-out src/focaldepth/weights/sweepnet_temporal_v7.pt \
      --validation results/temporal/sweepnet_temporal_v7_cpu_val_v2.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from focaldepth import models
from focaldepth.predict import shipped_weights_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_default_v6 import FUSION, build, build_temporal  # noqa: E402

PHYSICS_SCALE = 0.5  # chosen on validation (results/default_selection/v7_validation.txt)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--temporal-out", help="also write SweepNet-T over v7 here")
    parser.add_argument("--validation", nargs="*", default=[],
                        help="tools/eval_temporal.py JSONs to record in the temporal card")
    args = parser.parse_args()
    v6, vote = build()
    model = models.create("sweepnet_physics", **{**dict(v6.arch_kwargs), "physics_scale": PHYSICS_SCALE})
    model.load_state_dict(v6.state_dict(), strict=True)
    shipped_v6 = models.read_checkpoint(str(shipped_weights_path("sweepnet_default_v6")))
    v6_card = shipped_v6["extra"]["model_card"]
    card = {
        **v6_card,
        "name": "sweepnet_default_v7",
        "what": "sweepnet_default_v6 with its relative-blur plane sweep at half the working resolution "
                f"(physics_scale {PHYSICS_SCALE}); same vote, same fusion ({FUSION})",
        "physics_scale": PHYSICS_SCALE,
        "cpu_hours": {**v6_card.get("cpu_hours", {}),
                      "physics-scale choice (half-resolution caches of 4 validation sets, 1 thread)": 0.1},
        "chosen_on": "mean AbsRel / δ<1.25 over DFD pairs[3::6], data/rgbd_val, data/cpu_val_v2, "
                     "data/cpu_val_blender: 0.251 / 0.676 against v6's 0.251 / 0.679 at about half the "
                     "time per frame (results/default_selection/v7_validation.txt); test sets never consulted",
    }
    models.save(model, args.out, model_card=card, vote_extra=vote.get("extra", {}))
    print(f"wrote {args.out}")
    if args.temporal_out:
        temporal, _ = build_temporal(model)
        shipped_t6 = models.read_checkpoint(str(shipped_weights_path("sweepnet_temporal_v6")))
        t6_card = shipped_t6["extra"]["model_card"]
        temporal_card = {
            **t6_card,
            "name": "sweepnet_temporal_v7",
            "model": "SweepNet-T (models/temporal.py) with sweepnet_default_v7 as the per-window observer "
                     "(v6 with the plane sweep at half resolution); the shipped cell, unchanged",
            "cpu_hours": round(float(t6_card.get("cpu_hours") or 0.0) + 0.1, 3),
            "observer": card,
            "how_chosen": "no new training: v7 and the shipped cell; physics scale chosen per window on "
                          "validation (v7_validation.txt)",
            "validation": {Path(f).stem: json.loads(Path(f).read_text()).get("summary") for f in args.validation},
        }
        models.save(temporal, args.temporal_out, model_card=temporal_card)
        print(f"wrote {args.temporal_out}")


if __name__ == "__main__":
    main()
