"""Train the fusion cell of ``sweepnet_temporal`` (SweepNet-T) on cached per-window observations.

The observer is the shipped per-window default (``sweepnet_default``, SweepNet v3), frozen. It
runs once per frame of every training clip *through predict's own path*
(:class:`focaldepth.predict.StreamingPredictor` at the working resolution: DIS flow, composed
displacements, motion-compensated windows), and what the fusion cell sees at inference is
cached: the vote's inverse depth and confidence, the window fill, the current frame, the DIS
flow to the previous frame, the window's focus range. So training and ``predict`` feed the
cell identical inputs. Static sequences (one 10-frame ramp) are replayed as repeated sweeps.

  OMP_NUM_THREADS=1 python tools/train_temporal.py cache --data data/cpu_train_v3 --out runs/temporal_cache/train [--limit 400]
  OMP_NUM_THREADS=1 python tools/train_temporal.py cache --data data/cpu_val_v2 --out runs/temporal_cache/val
  OMP_NUM_THREADS=1 python tools/train_temporal.py train --train runs/temporal_cache/train \
      --val runs/temporal_cache/val --out runs/sweepnet_temporal --minutes 45 --val-static 12
  OMP_NUM_THREADS=1 python tools/train_temporal.py ship --run runs/sweepnet_temporal \
      --out src/focaldepth/weights/sweepnet_temporal.pt --cache-seconds S --validation results/temporal/*_cpu_val_v2.json

``train`` writes ``RUN/last.pt`` and ``RUN/best.pt`` (the whole model: observer + cell, through
``focaldepth.models.save``, the card's data in ``extra``), ``RUN/log.jsonl`` (validation
after every epoch) and ``RUN/summary.json`` (wall time, chosen epoch). Loss: inverse-depth L1
in sweep units on every frame plus the temporal consistency term of
``focaldepth.losses`` (``temporal``: error of the frame-to-frame change along the
ground-truth flow, occlusions masked by the ground-truth depth test).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch

from focaldepth import models
from focaldepth.data import load_records
from focaldepth.models.temporal import detach_state
from focaldepth.optics import Camera
from focaldepth.predict import StreamingPredictor, load_model

STATIC_SWEEPS = 2  # a static one-ramp sequence is replayed this many times (repeated sweeps)


def read_clip(path: Path, static_sweeps: int = STATIC_SWEEPS, sweep_noise_std: float = 0.0) -> dict:
    """Frames (T, H, W, 3) uint8, depth (T, H, W), GT backward flow (T, H, W, 2), focus (T,),
    camera, is_dynamic; a static sequence repeated ``static_sweeps`` times, each sweep with its
    own Gaussian noise of ``sweep_noise_std`` (in [0, 1] units; a stand-in for the sensor noise
    a real repeated sweep draws afresh; seeded by the sequence index)."""
    with h5py.File(path, "r") as file:
        attrs = file.attrs
        clip = {"frames": file["frames"][()], "depth_m": file["depth_m"][()].astype(np.float32),
                "focus_distance_m": file["focus_distance_m"][()].astype(np.float64),
                "is_dynamic": bool(attrs["is_dynamic"]), "index": int(attrs["index"])}
        clip["flow"] = file["flow"][()].astype(np.float32) if clip["is_dynamic"] else \
            np.zeros(clip["depth_m"].shape + (2,), np.float32)
        clip["camera"] = Camera(float(attrs["focal_length_mm"]), float(attrs["f_number"]),
                                float(attrs["sensor_width_mm"]), int(attrs["image_width_px"]))
    if not clip["is_dynamic"] and static_sweeps > 1:
        for key in ("frames", "depth_m", "flow", "focus_distance_m"):
            clip[key] = np.concatenate([clip[key]] * static_sweeps)
        if sweep_noise_std > 0:
            rng = np.random.default_rng([clip["index"], 11])
            noisy = clip["frames"] / 255.0 + rng.normal(0.0, sweep_noise_std, clip["frames"].shape)
            clip["frames"] = np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)
    return clip


def resize_depth(depth_m: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    if depth_m.shape == tuple(size_hw):
        return depth_m
    return cv2.resize(depth_m, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_NEAREST)


def resize_flow(flow: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    height, width = flow.shape[:2]
    if (height, width) == tuple(size_hw):
        return flow
    out = cv2.resize(flow, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)
    return out * np.array([size_hw[1] / width, size_hw[0] / height], np.float32)


def cache_clip(observer, clip: dict) -> dict:
    """What the fusion cell sees for every frame of ``clip`` (see the module docstring)."""
    frames = clip["frames"]
    height, width = frames.shape[1:3]
    focus = [float(f) for f in clip["focus_distance_m"]]
    predictor = StreamingPredictor(observer, clip["camera"], focus, height, width,
                                   output_resolution="working", upsample="bilinear")
    size = (predictor.work_h, predictor.work_w)
    rows = {key: [] for key in ("obs_depth_m", "obs_confidence", "fill", "image", "flow_dis", "focus3")}
    for frame, focus_m in zip(frames, focus):
        result = predictor.push(frame, focus_m)
        used = result.frames_used
        fill = min(1.0, used / predictor.window) if used >= 2 else 0.0
        rows["obs_depth_m"].append(result.depth_m)
        rows["obs_confidence"].append(result.confidence / fill if fill > 0 else result.confidence)
        rows["fill"].append(fill)
        rows["image"].append(predictor.buffer[-1][0])
        rows["flow_dis"].append(predictor.last_flow_px if predictor.last_flow_px is not None
                                else np.zeros(size + (2,), np.float32))
        window_dpt = 1.0 / np.asarray(predictor._window_focus())
        # nearest, farthest, current: what the cell reads of the window's focus distances
        rows["focus3"].append([1.0 / window_dpt.max(), 1.0 / window_dpt.min(), focus_m])
    return {
        "obs_depth_m": torch.from_numpy(np.stack(rows["obs_depth_m"])).half(),
        "obs_confidence": torch.from_numpy(np.stack(rows["obs_confidence"])).half(),
        "fill": torch.tensor(rows["fill"], dtype=torch.float32),
        "image": torch.from_numpy(np.stack(rows["image"])),  # uint8 (T, h, w, 3)
        "flow_dis": torch.from_numpy(np.stack(rows["flow_dis"])).half(),
        "focus3": torch.tensor(rows["focus3"], dtype=torch.float32),
        "depth_m": torch.from_numpy(np.stack([resize_depth(d, size) for d in clip["depth_m"]])),
        "flow_gt": torch.from_numpy(np.stack([resize_flow(f, size) for f in clip["flow"]])).half(),
        "is_dynamic": clip["is_dynamic"], "index": clip["index"],
    }


def command_cache(args) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    observer = load_model(args.observer)
    records = load_records(Path(args.data))
    if args.limit:
        records = records[:args.limit]
    start = time.perf_counter()
    for count, record in enumerate(records):
        target = out / f"seq_{record['index']:06d}.pt"
        if target.exists():
            continue
        cached = cache_clip(observer, read_clip(Path(args.data) / record["file"]))
        tmp = target.with_suffix(".tmp")
        torch.save(cached, tmp)
        tmp.rename(target)
        if count % 20 == 0:
            print(f"{count + 1}/{len(records)} {time.perf_counter() - start:.0f}s", flush=True)
    print(json.dumps({"cached": len(records), "seconds": time.perf_counter() - start}))


# --- training -------------------------------------------------------------------------------


def load_cache(folder: str, limit: int | None = None) -> list[dict]:
    paths = sorted(Path(folder).glob("seq_*.pt"))[:limit]
    return [torch.load(path, weights_only=True) for path in paths]


def clip_tensors(entry: dict, crop: int | None, rng: np.random.Generator) -> dict:
    """One cached clip as float tensors with a batch dimension of 1, randomly cropped."""
    height, width = entry["depth_m"].shape[-2:]
    top = left = 0
    h, w = height, width
    if crop is not None and (height > crop or width > crop):
        h, w = min(crop, height), min(crop, width)
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    rows, cols = slice(top, top + h), slice(left, left + w)
    depth = entry["depth_m"][:, rows, cols].float()
    return {
        "obs_depth_m": entry["obs_depth_m"][:, None, rows, cols].float(),
        "obs_confidence": entry["obs_confidence"][:, None, rows, cols].float(),
        "fill": entry["fill"],
        "image": entry["image"][:, rows, cols].permute(0, 3, 1, 2).float() / 255.0,
        "flow_dis": entry["flow_dis"][:, rows, cols].permute(0, 3, 1, 2).float(),
        "focus3": entry["focus3"],
        "depth_m": depth[:, None],
        "valid": (torch.isfinite(depth) & (depth > 0))[:, None],
        "flow_gt": entry["flow_gt"][:, rows, cols].permute(0, 3, 1, 2).float(),
    }


def run_clip(model, clip: dict, flow_key: str = "flow_dis", tbptt: int | None = None) -> tuple[list, list]:
    """Fuse a clip frame by frame; returns per-frame outputs (None for frames without an
    observation) and the indices of the frames with one."""
    state, outputs, used = None, [], []
    for t in range(clip["depth_m"].shape[0]):
        fill = float(clip["fill"][t])
        if fill <= 0:  # predict's fallback frame: no estimate, state restarts
            state = None
            outputs.append(None)
            continue
        flow = clip[flow_key][t:t + 1]
        out, state = model.fuse(state, clip["obs_depth_m"][t:t + 1], clip["obs_confidence"][t:t + 1],
                                clip["image"][t:t + 1], clip["focus3"][t:t + 1], flow, fill)
        if tbptt and (t + 1) % tbptt == 0:
            state = detach_state(state)
        outputs.append(out)
        used.append(t)
    return outputs, used


def build_terms(temporal_weight: float):
    """sweep_l1 + the temporal term of focaldepth.losses (the video-losses engineer's), if it exists."""
    from focaldepth import losses

    config = [{"name": "sweep_l1", "weight": 1.0}]
    if temporal_weight > 0:
        if "temporal" not in losses.list_losses():
            raise SystemExit("focaldepth.losses has no 'temporal' term yet; use --temporal-weight 0")
        config.append({"name": "temporal", "weight": temporal_weight, "occlusion": "depth"})
    return losses.build_loss(config)


def clip_loss(loss_fn, clip: dict, outputs: list, used: list) -> tuple[torch.Tensor, dict]:
    """The configured loss over the longest run of consecutive frames with an observation."""
    runs, start = [], used[0]
    for a, b in zip(used, used[1:] + [None]):
        if b != a + 1:
            runs.append((start, a + 1))
            start = b
    lo, hi = max(runs, key=lambda r: r[1] - r[0])
    pred = torch.stack([outputs[t]["depth_m"] for t in range(lo, hi)], dim=1)  # (1, T, 1, H, W)
    focus = clip["focus3"][lo:hi, :2].reshape(1, -1)
    batch = {"depth_seq": clip["depth_m"][None, lo:hi], "valid_seq": clip["valid"][None, lo:hi],
             "flow_seq": clip["flow_gt"][None, lo:hi], "focus_distance_m": focus,
             "depth_m": clip["depth_m"][None, hi - 1], "valid": clip["valid"][None, hi - 1]}
    return loss_fn({"depth_seq": pred, "depth_m": pred[:, -1]}, batch)


def evaluate_cache(model, entries: list[dict], flow_key: str = "flow_dis") -> dict:
    """Validation numbers on cached clips (working grid, every frame with an observation):
    AbsRel and delta1 of the fused and the observed depth, and the frame-to-frame error
    (metrics.temporal_stability along the ground-truth flow) on dynamic clips."""
    from focaldepth.metrics import temporal_stability

    sums = {}

    def add(key, value):
        if value is not None and math.isfinite(value):
            total, count = sums.get(key, (0.0, 0))
            sums[key] = (total + value, count + 1)

    model.eval()
    with torch.no_grad():
        for entry in entries:
            clip = clip_tensors(entry, None, np.random.default_rng(0))
            outputs, used = run_clip(model, clip, flow_key)
            group = "dynamic" if entry["is_dynamic"] else "static"
            for t in used:
                gt, valid = clip["depth_m"][t:t + 1], clip["valid"][t:t + 1]
                for name, pred in (("fused", outputs[t]["depth_m"]), ("observed", clip["obs_depth_m"][t:t + 1])):
                    if not bool(valid.any()):
                        continue
                    # (depth_metrics's AbsRel and delta1 without its costlier metrics)
                    p, g = pred[valid], gt[valid]
                    add(f"{group}/{name}/absrel", float(((p - g).abs() / g).mean()))
                    add(f"{group}/{name}/delta1", float((torch.maximum(p / g, g / p) < 1.25).float().mean()))
                    if t - 1 in used and entry["is_dynamic"]:
                        prev = outputs[t - 1]["depth_m"] if name == "fused" else clip["obs_depth_m"][t - 1:t]
                        s = temporal_stability(pred, prev, gt, clip["depth_m"][t - 1:t], clip["flow_gt"][t:t + 1],
                                               valid, valid_prev=clip["valid"][t - 1:t])
                        add(f"{group}/{name}/temporal_err_rel", s["temporal_err_rel"])
    return {key: total / count for key, (total, count) in sorted(sums.items())}


def command_train(args) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = models.create("sweepnet_temporal")
    observer = load_model(args.observer)
    model.observer.load_state_dict(observer.state_dict(), strict=True)
    if args.init:  # continue from a run's model file (the cell; the observer is the same)
        model.load_state_dict(models.load(args.init).state_dict(), strict=True)
    for parameter in model.observer.parameters():
        parameter.requires_grad_(False)
    train = load_cache(args.train, args.limit)
    val = load_cache(args.val)
    if args.val_static is not None:  # every dynamic validation clip, the first N static ones
        static = [entry for entry in val if not entry["is_dynamic"]][:args.val_static]
        val = [entry for entry in val if entry["is_dynamic"]] + static
    loss_fn = build_terms(args.temporal_weight)
    optimiser = torch.optim.AdamW(model.cell.parameters(), lr=args.lr, weight_decay=1e-4)
    log_path = out / "log.jsonl"
    log_path.write_text("")
    card = {"observer": args.observer, "train_cache": args.train, "val_cache": args.val,
            "train_clips": len(train), "val_clips": len(val), "loss": repr(loss_fn),
            "temporal_weight": args.temporal_weight, "lr": args.lr, "crop": args.crop, "seed": args.seed,
            "init": args.init}

    def validate(epoch: int, step: int) -> dict:
        scores = evaluate_cache(model, val)
        row = {"epoch": epoch, "step": step, "minutes": (time.perf_counter() - start) / 60, **scores}
        with log_path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        return row

    def selection_score(row: dict) -> float:
        # validation dynamic frame-to-frame error, with AbsRel (all clips) not allowed to lose
        absrel = 0.5 * (row.get("dynamic/fused/absrel", 0) + row.get("static/fused/absrel", 0))
        return row.get("dynamic/fused/temporal_err_rel", math.inf) + 2.0 * absrel

    best = validate(0, 0)
    best_score, best_epoch = selection_score(best), 0
    models.save(model, out / "best.pt", model_card=card, epoch=0)
    step, epoch, deadline = 0, 0, start + 60 * args.minutes
    while epoch < args.epochs and time.perf_counter() < deadline:
        epoch += 1
        model.train()
        order = rng.permutation(len(train))
        running = []
        for position, index in enumerate(order):
            clip = clip_tensors(train[index], args.crop, rng)
            flow_key = "flow_gt" if rng.random() < args.gt_flow_fraction else "flow_dis"
            outputs, used = run_clip(model, clip, flow_key, tbptt=args.tbptt)
            if len(used) < 2:
                continue
            total, parts = clip_loss(loss_fn, clip, outputs, used)
            (total / args.accumulate).backward()
            running.append(float(total.detach()))
            if (position + 1) % args.accumulate == 0:
                torch.nn.utils.clip_grad_norm_(model.cell.parameters(), 1.0)
                optimiser.step()
                optimiser.zero_grad(set_to_none=True)
                step += 1
            if time.perf_counter() > deadline:
                break
        print(f"epoch {epoch} train loss {np.mean(running):.4f} steps {step}", flush=True)
        row = validate(epoch, step)
        models.save(model, out / "last.pt", model_card=card, epoch=epoch)
        score = selection_score(row)
        if score < best_score:
            best_score, best_epoch = score, epoch
            models.save(model, out / "best.pt", model_card=card, epoch=epoch)
    wall = time.perf_counter() - start
    summary = {**card, "epochs": epoch, "steps": step, "best_epoch": best_epoch, "best_score": best_score,
               "wall_time_s": wall, "selection": "min over epochs (0 = the untrained filter) of validation "
               "dynamic temporal_err_rel + 2 x mean(static, dynamic) AbsRel, cached cpu_val_v2 clips"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


def command_ship(args) -> None:
    """Write the chosen model of a run as a shipped model file whose ``extra`` holds its card."""
    summary = json.loads((Path(args.run) / "summary.json").read_text())
    model = models.load(Path(args.run) / "best.pt")
    validation = {}
    for path in args.validation:
        data = json.loads(Path(path).read_text())
        validation[Path(data["model"]).stem] = {group: {k: v for k, v in values.items() if isinstance(v, (int, float))}
                                              for group, values in data["summary"].items()}
    train_hours = (summary["wall_time_s"] + args.earlier_train_seconds) / 3600
    card = {
        "model": "sweepnet_temporal: SweepNet v3 (sweepnet_default, frozen) per motion-compensated window, "
                 "fused over time by a flow-warped ConvGRU confidence filter (models/temporal.py)",
        "data": "observer: as sweepnet_default (v3). Fusion cell: " + str(summary["train_clips"]) +
                " clips of data/cpu_train_v3 (configs/data/cpu_train_v3.yaml, the first sequences by index; "
                "dynamic 20-frame videos with 2 ramps, static one-ramp stacks replayed as 2 sweeps), observations "
                "cached through StreamingPredictor (DIS flow, as predict)",
        "cpu_hours": round(train_hours + args.cache_seconds / 3600, 3),
        "cpu_hours_detail": {"cache_observations_h": round(args.cache_seconds / 3600, 3),
                             "train_cell_h": round(train_hours, 3), "threads": 1,
                             "earlier_stage_s": args.earlier_train_seconds,
                             "note": "wall-clock hours of one thread on a shared 2-core machine (load 8-13)"},
        "how_chosen": summary["selection"] + f"; chosen epoch {summary['best_epoch']} of {summary['epochs']}"
                      " (continued from " + str(summary.get("init")) + "); shipped because on validation "
                      "(predict path, results/temporal/*_cpu_val_v2.json) it beats the per-window default in "
                      "frame-to-frame error without losing AbsRel",
        "validation": validation,
        "training": {k: summary[k] for k in ("loss", "lr", "crop", "seed", "steps", "epochs", "temporal_weight")},
    }
    models.save(model, args.out, model_card=card)
    print(json.dumps(card, indent=1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cache = sub.add_parser("cache")
    cache.add_argument("--data", required=True)
    cache.add_argument("--out", required=True)
    cache.add_argument("--observer", default="sweepnet_default")
    cache.add_argument("--limit", type=int, default=None)
    train = sub.add_parser("train")
    train.add_argument("--train", required=True)
    train.add_argument("--val", required=True)
    train.add_argument("--out", required=True)
    train.add_argument("--observer", default="sweepnet_default")
    train.add_argument("--limit", type=int, default=None)
    train.add_argument("--init", default=None, help="start from this model file (e.g. an earlier run's last.pt)")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--minutes", type=float, default=40.0)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--crop", type=int, default=64)
    train.add_argument("--accumulate", type=int, default=4)
    train.add_argument("--tbptt", type=int, default=None)
    train.add_argument("--temporal-weight", type=float, default=1.0)
    train.add_argument("--gt-flow-fraction", type=float, default=0.0)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--val-static", type=int, default=None,
                       help="validate on every dynamic clip and only this many static ones")
    ship = sub.add_parser("ship")
    ship.add_argument("--run", required=True)
    ship.add_argument("--out", required=True)
    ship.add_argument("--cache-seconds", type=float, required=True, help="wall time of the observation caches")
    ship.add_argument("--validation", nargs="*", default=[], help="tools/eval_temporal.py outputs on validation")
    ship.add_argument("--earlier-train-seconds", type=float, default=0.0,
                      help="wall time of the run(s) this one was initialised from (--init)")
    args = parser.parse_args(argv)
    {"cache": command_cache, "train": command_train, "ship": command_ship}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
