"""Which confidence should the default model output? Candidates scored on validation data only.

The default (v7, ``sweepnet_physics``: analytic fusion, sweep at half size) outputs the analytic fusion's
confidence, the fusion-weighted mix of the vote's spread and the plane sweep's peak
sharpness, and on the synthetic v2 *test* stacks its most confident half
scored worse than all pixels (results/confidence.md). This script runs v7's two parts once per
validation stack and scores every candidate map by the AbsRel of its most confident 50 % and
by AUSE (lower = confidence ranks errors better):

  OMP_NUM_THREADS=1 python tools/confidence_candidates.py dfd:6:3 data/cpu_val_v2:10:2 \
      > results/default_selection/confidence_candidates.txt

Candidates: ``v7`` (what ships), ``vote`` / ``physics`` (each part's own), ``agreement`` (exp
of minus the two estimates' disagreement in sweep steps: two independent estimators that
agree are likely right) and products of these.
"""
from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, "tools")
from validation_sets import stacks  # noqa: E402

from focaldepth.metrics import per_image_sparsification  # noqa: E402
from focaldepth.models.hybrid import agreement as parts_agreement, physics_at_scale  # noqa: E402
from focaldepth.predict import load_model  # noqa: E402


def candidates(model, frames, focus, camera) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    vote = model.net(frames, focus, camera)
    physics = physics_at_scale(frames, focus, camera, model.physics_scale,
                               num_hypotheses=model.num_hypotheses, window=model.window)
    out = model.combine(frames, focus, camera, vote, physics)
    focus_dpt = 1.0 / focus
    vote_dpt, physics_dpt = 1.0 / vote["depth_m"], 1.0 / physics["depth_m"]
    agreement = parts_agreement(vote_dpt, physics_dpt, focus_dpt)
    maps = {
        "v7 (ships)": out["confidence"],
        "vote": vote["confidence"],
        "physics": physics["confidence"],
        "agreement": agreement,
        "v7 x agreement": out["confidence"] * agreement,
        "vote x agreement": vote["confidence"] * agreement,
        "sqrt(v7 x agreement)": (out["confidence"] * agreement).sqrt(),
        "agreement (2 steps)": parts_agreement(vote_dpt, physics_dpt, focus_dpt, steps=2.0),
        "agreement (fused vs vote)": parts_agreement(1.0 / out["depth_m"], vote_dpt, focus_dpt),
    }
    return out["depth_m"], maps


def main(specs: list[str]) -> None:
    torch.set_num_threads(1)
    model = load_model("sweepnet_default_v7").eval()  # its own confidence is the "v7" row
    for spec in specs:
        rows: dict[str, list] = {}
        count = 0
        for stack in stacks(spec):
            frames, focus, camera, gt, valid = stack
            with torch.no_grad():
                depth, maps = candidates(model, frames, focus, camera)
            if depth.shape[-2:] != gt.shape[-2:]:
                depth = F.interpolate(depth, size=gt.shape[-2:], mode="bilinear")
                maps = {k: F.interpolate(v, size=gt.shape[-2:], mode="bilinear") for k, v in maps.items()}
            for name, confidence in maps.items():
                result = per_image_sparsification(depth, gt, valid, confidence)
                rows.setdefault(name, []).append([float(result[k][0]) for k in
                                                  ("absrel_all", "absrel_top50", "absrel_oracle_top50",
                                                   "ause_absrel")])
            count += 1
        print(f"{spec} ({count} stacks): AbsRel all / most confident 50 % / oracle 50 % / AUSE", flush=True)
        for name, values in rows.items():
            mean = np.nanmean(np.array(values), axis=0)
            print(f"  {name:28s} {mean[0]:.3f} {mean[1]:.3f} {mean[2]:.3f} {mean[3]:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
