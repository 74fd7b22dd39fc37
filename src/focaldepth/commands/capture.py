"""`focaldepth capture ...`: the capture toolkit for a phone + RGB-D rig (docs/capture.md).

    focaldepth capture import-android SIDECAR --out FOLDER [--focus-curve CURVE]
    focaldepth capture import-ios SIDECAR --out FOLDER [--focus-curve CURVE]
    focaldepth capture sync STREAM_A STREAM_B --out pairs.csv [--method correlation|events|given]
    focaldepth capture calibrate --colour DIR --depth DIR --pattern 9x6 --square-mm 25 --out rig.json
    focaldepth capture make-rig --colour-focal-px 525 --depth-focal-px 585 --size 640x480 --out rig.json
    focaldepth capture register RIG DEPTH --out OUT [--colour IMAGE]
    focaldepth capture focus-curve SHOTS.csv --out curve.json [--degree 1]
    focaldepth capture focus-peak SIDECAR [--roi x,y,w,h]
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from focaldepth.errors import UserError

capture_app = typer.Typer(name="capture", no_args_is_help=True, add_completion=False,
                          help="Capture toolkit: phone sidecars, sync, rig calibration, depth "
                               "registration, focus curves (docs/capture.md).")


def register(app: typer.Typer) -> None:
    app.add_typer(capture_app, name="capture")


OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty output folder.")]
CurveOption = Annotated[Path | None, typer.Option(
    "--focus-curve", help="Focus curve (capture focus-curve) mapping the raw focus values to dioptres.")]


def _parse_ints(text: str, count: int, name: str, sep: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.lower().split(sep))
    except ValueError:
        values = ()
    if len(values) != count or min(values) < 0:
        raise UserError(f"{name} must be {count} non-negative integers separated by {sep!r}, got {text!r}")
    return values


def _import(sidecar: Path, out: Path, curve_path: Path | None, overwrite: bool, platform: str) -> None:
    from focaldepth.capture.focus_curve import read_focus_curve
    from focaldepth.capture.importer import import_capture
    from focaldepth.capture.sidecar import read_capture_log

    log = read_capture_log(sidecar)
    if log.platform != platform:
        raise UserError(f"this is an {log.platform} sidecar: use capture import-{log.platform}", sidecar)
    curve = None if curve_path is None else read_focus_curve(curve_path)
    report = import_capture(log, out, curve, overwrite=overwrite)
    for note in report.notes:
        print(f"note: {note}")
    depth = "metric" if report.metric_focus else "relative"
    print(f"wrote {out} ({report.num_frames} frames + meta.json; predict gives {depth} depth)")


@capture_app.command("import-android")
def import_android(
    sidecar: Annotated[Path, typer.Argument(help="Camera2 capture sidecar (.json or .csv).")],
    out: Annotated[Path, typer.Option("--out", help="Frame folder to write (NNNNNN.jpg... + meta.json).")],
    focus_curve: CurveOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Android capture -> frame folder for predict (focus in metres when calibrated)."""
    _import(sidecar, out, focus_curve, overwrite, "android")


