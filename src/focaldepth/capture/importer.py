"""A capture sidecar + its frames -> the project's frame folder (``NNNNNN.ext`` + ``meta.json``).

What becomes of the focus (see focaldepth.io.meta for how predict reads it):

* Android CALIBRATED or APPROXIMATE: LENS_FOCUS_DISTANCE is in dioptres -> ``focus_distance_m``
  = 1 / dioptres (APPROXIMATE is recorded in ``focus_calibration`` and reported: "roughly
  calibrated" in the Camera2 documentation). 0 dioptres is infinity, which meta.json cannot
  hold: values below ``INFINITY_FLOOR_DPT`` are clamped to it (100 m) and counted.
* UNCALIBRATED Android or any iOS capture, with a focus curve (``capture focus-curve``): the
  curve maps the raw values to dioptres, then as above.
* Without a curve: ``focus_distance_m`` is all null, so predict gives relative depth; the raw
  values stay in ``focus_raw`` and the sweep's order in ``sweep_order`` (pass
  ``--far-to-near`` to predict when it says far_to_near).

The camera keys come from the sidecar (Android: LENS_FOCAL_LENGTH, LENS_APERTURE,
SENSOR_INFO_PHYSICAL_SIZE scaled by the crop region's width; iOS: header keys and
lensAperture); anything not logged is null (unknown camera, relative depth).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from focaldepth.capture.focus_curve import FocusCurve
from focaldepth.capture.sidecar import CaptureLog
from focaldepth.errors import UserError
from focaldepth.io.atomic import atomic_dir, atomic_write_json
from focaldepth.io.frames import IMAGE_EXTENSIONS
from focaldepth.io.meta import validate_meta

INFINITY_FLOOR_DPT = 0.01  # 100 m: beyond any indoor scene, and meta.json has no infinity
# A zoom lens logged with different focal lengths is not one camera; tolerate rounding only.
FOCAL_LENGTH_RTOL = 1e-3


@dataclass
class ImportReport:
    folder: Path
    num_frames: int
    metric_focus: bool
    camera_known: bool
    notes: list[str] = field(default_factory=list)


def sweep_order(log: CaptureLog) -> str:
    """near_to_far, far_to_near or mixed, from the raw values (Android: larger = nearer,
    0 = infinity; iOS lensPosition: 0 = nearest, 1 = farthest)."""
    raw = np.array([frame.focus_raw for frame in log.frames])
    steps = np.diff(raw)
    if len(steps) == 0 or not ((steps >= 0).all() or (steps <= 0).all()):
        return "mixed"
    rising = raw[-1] > raw[0]
    nearer_when_rising = log.platform == "android"
    return "far_to_near" if rising == nearer_when_rising else "near_to_far"


def focus_diopters(log: CaptureLog, curve: FocusCurve | None) -> np.ndarray | None:
    """Per-frame dioptres, or None when the focus is not a distance and no curve is given."""
    raw = np.array([frame.focus_raw for frame in log.frames], dtype=np.float64)
    if curve is not None:
        return curve.diopters(raw)
    return raw if log.focus_is_metric else None


def camera_keys(log: CaptureLog, where: object = None) -> dict[str, Any]:
    """focal_length_mm, f_number (number or per-frame list) and sensor_width_mm; None where
    the sidecar does not say."""
    if log.platform == "ios":
        focal_length_mm = log.focal_length_mm
        sensor_width_mm = log.sensor_width_mm
    else:
        focal_length_mm = _constant_focal_length(log, where)
        sensor_width_mm = _android_sensor_width_mm(log, where)
    apertures = [frame.f_number for frame in log.frames]
    if any(a is None for a in apertures):
        f_number: Any = None
    elif max(apertures) - min(apertures) <= 1e-6 * max(apertures):
        f_number = apertures[0]
    else:
        f_number = apertures
    return {"focal_length_mm": focal_length_mm, "f_number": f_number, "sensor_width_mm": sensor_width_mm}


def _constant_focal_length(log: CaptureLog, where: object) -> float | None:
    lengths = [frame.focal_length_mm for frame in log.frames]
    if any(length is None for length in lengths):
        return None
    if max(lengths) - min(lengths) > FOCAL_LENGTH_RTOL * max(lengths):
        raise UserError(f"LENS_FOCAL_LENGTH changes during the capture ({min(lengths):g} to "
                        f"{max(lengths):g} mm): one focal length per frame folder", where)
    return float(lengths[0])


def _android_sensor_width_mm(log: CaptureLog, where: object) -> float | None:
    """The width the stored image covers: the physical width times the crop region's share of
    the pixel array (a 16:9 crop of a 4:3 sensor keeps the full width)."""
    if log.sensor_size_mm is None:
        return None
    crops = {frame.crop_region_px for frame in log.frames}
    if len(crops) > 1:
        raise UserError("SCALER_CROP_REGION changes during the capture (digital zoom): "
                        "one field of view per frame folder", where)
    crop = crops.pop()
    if crop is None:
        return log.sensor_size_mm[0]
    if log.pixel_array_px is None:
        raise UserError("SCALER_CROP_REGION needs SENSOR_INFO_PIXEL_ARRAY_SIZE to scale the "
                        "sensor width", where)
    return log.sensor_size_mm[0] * crop[2] / log.pixel_array_px[0]


def capture_meta(log: CaptureLog, curve: FocusCurve | None = None, where: object = None) -> tuple[dict[str, Any], list[str]]:
    """The meta.json dictionary of a capture (validated as predict will read it) and notes."""
    notes: list[str] = []
    raw: dict[str, Any] = camera_keys(log, where)
    if None in raw.values():
        missing = ", ".join(k for k, v in raw.items() if v is None)
        notes.append(f"camera unknown ({missing} not logged): depth will be relative")
    dioptres = focus_diopters(log, curve)
    if dioptres is None:
        raw["focus_distance_m"] = [None] * len(log.frames)
        notes.append(f"focus is {log.focus_calibration} ({log.focus_unit}), no focus curve given: "
                     f"focus distances unknown, depth will be relative (sweep {sweep_order(log)})")
    else:
        clamped = int((dioptres < INFINITY_FLOOR_DPT).sum())
        if clamped:
            notes.append(f"{clamped} frame(s) focused at or beyond {1 / INFINITY_FLOOR_DPT:g} m "
                         f"were set to {1 / INFINITY_FLOOR_DPT:g} m")
        raw["focus_distance_m"] = [float(1.0 / max(d, INFINITY_FLOOR_DPT)) for d in dioptres]
        if curve is not None:
            outside = int(curve.outside_range([f.focus_raw for f in log.frames]).sum())
            if outside:
                notes.append(f"{outside} frame(s) lie outside the focus curve's fitted range "
                             f"{curve.raw_range[0]:g}..{curve.raw_range[1]:g} (extrapolated)")
        elif log.focus_calibration == "APPROXIMATE":
            notes.append("focus calibration is APPROXIMATE: focus distances are rough; a focus "
                         "curve (capture focus-curve) makes them accurate")
    first_ns = log.frames[0].timestamp_ns
    raw["timestamps_s"] = [(frame.timestamp_ns - first_ns) * 1e-9 for frame in log.frames]
    raw["source"] = f"{log.platform} capture" + (f" ({log.device})" if log.device else "")
    raw["timestamp_origin_ns"] = first_ns
    raw["focus_calibration"] = "focus curve" if curve is not None else log.focus_calibration
    raw["focus_raw"] = [frame.focus_raw for frame in log.frames]
    raw["focus_raw_unit"] = log.focus_unit
    raw["sweep_order"] = sweep_order(log)
    moving = [i for i, frame in enumerate(log.frames) if frame.lens_moving]
    if moving:
        raw["lens_moving_frames"] = moving
        notes.append(f"{len(moving)} frame(s) were exposed while the lens moved (LENS_STATE "
                     "MOVING): their focus value is approximate")
    validate_meta(raw, where)
    return raw, notes


def frame_files(log: CaptureLog) -> list[Path]:
    """The frames' paths (relative to the sidecar's folder), checked to exist and be images."""
    paths = []
    for index, frame in enumerate(log.frames):
        path = log.folder / frame.file
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise UserError(f"frame {index} is not an image file ({', '.join(IMAGE_EXTENSIONS)})", path)
        if not path.is_file():
            raise UserError(f"frame {index} listed in the sidecar is missing", path)
        paths.append(path)
    return paths


def import_capture(log: CaptureLog, out: str | os.PathLike[str], curve: FocusCurve | None = None,
                   *, overwrite: bool = False) -> ImportReport:
    """Write the frame folder ``out``: frames copied in capture order as ``000000.EXT`` ...
    (bytes unchanged) and ``meta.json``. Everything is checked before anything is written;
    the folder appears only when complete."""
    meta, notes = capture_meta(log, curve, log.path)
    sources = frame_files(log)
    digits = max(6, len(str(len(sources) - 1)))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for index, source in enumerate(sources):
            shutil.copyfile(source, tmp / f"{index:0{digits}d}{source.suffix.lower()}")
        atomic_write_json(tmp / "meta.json", meta)
    camera_known = None not in (meta["focal_length_mm"], meta["f_number"], meta["sensor_width_mm"])
    metric = all(f is not None for f in meta["focus_distance_m"]) and camera_known
    return ImportReport(Path(out), len(sources), metric, camera_known, notes)
