"""Focus calibration: a monotone map from a raw lens value to dioptres, fitted to a few shots.

A phone's voice-coil lens moves the lens by an amount roughly proportional to its drive
value; for a thin lens at v = f + delta behind the principal plane the focus is
1/s = 1/f - 1/(f + delta), nearly affine in delta for delta << f. So dioptres are close to
affine in the raw value (iOS lensPosition, an UNCALIBRATED Android LENS_FOCUS_DISTANCE), and
a low-order polynomial (degree 1 by default, 2 or 3 for a bent curve) fitted to shots of a
target at known distances captures the rest. The fit must be monotone over the shots' range
(a focus value names one distance); residuals and, with enough shots, leave-one-out errors
are reported in dioptres.

To get a shot's raw value, either let autofocus lock on the target and log the value, or
sweep focus past it and take the value where it is sharpest (:func:`sharpest_focus_value`).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from focaldepth.errors import UserError
from focaldepth.io.atomic import atomic_write_json

CURVE_FORMAT = "focaldepth-focus-curve/1"
MAX_DEGREE = 3


@dataclass
class FocusCurve:
    """dioptres = sum_k coefficients[k] * raw**k over ``raw_range`` (the shots' range)."""

    coefficients: list[float]  # low to high order
    raw_range: tuple[float, float]
    raw_unit: str = "lens_position"
    residuals_dpt: list[float] = field(default_factory=list)
    leave_one_out_dpt: list[float] | None = None

    @property
    def degree(self) -> int:
        return len(self.coefficients) - 1

    @property
    def rms_dpt(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.residuals_dpt)))) if self.residuals_dpt else math.nan

    def diopters(self, raw: np.ndarray | list[float] | float) -> np.ndarray:
        return np.polynomial.polynomial.polyval(np.asarray(raw, dtype=np.float64), self.coefficients)

    def outside_range(self, raw: np.ndarray | list[float], margin: float = 0.1) -> np.ndarray:
        """Which values lie beyond the fitted range by more than ``margin`` of its width
        (extrapolated: less trustworthy)."""
        low, high = self.raw_range
        slack = margin * (high - low)
        values = np.asarray(raw, dtype=np.float64)
        return (values < low - slack) | (values > high + slack)

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": CURVE_FORMAT,
            "model": "dioptres = sum_k coefficients[k] * raw^k",
            "raw_unit": self.raw_unit,
            "coefficients": self.coefficients,
            "raw_range": list(self.raw_range),
            "residuals_dpt": self.residuals_dpt,
            "rms_dpt": self.rms_dpt,
        }
        if self.leave_one_out_dpt is not None:
            out["leave_one_out_dpt"] = self.leave_one_out_dpt
        return out


def fit_focus_curve(raw: list[float] | np.ndarray, distance_m: list[float] | np.ndarray,
                    degree: int = 1, raw_unit: str = "lens_position", where: object = None) -> FocusCurve:
    """Least-squares fit of dioptres (1 / distance) against the raw value, checked monotone.

    Needs at least ``degree + 1`` shots at distinct raw values (``degree + 2`` for a residual
    that means anything; leave-one-out errors from ``degree + 3``)."""
    values = np.asarray(raw, dtype=np.float64)
    distances = np.asarray(distance_m, dtype=np.float64)
    if not 1 <= degree <= MAX_DEGREE:
        raise UserError(f"degree must be 1..{MAX_DEGREE}, got {degree}", where)
    if values.shape != distances.shape or values.ndim != 1:
        raise UserError("give one raw focus value per distance", where)
    if not (np.isfinite(values).all() and np.isfinite(distances).all() and (distances > 0).all()):
        raise UserError("distances must be positive and focus values finite", where)
    if len(np.unique(values)) < degree + 1:
        raise UserError(f"a degree-{degree} curve needs at least {degree + 1} shots at different "
                        f"focus values, got {len(np.unique(values))}", where)
    target_dpt = 1.0 / distances
    coefficients = _polyfit(values, target_dpt, degree)
    low, high = float(values.min()), float(values.max())
    _check_monotone(coefficients, low, high, degree, where)
    residuals = target_dpt - np.polynomial.polynomial.polyval(values, coefficients)
    loo = None
    if len(values) >= degree + 3:
        loo = []
        for i in range(len(values)):
            keep = np.arange(len(values)) != i
            c = _polyfit(values[keep], target_dpt[keep], degree)
            loo.append(float(target_dpt[i] - np.polynomial.polynomial.polyval(values[i], c)))
    return FocusCurve([float(c) for c in coefficients], (low, high), raw_unit,
                      [float(r) for r in residuals], loo)


