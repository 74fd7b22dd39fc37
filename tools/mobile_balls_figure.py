"""README figure for the real hand-held phone stack ``../shared/data/mobile_depth_balls``.

Runs ``predict`` on the 25 frames (no meta.json: camera and focus unknown, relative depth) with
``--stack-align`` for the default model and the classical method, then writes

* ``results/mobile_depth_balls.png``: the near-focused reference frame (aligned), the relative
  depth of each method for the last frame (the reference view; every frame is estimated from
  the whole stack),
  and the default model's confidence; small (reduced panels, palette PNG, < 300 KB);
* ``results/mobile_depth_balls.json``: what the README quotes (alignment residual before and
  after, estimated sweep direction, median relative depth in three hand-placed boxes, also for
  the default model without ``--stack-align``, given ``--far-to-near``).

The frames are a third-party dataset (Suwajanakorn et al., CVPR 2015): only this small figure
is committed, never the frames. Usage::

    OMP_NUM_THREADS=1 python tools/mobile_balls_figure.py [--stack DIR] [--runs DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT.parent / "shared" / "data" / "mobile_depth_balls"
PANEL_WIDTH_PX = 400
# Boxes (x0, y0, x1, y1 as fractions of the frame) placed by eye on the reference frame: the
# big ball in front (left), the ball behind it (right of centre), the wall/background at the
# top right. A coarse check of depth order, not ground truth.
REGIONS = {
    "near_ball": (0.05, 0.25, 0.45, 0.85),
    "middle_ball": (0.62, 0.05, 0.86, 0.45),
    "background_top_right": (0.88, 0.02, 0.99, 0.25),
}


def run_predict(stack: Path, out: Path, model: str, stack_align: bool = True) -> dict:
    from focaldepth.predict import predict_sequence

    if not (out / "summary.json").is_file():  # without the alignment: the direction is given
        predict_sequence(stack, out, model=model, stack_align=stack_align, overwrite=True, progress=False,
                         far_to_near=None if stack_align else True)
    return json.loads((out / "summary.json").read_text())


def region_medians(depth: np.ndarray) -> dict[str, float]:
    height, width = depth.shape
    out = {}
    for name, (x0, y0, x1, y1) in REGIONS.items():
        box = depth[int(y0 * height):int(y1 * height), int(x0 * width):int(x1 * width)]
        out[name] = round(float(np.median(box)), 3)
    return out


def reference_frame(stack: Path, summary: dict) -> np.ndarray:
    """The reference frame of the alignment (its pixels are never resampled)."""
    from focaldepth.io import load_sequence

    index = summary["stack_alignment"]["reference_frame"]
    return load_sequence(stack, lazy=True).load().frames[index]


def colour_relative(depth: np.ndarray) -> np.ndarray:
    """Relative inverse depth in [0, 1] coloured as predict's video does."""
    from focaldepth import viz

    return viz.colorize_depth(1.0 / (0.5 + 0.5 * np.clip(depth, 0, 1)), 1.0, 2.0)


def colour_confidence(confidence: np.ndarray) -> np.ndarray:
    import matplotlib

    rgba = matplotlib.colormaps["gray"](np.clip(confidence, 0, 1))
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def draw_boxes(image: np.ndarray) -> np.ndarray:
    from PIL import ImageDraw

    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    for x0, y0, x1, y1 in REGIONS.values():
        draw.rectangle([x0 * width, y0 * height, x1 * width, y1 * height], outline=(255, 255, 255), width=3)
    return np.asarray(canvas)


def figure(frame: np.ndarray, learned: dict, classical: dict) -> np.ndarray:
    from focaldepth import viz

    scale = PANEL_WIDTH_PX / frame.shape[1]
    height_px = int(round(frame.shape[0] * scale))
    panels = [draw_boxes(frame), colour_relative(learned["depth"]), colour_relative(classical["depth"]),
              colour_confidence(learned["confidence"])]
    labels = ["reference frame (near focus, aligned stack)", "sweepnet_default: relative depth",
              "classical: relative depth", "sweepnet_default: confidence"]
    top = viz.side_by_side(panels[:2], labels[:2], height_px=height_px)
    bottom = viz.side_by_side(panels[2:], labels[2:], height_px=height_px)
    bar = viz.relative_colorbar_image(top.shape[0] + bottom.shape[0] + 4, width_px=70)
    grid = np.concatenate([top, np.full((4, top.shape[1], 3), 255, np.uint8), bottom], axis=0)
    return viz.side_by_side([grid, bar], gap_px=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=STACK)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "mobile_depth_balls")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "mobile_depth_balls.png")
    args = parser.parse_args()
    if not args.stack.is_dir():
        raise SystemExit(f"{args.stack}: not found (the shared phone stack; see ../shared/README.md)")

    results, record = {}, {}
    for name, model in (("sweepnet_default", "sweepnet_default"), ("classical", "classical")):
        out = args.runs / name
        summary = run_predict(args.stack, out, model)
        last = f"{summary['num_frames'] - 1:06d}.npy"
        depth = np.load(out / "depth" / last)
        results[name] = {"depth": depth, "confidence": np.load(out / "confidence" / last)}
        record[name] = {"relative_depth_median_in_box": region_medians(depth),
                        "confidence_mean": round(float(results[name]["confidence"].mean()), 3)}
        record["stack_alignment"] = {k: summary["stack_alignment"][k] for k in
                                     ("reference_frame", "mean_abs_gray_difference_to_reference",
                                      "registration_methods")}
        record["stack_alignment"]["breathing_magnification_first_last"] = [
            summary["stack_alignment"]["breathing_magnification"][i] for i in (0, -1)]
        record["focus_order_estimate"] = {k: summary["focus_order_estimate"][k] for k in
                                          ("sweep_direction", "breathing_magnification_change",
                                           "breathing_rank_correlation")}
        record["sweep_direction_used"] = summary["sweep_direction"]
    unaligned = args.runs / "sweepnet_default_without_stack_align"
    run_predict(args.stack, unaligned, "sweepnet_default", stack_align=False)
    depth = np.load(unaligned / "depth" / f"{summary['num_frames'] - 1:06d}.npy")
    record["sweepnet_default_without_stack_align"] = {
        "relative_depth_median_in_box": region_medians(depth),
        "confidence_mean": round(float(np.load(unaligned / "confidence" / f"{summary['num_frames'] - 1:06d}.npy").mean()), 3)}
    record["boxes_xyxy_fraction"] = REGIONS
    record["note"] = "relative inverse depth: 1 = nearest focus, 0 = farthest"

    frame = reference_frame(args.stack, summary)
    image = figure(frame, results["sweepnet_default"], results["classical"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from focaldepth.io.atomic import atomic_path, atomic_write_json

    with atomic_path(args.out) as tmp:  # a palette PNG keeps the figure small
        Image.fromarray(image).quantize(256, dither=Image.Dither.NONE).save(tmp, format="PNG", optimize=True)
    atomic_write_json(args.out.with_suffix(".json"), record)
    print(json.dumps(record, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
