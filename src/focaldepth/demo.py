"""The demo (what ``make demo`` runs): depth from a focus-sweep video, end to end.

    python -m focaldepth.demo --out runs/demo                  # make demo
    python -m focaldepth.demo --render-only --out runs/render  # the renderer alone, on a real RGB-D image

``make demo``:

1. Makes a short *dynamic* focus-sweep clip with the procedural generator, from the
   held-out test pools (textures and shapes the default model never saw), with a moving
   camera, 3 near-to-far ramps of 5 frames, as a video with its metadata sidecar — the
   format a user brings: ``clip.mp4`` + ``clip.json``. Its ground-truth depth is kept
   beside it (``clip_depth_gt.npy``), which real footage would not have.
2. Runs ``focaldepth predict`` on it with the shipped default model and with the classical
   baseline (``prediction/`` and ``prediction_classical/``: per-frame depth, confidence,
   a side-by-side depth video and ``summary.json``).
3. Prints AbsRel, RMSE and δ<1.25 of both against the ground truth (frames after the first
   complete ramp), and where the depth video is.

``--render-only`` renders a focus sweep of the Middlebury 2014 *Motorcycle* RGB-D image that
ships with scikit-image (:func:`focaldepth.io.rgbd.motorcycle_rgbd`, 741x500, metric depth
about 2.1-5.0 m, holes filled) for a 50 mm f/1.4 lens on an APS-C sensor (23.5 mm wide), which
blurs the scene by up to ~16 px: clearly visible, yet an ordinary camera. It writes ``sweep/``
(the sequence folder: frames, meta.json, depth.npy ground truth), ``sweep.mp4`` + ``sweep.json``
and ``contact_sheet.png`` (all-in-focus image, depth, and every frame with its focus distance).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from focaldepth.errors import UserError
from focaldepth.optics import Camera

# --- make demo: a generated clip through focaldepth predict ---------------------------------

DEMO_SCENE = {
    "seed": 2026,
    "num_sequences": 1,
    "split": "test",
    "scene": {
        "resolution": [240, 320],
        "focus": {"frames_per_ramp": 5, "num_ramps": 3},
        "motion": {"dynamic_fraction": 1.0, "kinds": ["camera"], "camera_speed_px": [2.0, 3.0]},
        "depth": {"max_coc_px": [12.0, 20.0]},
        "camera": {"focal_length_mm": [20.0, 50.0]},
    },
}
CLIP_FPS = 10.0

# --- --render-only: the renderer on the real Motorcycle RGB-D image --------------------------

RENDER_FOCAL_LENGTH_MM = 50.0
RENDER_F_NUMBER = 1.4
RENDER_SENSOR_WIDTH_MM = 23.5  # APS-C
RENDER_NUM_FRAMES = 8
RENDER_NUM_LAYERS = 24
RENDER_VIDEO_FPS = 4.0  # slow enough to watch the focus move through the scene


def _printer(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    return say


def make_clip(out_dir: Path, index: int = 0) -> tuple[Path, np.ndarray]:
    """Generate the demo clip; returns the video path and ground-truth depth (T, H, W)."""
    from focaldepth.generate.config import parse_config
    from focaldepth.io import write_sequence_video
    from focaldepth.scenes.pools import split_pools
    from focaldepth.scenes.sequence import generate_sequence

    config = parse_config(DEMO_SCENE)
    pools = split_pools(config.split_seed)[config.split]
    data = generate_sequence(config.scene, pools, config.seed, index)
    clip = out_dir / "clip.mp4"
    write_sequence_video(clip, data.frames, [float(f) for f in data.focus_distance_m], data.camera,
                         fps=CLIP_FPS, source="focaldepth demo (procedural, held-out test pools)")
    np.save(out_dir / "clip_depth_gt.npy", data.depth_m)
    return clip, data.depth_m


def score(prediction_dir: Path, depth_gt: np.ndarray, first_frame: int) -> dict[str, float]:
    """Mean metrics over frames ``first_frame``.. of a predict output folder."""
    from focaldepth.metrics import MetricAccumulator

    accumulator = MetricAccumulator()
    for index in range(first_frame, depth_gt.shape[0]):
        pred = torch.from_numpy(np.load(prediction_dir / "depth" / f"{index:06d}.npy"))[None, None]
        gt = torch.from_numpy(depth_gt[index])[None, None]
        accumulator.update(pred, gt, torch.isfinite(gt) & (gt > 0))
    return accumulator.compute()


def run(out_dir: Path, model: str = "sweepnet_default", *, quiet: bool = False) -> list[tuple[str, dict, dict]]:
    """The ``make demo`` job: (label, predict summary, metrics) for the model and classical."""
    from focaldepth.predict import predict_sequence

    say = _printer(quiet)
    out_dir.mkdir(parents=True, exist_ok=True)
    say("1/3 generating a dynamic focus-sweep clip (held-out textures and shapes) ...")
    clip, depth_gt = make_clip(out_dir)
    rows = []
    for label, name, folder in (("default model", model, "prediction"),
                                ("classical baseline", "classical", "prediction_classical")):
        say(f"2/3 focaldepth predict {clip} --model {name} ...")
        summary = predict_sequence(clip, out_dir / folder, model=name, overwrite=True, progress=False)
        rows.append((label, summary, score(out_dir / folder, depth_gt, summary["window_frames"] - 1)))
    return rows


def report(rows: list[tuple[str, dict, dict]], out_dir: Path) -> None:
    print("3/3 accuracy against the clip's ground truth (frames after the first full ramp):")
    print(f"  {'method':20s} {'AbsRel':>8s} {'RMSE (m)':>9s} {'δ<1.25':>8s} {'frames/s':>9s}")
    for label, summary, metrics in rows:
        print(f"  {label:20s} {metrics['absrel']:8.3f} {metrics['rmse']:9.3f} {metrics['delta1']:8.3f} "
              f"{summary['timing_s']['frames_per_s']:9.1f}")
    print(f"depth video: {out_dir / 'prediction' / 'depth.mp4'}  (input | depth, one colour range for the clip)")
    print(f"per-frame depth (.npy, metres) and confidence: {out_dir / 'prediction'}/depth, /confidence")


def render_camera(image_width_px: int) -> Camera:
    return Camera(RENDER_FOCAL_LENGTH_MM, RENDER_F_NUMBER, RENDER_SENSOR_WIDTH_MM, image_width_px)


def render_motorcycle_sweep(
    out_dir: Path,
    *,
    num_frames: int = RENDER_NUM_FRAMES,
    psf: str = "disk",
    num_layers: int = RENDER_NUM_LAYERS,
    quiet: bool = False,
) -> dict[str, Path]:
    """``--render-only``: render the Motorcycle sweep and write its outputs into ``out_dir``
    (replacing an earlier one there). Returns the written paths by name."""
    from focaldepth.commands.render import focus_sweep_m, render_sweep
    from focaldepth.io import write_sequence, write_sequence_video
    from focaldepth.io.rgbd import motorcycle_rgbd
    from focaldepth.viz import (
        colorbar_image,
        colorize_depth,
        contact_sheet,
        depth_display_range,
        side_by_side,
        write_png,
    )

    say = _printer(quiet)
    started = time.perf_counter()
    image, depth_m, filled = motorcycle_rgbd()
    camera = render_camera(image.shape[1])
    focus_m = focus_sweep_m(depth_m, camera, num_frames=num_frames)
    max_coc_px = float(max(np.max(camera.coc_px(depth_m, f)) for f in focus_m))
    say(
        f"scene: Middlebury Motorcycle {image.shape[1]}x{image.shape[0]}, depth {depth_m.min():.2f}-"
        f"{depth_m.max():.2f} m ({filled.mean():.1%} filled); camera {camera.focal_length_mm:g} mm "
        f"f/{camera.f_number:g}, sensor {camera.sensor_width_mm:g} mm; max blur {max_coc_px:.1f} px"
    )
    say(
        f"rendering {num_frames} frames focused {focus_m[0]:.2f} m -> {focus_m[-1]:.2f} m "
        f"({psf} PSF, {num_layers} layers)..."
    )
    frames = render_sweep(image, depth_m, camera, focus_m, psf=psf, num_layers=num_layers)
    render_s = time.perf_counter() - started

    out = Path(out_dir)
    source = "focaldepth demo: Middlebury 2014 Motorcycle (skimage.data.stereo_motorcycle)"
    extra = {
        "render": {
            "psf": psf,
            "num_layers": num_layers,
            "linear_light": True,
            "depth_filled_fraction": round(float(filled.mean()), 6),
        }
    }
    paths = {
        "sequence": write_sequence(out / "sweep", frames, focus_m, camera, depth_m=depth_m,
                                   source=source, extra_meta=extra, overwrite=True),
        "video": write_sequence_video(out / "sweep.mp4", frames, focus_m, camera, fps=RENDER_VIDEO_FPS,
                                      source=source, extra_meta=extra),
    }
    near_m, far_m = depth_display_range(depth_m)
    tiles = [image, colorize_depth(depth_m, near_m, far_m), *frames]
    labels = ["all in focus", "depth (ground truth)", *[f"focus {f:.2f} m" for f in focus_m]]
    sheet = contact_sheet(
        tiles,
        labels,
        columns=5,
        tile_width_px=360,
        title=f"focaldepth demo: focus sweep, {camera.focal_length_mm:g} mm f/{camera.f_number:g}",
    )
    sheet = side_by_side(
        [sheet, colorbar_image(near_m, far_m, sheet.shape[0] // 2)], height_px=sheet.shape[0]
    )
    paths["contact_sheet"] = write_png(out / "contact_sheet.png", sheet)
    say(f"done in {time.perf_counter() - started:.1f} s (rendering {render_s:.1f} s)")
    for name, path in paths.items():
        say(f"  {name:14s} {path}")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m focaldepth.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder [runs/demo]")
    parser.add_argument("--model", default="sweepnet_default", help="shipped model name or model file")
    parser.add_argument("--quiet", action="store_true", help="no progress lines (the accuracy report stays)")
    render = parser.add_argument_group("--render-only: a focus sweep of the real Motorcycle RGB-D image")
    render.add_argument("--render-only", action="store_true",
                        help="only render the Motorcycle sweep (no prediction)")
    render.add_argument("--frames", type=int, help=f"frames in the sweep [{RENDER_NUM_FRAMES}]")
    render.add_argument("--psf", choices=("disk", "gaussian"), help="point-spread function [disk]")
    render.add_argument("--layers", type=int, help=f"depth layers of the renderer [{RENDER_NUM_LAYERS}]")
    args = parser.parse_args(argv)
    if not args.render_only and (args.frames, args.psf, args.layers) != (None, None, None):
        parser.error("--frames, --psf and --layers set the --render-only sweep; add --render-only")
    try:
        if args.render_only:
            render_motorcycle_sweep(args.out, num_frames=args.frames or RENDER_NUM_FRAMES,
                                    psf=args.psf or "disk", num_layers=args.layers or RENDER_NUM_LAYERS,
                                    quiet=args.quiet)
        else:
            report(run(args.out, args.model, quiet=args.quiet), args.out)
    except UserError as error:
        print(f"focaldepth demo: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
