"""Thin-lens optics: camera description, circle of confusion, focus schedules.

Every function works on Python numbers, numpy arrays and torch tensors (differentiable),
because it only uses arithmetic and ``abs``. Units are in the names: ``_m`` metres,
``_mm`` millimetres, ``_px`` pixels, ``_dpt`` dioptres (1/m).

The circle of confusion (CoC) of a point at depth D for a thin lens of focal length f and
f-number N focused at F (aperture diameter A = f/N) is, on the sensor,

    c = A * f * |D - F| / (D * (F - f))                                    (1)

which is the same as  c = (f^2 / N) * |1/F - 1/D| * F / (F - f)          (2)

Form (2) shows the blur is linear in the dioptric distance |1/F - 1/D| from the focus plane.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence, TypeVar

import numpy as np

from focaldepth.errors import UserError

ArrayLike = TypeVar("ArrayLike")  # float, np.ndarray or torch.Tensor


def _abs(x):
    return x.abs() if hasattr(x, "abs") and not isinstance(x, np.ndarray) else np.abs(x)


@dataclass(frozen=True)
class Camera:
    """A thin-lens camera. ``sensor_width_mm`` is the width imaged by ``image_width_px``
    pixels of the stored image (crop or resize the image: change both consistently)."""

    focal_length_mm: float
    f_number: float
    sensor_width_mm: float
    image_width_px: int

    def __post_init__(self) -> None:
        for name in ("focal_length_mm", "f_number", "sensor_width_mm", "image_width_px"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise UserError(f"camera: {name} must be a positive finite number, got {value!r}")

    @property
    def focal_length_m(self) -> float:
        return self.focal_length_mm * 1e-3

    @property
    def aperture_m(self) -> float:
        """Aperture diameter A = f / N."""
        return self.focal_length_m / self.f_number

    @property
    def pixel_pitch_m(self) -> float:
        return self.sensor_width_mm * 1e-3 / self.image_width_px

    @property
    def coc_px_per_dpt(self) -> float:
        """Blur diameter in pixels per dioptre of defocus, f^2 / (N p), for F >> f."""
        return self.focal_length_m**2 / (self.f_number * self.pixel_pitch_m)

    def resized(self, image_width_px: int) -> "Camera":
        """The same lens and sensor imaged onto an image of another width (pixel pitch changes)."""
        return Camera(self.focal_length_mm, self.f_number, self.sensor_width_mm, image_width_px)

    def check_focus(self, focus_distance_m: Sequence[float | None], where: str = "camera") -> None:
        """Raise a UserError unless every known focus distance is finite and beyond f."""
        for i, focus in enumerate(focus_distance_m):
            if focus is None:
                continue
            if not math.isfinite(focus) or focus <= 0:
                raise UserError(f"focus_distance_m[{i}] = {focus!r} must be positive and finite", where)
            if focus <= self.focal_length_m:
                raise UserError(
                    f"focus_distance_m[{i}] = {focus} m is not beyond the focal length "
                    f"({self.focal_length_mm} mm): a thin lens cannot focus there",
                    where,
                )

    def coc_px(self, depth_m, focus_distance_m):
        """CoC diameter in pixels of this camera (see :func:`coc_px`)."""
        return coc_px(depth_m, focus_distance_m, self.focal_length_m, self.f_number, self.pixel_pitch_m)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Camera":
        return cls(float(d["focal_length_mm"]), float(d["f_number"]), float(d["sensor_width_mm"]),
                   int(d["image_width_px"]))


def coc_m(depth_m, focus_distance_m, focal_length_m, f_number):
    """Thin-lens CoC diameter on the sensor in metres, eq. (1): A f |D - F| / (D (F - f))."""
    aperture_m = focal_length_m / f_number
    return aperture_m * focal_length_m * _abs(depth_m - focus_distance_m) / (
        depth_m * (focus_distance_m - focal_length_m)
    )


def signed_coc_m(depth_m, focus_distance_m, focal_length_m, f_number):
    """Like :func:`coc_m` but positive behind the focus plane (D > F), negative in front."""
    aperture_m = focal_length_m / f_number
    return aperture_m * focal_length_m * (depth_m - focus_distance_m) / (
        depth_m * (focus_distance_m - focal_length_m)
    )


def coc_px(depth_m, focus_distance_m, focal_length_m, f_number, pixel_pitch_m):
    """Thin-lens CoC diameter in pixels."""
    return coc_m(depth_m, focus_distance_m, focal_length_m, f_number) / pixel_pitch_m


def coc_px_dioptric(depth_m, focus_distance_m, focal_length_m, f_number, pixel_pitch_m):
    """Eq. (2): (f^2 / (N p)) |1/F - 1/D| F / (F - f). Equal to :func:`coc_px`; the factor
    F/(F - f) is ~1 when focusing far beyond f, leaving blur linear in dioptres."""
    scale = focal_length_m**2 / (f_number * pixel_pitch_m)
    return scale * _abs(1.0 / focus_distance_m - 1.0 / depth_m) * focus_distance_m / (
        focus_distance_m - focal_length_m
    )


def depth_from_coc(coc_m_value, focus_distance_m, focal_length_m, f_number):
    """The two depths (near, far) that produce CoC ``coc_m_value`` when focused at F.

    Inverting (1) with k = c (F - f) / (A f) gives D = F / (1 + k) in front of the focus plane
    and D = F / (1 - k) behind it; the far solution is infinite (``inf``) once k >= 1.
    """
    aperture_m = focal_length_m / f_number
    k = coc_m_value * (focus_distance_m - focal_length_m) / (aperture_m * focal_length_m)
    near = focus_distance_m / (1.0 + k)
    denominator = 1.0 - k
    if hasattr(denominator, "clamp") and not isinstance(denominator, np.ndarray):
        import torch

        far = torch.where(denominator > 0, focus_distance_m / denominator.clamp_min(1e-12),
                          torch.full_like(denominator, math.inf))
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            far = np.where(np.asarray(denominator) > 0, focus_distance_m / np.asarray(denominator), np.inf)
        if np.ndim(far) == 0:
            far = float(far)
    return near, far


# --- focus schedules --------------------------------------------------------------------


def dioptric_ramp(near_m: float, far_m: float, num_frames: int) -> np.ndarray:
    """``num_frames`` focus distances from ``near_m`` to ``far_m``, evenly spaced in dioptres."""
    if not (0 < near_m < far_m):
        raise UserError(f"focus ramp: need 0 < near ({near_m}) < far ({far_m})")
    if num_frames < 1:
        raise UserError(f"focus ramp: need at least one frame, got {num_frames}")
    if num_frames == 1:
        return np.array([2.0 / (1.0 / near_m + 1.0 / far_m)])
    dioptres = np.linspace(1.0 / near_m, 1.0 / far_m, num_frames)
    return 1.0 / dioptres


def repeated_ramps(near_m: float, far_m: float, frames_per_ramp: int = 5, num_ramps: int = 5) -> np.ndarray:
    """The seed's video protocol: ``num_ramps`` near-to-far ramps back to back, with no
    far-to-near ramp in between (the lens jumps back to near after each ramp)."""
    return np.tile(dioptric_ramp(near_m, far_m, frames_per_ramp), num_ramps)


def focus_schedule(focus_distance_m: Sequence[float]) -> np.ndarray:
    """A user-given schedule, validated (positive and finite)."""
    schedule = np.asarray(focus_distance_m, dtype=np.float64)
    if schedule.ndim != 1 or schedule.size == 0:
        raise UserError("focus schedule: expected a non-empty list of distances in metres")
    if not np.all(np.isfinite(schedule)) or np.any(schedule <= 0):
        raise UserError(f"focus schedule: every distance must be positive and finite, got {schedule.tolist()}")
    return schedule
