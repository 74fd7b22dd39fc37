"""Train the fusion head of ``sweepnet_physics`` (v4) on training data only, select on validation.

The SweepNet vote (v3 weights, frozen) and the physics plane sweep (no parameters) run once per
training stack and are cached; only the ~7k-parameter fusion head learns, end to end through
the fusion and the edge-aware smoothing, with inverse-depth L1 in sweep units.

Training stacks: static sequences of data/cpu_train_v3 (procedural, photographs as textures;
3-10 frames of each 10-frame ramp) and DFD indoor training scenes (pairs whose index is not
0 or 3 mod 6: those are the DFD test table's and the validation scenes), cover / inner / wide
5- or 10-frame sweeps at half resolution as tools/validation_sets.py renders them.
Validation (never trained on): dfd:6:3 and data/cpu_val_v2:10:2, scored after every epoch.

  OMP_NUM_THREADS=1 python tools/train_fusion.py --out runs/fusion_v4 [--train-stacks 400] [--epochs 6]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "tools")
from validation_sets import dfd_sweeps, stacks  # noqa: E402
from validation_sets import scores_inside_beyond as scores  # noqa: E402

from focaldepth import models  # noqa: E402
from focaldepth.data import FocusSweepDataset  # noqa: E402
from focaldepth.defocus_volume import defocus_volume_depth  # noqa: E402
from focaldepth.predict import load_model, shipped_weights_path  # noqa: E402


def procedural_stacks(root: str, count: int, seed: int = 0):
    dataset = FocusSweepDataset(root, num_frames=10, sample="ramp", random_crop=False)
    rng = np.random.default_rng(seed)
    taken = 0
    for index in rng.permutation(len(dataset)):
        item = dataset[int(index)]
        if bool(item["is_dynamic"]):
            continue
        frames_n = int(rng.integers(3, 11))
        keep = np.sort(rng.choice(10, size=frames_n, replace=False))
        yield (item["frames"][keep][None], item["focus_distance_m"][keep][None], item["camera"][None],
               item["depth_m"][None], item["valid"][None])
        taken += 1
        if taken >= count:
            return


def dfd_training_stacks():
    for offset in (1, 2, 4, 5):
        for frames_n in (5,):
            yield from dfd_sweeps(6, offset, frames_n)


def cache(stack_iter, net):
    cached = []
    for stack in stack_iter:
        frames, focus, camera = stack[:3]
        with torch.no_grad():
            vote = net(frames, focus, camera)
            physics = defocus_volume_depth(frames, focus, camera, smooth=False)
        vote = {k: vote[k] for k in ("depth_m", "confidence", "focus_weights")}
        physics = {k: physics[k] for k in ("depth_m", "confidence", "all_in_focus", "hypotheses_dpt")}
        cached.append((stack, vote, physics))
    return cached


def crop(entry, size, rng):
    stack, vote, physics = entry
    height, width = stack[0].shape[-2:]
    if height <= size and width <= size:
        return entry
    top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))

    def c(x):
        return x[..., top:top + size, left:left + size]

    stack = (c(stack[0]), stack[1], stack[2], c(stack[3]), c(stack[4]))
    vote = {k: c(v) for k, v in vote.items()}
    physics = {k: (c(v) if v.ndim >= 3 else v) for k, v in physics.items()}
    return stack, vote, physics


def loss_of(model, entry):
    stack, vote, physics = entry
    frames, focus, camera, gt, valid = stack
    out = model.combine(frames, focus, camera, vote, physics)
    hyp = physics["hypotheses_dpt"]
    gt_dpt = (1.0 / gt.clamp_min(1e-6)).clamp(hyp[:, :1, None, None], hyp[:, -1:, None, None])
    # L1 of log depth: relative errors, near and far alike (inverse-depth L1 in sweep units let
    # the far part, where the vote fails and AbsRel is made, count for almost nothing).
    error = (torch.log(out["depth_m"].clamp_min(1e-6)) + torch.log(gt_dpt)).abs()
    mask = valid & torch.isfinite(error)
    return error[mask].mean()


def evaluate(model, cached) -> list[float]:
    rows = []
    with torch.no_grad():
        for stack, vote, physics in cached:
            rows.append(scores(model.combine(*stack[:3], vote, physics)["depth_m"], stack))
    r = np.array(rows)
    with np.errstate(all="ignore"):
        return [float(r[:, 0].mean()), float(r[:, 1].mean()), float(np.nanmean(r[:, 2])), float(np.nanmean(r[:, 3]))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-stacks", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--crop", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    net = load_model("sweepnet_default_v3").eval()
    train = cache(procedural_stacks("data/cpu_train_v3", args.train_stacks), net) + cache(dfd_training_stacks(), net)
    val = {"dfd:6:3": cache(stacks("dfd:6:3"), net), "cpu_val_v2:10:2": cache(stacks("data/cpu_val_v2:10:2"), net)}
    print(f"cached {len(train)} training stacks, {sum(len(v) for v in val.values())} validation in "
          f"{time.time() - start:.0f} s", flush=True)
    model = models.create("sweepnet_physics", learned_fusion=True)
    model.net.load_state_dict(net.state_dict())
    for p in model.net.parameters():
        p.requires_grad_(False)
    optimiser = torch.optim.Adam(model.fusion.parameters(), lr=args.lr)
    steps = args.epochs * len(train)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    rng = np.random.default_rng(0)
    history = []
    best = None
    for epoch in range(args.epochs + 1):
        if epoch > 0:
            model.fusion.train()
            losses = []
            for index in rng.permutation(len(train)):
                loss = loss_of(model, crop(train[int(index)], args.crop, rng))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(float(loss.detach()))
        model.fusion.eval()
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)) if epoch else None,
               **{name: evaluate(model, cached) for name, cached in val.items()}}
        # selection: the mean over both validation sets of AbsRel and of 1 - δ1
        row["select"] = float(np.mean([0.5 * (row[name][0] + 1.0 - row[name][1]) for name in val]))
        history.append(row)
        print(json.dumps(row), flush=True)
        if best is None or row["select"] < best["select"]:
            best = row
            torch.save(model.fusion.state_dict(), out / "fusion_best.pt")
    summary = {"best": best, "history": history, "train_stacks": len(train), "wall_time_s": time.time() - start,
               "v3_weights": str(shipped_weights_path("sweepnet_default_v3"))}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("best", json.dumps(best), f"total {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