def _polyfit(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    return np.polynomial.polynomial.polyfit(x, y, degree)


def _check_monotone(coefficients: np.ndarray, low: float, high: float, degree: int, where: object) -> None:
    slope = np.polynomial.polynomial.polyval(np.linspace(low, high, 256),
                                             np.polynomial.polynomial.polyder(coefficients))
    if not ((slope > 0).all() or (slope < 0).all()):
        raise UserError(f"the degree-{degree} fit is not monotone over the shots' range "
                        f"{low:g}..{high:g}: use a lower degree or more shots", where)


# --- files -----------------------------------------------------------------------------------


def read_shots_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """A shots table: CSV with columns ``distance_m`` and ``focus_raw`` (one row per shot)."""
    src = Path(path)
    if not src.is_file():
        raise UserError("shots file not found", src)
    with src.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
    if not rows or not {"distance_m", "focus_raw"} <= set(rows[0]):
        raise UserError("expected a CSV with columns distance_m and focus_raw", src)
    try:
        distances = np.array([float(row["distance_m"]) for row in rows])
        raw = np.array([float(row["focus_raw"]) for row in rows])
    except (TypeError, ValueError):
        raise UserError("distance_m and focus_raw must be numbers in every row", src) from None
    return raw, distances


def write_focus_curve(path: str | os.PathLike[str], curve: FocusCurve) -> Path:
    return atomic_write_json(path, curve.to_json_dict())


def read_focus_curve(path: str | os.PathLike[str]) -> FocusCurve:
    import json

    src = Path(path)
    if not src.is_file():
        raise UserError("focus curve not found", src)
    try:
        raw = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read focus curve: {error}", src) from None
    if not isinstance(raw, dict) or raw.get("format") != CURVE_FORMAT:
        raise UserError(f"not a focus curve (format must be {CURVE_FORMAT!r})", src)
    try:
        coefficients = [float(c) for c in raw["coefficients"]]
        low, high = (float(v) for v in raw["raw_range"])
    except (KeyError, TypeError, ValueError):
        raise UserError("focus curve needs numeric coefficients and raw_range", src) from None
    if not 2 <= len(coefficients) <= MAX_DEGREE + 1 or not low < high:
        raise UserError("focus curve needs 2 to 4 coefficients and raw_range low < high", src)
    return FocusCurve(coefficients, (low, high), str(raw.get("raw_unit", "lens_position")),
                      [float(r) for r in raw.get("residuals_dpt", [])], raw.get("leave_one_out_dpt"))


# --- the raw value of a shot from a sweep ------------------------------------------------------


def sharpness(image: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> float:
    """Variance of the Laplacian of the grey image inside ``roi`` = (x, y, width, height)."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if roi is not None:
        x, y, w, h = roi
        grey = grey[y:y + h, x:x + w]
    if grey.size == 0:
        raise UserError(f"focus region {roi} is empty or outside the image")
    return float(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F).var())


def sharpest_focus_value(images: list[np.ndarray], focus_raw: list[float] | np.ndarray,
                         roi: tuple[int, int, int, int] | None = None) -> float:
    """The raw focus value where the target (inside ``roi``) is sharpest in a sweep: the
    frame of highest sharpness, refined by a parabola through it and its neighbours in
    focus order (the sweep need not be sorted)."""
    values = np.asarray(focus_raw, dtype=np.float64)
    if len(images) != len(values) or len(values) < 3:
        raise UserError("a focus sweep of at least 3 frames with one focus value each is needed")
    order = np.argsort(values)
    scores = np.array([sharpness(images[i], roi) for i in order])
    x = values[order]
    peak = int(np.argmax(scores))
    if peak == 0 or peak == len(x) - 1:
        return float(x[peak])  # at the end of the sweep: the target may lie beyond it
    # parabola through three points (unequal spacing allowed)
    coefficients = np.polyfit(x[peak - 1:peak + 2], scores[peak - 1:peak + 2], 2)
    if coefficients[0] >= 0:
        return float(x[peak])
    return float(np.clip(-coefficients[1] / (2 * coefficients[0]), x[peak - 1], x[peak + 1]))
