"""The sequence metadata file (``meta.json`` beside a frame folder, ``NAME.json`` beside a video).

Keys (all lengths are one entry per frame)::

    focal_length_mm          number > 0, null = unknown                  camera keys (*)
    f_number                 number > 0, or a per-frame list of them,    camera keys (*), or:
                             null = unknown
    aperture_diameter_mm     number > 0, or a per-frame list (A = f/N;   instead of f_number
                             written back as f_number)
    sensor_width_mm          number > 0: the width imaged by the STORED  camera keys (*)
                             image (its pixel width comes from the frames); null = unknown
    focus_distance_m         list of metres, null = unknown              one of these two
    focus_distance_diopters  list of dioptres (1/m), null = unknown      (both: must agree)
    timestamps_s             list of seconds, strictly increasing        optional
    source                   free text                                   optional

(*) A camera key that is null or missing makes the camera unknown (a phone app that records
no lens data): ``SequenceMeta.camera_known`` is False, ``camera()`` returns the stand-in
:func:`relative_camera`, and depth from such a sequence is relative. A malformed value (a
string, zero, a negative number) is still an error.

Any other key is kept (``SequenceMeta.extra``) and written back unchanged. Every problem
raises a one-line :class:`UserError` that names the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from focaldepth.errors import UserError
from focaldepth.optics import Camera

KNOWN_KEYS = (
    "focal_length_mm",
    "f_number",
    "sensor_width_mm",
    "focus_distance_m",
    "focus_distance_diopters",
    "timestamps_s",
    "source",
)
# Two focus lists that describe the same schedule agree to this relative tolerance
# (diopters written with ~7 significant digits still match).
FOCUS_AGREEMENT_RTOL = 1e-5
CAMERA_KEYS = ("focal_length_mm", "f_number", "sensor_width_mm")
# Stand-in lens for an unknown camera (relative depth only). Its f^2/N is chosen so that the
# pseudo sweep of relative mode (2 -> 1 dioptre, see focaldepth.predict) blurs by about 5 % of
# the image width, i.e. ~16 px at the default 320 px working width: mid-range of the blur the
# default model was trained on. The sensor is scaled with the image, so this holds at any size.
RELATIVE_SWEEP_BLUR_FRACTION = 0.05
RELATIVE_FOCAL_LENGTH_MM, RELATIVE_SENSOR_WIDTH_MM = 50.0, 36.0  # -> f/1.39 (a full-frame 50 mm)


def relative_camera(image_width_px: int) -> Camera:
    """The stand-in camera of a sequence whose lens is unknown (see RELATIVE_SWEEP_BLUR_FRACTION):
    coc_px_per_dpt = f^2 / (N p) = RELATIVE_SWEEP_BLUR_FRACTION * image_width_px."""
    focal_length_m = RELATIVE_FOCAL_LENGTH_MM * 1e-3
    f_number = focal_length_m**2 / (RELATIVE_SWEEP_BLUR_FRACTION * RELATIVE_SENSOR_WIDTH_MM * 1e-3)
    return Camera(RELATIVE_FOCAL_LENGTH_MM, f_number, RELATIVE_SENSOR_WIDTH_MM, int(image_width_px))


@dataclass
class SequenceMeta:
    """Validated contents of a metadata file. ``focus_distance_m`` is always in metres
    (converted from ``focus_distance_diopters`` when only those were given)."""

    focal_length_mm: float | None
    f_number: float | list[float] | None
    sensor_width_mm: float | None
    focus_distance_m: list[float | None] | None = None
    timestamps_s: list[float] | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def camera_known(self) -> bool:
        """False when any camera key was null or missing (depth can only be relative)."""
        return None not in (self.focal_length_mm, self.f_number, self.sensor_width_mm)

    @property
    def num_frames(self) -> int | None:
        """Frame count implied by the per-frame lists, or None if there are none."""
        for values in (
            self.focus_distance_m,
            self.timestamps_s,
            self.f_number if isinstance(self.f_number, list) else None,
        ):
            if values is not None:
                return len(values)
        return None

    def f_numbers(self, num_frames: int) -> list[float]:
        """The f-number of every frame (a single number is repeated; the stand-in camera's
        when the camera is unknown)."""
        if not self.camera_known:
            return [relative_camera(1).f_number] * num_frames
        if isinstance(self.f_number, list):
            return list(self.f_number)
        return [float(self.f_number)] * num_frames

    def camera(self, image_width_px: int, frame_index: int = 0) -> Camera:
        """The camera of frame ``frame_index`` for a stored image ``image_width_px`` wide
        (:func:`relative_camera` when the camera is unknown)."""
        if not self.camera_known:
            return relative_camera(image_width_px)
        assert self.focal_length_mm is not None and self.sensor_width_mm is not None
        assert self.f_number is not None
        f_number = self.f_number[frame_index] if isinstance(self.f_number, list) else self.f_number
        return Camera(
            self.focal_length_mm, float(f_number), self.sensor_width_mm, int(image_width_px)
        )

    def check_num_frames(self, num_frames: int, frames_where: object) -> None:
        """Raise unless every per-frame list has ``num_frames`` entries (``frames_where``
        names what was counted, e.g. the folder or video)."""
        for key, values in (
            ("focus_distance_m", self.focus_distance_m),
            ("timestamps_s", self.timestamps_s),
            ("f_number", self.f_number if isinstance(self.f_number, list) else None),
        ):
            if values is not None and len(values) != num_frames:
                raise UserError(
                    f"{key} has {len(values)} entries but {frames_where} has {num_frames} frames",
                    self.path,
                )

    def to_json_dict(self) -> dict[str, Any]:
        """The dictionary written to disk (unknown keys kept, focus in metres)."""
        out: dict[str, Any] = {
            "focal_length_mm": self.focal_length_mm,
            "f_number": self.f_number,
            "sensor_width_mm": self.sensor_width_mm,
        }
        if self.focus_distance_m is not None:
            out["focus_distance_m"] = self.focus_distance_m
        if self.timestamps_s is not None:
            out["timestamps_s"] = self.timestamps_s
        if self.source is not None:
            out["source"] = self.source
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


# --- reading and validation ----------------------------------------------------------------


def read_meta(path: str | os.PathLike[str], *, require_focus: bool = True) -> SequenceMeta:
    """Read and validate a metadata JSON file (see the module docstring for the keys).

    ``require_focus=False`` accepts a file without any focus list (a camera description, as
    ``focaldepth render --meta`` takes).
    """
    meta_path = Path(path)
    if not meta_path.is_file():
        raise UserError("metadata file not found", meta_path)
    try:
        text = meta_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read metadata: {error}", meta_path) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(
            f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}", meta_path
        ) from None
    return validate_meta(raw, meta_path, require_focus=require_focus)


def validate_meta(raw: Any, where: object = None, *, require_focus: bool = True) -> SequenceMeta:
    """Validate an already-parsed metadata dictionary; ``where`` names it in errors."""
    where_path = None if where is None else Path(str(where))
    if not isinstance(raw, dict):
        raise UserError(
            f"expected a JSON object with camera and focus keys, got {type(raw).__name__}",
            where_path,
        )
    raw = _with_f_number(raw, where_path)
    missing = []
    if require_focus and "focus_distance_m" not in raw and "focus_distance_diopters" not in raw:
        missing.append("focus_distance_m (or focus_distance_diopters)")
    if missing:
        raise UserError(f"missing key(s): {', '.join(missing)}", where_path)

    focal_length_mm = _optional_positive(raw.get("focal_length_mm"), "focal_length_mm", where_path)
    sensor_width_mm = _optional_positive(raw.get("sensor_width_mm"), "sensor_width_mm", where_path)
    f_number: float | list[float] | None
    if isinstance(raw.get("f_number"), list):
        f_number = [
            _positive_number(v, f"f_number[{i}]", where_path) for i, v in enumerate(raw["f_number"])
        ]
        if not f_number:
            raise UserError("f_number is an empty list", where_path)
    else:
        f_number = _optional_positive(raw.get("f_number"), "f_number", where_path)

    focus_distance_m = _focus_in_metres(raw, focal_length_mm, where_path)
    timestamps_s = _timestamps(raw.get("timestamps_s"), where_path)
    source = raw.get("source")
    if source is not None and not isinstance(source, str):
        raise UserError(f"source must be text, got {type(source).__name__}", where_path)

    meta = SequenceMeta(
        focal_length_mm=focal_length_mm,
        f_number=f_number,
        sensor_width_mm=sensor_width_mm,
        focus_distance_m=focus_distance_m,
        timestamps_s=timestamps_s,
        source=source,
        extra={k: v for k, v in raw.items() if k not in KNOWN_KEYS},
        path=where_path,
    )
    lengths = {
        key: len(v)
        for key, v in (
            ("focus_distance_m", focus_distance_m),
            ("timestamps_s", timestamps_s),
            ("f_number", f_number if isinstance(f_number, list) else None),
        )
        if v is not None
    }
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise UserError(f"per-frame lists differ in length: {listed}", where_path)
    return meta


def _with_f_number(raw: dict[str, Any], where: Path | None) -> dict[str, Any]:
    """``raw`` with ``aperture_diameter_mm`` (if given instead of ``f_number``) converted to
    ``f_number = focal_length_mm / aperture_diameter_mm``, per frame for a list."""
    if "aperture_diameter_mm" not in raw:
        return raw
    if "f_number" in raw:
        raise UserError("give f_number or aperture_diameter_mm, not both", where)
    if raw.get("focal_length_mm") is None:  # unknown lens: the f-number is unknown too
        if raw["aperture_diameter_mm"] is not None:
            _optional_list_of_positive(raw["aperture_diameter_mm"], "aperture_diameter_mm", where)
        return {**{k: v for k, v in raw.items() if k != "aperture_diameter_mm"}, "f_number": None}
    focal_length_mm = _positive_number(raw["focal_length_mm"], "focal_length_mm", where)
    diameters = raw["aperture_diameter_mm"]
    if isinstance(diameters, list):
        if not diameters:
            raise UserError("aperture_diameter_mm is an empty list", where)
        f_number: Any = [focal_length_mm / _positive_number(v, f"aperture_diameter_mm[{i}]", where)
                         for i, v in enumerate(diameters)]
    else:
        f_number = focal_length_mm / _positive_number(diameters, "aperture_diameter_mm", where)
    converted = {key: value for key, value in raw.items() if key != "aperture_diameter_mm"}
    converted["f_number"] = f_number
    return converted


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional_positive(value: Any, name: str, where: Path | None) -> float | None:
    """None (unknown) stays None; anything else must be a positive finite number."""
    return None if value is None else _positive_number(value, name, where)


def _optional_list_of_positive(value: Any, name: str, where: Path | None) -> None:
    """Check a number-or-list value that will not be used (still refused if malformed)."""
    for i, item in enumerate(value if isinstance(value, list) else [value]):
        _positive_number(item, f"{name}[{i}]" if isinstance(value, list) else name, where)


def _positive_number(value: Any, name: str, where: Path | None) -> float:
    if not _is_number(value):
        raise UserError(f"{name} must be a number, got {value!r}", where)
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{name} must be positive and finite, got {value!r}", where)
    return float(value)


def _optional_list(raw: dict[str, Any], key: str, where: Path | None) -> list[float | None] | None:
    if key not in raw:
        return None
    values = raw[key]
    if not isinstance(values, list):
        raise UserError(
            f"{key} must be a list with one entry per frame, got {type(values).__name__}", where
        )
    out: list[float | None] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        out.append(_positive_number(value, f"{key}[{i}]", where))
    return out


def _focus_in_metres(
    raw: dict[str, Any], focal_length_mm: float | None, where: Path | None
) -> list[float | None] | None:
    """The focus list in metres, from either key, checked to be beyond the focal length."""
    metres = _optional_list(raw, "focus_distance_m", where)
    diopters = _optional_list(raw, "focus_distance_diopters", where)
    from_diopters = None if diopters is None else [None if d is None else 1.0 / d for d in diopters]
    if metres is not None and from_diopters is not None:
        if len(metres) != len(from_diopters):
            raise UserError(
                f"focus_distance_m has {len(metres)} entries but focus_distance_diopters "
                f"has {len(from_diopters)}",
                where,
            )
        for i, (m, from_d) in enumerate(zip(metres, from_diopters)):
            if (m is None) != (from_d is None) or (
                m is not None and not math.isclose(m, from_d, rel_tol=FOCUS_AGREEMENT_RTOL)
            ):
                raise UserError(
                    f"focus_distance_m[{i}] = {m} disagrees with focus_distance_diopters[{i}] = "
                    f"{diopters[i]} (give one of the two)",
                    where,
                )
    key, focus = (
        ("focus_distance_m", metres)
        if metres is not None
        else ("focus_distance_diopters", from_diopters)
    )
    if focus is None or focal_length_mm is None:
        return focus
    focal_length_m = focal_length_mm * 1e-3
    for i, focus_m in enumerate(focus):
        if focus_m is not None and focus_m <= focal_length_m:
            raise UserError(
                f"{key}[{i}] is {focus_m:g} m, not beyond the focal length "
                f"({focal_length_mm:g} mm): a thin lens cannot focus there",
                where,
            )
    return focus


def _timestamps(values: Any, where: Path | None) -> list[float] | None:
    if values is None:
        return None
    if not isinstance(values, list):
        raise UserError(
            f"timestamps_s must be a list with one entry per frame, got {type(values).__name__}",
            where,
        )
    out: list[float] = []
    for i, value in enumerate(values):
        if not _is_number(value) or not math.isfinite(value):
            raise UserError(f"timestamps_s[{i}] must be a finite number, got {value!r}", where)
        if out and value <= out[-1]:
            raise UserError(
                f"timestamps_s must increase strictly: entry {i} ({value}) follows {out[-1]}", where
            )
        out.append(float(value))
    return out


def make_meta(
    camera: Camera,
    focus_distance_m: Sequence[float | None],
    *,
    f_number: float | Sequence[float] | None = None,
    timestamps_s: Sequence[float] | None = None,
    source: str | None = None,
    extra: dict[str, Any] | None = None,
) -> SequenceMeta:
    """Build and validate metadata for writing (same rules as reading, so nothing invalid is
    ever written). ``f_number`` overrides the camera's with a number or per-frame list."""
    number_or_list = camera.f_number if f_number is None else f_number
    raw: dict[str, Any] = {
        "focal_length_mm": float(camera.focal_length_mm),
        "f_number": [float(v) for v in number_or_list]
        if isinstance(number_or_list, (list, tuple))
        else float(number_or_list),
        "sensor_width_mm": float(camera.sensor_width_mm),
        # NaN is how arrays spell "unknown"; JSON spells it null
        "focus_distance_m": [
            None if v is None or math.isnan(float(v)) else float(v) for v in focus_distance_m
        ],
    }
    if timestamps_s is not None:
        raw["timestamps_s"] = [float(t) for t in timestamps_s]
    if source is not None:
        raw["source"] = source
    for key, value in (extra or {}).items():
        raw.setdefault(key, value)
    meta = validate_meta(raw, "metadata to write")
    meta.path = None
    return meta
