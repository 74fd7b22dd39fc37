"""Build v9 model files: v8 (the analytic fusion of a vote and the half-resolution plane sweep,
confidence times agreement) around a new vote, and SweepNet-T over it (v8-T's cell, unchanged).
Nothing else changes; the card records the vote's run and how the files were chosen.

  python tools/build_default_v9.py --vote runs/sweepnet_v9_occlusion/checkpoints/last.pt \\
      --out src/focaldepth/weights/sweepnet_default_v9.pt \\
      --temporal-out src/focaldepth/weights/sweepnet_temporal_v9.pt \\
      --chosen-on results/default_selection/v9_validation.txt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from focaldepth import models
from focaldepth.predict import shipped_weights_path


def with_vote(shipped_name: str, vote: models.DepthModel, prefix: str) -> tuple[models.DepthModel, dict]:
    """The shipped ``shipped_name`` with its vote (state-dict keys under ``prefix``) replaced."""
    shipped = models.read_checkpoint(str(shipped_weights_path(shipped_name)))
    widths = tuple(int(w) for w in vote.arch_kwargs["widths"])
    kwargs = dict(shipped["kwargs"])
    if shipped["arch"] == "sweepnet_temporal":
        kwargs["observer_widths"] = widths
        kwargs["observer_kwargs"] = {**kwargs["observer_kwargs"], "widths": widths}
    else:
        kwargs["widths"] = widths
    model = models.create(shipped["arch"], **kwargs)
    state = {k: v for k, v in shipped["state_dict"].items() if not k.startswith(prefix)}
    state.update({prefix + k: v for k, v in vote.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model, shipped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vote", required=True, help="the vote's model file (a training run's checkpoints/*.pt)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--temporal-out")
    parser.add_argument("--chosen-on", required=True, help="the validation result file that chose it")
    parser.add_argument("--run", help="the vote's run folder (summary.json: wall time)")
    args = parser.parse_args()
    vote = models.load(args.vote)
    run = Path(args.run) if args.run else Path(args.vote).parents[1]
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    hours = round(float(summary.get("wall_time_s", 0.0)) / 3600.0, 2)
    model, shipped = with_vote("sweepnet_default_v8", vote, "net.")
    base = shipped["extra"]["model_card"]
    card = {
        **base, "name": Path(args.out).stem,
        "what": f"sweepnet_default_v8 with a new vote ({args.vote}); fusion, plane sweep and confidence as v8",
        "learned_part": f"the vote only ({args.vote}); the fusion has no trained weights",
        "training_data": "the shipped vote's (sweepnet_real_vote), then data/rgbd_train (2,400 sweeps rendered from the "
                         "training scenes of DFD indoor, Middlebury 2014, Middlebury 2005/06, 7-Scenes frames 0-799) + "
                         "data/cpu_train_v4 (the first 800 sequences of cpu_train_v3's scenes rendered with complete "
                         "occlusion, listed twice), configs/train/sweepnet_v9_occlusion.yaml",
        "cpu_hours": {"as v8": base["cpu_hours"], "this vote's run (1 thread, 2-core machine)": hours},
        "chosen_on": f"{args.chosen_on} (validation sets only; test sets never consulted)",
    }
    models.save(model, args.out, **{**shipped["extra"], "model_card": card})
    print(f"wrote {args.out}")
    if args.temporal_out:
        temporal, shipped_t = with_vote("sweepnet_temporal_v8", vote, "observer.net.")
        t_card = {**card, "name": Path(args.temporal_out).stem, "observer": card,
                  "what": "SweepNet-T over " + card["name"] + ": sweepnet_temporal_v8's cell, unchanged"}
        models.save(temporal, args.temporal_out, **{**shipped_t["extra"], "model_card": t_card})
        print(f"wrote {args.temporal_out}")


if __name__ == "__main__":
    main()