@capture_app.command("import-ios")
def import_ios(
    sidecar: Annotated[Path, typer.Argument(help="AVFoundation capture sidecar (.json or .csv).")],
    out: Annotated[Path, typer.Option("--out", help="Frame folder to write (NNNNNN.jpg... + meta.json).")],
    focus_curve: CurveOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """iOS capture -> frame folder (lensPosition is uncalibrated: relative depth without a curve)."""
    _import(sidecar, out, focus_curve, overwrite, "ios")


def _read_event_times(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UserError("events file not found", path)
    try:
        values = [float(line.split(",")[0]) for line in path.read_text(encoding="utf-8").splitlines()
                  if line.strip() and not line.startswith("#")]
    except (ValueError, UnicodeDecodeError):
        raise UserError("events file must hold one time in seconds per line", path) from None
    if not values:
        raise UserError("events file lists no events", path)
    return np.array(values)


@capture_app.command("sync")
def sync(
    stream_a: Annotated[Path, typer.Argument(help="Stream A (phone): capture sidecar or CSV file,timestamp_s.")],
    stream_b: Annotated[Path, typer.Argument(help="Stream B (RGB-D sensor): capture sidecar or CSV file,timestamp_s.")],
    out: Annotated[Path, typer.Option("--out", help="Pairs CSV to write (a_index,b_index,files,times,gap).")],
    method: Annotated[str, typer.Option("--method", help="correlation (of frame-to-frame motion), events, or given (--offset-s).")] = "correlation",
    offset_s: Annotated[float | None, typer.Option("--offset-s", help="Known offset t_A = t_B + offset (method given), or the coarse offset to search around.")] = None,
    search_s: Annotated[float, typer.Option("--search-s", help="Search +- this around the coarse offset (correlation, events).")] = 2.0,
    max_gap_ms: Annotated[float | None, typer.Option("--max-gap-ms", help="Largest gap of a pair (default: half of B's median frame period).")] = None,
    events_a: Annotated[Path | None, typer.Option("--events-a", help="Event times of stream A (s, one per line), for --method events.")] = None,
    events_b: Annotated[Path | None, typer.Option("--events-b", help="Event times of stream B.")] = None,
) -> None:
    """Estimate the clock offset between two streams and pair their frames."""
    from focaldepth.capture import sync as sync_mod
    from focaldepth.capture.streams import read_stream, stream_motion
    from focaldepth.io.atomic import atomic_write_text

    a, b = read_stream(stream_a), read_stream(stream_b)
    if method == "given":
        if offset_s is None:
            raise UserError("--method given needs --offset-s")
        estimate = sync_mod.OffsetEstimate(offset_s, "given", float("nan"), 0)
    elif method == "events":
        if events_a is None or events_b is None:
            raise UserError("--method events needs --events-a and --events-b")
        period = float(np.median(np.diff(b.times_s))) if len(b.times_s) > 1 else 0.033
        estimate = sync_mod.offset_from_events(_read_event_times(events_a), _read_event_times(events_b),
                                               tolerance_s=period, max_offset_s=search_s,
                                               coarse_s=offset_s if offset_s is not None else a.times_s[0] - b.times_s[0])
    elif method == "correlation":
        ta, sa = stream_motion(a)
        tb, sb = stream_motion(b)
        estimate = sync_mod.offset_by_correlation(ta, sa, tb, sb, coarse_s=offset_s, search_s=search_s)
    else:
        raise UserError(f"unknown method {method!r} (choose correlation, events or given)")
    gap_s = (max_gap_ms * 1e-3 if max_gap_ms is not None
             else 0.5 * float(np.median(np.diff(b.times_s))) if len(b.times_s) > 1 else 0.02)
    pairs = sync_mod.associate(a.times_s, b.times_s, gap_s, estimate.offset_s)
    buffer = io.StringIO()
    buffer.write(f"# offset_s: {json.dumps(estimate.offset_s)}\n# method: {json.dumps(estimate.method)}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["a_index", "b_index", "a_file", "b_file", "a_time_s", "b_time_s", "gap_ms"])
    for i, j in pairs:
        gap_ms = (a.times_s[i] - b.times_s[j] - estimate.offset_s) * 1e3
        writer.writerow([i, j, a.files[i].name, b.files[j].name, f"{a.times_s[i]:.9f}",
                         f"{b.times_s[j]:.9f}", f"{gap_ms:.3f}"])
    atomic_write_text(out, buffer.getvalue())
    score = "" if estimate.method == "given" else f", score {estimate.score:.3f}"
    print(f"offset {estimate.offset_s:.6f} s ({estimate.method}{score}); {len(pairs)} of {len(a.times_s)} "
          f"A frames paired within {gap_s * 1e3:.1f} ms; wrote {out}")


def _images(folder: Path) -> list[Path]:
    from focaldepth.io.frames import list_frame_files

    return list_frame_files(folder)


@capture_app.command("calibrate")
def calibrate(
    colour: Annotated[Path, typer.Option("--colour", help="Folder of the colour camera's chessboard images.")],
    depth: Annotated[Path, typer.Option("--depth", help="Folder of the depth camera's (IR) images, same count and order.")],
    out: Annotated[Path, typer.Option("--out", help="Rig calibration JSON to write.")],
    pattern: Annotated[str, typer.Option("--pattern", help="Inner corners, columns x rows.")] = "9x6",
    square_mm: Annotated[float, typer.Option("--square-mm", help="Side of one square (mm).")] = 25.0,
    distortion: Annotated[str, typer.Option("--distortion", help="none, radial (k1, k2) or full.")] = "radial",
) -> None:
    """Chessboard calibration of both cameras and the depth-to-colour extrinsics."""
    from focaldepth.capture import calibrate as cal
    from focaldepth.capture.calibrate import write_rig
    from focaldepth.io.frames import read_image

    board = _parse_ints(pattern, 2, "--pattern", "x")
    if min(board) < 2 or square_mm <= 0:
        raise UserError("--pattern needs at least 2x2 inner corners and --square-mm a positive size")
    colour_files, depth_files = _images(colour), _images(depth)
    if len(colour_files) != len(depth_files):
        raise UserError(f"{len(colour_files)} colour images but {len(depth_files)} depth-camera images "
                        "(pair them by name order)", depth)
    calibrations, views = [], []
    for files, where in ((colour_files, colour), (depth_files, depth)):
        images = [read_image(p) for p in files]
        corners = [cal.find_corners(image, board) for image in images]
        size = (images[0].shape[1], images[0].shape[0])
        calibrations.append(cal.calibrate_camera(corners, board, square_mm * 1e-3, size, where, distortion))
        views.append(corners)
    rig = cal.stereo_calibrate(views[0], views[1], calibrations[0], calibrations[1], board, square_mm * 1e-3, out)
    write_rig(out, rig)
    print(f"colour: {rig.colour.num_views} views, RMS {rig.colour.rms_px:.3f} px; depth: {rig.depth.num_views} "
          f"views, RMS {rig.depth.rms_px:.3f} px; stereo RMS {rig.stereo_rms_px:.3f} px, "
          f"t = {np.round(rig.t_m * 1000, 1).tolist()} mm; wrote {out}")


@capture_app.command("make-rig")
def make_rig(
    out: Annotated[Path, typer.Option("--out", help="Rig calibration JSON to write.")],
    colour_focal_px: Annotated[float, typer.Option("--colour-focal-px", help="Colour camera focal length (px).")],
    depth_focal_px: Annotated[float, typer.Option("--depth-focal-px", help="Depth camera focal length (px).")],
    size: Annotated[str, typer.Option("--size", help="Image size WxH of both cameras (principal points at the centre).")] = "640x480",
    depth_size: Annotated[str | None, typer.Option("--depth-size", help="Depth image size WxH if different.")] = None,
    t_m: Annotated[str, typer.Option("--t-m", help="Depth-to-colour translation x,y,z (m).")] = "0,0,0",
) -> None:
    """A rig file from known intrinsics (no chessboard), e.g. a dataset's published values."""
    from focaldepth.capture.calibrate import CameraCalibration, RigCalibration, write_rig
    from focaldepth.capture.register import centred_intrinsics

    w, h = _parse_ints(size, 2, "--size", "x")
    dw, dh = _parse_ints(depth_size, 2, "--depth-size", "x") if depth_size else (w, h)
    try:
        t = np.array([float(v) for v in t_m.split(",")])
    except ValueError:
        t = np.zeros(0)
    if t.shape != (3,) or colour_focal_px <= 0 or depth_focal_px <= 0 or min(w, h, dw, dh) < 1:
        raise UserError("--t-m must be three numbers x,y,z and the focal lengths and sizes positive")
    rig = RigCalibration(CameraCalibration(centred_intrinsics(colour_focal_px, w, h), np.zeros(5), (w, h)),
                         CameraCalibration(centred_intrinsics(depth_focal_px, dw, dh), np.zeros(5), (dw, dh)),
                         np.eye(3), t)
    write_rig(out, rig)
    print(f"wrote {out}")


@capture_app.command("register")
def register_command(
    rig_path: Annotated[Path, typer.Argument(metavar="RIG", help="Rig calibration (capture calibrate / make-rig).")],
    depth: Annotated[Path, typer.Argument(help="Depth map (16-bit PNG mm, .npy m, ...) or a folder of them.")],
    out: Annotated[Path, typer.Option("--out", help="Registered depth file (.npy/.png) or folder (for a folder input).")],
    colour: Annotated[Path | None, typer.Option("--colour", help="Colour image (or folder) to score edge alignment before/after.")] = None,
) -> None:
    """Register depth maps into the colour camera's view (z-buffered reprojection)."""
    from focaldepth.capture.calibrate import read_rig
    from focaldepth.capture.register import edge_alignment, register_depth
    from focaldepth.io.depth import DEPTH_EXTENSIONS, read_depth, write_depth
    from focaldepth.io.frames import list_frame_files, natural_key, read_image

    rig = read_rig(rig_path)
    if depth.is_dir():
        inputs = sorted((p for p in depth.iterdir() if p.suffix.lower() in DEPTH_EXTENSIONS
                         and not p.name.startswith(".")), key=lambda p: natural_key(p.name))
        if not inputs:
            raise UserError("no depth maps in the folder", depth)
        outputs = [out / f"{p.stem}.npy" for p in inputs]
    else:
        inputs, outputs = [depth], [out]
    colours = None
    if colour is not None:
        colours = list_frame_files(colour) if colour.is_dir() else [colour]
        if len(colours) != len(inputs):
            raise UserError(f"{len(colours)} colour images for {len(inputs)} depth maps", colour)
    w, h = rig.colour.image_size_wh
    coverage, before, after = [], [], []
    for k, (src, dst) in enumerate(zip(inputs, outputs)):
        raw = read_depth(src)
        if raw.ndim != 2 or (raw.shape[1], raw.shape[0]) != rig.depth.image_size_wh:
            raise UserError(f"depth map is {raw.shape[::-1]} but the rig's depth camera is "
                            f"{rig.depth.image_size_wh}", src)
        registered = register_depth(raw, rig.depth.K, rig.colour.K, rig.R, rig.t_m, (h, w),
                                    dist_depth=rig.depth.dist, dist_colour=rig.colour.dist)
        write_depth(dst, np.where(np.isfinite(registered), registered, 0 if dst.suffix == ".png" else np.nan))
        coverage.append(float(np.isfinite(registered).mean()))
        if colours is not None:
            rgb = read_image(colours[k])
            if raw.shape == rgb.shape[:2]:
                before.append(edge_alignment(rgb, raw).mean_px)
            after.append(edge_alignment(rgb, registered).mean_px)
    line = f"registered {len(inputs)} depth map(s), {np.mean(coverage):.1%} of colour pixels with depth"
    if after:
        line += f"; depth-to-colour edge distance {np.nanmean(after):.2f} px"
        if before:
            line += f" (unregistered {np.nanmean(before):.2f} px)"
    print(f"{line}; wrote {out}")


@capture_app.command("focus-curve")
def focus_curve(
    shots: Annotated[Path, typer.Argument(help="CSV with columns distance_m, focus_raw: one row per shot of a target.")],
    out: Annotated[Path, typer.Option("--out", help="Focus curve JSON to write.")],
    degree: Annotated[int, typer.Option("--degree", help="Polynomial degree in dioptres (1 = affine).")] = 1,
    raw_unit: Annotated[str, typer.Option("--raw-unit", help="What focus_raw is (lens_position, android_focus_distance).")] = "lens_position",
) -> None:
    """Fit raw focus value -> dioptres to shots at known distances; report the residuals."""
    from focaldepth.capture.focus_curve import fit_focus_curve, read_shots_csv, write_focus_curve

    raw, distance_m = read_shots_csv(shots)
    curve = fit_focus_curve(raw, distance_m, degree, raw_unit, shots)
    write_focus_curve(out, curve)
    loo = "" if curve.leave_one_out_dpt is None else \
        f", leave-one-out RMS {np.sqrt(np.mean(np.square(curve.leave_one_out_dpt))):.4f} dpt"
    print(f"{len(raw)} shots, degree {degree}: residual RMS {curve.rms_dpt:.4f} dpt, max "
          f"{np.max(np.abs(curve.residuals_dpt)):.4f} dpt{loo}; wrote {out}")


@capture_app.command("focus-peak")
def focus_peak(
    sidecar: Annotated[Path, typer.Argument(help="Sidecar of a sweep past a target at a known distance.")],
    roi: Annotated[str | None, typer.Option("--roi", help="Target region x,y,w,h (px; default: the whole frame).")] = None,
) -> None:
    """Print the raw focus value where the target is sharpest (one row of a shots CSV)."""
    from focaldepth.capture.focus_curve import sharpest_focus_value
    from focaldepth.capture.importer import frame_files
    from focaldepth.capture.sidecar import read_capture_log
    from focaldepth.io.frames import read_image

    log = read_capture_log(sidecar)
    region = None if roi is None else _parse_ints(roi, 4, "--roi", ",")
    images = [read_image(p) for p in frame_files(log)]
    value = sharpest_focus_value(images, [f.focus_raw for f in log.frames], region)
    print(f"{value:.6g}")
