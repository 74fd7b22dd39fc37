"""Choose v6 on validation data only: which vote (v3, the real-data vote, or a blend of the two)
and which fusion with the physics plane sweep.

``cache`` runs both votes and the physics (unsmoothed) once per stack of a validation set and
saves them; ``grid`` scores every (vote, fusion) setting on the caches: AbsRel, δ<1.25, AbsRel
inside the swept range and beyond it (up to twice the farthest focus).

  OMP_NUM_THREADS=1 python tools/tune_v6.py cache dfd:6:3 runs/v6_cache/dfd.pt
  OMP_NUM_THREADS=1 python tools/tune_v6.py cache data/rgbd_val:10:5 runs/v6_cache/rgbd_val.pt
  OMP_NUM_THREADS=1 python tools/tune_v6.py cache data/cpu_val_v2:10:2 runs/v6_cache/cpu_val_v2.pt
  OMP_NUM_THREADS=1 python tools/tune_v6.py cache data/cpu_val_blender:5:1 runs/v6_cache/cpu_val_blender.pt
  OMP_NUM_THREADS=1 python tools/tune_v6.py grid runs/v6_cache/*.pt > results/default_selection/v6_validation.txt

Session 5 (v7): ``cache`` also stores the plane sweep at half resolution
(``models/hybrid.physics_at_scale``); ``add-vote CACHE KEY MODEL`` adds another vote (a
shipped name, a model file or a training checkpoint) to a cache; ``grid`` scores every cached
vote with both physics resolutions, ``grid-v6`` only v6's fusion (and the vote alone):

  OMP_NUM_THREADS=1 python tools/tune_v6.py add-vote runs/v6_cache/dfd.pt s1200 runs/sweepnet_v7/checkpoints/last.pt
  OMP_NUM_THREADS=1 python tools/tune_v6.py grid-v6 runs/v6_cache/*.pt > results/default_selection/v7_validation.txt

``hypotheses`` re-runs the physics on the cached stacks with fewer depth planes and/or at half
resolution (the plane sweep dominates v6's cost) and scores v6's fusion with each, with the
plane sweep's time per stack:

  OMP_NUM_THREADS=1 python tools/tune_v6.py hypotheses runs/v6_cache/*.pt > results/default_selection/v6_physics_cost.txt

Votes: ``v3`` (sweepnet_default_v3), ``real`` (sweepnet_real_vote), ``conf`` (their
confidence-weighted mean in inverse depth), ``mean`` (equal weights). Fusion ``(w, p, in,
smooth)``: ``SweepNetPhysics(physics_weight=w, physics_power=p, physics_inside_weight=in,
smooth=smooth).combine``; ``None``: the vote alone. The last block ranks the settings by the
mean over the sets of AbsRel and of δ<1.25.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "tools")
from validation_sets import scores_inside_beyond as scores  # noqa: E402
from validation_sets import stacks  # noqa: E402

from focaldepth.models.hybrid import SweepNetPhysics  # noqa: E402

VOTES = {"v3": "sweepnet_default_v3", "real": "sweepnet_real_vote"}
FUSIONS = [None, (1, 1, 1, True), (1, 1, 1, False), (2, 1, 1, True), (2, 1, 1, False), (1, 2, 1, True),
           (1, 2, 1, False), (1, 1, 0.25, False), (2, 2, 1, False), (4, 2, 1, True)]
KEEP = ("depth_m", "confidence", "focus_weights")


def cache(spec: str, out: str) -> None:
    from focaldepth.models.hybrid import physics_at_scale
    from focaldepth.predict import load_model

    nets = {key: load_model(name).eval() for key, name in VOTES.items()}
    cached = []
    for stack in stacks(spec):
        frames, focus, camera = stack[:3]
        with torch.no_grad():
            votes = {key: {k: v for k, v in net(frames, focus, camera).items() if k in KEEP}
                     for key, net in nets.items()}
            physics = physics_at_scale(frames, focus, camera, 1.0)
            physics["half"] = physics_at_scale(frames, focus, camera, 0.5)
        cached.append((stack, votes, physics))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"spec": spec, "items": cached}, out)
    print(f"{spec}: {len(cached)} stacks -> {out}")


def add_vote(path: str, key: str, model: str) -> None:
    """Run one more vote (a shipped name, a model file or a training checkpoint) on a cache's
    stacks and store it under ``key``; half-resolution physics is added where missing."""
    from focaldepth.models.hybrid import physics_at_scale
    from focaldepth.predict import load_model

    torch.set_num_threads(1)
    net = load_model(model).eval()
    payload = torch.load(path, weights_only=False)
    for stack, votes, physics in payload["items"]:
        frames, focus, camera = stack[:3]
        with torch.no_grad():
            votes[key] = {k: v for k, v in net(frames, focus, camera).items() if k in KEEP}
            if "half" not in physics:
                physics["half"] = physics_at_scale(frames, focus, camera, 0.5)
    torch.save(payload, path)
    print(f"{payload['spec']}: vote {key!r} = {model} added to {path}")


def blend(votes: dict, mode: str) -> dict:
    if mode in votes:  # a cached vote (v3, real, or one added by add-vote)
        return votes[mode]
    a, b = votes["v3"], votes["real"]
    ca, cb = a["confidence"].clamp_min(1e-3), b["confidence"].clamp_min(1e-3)
    wa = ca / (ca + cb) if mode == "conf" else torch.full_like(ca, 0.5)
    inverse = wa / a["depth_m"] + (1 - wa) / b["depth_m"]
    return {"depth_m": 1 / inverse, "confidence": wa * ca + (1 - wa) * cb, "focus_weights": b["focus_weights"]}


def vote_modes(votes: dict) -> list[str]:
    """Every cached vote, plus the v3/real blends when both are there."""
    blends = ["conf", "mean"] if {"v3", "real"} <= set(votes) else []
    return [k for k in votes] + blends


def grid(paths: list[str], fusions: list | None = None) -> None:
    """Every (vote, fusion, physics resolution) on every cache; physics ``half`` = the plane
    sweep at half the working resolution (``SweepNetPhysics(physics_scale=0.5)``)."""
    torch.set_num_threads(1)
    summary: dict = {}
    for path in paths:
        payload = torch.load(path, weights_only=False)
        print(f"{payload['spec']} ({len(payload['items'])} stacks)", flush=True)
        first_votes, first_physics = payload["items"][0][1], payload["items"][0][2]
        resolutions = ["full"] + (["half"] if "half" in first_physics else [])
        for mode in vote_modes(first_votes):
            for fusion in fusions or FUSIONS:
                for resolution in resolutions if fusion is not None else ["full"]:
                    rows = []
                    for stack, votes, physics in payload["items"]:
                        vote = blend(votes, mode)
                        if fusion is None:
                            depth = vote["depth_m"]
                        else:
                            w, p, inside, smooth = fusion
                            model = SweepNetPhysics(physics_weight=w, physics_power=p, physics_inside_weight=inside,
                                                    smooth=smooth)
                            part = physics if resolution == "full" else {**physics, **physics["half"]}
                            with torch.no_grad():
                                depth = model.combine(*stack[:3], vote, part)["depth_m"]
                        rows.append(scores(depth, stack))
                    r = np.array(rows)
                    label = f"{mode:5s} {str(fusion):22s} {resolution:4s}"
                    summary.setdefault(label, []).append(r[:, :2].mean(axis=0))
                    with np.errstate(all="ignore"):
                        print(f"  {label} AbsRel {r[:, 0].mean():.3f} d1 {r[:, 1].mean():.3f} "
                              f"inside {np.nanmean(r[:, 2]):.3f} beyond {np.nanmean(r[:, 3]):.3f} "
                              f"(n {np.isfinite(r[:, 3]).sum()})", flush=True)
    print(f"mean over the {len(paths)} sets, by mean AbsRel")
    ranked = sorted(summary.items(), key=lambda kv: np.mean(kv[1], axis=0)[0])
    for label, per_set in ranked:
        mean = np.mean(per_set, axis=0)
        print(f"  {label} AbsRel {mean[0]:.3f} d1 {mean[1]:.3f}" + ("" if len(per_set) == len(paths) else
                                                                    f" ({len(per_set)} sets only)"))


def hypotheses(paths: list[str]) -> None:
    """v6's fusion with the physics at 32 (shipped) / 16 / 8 planes, full or half resolution."""
    import time

    from focaldepth.models.hybrid import physics_at_scale

    torch.set_num_threads(1)
    fusion = SweepNetPhysics(physics_weight=1.0, physics_power=2.0, smooth=False)
    settings = [(32, 1.0), (16, 1.0), (8, 1.0), (32, 0.5), (16, 0.5)]
    for path in paths:
        payload = torch.load(path, weights_only=False)
        print(f"{payload['spec']} ({len(payload['items'])} stacks)", flush=True)
        for planes, scale in settings:
            rows, seconds = [], 0.0
            for stack, votes, _ in payload["items"]:
                frames, focus, camera = stack[:3]
                start = time.perf_counter()
                with torch.no_grad():  # the model's own resize-sweep-upsample (SweepNetPhysics.physics_scale)
                    physics = physics_at_scale(frames, focus, camera, scale, num_hypotheses=planes)
                seconds += time.perf_counter() - start
                with torch.no_grad():
                    depth = fusion.combine(*stack[:3], votes["real"], physics)["depth_m"]
                rows.append(scores(depth, stack))
            r = np.array(rows)
            with np.errstate(all="ignore"):
                print(f"  planes {planes:2d} scale {scale:g}: AbsRel {r[:, 0].mean():.3f} d1 {r[:, 1].mean():.3f} "
                      f"inside {np.nanmean(r[:, 2]):.3f} beyond {np.nanmean(r[:, 3]):.3f} "
                      f"physics s/stack {seconds / len(rows):.3f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "hypotheses":
        hypotheses(sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "add-vote":
        add_vote(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) >= 3 and sys.argv[1] == "grid-v6":  # v6's fusion only: vote x resolution
        grid(sys.argv[2:], fusions=[None, (1, 2, 1, False)])
    elif len(sys.argv) >= 2 and sys.argv[1] == "cache" and len(sys.argv) == 4:
        cache(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 3 and sys.argv[1] == "grid":
        grid(sys.argv[2:])
    else:
        sys.exit(__doc__)
