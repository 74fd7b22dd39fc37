"""Self-supervised adaptation before / after (issue 12, part 5; docs/selfsup.md).

(a) DFD indoor *validation* scenes (``pairs[3::6]``, never the test scenes ``pairs[0::6]``),
    each with cover / inner / wide 5-frame sweeps synthesised from the real f/8 photo and
    depth as in ``tools/validation_sets.py`` (35 mm f/2.8, 2x downsampled): AbsRel and δ<1.25
    of the starting model and of the model adapted

    * per sweep (test-time adaptation: fine-tune on the one unlabeled sweep, then score it),
    * across scenes (fine-tune on all sweeps of the first half of the scenes, score the other
      half: does what it learns transfer?).

(b) The real hand-held phone stack ``mobile_depth_balls`` (no ground truth, focus unknown:
    relative mode, blur scale fitted): the reconstruction loss before / after and a picture
    (reference frame | relative depth before | after, one colour range).

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python -m focaldepth.experiments.selfsup_adapt --out results/selfsup_adapt

writes ``results.json`` and ``mobile_depth_balls.png`` and ``README.md`` (the tables) in ``--out``.
Hyper-parameters were chosen on DFD *training* scenes (``--offset 1 --every 12``); see the README.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from focaldepth.io.rgbd import default_shared_root
from focaldepth.train.selfsup import (AdaptSettings, UnlabeledStack, adapt, fit_blur_scale,
                                      reconstruction_error, with_blur_scale)

PROTOCOLS = ("cover", "inner", "wide")
MODEL = "sweepnet_real_vote"


@dataclass
class LabeledSweep:
    scene: str
    protocol: str
    stack: UnlabeledStack
    depth_m: torch.Tensor  # (1, 1, H, W) full resolution, for scoring only
    valid: torch.Tensor


def dfd_sweeps(every: int = 6, offset: int = 3, num_frames: int = 5, scale: float = 0.5,
               max_scenes: int | None = None) -> list[LabeledSweep]:
    """As ``tools/validation_sets.dfd_sweeps`` (the same :func:`rgbd_eval.dfd_validation_sweeps`),
    returned with scene names."""
    from focaldepth.experiments import rgbd_eval

    sweeps = []
    for name, protocol, frames, focus, camera, depth, valid in rgbd_eval.dfd_validation_sweeps(
            every, offset, num_frames, scale, max_scenes):
        sweeps.append(LabeledSweep(name, protocol, UnlabeledStack(frames, focus, camera), depth, valid))
    return sweeps


def scores(model, sweep: LabeledSweep) -> dict[str, float]:
    from focaldepth.metrics import depth_metrics

    with torch.no_grad():
        depth = model(sweep.stack.frames, sweep.stack.focus_distance_m, sweep.stack.camera)["depth_m"]
    depth = F.interpolate(depth, size=sweep.depth_m.shape[-2:], mode="bilinear")
    metrics = depth_metrics(depth, sweep.depth_m, sweep.valid)
    return {"absrel": float(metrics["absrel"]), "delta1": float(metrics["delta1"])}


def mean_rows(rows: list[dict], key: str, protocol: str | None = None) -> float:
    values = [r[key] for r in rows if protocol is None or r["protocol"] == protocol]
    return float(np.mean(values)) if values else float("nan")


def per_sweep(model, sweeps: list[LabeledSweep], settings: AdaptSettings, log=print) -> list[dict]:
    """Test-time adaptation: each sweep on its own, scored on itself (its depth never seen)."""
    rows = []
    for sweep in sweeps:
        adapted, adapt_log = adapt(model, [sweep.stack], settings=settings)
        row = {"scene": sweep.scene, "protocol": sweep.protocol,
               **{f"{k}_before": v for k, v in scores(model, sweep).items()},
               **{f"{k}_after": v for k, v in scores(adapted, sweep).items()},
               "recon_before": reconstruction_error(model, [sweep.stack], settings),
               "recon_after": reconstruction_error(adapted, [sweep.stack], settings),
               "cpu_s": adapt_log.cpu_s}
        rows.append(row)
        log(f"  {sweep.scene} {sweep.protocol:5s} AbsRel {row['absrel_before']:.3f} -> {row['absrel_after']:.3f}  "
            f"d1 {row['delta1_before']:.3f} -> {row['delta1_after']:.3f}  recon {row['recon_before']:.4f} -> "
            f"{row['recon_after']:.4f}  ({row['cpu_s']:.0f} s)")
    return rows


def across_scenes(model, sweeps: list[LabeledSweep], settings: AdaptSettings, log=print) -> dict:
    """Adapt on every sweep of the first half of the scenes, score the held-out half."""
    scenes = sorted({s.scene for s in sweeps})
    train_scenes = set(scenes[: len(scenes) // 2])
    train = [s for s in sweeps if s.scene in train_scenes]
    held_out = [s for s in sweeps if s.scene not in train_scenes]
    adapted, adapt_log = adapt(model, [s.stack for s in train], settings=settings)
    rows = []
    for part, group in (("adapted_on", train), ("held_out", held_out)):
        for sweep in group:
            rows.append({"part": part, "scene": sweep.scene, "protocol": sweep.protocol,
                         **{f"{k}_before": v for k, v in scores(model, sweep).items()},
                         **{f"{k}_after": v for k, v in scores(adapted, sweep).items()},
                         "recon_before": reconstruction_error(model, [sweep.stack], settings),
                         "recon_after": reconstruction_error(adapted, [sweep.stack], settings)})
    log(f"  adapted on {len(train)} sweeps of {len(train_scenes)} scenes in {adapt_log.cpu_s:.0f} CPU s")
    return {"train_scenes": sorted(train_scenes), "held_out_scenes": sorted(set(scenes) - train_scenes),
            "rows": rows, "cpu_s": adapt_log.cpu_s}


def mobile_balls(model, stack_dir: Path, settings: AdaptSettings, out_png: Path, log=print) -> dict:
    """Relative mode on the real phone stack: fit the blur scale, adapt, picture before / after."""
    from focaldepth.adapt import read_recording, sequence_windows

    sequence, far_to_near, handheld = read_recording(stack_dir, stack_align=True)
    windows = sequence_windows(sequence, far_to_near=far_to_near)
    model = getattr(model, "without_physics", lambda: model)()
    scale, tried = fit_blur_scale(model, windows.stacks, settings)
    stacks = [with_blur_scale(s, scale) for s in windows.stacks]
    adapted, adapt_log = adapt(model, stacks, settings=settings)
    result = {"frames": windows.num_frames, "windows": len(stacks), "working_size_hw": list(windows.working_size_hw),
              "sweep_direction": handheld.get("sweep_direction"), "blur_scale": scale,
              "loss_per_blur_scale": {f"{k:.3f}": v for k, v in tried.items()},
              "recon_before": reconstruction_error(model, stacks, settings),
              "recon_after": reconstruction_error(adapted, stacks, settings), "cpu_s": adapt_log.cpu_s}
    stack = stacks[-1]
    with torch.no_grad():
        before, after = (m(stack.frames, stack.focus_distance_m, stack.camera)["depth_m"][0, 0].numpy()
                         for m in (model, adapted))
    result["mean_abs_change_relative"] = float(np.mean(np.abs(relative(after) - relative(before))))
    write_picture(out_png, stack.frames[0, -1], before, after)
    log(f"  blur scale x{scale:.2f}, recon {result['recon_before']:.4f} -> {result['recon_after']:.4f}, "
        f"mean |change| {result['mean_abs_change_relative']:.3f} of the relative range")
    return result


def relative(depth_m: np.ndarray) -> np.ndarray:
    from focaldepth.predict import relative_inverse_depth

    return relative_inverse_depth(depth_m)


def write_picture(path: Path, frame: torch.Tensor, before_m: np.ndarray, after_m: np.ndarray) -> None:
    """Frame | before | after, relative inverse depth coloured as predict colours it."""
    from PIL import Image

    from focaldepth import viz
    from focaldepth.io.atomic import atomic_path

    def colour(depth_m):
        return viz.colorize_depth(1.0 / (0.5 + 0.5 * np.clip(relative(depth_m), 0, 1)), 1.0, 2.0)

    rgb = (frame.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    image = viz.side_by_side([rgb, colour(before_m), colour(after_m)],
                             ["aligned frame", f"{MODEL} (before)", "adapted (after)"])
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def table(title: str, rows: list[dict]) -> list[str]:
    lines = [f"### {title}", "", "| protocol | sweeps | AbsRel before | AbsRel after | δ1 before | δ1 after | "
             "recon before | recon after |", "|---|---|---|---|---|---|---|---|"]
    for protocol in (*PROTOCOLS, None):
        group = [r for r in rows if protocol is None or r["protocol"] == protocol]
        lines.append(f"| {protocol or '**all**'} | {len(group)} | " + " | ".join(
            f"{mean_rows(group, key):.3f}" if key.startswith(("absrel", "delta")) else f"{mean_rows(group, key):.4f}"
            for key in ("absrel_before", "absrel_after", "delta1_before", "delta1_after", "recon_before",
                        "recon_after")) + " |")
    better = sum(r["absrel_after"] < r["absrel_before"] for r in rows)
    lines += ["", f"AbsRel lower after adaptation on {better} of {len(rows)} sweeps.", ""]
    return lines


def split_name(every: int, offset: int) -> str:
    """Which DFD split pairs[offset::every] is (pairs[3::6] validation, i mod 6 in 1, 2, 4, 5 training)."""
    residues = {(offset + k * every) % 6 for k in range(6)}
    return "validation" if residues == {3} else "training" if not residues & {0, 3} else "mixed"


def write_readme(out: Path, command: str, results: dict) -> None:
    from focaldepth.io.atomic import atomic_write_text

    settings = results["settings"]
    lines = ["# Self-supervised adaptation: before / after", "",
             f"Command (CPU, one thread, shared machine): `{command}`", "",
             f"Model `{MODEL}`; settings per sweep {settings['per_sweep']}, across scenes {settings['across']}.",
             f"DFD indoor {split_name(results['every'], results['offset'])} scenes "
             f"pairs[{results['offset']}::{results['every']}]{'[:' + str(results['max_scenes']) + ']' if results.get('max_scenes') else ''} "
             f"({len(results['scenes'])} scenes x cover/inner/wide, 5-frame sweeps at 2x downsampling; "
             "DFD: Carvalho et al., ECCV-W 2018); the loss never sees depth. "
             f"Total CPU {results['cpu_s']:.0f} s.", ""]
    if results.get("per_sweep"):
        lines += table("(a1) per sweep: adapt on the sweep, score the same sweep", results["per_sweep"])
    if results.get("across"):
        across = results["across"]
        lines += [f"(a2) adapted on scenes {', '.join(across['train_scenes'])} ({across['cpu_s']:.0f} CPU s), "
                  f"held out {', '.join(across['held_out_scenes'])}.", ""]
        lines += table("(a2) across scenes: held-out half",
                       [r for r in across["rows"] if r["part"] == "held_out"])
        lines += table("(a2) across scenes: the half adapted on",
                       [r for r in across["rows"] if r["part"] == "adapted_on"])
    if results.get("mobile"):
        mobile = results["mobile"]
        lines += ["### (b) mobile_depth_balls (real phone stack, no ground truth)", "",
                  f"{mobile['frames']} frames, stack-aligned, one window at {mobile['working_size_hw']} px; focus and lens "
                  f"unknown: relative mode, blur scale fitted x{mobile['blur_scale']:.2f} of the stand-in lens. "
                  f"Reconstruction loss {mobile['recon_before']:.4f} before, {mobile['recon_after']:.4f} after; "
                  f"mean |change| of the relative inverse depth {mobile['mean_abs_change_relative']:.3f} "
                  f"({mobile['cpu_s']:.0f} CPU s). Picture: `mobile_depth_balls.png` "
                  "(frame | before | after).", ""]
    atomic_write_text(out / "README.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--every", type=int, default=6)
    parser.add_argument("--offset", type=int, default=3, help="3 = validation; never 0 (the DFD test scenes)")
    parser.add_argument("--max-scenes", type=int, default=None)
    parser.add_argument("--per-sweep-steps", type=int, default=30)
    parser.add_argument("--across-steps", type=int, default=90)
    parser.add_argument("--lr", type=float, default=AdaptSettings.lr)
    parser.add_argument("--anchor-weight", type=float, default=AdaptSettings.anchor_weight)
    parser.add_argument("--smooth-weight", type=float, default=AdaptSettings.smooth_weight)
    parser.add_argument("--mobile", type=Path, default=default_shared_root() / "data" / "mobile_depth_balls")
    parser.add_argument("--skip", nargs="*", default=[], choices=["per_sweep", "across", "mobile"])
    args = parser.parse_args(argv)
    if any((args.offset + k * args.every) % 6 == 0 for k in range(6)):
        parser.error("these scenes include the DFD test table pairs[0::6]: choose validation (--every 6 --offset 3) "
                     "or training scenes (e.g. --every 12 --offset 1)")
    torch.set_num_threads(1)
    from focaldepth.predict import load_model

    start = time.process_time()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(MODEL)
    base = AdaptSettings(lr=args.lr, anchor_weight=args.anchor_weight, smooth_weight=args.smooth_weight)
    per_settings, across_settings = replace(base, steps=args.per_sweep_steps), replace(base, steps=args.across_steps)
    sweeps = dfd_sweeps(args.every, args.offset, max_scenes=args.max_scenes)
    print(f"{len(sweeps)} sweeps rendered ({time.process_time() - start:.0f} CPU s)", flush=True)
    results = {"model": MODEL, "every": args.every, "offset": args.offset, "max_scenes": args.max_scenes,
               "scenes": sorted({s.scene for s in sweeps}),
               "settings": {"per_sweep": asdict(per_settings), "across": asdict(across_settings)}}
    log = lambda text: print(text, flush=True)  # noqa: E731
    if "per_sweep" not in args.skip:
        results["per_sweep"] = per_sweep(model, sweeps, per_settings, log)
    if "across" not in args.skip:
        results["across"] = across_scenes(model, sweeps, across_settings, log)
    if "mobile" not in args.skip and args.mobile.is_dir():
        results["mobile"] = mobile_balls(model, args.mobile, across_settings, args.out / "mobile_depth_balls.png", log)
    results["cpu_s"] = time.process_time() - start
    from focaldepth.io.atomic import atomic_write_json

    atomic_write_json(args.out / "results.json", results)
    command = "OMP_NUM_THREADS=1 nice -n 10 python -m focaldepth.experiments.selfsup_adapt " + " ".join(
        sys.argv[1:] if argv is None else argv)
    write_readme(args.out, command, results)
    print(Path(args.out / "README.md").read_text())


if __name__ == "__main__":
    main()
