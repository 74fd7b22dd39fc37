"""The interim demo (what ``make demo`` runs): render a focus sweep of a real RGB-D scene.

    python -m focaldepth.demo --out runs/demo

The scene is the Middlebury 2014 "Motorcycle" stereo pair shipped with scikit-image
(``skimage.data.stereo_motorcycle``, quarter resolution, 741x500): its ground-truth
disparity converts to metric depth with the calibration of that pair,

    depth_m = focal_px * baseline_m / (disparity_px + doffs_px)
            = 994.978 * 0.193001 / (disparity + 31.086)        (about 2.1 m to 5.0 m)

Pixels without disparity (inf: occluded in the other view) are filled with the nearest
valid depth. The sweep is rendered for a 50 mm f/1.4 lens on an APS-C sensor (23.5 mm
wide), which blurs the scene by up to ~16 px at this resolution: clearly visible, yet
an ordinary camera. Outputs, all inside ``--out``:

* ``sweep/`` — the sequence folder (frames, meta.json, depth.npy ground truth)
* ``sweep.mp4`` + ``sweep.json`` — the same sweep as a video with its sidecar
* ``contact_sheet.png`` — all-in-focus image, depth, and every frame with its focus distance
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from focaldepth.errors import UserError
from focaldepth.io import write_sequence, write_sequence_video
from focaldepth.io.rgbd import motorcycle_rgbd
from focaldepth.optics import Camera

DEMO_FOCAL_LENGTH_MM = 50.0
DEMO_F_NUMBER = 1.4
DEMO_SENSOR_WIDTH_MM = 23.5  # APS-C
DEMO_NUM_FRAMES = 8
DEMO_VIDEO_FPS = 4.0  # slow enough to watch the focus move through the scene


def demo_camera(image_width_px: int) -> Camera:
    return Camera(DEMO_FOCAL_LENGTH_MM, DEMO_F_NUMBER, DEMO_SENSOR_WIDTH_MM, image_width_px)


def run_demo(
    out_dir: Path,
    *,
    num_frames: int = DEMO_NUM_FRAMES,
    psf: str = "disk",
    num_layers: int = 24,
    quiet: bool = False,
) -> dict[str, Path]:
    """Render the demo sweep and write its outputs into ``out_dir`` (replacing an earlier
    demo there). Returns the written paths by name."""
    from focaldepth.commands.render import focus_sweep_m, render_sweep
    from focaldepth.viz import (
        colorbar_image,
        colorize_depth,
        contact_sheet,
        depth_display_range,
        side_by_side,
        write_png,
    )

    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    started = time.perf_counter()
    image, depth_m, filled = motorcycle_rgbd()
    camera = demo_camera(image.shape[1])
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
        "sequence": write_sequence(
            out / "sweep",
            frames,
            focus_m,
            camera,
            depth_m=depth_m,
            source=source,
            extra_meta=extra,
            overwrite=True,
        ),
        "video": write_sequence_video(
            out / "sweep.mp4",
            frames,
            focus_m,
            camera,
            fps=DEMO_VIDEO_FPS,
            source=source,
            extra_meta=extra,
        ),
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
    parser = argparse.ArgumentParser(
        prog="python -m focaldepth.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="output folder [runs/demo]"
    )
    parser.add_argument("--frames", type=int, default=DEMO_NUM_FRAMES, help="frames in the sweep")
    parser.add_argument("--psf", choices=("disk", "gaussian"), default="disk")
    parser.add_argument("--layers", type=int, default=24, help="depth layers of the renderer")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        run_demo(
            args.out, num_frames=args.frames, psf=args.psf, num_layers=args.layers, quiet=args.quiet
        )
    except UserError as error:
        print(f"focaldepth demo: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
