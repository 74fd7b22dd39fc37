"""Build a v5 candidate model file: v4's fusion (the physics plane sweep and the vote, equal
weights in inverse depth, confidence-weighted guided smoothing) around a new vote, SweepNet
continued on sweeps rendered from real RGB-D (configs/train/sweepnet_v5.yaml), plus its card.

The fusion is v4's exactly (its zero-initialised head: weight 1/2, no correction), so v4 vs
v5 isolates what the real-data training of the vote changed.

  python tools/build_default_v5.py --vote runs/sweepnet_v5/checkpoints/last.pt \
      --run runs/sweepnet_v5 --out src/focaldepth/weights/sweepnet_default_v5.pt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from focaldepth import models
from focaldepth.models import read_checkpoint
from focaldepth.predict import shipped_weights_path


def cpu_hours(run_dir: Path) -> float | None:
    summary = run_dir / "summary.json"
    if not summary.is_file():
        return None
    return round(json.loads(summary.read_text()).get("wall_time_s", 0.0) / 3600, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vote", required=True, help="model file of the new vote (a run's checkpoints/*.pt)")
    parser.add_argument("--run", type=Path, help="its run folder (summary.json: wall time)")
    parser.add_argument("--hours", type=float, help="training wall hours, if the run has no summary.json")
    parser.add_argument("--name", default="sweepnet_default_v5")
    parser.add_argument("--out", required=True)
    parser.add_argument("--chosen-on", default="DFD pairs[3::6], data/rgbd_val, data/cpu_val_v2 "
                                               "(results/default_selection/v5_validation.txt)")
    args = parser.parse_args()
    vote = read_checkpoint(args.vote)
    v4 = read_checkpoint(str(shipped_weights_path("sweepnet_default_v4")))
    model = models.create("sweepnet_physics", **v4["kwargs"])
    model.load_state_dict(models.load(str(shipped_weights_path("sweepnet_default_v4"))).state_dict(), strict=True)
    model.net.load_state_dict(models.load(args.vote).state_dict(), strict=True)
    hours = cpu_hours(args.run) if args.run else None
    hours = hours if hours is not None else args.hours
    v4_card = v4.get("extra", {}).get("model_card", {})
    card = {
        "name": args.name,
        "what": "v4's fusion (SweepNet focus vote + relative-blur plane sweep beyond the sweep, equal weights "
                "in inverse depth, confidence-weighted guided smoothing) around a vote continued from v3 on "
                "focus sweeps rendered from real RGB-D beside procedural ones",
        "learned_part": f"SweepNet vote ({args.vote}, step {vote.get('extra', {}).get('global_step')}), "
                        "config configs/train/sweepnet_v5.yaml",
        "training_data": "v3's procedural data, then data/rgbd_train (1,400 sequences: focus sweeps rendered by "
                         "focaldepth.generate.rgbd from the training scenes of DFD indoor (pairs[i], i mod 6 in "
                         "{1, 2, 4, 5}), Middlebury 2014 (7 scenes), Middlebury 2005/2006 (21 scenes), 7-Scenes "
                         "redkitchen frames 0-799) + 800 sequences of data/cpu_train_v3 (procedural). Never "
                         "seen: DFD pairs[0::6] (test) and pairs[3::6] (validation), Middlebury 2014 Adirondack, "
                         "Recycle, Vintage, Middlebury 2005/06 Baby1-3, Moebius, Reindeer, 7-Scenes frames "
                         "800-999, Motorcycle",
        "cpu_hours": {"v5 vote training (1 thread, shared 2-core machine)": hours,
                      "before (v4's card)": v4_card.get("cpu_hours")},
        "licence_of_data": "research use only: DFD indoor (no licence given by the authors), Middlebury "
                           "(free with citation), 7-Scenes (Microsoft, non-commercial research); procedural "
                           "data ours (Apache-2.0)",
        "chosen_on": args.chosen_on,
        "fusion": v4_card.get("fusion"),
    }
    models.save(model, args.out, model_card=card, vote_extra=vote.get("extra", {}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
