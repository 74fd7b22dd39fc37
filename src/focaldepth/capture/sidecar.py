"""Capture sidecars: what the phone app logs beside its frames (format in docs/capture.md).

Two platforms, each as JSON or CSV, with the platform's own key names so an app can dump
them without translation:

Android (Camera2), ``"format": "focaldepth-capture-android/1"``::

    {"format": "focaldepth-capture-android/1", "device": "Pixel 7",
     "characteristics": {"LENS_INFO_FOCUS_DISTANCE_CALIBRATION": "APPROXIMATE",
                         "LENS_INFO_MINIMUM_FOCUS_DISTANCE": 10.0,
                         "SENSOR_INFO_PHYSICAL_SIZE": [5.64, 4.23],
                         "SENSOR_INFO_PIXEL_ARRAY_SIZE": [4032, 3024],
                         "SENSOR_INFO_TIMESTAMP_SOURCE": "REALTIME"},
     "frames": [{"file": "IMG_000.jpg", "SENSOR_TIMESTAMP": 81234567890123,
                 "LENS_FOCUS_DISTANCE": 2.5, "LENS_FOCAL_LENGTH": 6.81,
                 "LENS_APERTURE": 1.85, "LENS_STATE": "STATIONARY",
                 "SCALER_CROP_REGION": [0, 378, 4032, 2268]}, ...]}

iOS (AVFoundation), ``"format": "focaldepth-capture-ios/1"``; ``lensPosition`` (0 = nearest,
1 = farthest) is not a distance, so iOS focus is always UNCALIBRATED; AVFoundation gives no
focal length or sensor width, so they are optional header keys taken from a spec sheet::

    {"format": "focaldepth-capture-ios/1", "device": "iPhone 13",
     "focal_length_mm": 5.1, "sensor_width_mm": 5.76,
     "frames": [{"file": "IMG_000.jpg", "timestamp_s": 1234.567891,
                 "lensPosition": 0.42, "lensAperture": 1.6}, ...]}

CSV: the header keys as ``# key: <JSON value>`` comment lines (``format`` first, Android's
characteristics by their own names), then one row per frame with the frame keys as columns
(``SCALER_CROP_REGION`` as ``x y w h``). Every problem is a one-line :class:`UserError`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from focaldepth.errors import UserError
from focaldepth.io.atomic import atomic_write_text, format_json

ANDROID_FORMAT = "focaldepth-capture-android/1"
IOS_FORMAT = "focaldepth-capture-ios/1"
# android.lens.info.focusDistanceCalibration: the integer values of the Camera2 enum
FOCUS_CALIBRATIONS = ("UNCALIBRATED", "APPROXIMATE", "CALIBRATED")
LENS_STATES = ("STATIONARY", "MOVING")
ANDROID_CHARACTERISTICS = (
    "LENS_INFO_FOCUS_DISTANCE_CALIBRATION",
    "LENS_INFO_MINIMUM_FOCUS_DISTANCE",
    "SENSOR_INFO_PHYSICAL_SIZE",
    "SENSOR_INFO_PIXEL_ARRAY_SIZE",
    "SENSOR_INFO_TIMESTAMP_SOURCE",
)
ANDROID_FRAME_KEYS = ("file", "SENSOR_TIMESTAMP", "LENS_FOCUS_DISTANCE", "LENS_FOCAL_LENGTH",
                      "LENS_APERTURE", "LENS_STATE", "SCALER_CROP_REGION")
IOS_HEADER_KEYS = ("device", "focal_length_mm", "sensor_width_mm")
IOS_FRAME_KEYS = ("file", "timestamp_s", "lensPosition", "lensAperture")


@dataclass
class CaptureFrame:
    """One logged frame. ``focus_raw`` is Android's LENS_FOCUS_DISTANCE (dioptres when the
    calibration is APPROXIMATE or CALIBRATED, 0 = infinity) or iOS's lensPosition (0..1)."""

    file: str  # relative to the sidecar's folder
    timestamp_ns: int
    focus_raw: float
    focal_length_mm: float | None = None
    f_number: float | None = None
    lens_moving: bool | None = None
    crop_region_px: tuple[int, int, int, int] | None = None  # Android SCALER_CROP_REGION


