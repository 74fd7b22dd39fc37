"""`focaldepth render`: turn a user's RGB-D image into a focus sweep in the sequence format.

    focaldepth render RGB DEPTH --meta META.json --out DIR
        [--focus-near M --focus-far M --frames K] [--psf disk|gaussian] [--layers 24]
        [--video] [--overwrite]

RGB is any png/jpg/tif; DEPTH is a 16-bit PNG in millimetres (0 = invalid), .npy/.npz in
metres or .exr (see :mod:`focaldepth.io.depth`). META.json holds the camera
(``focal_length_mm``, ``f_number``, ``sensor_width_mm`` of the RGB image's width) and
optionally ``focus_distance_m`` (or ``focus_distance_diopters``) — the sweep to render;
without it the sweep is a ramp evenly spaced in dioptres over the depth range (or between
--focus-near and --focus-far). Invalid depth pixels are filled with the nearest valid
depth. DIR gets ``000000.png``…, ``meta.json`` and ``depth.npy`` (the depth the frames were
rendered from: the ground truth), plus ``sweep.mp4``/``sweep.json`` with --video.

Blur is applied in linear light (sRGB decoded, blurred, re-encoded), as in a camera, where
the lens blurs scene radiance before the tone curve: bright bokeh keeps its brightness.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from focaldepth.errors import UserError
from focaldepth.io import fill_invalid_depth, read_depth, read_image, read_meta, write_sequence
from focaldepth.io.atomic import is_nonempty_dir
from focaldepth.io.meta import SequenceMeta
from focaldepth.optics import Camera, dioptric_ramp

DEFAULT_NUM_FRAMES = 8
# Focus distances rendered per renderer call: bounds memory at (chunk × layers) FFT planes.
FRAMES_PER_CALL = 4
VIDEO_NAME = "sweep.mp4"


class PsfChoice(str, Enum):
    disk = "disk"
    gaussian = "gaussian"


# --- core --------------------------------------------------------------------------------


def focus_sweep_m(
    depth_m: np.ndarray,
    camera: Camera,
    *,
    focus_near_m: float | None = None,
    focus_far_m: float | None = None,
    num_frames: int = DEFAULT_NUM_FRAMES,
) -> list[float]:
    """A near→far ramp evenly spaced in dioptres; the limits default to the nearest and
    farthest valid depth (widened by ±5 % in dioptres for a flat scene)."""
    valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    near_m = float(valid.min()) if focus_near_m is None else focus_near_m
    far_m = float(valid.max()) if focus_far_m is None else focus_far_m
    if focus_near_m is None and focus_far_m is None and not far_m > near_m:
        near_m, far_m = 1.0 / (1.05 / near_m), 1.0 / (0.95 / far_m)
    for flag, value in (("--focus-near", near_m), ("--focus-far", far_m)):
        if not (math.isfinite(value) and value > camera.focal_length_m):
            raise UserError(
                f"{flag} {value:g} m must be finite and beyond the focal length "
                f"({camera.focal_length_mm:g} mm)"
            )
    if not far_m > near_m:
        raise UserError(
            f"focus sweep needs near < far, got near {near_m:g} m and far {far_m:g} m "
            f"(check --focus-near/--focus-far against the depth range)"
        )
    if num_frames < 1:
        raise UserError(f"--frames must be at least 1, got {num_frames}")
    return [float(v) for v in dioptric_ramp(near_m, far_m, num_frames)]


def render_sweep(
    image_rgb8: np.ndarray,
    depth_m: np.ndarray,
    camera: Camera,
    focus_distance_m: Sequence[float],
    *,
    f_number: Sequence[float] | None = None,
    psf: str = "disk",
    num_layers: int = 24,
    linear_light: bool = True,
) -> np.ndarray:
    """Render uint8 frames (S, H, W, 3) of ``image_rgb8`` (H, W, 3) seen at ``depth_m``
    (H, W, metres, all valid) when focused at each distance, with ``focaldepth.render``.

    ``f_number`` optionally gives each frame its own f-number (else the camera's). Each run of
    frames sharing an f-number (at most :data:`FRAMES_PER_CALL`) is one
    :func:`focaldepth.render.render_defocus` call (sRGB in and out; blurred in linear light
    unless ``linear_light`` is False).
    """
    import torch

    from focaldepth.render import render_defocus

    height, width = depth_m.shape
    if image_rgb8.shape[:2] != (height, width):
        raise ValueError(
            f"render_sweep: image {image_rgb8.shape[:2]} and depth {depth_m.shape} differ"
        )
    if camera.image_width_px != width:
        raise ValueError(
            f"render_sweep: camera.image_width_px {camera.image_width_px} != image width {width}"
        )
    f_numbers = [camera.f_number] * len(focus_distance_m) if f_number is None else list(f_number)
    image = (
        torch.from_numpy(np.ascontiguousarray(image_rgb8)).permute(2, 0, 1)[None].float() / 255.0
    )
    depth = torch.from_numpy(np.ascontiguousarray(depth_m, dtype=np.float32))[None, None]
    frames = np.empty((len(focus_distance_m), height, width, 3), dtype=np.uint8)
    for start, stop in _chunks(f_numbers, FRAMES_PER_CALL):
        stack = render_defocus(image, depth, focus_distance_m[start:stop], camera,
                               f_number=f_numbers[start], psf=psf, num_layers=num_layers,
                               linear_light=linear_light)
        frames[start:stop] = (
            (stack.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        )
    return frames


def _chunks(f_numbers: Sequence[float], size: int) -> list[tuple[int, int]]:
    """Runs of at most ``size`` consecutive frames sharing one f-number (one renderer call each)."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(f_numbers) + 1):
        if i == len(f_numbers) or i - start == size or f_numbers[i] != f_numbers[start]:
            runs.append((start, i))
            start = i
    return runs


def _sweep_from_meta(
    meta: SequenceMeta, meta_path: Path, ramp_flags_given: bool
) -> list[float] | None:
    if meta.focus_distance_m is None:
        return None
    if ramp_flags_given:
        raise UserError(
            "has focus_distance_m; drop it or drop --focus-near/--focus-far/--frames", meta_path
        )
    unknown = [i for i, f in enumerate(meta.focus_distance_m) if f is None]
    if unknown:
        raise UserError(
            f"focus_distance_m[{unknown[0]}] is null: rendering needs every focus distance",
            meta_path,
        )
    return [float(f) for f in meta.focus_distance_m if f is not None]


def render_sweep_from_rgbd(
    rgb_path: str | os.PathLike[str],
    depth_path: str | os.PathLike[str],
    meta_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    focus_near_m: float | None = None,
    focus_far_m: float | None = None,
    num_frames: int | None = None,
    psf: str = "disk",
    num_layers: int = 24,
    video: bool = False,
    video_fps: float = 10.0,
    overwrite: bool = False,
    linear_light: bool = True,
) -> Path:
    """The ``focaldepth render`` command as a function; returns the written folder.

    Everything is validated before rendering, and the folder appears only when complete.
    """
    rgb_file, depth_file, meta_file, out = (
        Path(rgb_path),
        Path(depth_path),
        Path(meta_path),
        Path(out_dir),
    )
    if out.exists() and not out.is_dir():
        raise UserError("output exists and is not a folder", out)
    if is_nonempty_dir(out) and not overwrite:
        raise UserError("output folder is not empty (pass --overwrite to replace it)", out)
    if psf not in ("disk", "gaussian"):
        raise UserError(f"--psf must be disk or gaussian, got {psf!r}")
    if num_layers < 2:
        raise UserError(f"--layers must be at least 2, got {num_layers}")

    meta = read_meta(meta_file, require_focus=False)
    if not meta.camera_known:  # predict accepts an unknown camera (relative depth); rendering cannot
        unknown = [key for key in ("focal_length_mm", "f_number", "sensor_width_mm") if getattr(meta, key) is None]
        raise UserError(f"missing key(s): {', '.join(unknown)} (null or absent: rendering needs the camera)",
                        meta_file)
    image = read_image(rgb_file)
    depth_raw = read_depth(depth_file)
    if depth_raw.ndim != 2:
        raise UserError(f"expected one (H, W) depth map, got shape {depth_raw.shape}", depth_file)
    if depth_raw.shape != image.shape[:2]:
        raise UserError(
            f"depth is {depth_raw.shape[1]}x{depth_raw.shape[0]} but the RGB image "
            f"{rgb_file.name} is {image.shape[1]}x{image.shape[0]}",
            depth_file,
        )
    depth_m, filled = fill_invalid_depth(depth_raw, depth_file)
    camera = meta.camera(image.shape[1])

    ramp_flags = focus_near_m is not None or focus_far_m is not None or num_frames is not None
    focus_m = _sweep_from_meta(meta, meta_file, ramp_flags)
    if focus_m is None:
        frames_wanted = num_frames or (
            len(meta.f_number) if isinstance(meta.f_number, list) else DEFAULT_NUM_FRAMES
        )
        focus_m = focus_sweep_m(
            depth_m,
            camera,
            focus_near_m=focus_near_m,
            focus_far_m=focus_far_m,
            num_frames=frames_wanted,
        )
    f_numbers = meta.f_numbers(len(focus_m))
    if len(f_numbers) != len(focus_m):
        raise UserError(
            f"f_number lists {len(f_numbers)} values but the sweep has {len(focus_m)} frames",
            meta_file,
        )
    if meta.timestamps_s is not None and len(meta.timestamps_s) != len(focus_m):
        raise UserError(
            f"timestamps_s lists {len(meta.timestamps_s)} values but the sweep has {len(focus_m)} frames",
            meta_file,
        )

    frames = render_sweep(
        image,
        depth_m,
        camera,
        focus_m,
        f_number=f_numbers,
        psf=psf,
        num_layers=num_layers,
        linear_light=linear_light,
    )
    render_info: dict[str, Any] = {
        "rgb": str(rgb_file),
        "depth": str(depth_file),
        "psf": psf,
        "num_layers": num_layers,
        "linear_light": linear_light,
        "depth_filled_fraction": round(float(filled.mean()), 6),
    }
    extra = {**meta.extra, "render": render_info}
    return write_sequence(
        out,
        frames,
        focus_m,
        camera,
        f_number=meta.f_number if isinstance(meta.f_number, list) else None,
        timestamps_s=meta.timestamps_s,
        depth_m=depth_m,
        source=meta.source or f"focaldepth render {rgb_file.name} {depth_file.name}",
        extra_meta=extra,
        video_name=VIDEO_NAME if video else None,
        video_fps=video_fps,
        overwrite=overwrite,
    )


# --- CLI ---------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add ``focaldepth render`` to the app."""

    @app.command("render")
    def render_command(
        rgb: Annotated[Path, typer.Argument(help="All-in-focus RGB image (png/jpg/tif).")],
        depth: Annotated[
            Path,
            typer.Argument(help="Depth: 16-bit PNG in mm (0 = invalid), .npy/.npz in m, or .exr."),
        ],
        meta: Annotated[
            Path,
            typer.Option(
                "--meta",
                help="JSON with focal_length_mm, f_number, sensor_width_mm [, focus_distance_m].",
            ),
        ],
        out: Annotated[Path, typer.Option("--out", help="Output sequence folder.")],
        focus_near: Annotated[
            float | None,
            typer.Option("--focus-near", help="Nearest focus distance (m) of the ramp."),
        ] = None,
        focus_far: Annotated[
            float | None,
            typer.Option("--focus-far", help="Farthest focus distance (m) of the ramp."),
        ] = None,
        frames: Annotated[
            int | None,
            typer.Option("--frames", help=f"Frames in the ramp (default {DEFAULT_NUM_FRAMES})."),
        ] = None,
        psf: Annotated[
            PsfChoice, typer.Option("--psf", help="Point-spread function.")
        ] = PsfChoice.disk,
        layers: Annotated[int, typer.Option("--layers", help="Depth layers of the renderer.")] = 24,
        video: Annotated[
            bool,
            typer.Option("--video", help=f"Also write {VIDEO_NAME} (+ sidecar) in the folder."),
        ] = False,
        fps: Annotated[float, typer.Option("--fps", help="Frame rate of the video.")] = 10.0,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace a non-empty output folder.")
        ] = False,
    ) -> None:
        """Render a focus sweep from an RGB-D image into a sequence folder."""
        folder = render_sweep_from_rgbd(
            rgb,
            depth,
            meta,
            out,
            focus_near_m=focus_near,
            focus_far_m=focus_far,
            num_frames=frames,
            psf=psf.value,
            num_layers=layers,
            video=video,
            video_fps=fps,
            overwrite=overwrite,
        )
        count = len([p for p in folder.iterdir() if p.suffix == ".png"])
        typer.echo(
            f"wrote {count} frames, meta.json and depth.npy to {folder}"
            + (f" (and {VIDEO_NAME})" if video else "")
        )
