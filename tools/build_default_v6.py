"""Build the v6 model file: the end-of-run real-data vote (``sweepnet_real_vote``, SweepNet
continued on sweeps rendered from real RGB-D) inside the *analytic* fusion with the physics
plane sweep (``models/hybrid.fuse``: confidence weights, the end-of-sweep rule), plus its card.

Why not v5's fusion: v4/v5 ship a zero-initialised learned head (equal weights in inverse
depth), which ignores both confidences and the end-of-sweep rule; the analytic fusion scores
better on every validation set with the same vote (results/default_selection/v6_validation.txt).
The fusion numbers (physics_weight 1, physics_power 2, no guided smoothing) were chosen on the
four validation sets only (DFD pairs[3::6], data/rgbd_val, data/cpu_val_v2,
data/cpu_val_blender) by the mean AbsRel and mean δ<1.25 over the sets (tools/tune_v6.py).

  python tools/build_default_v6.py --out src/focaldepth/weights/sweepnet_default_v6.pt \
      --temporal-out src/focaldepth/weights/sweepnet_temporal_v6.pt

``--temporal-out`` also writes SweepNet-T over v6: the shipped temporal fusion cell
(``sweepnet_temporal``, trained on v3's observations) with v6 as its per-window observer. The
cell sees only the observation's inverse depth and confidence in sweep units, so it is reused
unchanged; whether it carries over is measured, not assumed (results/temporal_v6.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from focaldepth import models
from focaldepth.models import read_checkpoint
from focaldepth.predict import shipped_weights_path

#: Chosen on validation data (tools/tune_v6.py, results/default_selection/v6_validation.txt).
FUSION = {"physics_weight": 1.0, "physics_power": 2.0, "physics_inside_weight": 1.0, "smooth": False}


def build(vote_name: str = "sweepnet_real_vote") -> tuple[models.DepthModel, dict]:
    vote_path = str(shipped_weights_path(vote_name))
    vote = read_checkpoint(vote_path)
    model = models.create("sweepnet_physics", widths=tuple(vote["kwargs"].get("widths", (12, 16, 24, 32))),
                          **FUSION)
    model.net.load_state_dict(models.load(vote_path).state_dict(), strict=True)
    return model, vote


def build_temporal(observer: models.DepthModel) -> tuple[models.DepthModel, dict]:
    """SweepNet-T with ``observer`` (v6) and the shipped cell's weights."""
    path = str(shipped_weights_path("sweepnet_temporal"))
    shipped = read_checkpoint(path)
    kwargs = {k: v for k, v in shipped["kwargs"].items() if k in ("features", "hidden")}
    model = models.create("sweepnet_temporal", observer="sweepnet_physics",
                          observer_kwargs=dict(observer.arch_kwargs), **kwargs)
    model.cell.load_state_dict(models.load(path).cell.state_dict(), strict=True)
    model.observer.load_state_dict(observer.state_dict(), strict=True)
    return model, shipped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", default="sweepnet_default_v6")
    parser.add_argument("--temporal-out", help="also write SweepNet-T over v6 here")
    parser.add_argument("--validation", nargs="*", default=[],
                        help="tools/eval_temporal.py JSONs to record in the temporal card")
    args = parser.parse_args()
    model, vote = build()
    vote_card = vote.get("extra", {}).get("model_card", {})
    card = {
        "name": args.name,
        "what": "sweepnet_real_vote (SweepNet v3 continued 3,000 steps on focus sweeps rendered from real "
                "RGB-D beside procedural ones) fused with the parameter-free relative-blur plane sweep "
                "(focaldepth.defocus_volume) by models/hybrid.fuse: confidence-weighted mean in inverse "
                "depth, physics weight 1 x c^2, the vote's weight fading to 0 where the physics puts a "
                "pixel beyond an end of the sweep and the vote sits at that end (answers beyond the sweep)",
        "learned_part": "the vote only (sweepnet_real_vote, unchanged); the fusion has no trained weights",
        "fusion": dict(FUSION),
        "training_data": vote_card.get("training_data"),
        "cpu_hours": {"vote (sweepnet_real_vote's card)": vote_card.get("cpu_hours"),
                      "fusion choice (caching 4 validation sets + grid, 1 thread)": 0.2},
        "licence_of_data": vote_card.get("licence_of_data"),
        "chosen_on": "DFD pairs[3::6], data/rgbd_val, data/cpu_val_v2, data/cpu_val_blender "
                     "(results/default_selection/v6_validation.txt); test sets never consulted",
    }
    models.save(model, args.out, model_card=card, vote_extra=vote.get("extra", {}))
    print(f"wrote {args.out}")
    if args.temporal_out:
        temporal, shipped = build_temporal(model)
        cell_card = shipped.get("extra", {}).get("model_card", {})
        validation = {Path(f).stem: json.loads(Path(f).read_text()).get("summary", json.loads(Path(f).read_text()))
                      for f in args.validation}
        temporal_card = {
            "name": "sweepnet_temporal_v6",
            "model": "SweepNet-T (models/temporal.py) with sweepnet_default_v6 as the per-window observer: the "
                     "shipped flow-warped ConvGRU confidence filter (sweepnet_temporal's cell, unchanged) over "
                     "v6's observation of each motion-compensated window",
            "data": f"observer: as sweepnet_default_v6 ({card['training_data']}). Fusion cell: as sweepnet_temporal "
                    f"({cell_card.get('data')})",
            "cpu_hours": round(float(cell_card.get("cpu_hours") or 0.0) + 0.2, 3),
            "cpu_hours_detail": {"cell (sweepnet_temporal's card)": cell_card.get("cpu_hours"),
                                 "v6 fusion choice": 0.2, "observer vote": card["cpu_hours"]},
            "how_chosen": "no new training: v6 and the shipped cell, checked on validation through predict's path "
                          "(tools/eval_temporal.py on data/cpu_val_v2, results/temporal/*v6_cpu_val_v2.json) "
                          "against the per-window v6",
            "validation": validation,
            "observer": card,
            "licence_of_data": card["licence_of_data"],
        }
        models.save(temporal, args.temporal_out, model_card=temporal_card)
        print(f"wrote {args.temporal_out}")


if __name__ == "__main__":
    main()