@dataclass
class CaptureLog:
    """A parsed sidecar of either platform."""

    platform: str  # "android" or "ios"
    frames: list[CaptureFrame]
    focus_calibration: str = "UNCALIBRATED"
    device: str | None = None
    minimum_focus_distance_dpt: float | None = None  # Android: the nearest focus, dioptres
    sensor_size_mm: tuple[float, float] | None = None  # Android: physical size of the pixel array
    pixel_array_px: tuple[int, int] | None = None
    timestamp_source: str | None = None  # Android: REALTIME (elapsedRealtimeNanos) or UNKNOWN
    focal_length_mm: float | None = None  # iOS header (Android logs it per frame)
    sensor_width_mm: float | None = None  # iOS header
    path: Path | None = field(default=None, compare=False)

    @property
    def focus_unit(self) -> str:
        return "lens_position" if self.platform == "ios" else "android_focus_distance"

    @property
    def focus_is_metric(self) -> bool:
        """Android APPROXIMATE/CALIBRATED focus is in dioptres; the rest is not a distance."""
        return self.platform == "android" and self.focus_calibration != "UNCALIBRATED"

    @property
    def timestamps_s(self) -> list[float]:
        return [frame.timestamp_ns * 1e-9 for frame in self.frames]

    @property
    def folder(self) -> Path:
        return Path(".") if self.path is None else self.path.parent


# --- reading ---------------------------------------------------------------------------------


def read_capture_log(path: str | os.PathLike[str]) -> CaptureLog:
    """Read an Android or iOS sidecar (.json or .csv; the platform comes from ``format``)."""
    src = Path(path)
    if not src.is_file():
        raise UserError("capture sidecar not found", src)
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read capture sidecar: {error}", src) from None
    if src.suffix.lower() == ".csv":
        raw = _parse_csv(text, src)
    elif src.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"malformed JSON at line {error.lineno} column {error.colno}: "
                            f"{error.msg}", src) from None
    else:
        raise UserError(f"unsupported sidecar extension {src.suffix or '(none)'} (use .json or .csv)",
                        src)
    log = parse_capture_dict(raw, src)
    log.path = src
    return log


def parse_capture_dict(raw: Any, where: object = None) -> CaptureLog:
    """Validate an already-parsed sidecar (the JSON layout; CSV is converted to it)."""
    if not isinstance(raw, dict):
        raise UserError(f"expected a JSON object, got {type(raw).__name__}", where)
    fmt = raw.get("format")
    if fmt == ANDROID_FORMAT:
        log = _parse_android(raw, where)
    elif fmt == IOS_FORMAT:
        log = _parse_ios(raw, where)
    else:
        raise UserError(f"format must be {ANDROID_FORMAT!r} or {IOS_FORMAT!r}, got {fmt!r}", where)
    _check_frames(log, where)
    return log


def _parse_android(raw: dict[str, Any], where: object) -> CaptureLog:
    chars = raw.get("characteristics", {})
    if not isinstance(chars, dict):
        raise UserError("characteristics must be an object of Camera2 keys", where)
    calibration = _calibration(chars.get("LENS_INFO_FOCUS_DISTANCE_CALIBRATION"), where)
    size = chars.get("SENSOR_INFO_PHYSICAL_SIZE")
    array = chars.get("SENSOR_INFO_PIXEL_ARRAY_SIZE")
    frames = [_android_frame(item, i, where) for i, item in enumerate(_frame_list(raw, where))]
    source = chars.get("SENSOR_INFO_TIMESTAMP_SOURCE")
    if source is not None and source not in ("REALTIME", "UNKNOWN"):
        raise UserError(f"SENSOR_INFO_TIMESTAMP_SOURCE must be REALTIME or UNKNOWN, got {source!r}",
                        where)
    return CaptureLog(
        platform="android",
        frames=frames,
        focus_calibration=calibration,
        device=_optional_text(raw.get("device"), "device", where),
        minimum_focus_distance_dpt=_optional_number(
            chars.get("LENS_INFO_MINIMUM_FOCUS_DISTANCE"), "LENS_INFO_MINIMUM_FOCUS_DISTANCE", where,
            allow_zero=True),
        sensor_size_mm=None if size is None else _pair(size, "SENSOR_INFO_PHYSICAL_SIZE", where, float),
        pixel_array_px=None if array is None else _pair(array, "SENSOR_INFO_PIXEL_ARRAY_SIZE", where, int),
        timestamp_source=source,
    )


def _android_frame(item: Any, index: int, where: object) -> CaptureFrame:
    name = f"frames[{index}]"
    if not isinstance(item, dict):
        raise UserError(f"{name} must be an object", where)
    for key in ("file", "SENSOR_TIMESTAMP", "LENS_FOCUS_DISTANCE"):
        if item.get(key) is None:
            raise UserError(f"{name} lacks {key}", where)
    state = item.get("LENS_STATE")
    if state is not None and state not in LENS_STATES:
        raise UserError(f"{name}.LENS_STATE must be STATIONARY or MOVING, got {state!r}", where)
    crop = item.get("SCALER_CROP_REGION")
    if crop is not None and not (isinstance(crop, list) and len(crop) == 4
                                 and all(_is_int(v) for v in crop) and crop[2] > 0 and crop[3] > 0):
        raise UserError(f"{name}.SCALER_CROP_REGION must be [x, y, width, height] pixels, "
                        f"got {crop!r}", where)
    return CaptureFrame(
        file=_text(item["file"], f"{name}.file", where),
        timestamp_ns=_nanoseconds(item["SENSOR_TIMESTAMP"], f"{name}.SENSOR_TIMESTAMP", where),
        focus_raw=_number(item["LENS_FOCUS_DISTANCE"], f"{name}.LENS_FOCUS_DISTANCE", where,
                          allow_zero=True),
        focal_length_mm=_optional_number(item.get("LENS_FOCAL_LENGTH"), f"{name}.LENS_FOCAL_LENGTH",
                                         where),
        f_number=_optional_number(item.get("LENS_APERTURE"), f"{name}.LENS_APERTURE", where),
        lens_moving=None if state is None else state == "MOVING",
        crop_region_px=None if crop is None else tuple(int(v) for v in crop),
    )


def _parse_ios(raw: dict[str, Any], where: object) -> CaptureLog:
    frames = []
    for index, item in enumerate(_frame_list(raw, where)):
        name = f"frames[{index}]"
        if not isinstance(item, dict):
            raise UserError(f"{name} must be an object", where)
        for key in ("file", "timestamp_s", "lensPosition"):
            if item.get(key) is None:
                raise UserError(f"{name} lacks {key}", where)
        position = _number(item["lensPosition"], f"{name}.lensPosition", where, allow_zero=True)
        if position > 1.0:
            raise UserError(f"{name}.lensPosition must lie in 0..1, got {position!r}", where)
        seconds = item["timestamp_s"]
        if not _is_number(seconds) or not math.isfinite(seconds):
            raise UserError(f"{name}.timestamp_s must be a finite number, got {seconds!r}", where)
        frames.append(CaptureFrame(
            file=_text(item["file"], f"{name}.file", where),
            timestamp_ns=round(seconds * 1e9),
            focus_raw=position,
            f_number=_optional_number(item.get("lensAperture"), f"{name}.lensAperture", where),
        ))
    return CaptureLog(
        platform="ios",
        frames=frames,
        focus_calibration="UNCALIBRATED",
        device=_optional_text(raw.get("device"), "device", where),
        focal_length_mm=_optional_number(raw.get("focal_length_mm"), "focal_length_mm", where),
        sensor_width_mm=_optional_number(raw.get("sensor_width_mm"), "sensor_width_mm", where),
    )


def _check_frames(log: CaptureLog, where: object) -> None:
    if not log.frames:
        raise UserError("the sidecar lists no frames", where)
    for i in range(1, len(log.frames)):
        if log.frames[i].timestamp_ns <= log.frames[i - 1].timestamp_ns:
            raise UserError(f"frame timestamps must increase strictly: frame {i} "
                            f"({log.frames[i].timestamp_ns} ns) follows "
                            f"{log.frames[i - 1].timestamp_ns} ns", where)
    names = [frame.file for frame in log.frames]
    if len(set(names)) != len(names):
        raise UserError("a frame file is listed twice", where)
    minimum = log.minimum_focus_distance_dpt
    if log.platform == "android" and minimum is not None and minimum > 0:
        for i, frame in enumerate(log.frames):
            if frame.focus_raw > minimum * (1 + 1e-6):
                raise UserError(f"frames[{i}].LENS_FOCUS_DISTANCE {frame.focus_raw:g} exceeds "
                                f"LENS_INFO_MINIMUM_FOCUS_DISTANCE {minimum:g}", where)


# --- writing ---------------------------------------------------------------------------------


def capture_to_dict(log: CaptureLog) -> dict[str, Any]:
    """The sidecar's JSON layout (the inverse of :func:`parse_capture_dict`)."""
    if log.platform == "android":
        chars: dict[str, Any] = {"LENS_INFO_FOCUS_DISTANCE_CALIBRATION": log.focus_calibration}
        if log.minimum_focus_distance_dpt is not None:
            chars["LENS_INFO_MINIMUM_FOCUS_DISTANCE"] = log.minimum_focus_distance_dpt
        if log.sensor_size_mm is not None:
            chars["SENSOR_INFO_PHYSICAL_SIZE"] = list(log.sensor_size_mm)
        if log.pixel_array_px is not None:
            chars["SENSOR_INFO_PIXEL_ARRAY_SIZE"] = list(log.pixel_array_px)
        if log.timestamp_source is not None:
            chars["SENSOR_INFO_TIMESTAMP_SOURCE"] = log.timestamp_source
        out: dict[str, Any] = {"format": ANDROID_FORMAT}
        if log.device is not None:
            out["device"] = log.device
        out["characteristics"] = chars
        out["frames"] = [_android_frame_dict(frame) for frame in log.frames]
        return out
    if log.platform != "ios":
        raise ValueError(f"capture_to_dict: unknown platform {log.platform!r}")
    out = {"format": IOS_FORMAT}
    for key in IOS_HEADER_KEYS:
        if getattr(log, key) is not None:
            out[key] = getattr(log, key)
    out["frames"] = []
    for frame in log.frames:
        item: dict[str, Any] = {"file": frame.file, "timestamp_s": frame.timestamp_ns * 1e-9,
                                "lensPosition": frame.focus_raw}
        if frame.f_number is not None:
            item["lensAperture"] = frame.f_number
        out["frames"].append(item)
    return out


def _android_frame_dict(frame: CaptureFrame) -> dict[str, Any]:
    item: dict[str, Any] = {"file": frame.file, "SENSOR_TIMESTAMP": frame.timestamp_ns,
                            "LENS_FOCUS_DISTANCE": frame.focus_raw}
    if frame.focal_length_mm is not None:
        item["LENS_FOCAL_LENGTH"] = frame.focal_length_mm
    if frame.f_number is not None:
        item["LENS_APERTURE"] = frame.f_number
    if frame.lens_moving is not None:
        item["LENS_STATE"] = "MOVING" if frame.lens_moving else "STATIONARY"
    if frame.crop_region_px is not None:
        item["SCALER_CROP_REGION"] = list(frame.crop_region_px)
    return item


def write_capture_log(path: str | os.PathLike[str], log: CaptureLog) -> Path:
    """Write ``log`` atomically as JSON or CSV (from the extension)."""
    out = Path(path)
    raw = capture_to_dict(log)
    if out.suffix.lower() == ".json":
        frames = raw.pop("frames")
        text = format_json(raw).rstrip().rstrip("}").rstrip()
        rows = ",\n".join(f"    {json.dumps(item, allow_nan=False)}" for item in frames)
        text = f"{text},\n  \"frames\": [\n{rows}\n  ]\n}}\n"
        return atomic_write_text(out, text)
    if out.suffix.lower() == ".csv":
        return atomic_write_text(out, _format_csv(raw))
    raise UserError(f"unsupported sidecar extension {out.suffix or '(none)'} (use .json or .csv)", out)


# --- CSV -------------------------------------------------------------------------------------


def _format_csv(raw: dict[str, Any]) -> str:
    lines = [f"# format: {json.dumps(raw['format'])}"]
    header = {k: v for k, v in raw.items() if k not in ("format", "frames", "characteristics")}
    header.update(raw.get("characteristics", {}))
    lines += [f"# {key}: {json.dumps(value, allow_nan=False)}" for key, value in header.items()]
    columns = ANDROID_FRAME_KEYS if raw["format"] == ANDROID_FORMAT else IOS_FRAME_KEYS
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for item in raw["frames"]:
        writer.writerow([_csv_cell(item.get(key)) for key in columns])
    return "\n".join(lines) + "\n" + buffer.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value)


def _parse_csv(text: str, where: Path) -> dict[str, Any]:
    header: dict[str, Any] = {}
    body = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if not sep:
                raise UserError(f"line {number}: a header line must be '# key: value'", where)
            try:
                header[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                raise UserError(f"line {number}: header value of {key.strip()} is not JSON",
                                where) from None
        elif line.strip():
            body.append(line)
    raw: dict[str, Any] = {"format": header.pop("format", None)}
    if raw["format"] == ANDROID_FORMAT:
        raw["characteristics"] = {k: header.pop(k) for k in list(header) if k in ANDROID_CHARACTERISTICS}
    raw.update(header)
    rows = list(csv.DictReader(body))
    if not body:
        raise UserError("the CSV has no column header row", where)
    raw["frames"] = [{key: _csv_value(key, value, i, where) for key, value in row.items()
                      if value not in (None, "")} for i, row in enumerate(rows)]
    return raw


def _csv_value(key: str, value: str, row: int, where: Path) -> Any:
    if key in ("file", "LENS_STATE"):
        return value
    try:
        if key == "SCALER_CROP_REGION":
            return [int(v) for v in value.split()]
        if key == "SENSOR_TIMESTAMP":
            return int(value)
        return float(value)
    except ValueError:
        raise UserError(f"row {row + 1}: {key} is not a number: {value!r}", where) from None


# --- small validators ------------------------------------------------------------------------


def _frame_list(raw: dict[str, Any], where: object) -> list[Any]:
    frames = raw.get("frames")
    if not isinstance(frames, list):
        raise UserError("frames must be a list with one object per frame", where)
    return frames


def _calibration(value: Any, where: object) -> str:
    if value is None:  # not logged: assume the worst
        return "UNCALIBRATED"
    if _is_int(value) and 0 <= value < len(FOCUS_CALIBRATIONS):
        return FOCUS_CALIBRATIONS[value]
    if value in FOCUS_CALIBRATIONS:
        return str(value)
    raise UserError("LENS_INFO_FOCUS_DISTANCE_CALIBRATION must be UNCALIBRATED, APPROXIMATE or "
                    f"CALIBRATED (or 0, 1, 2), got {value!r}", where)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any, name: str, where: object, *, allow_zero: bool = False) -> float:
    if not _is_number(value) or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise UserError(f"{name} must be a {bound} finite number, got {value!r}", where)
    return float(value)


def _optional_number(value: Any, name: str, where: object, *, allow_zero: bool = False) -> float | None:
    return None if value is None else _number(value, name, where, allow_zero=allow_zero)


def _nanoseconds(value: Any, name: str, where: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value):
        raise UserError(f"{name} must be an integer number of nanoseconds, got {value!r}", where)
    return int(value)


def _text(value: Any, name: str, where: object) -> str:
    if not isinstance(value, str) or not value:
        raise UserError(f"{name} must be a non-empty text, got {value!r}", where)
    return value


def _optional_text(value: Any, name: str, where: object) -> str | None:
    return None if value is None else _text(value, name, where)


def _pair(value: Any, name: str, where: object, kind: type) -> tuple[Any, Any]:
    check = _is_int if kind is int else _is_number
    if not (isinstance(value, list) and len(value) == 2 and all(check(v) and v > 0 for v in value)):
        raise UserError(f"{name} must be [width, height] of positive numbers, got {value!r}", where)
    return kind(value[0]), kind(value[1])
