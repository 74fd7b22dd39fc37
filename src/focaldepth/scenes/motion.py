"""Rigid motion of planar surfaces and of the camera, and the flow it induces.

Coordinates: the world frame is the camera frame at motion time 0 (x right, y down, z
forward, metres); time is counted in frames from the pose the scene was composed in (the
middle frame of a sequence, see :meth:`focaldepth.scenes.procedural.Scene.time`). The
camera translates without rotating: its centre at time t is ``camera_velocity_m * t``. A
surface is a plane through ``centre_m`` spanned by the first two columns ``(e1, e2)`` of
its rotation matrix; the third column is its normal. At time t it has moved by
``velocity_m * t`` and turned by ``angular_speed_rad * t`` about ``rotation_axis`` through
its centre. Constant velocities keep flow ground truth exact: the motion between any two
frames is known in closed form.

Pixels: pixel (row i, column j) has its centre at image coordinates (x = j, y = i); the
principal point is the image centre ``((W - 1) / 2, (H - 1) / 2)``; the focal length in
pixels is ``f / pixel_pitch``. A ray through (x, y) has direction
``((x - cx) / f_px, (y - cy) / f_px, 1)``, so the ray parameter of a hit *is* its depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rotation_matrix(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues' rotation of ``angle_rad`` about the unit vector ``axis`` (3x3, float64)."""
    axis = np.asarray(axis, np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)


def tilted_frame(spin_rad: float, tilt_rad: float, tilt_direction_rad: float) -> np.ndarray:
    """Orientation of a plane: spun by ``spin_rad`` in its own plane, then tilted away from
    fronto-parallel by ``tilt_rad`` about the in-image axis at ``tilt_direction_rad`` (the
    plane's depth then changes along the perpendicular direction)."""
    spin = rotation_matrix(np.array([0.0, 0.0, 1.0]), spin_rad)
    axis = np.array([np.cos(tilt_direction_rad), np.sin(tilt_direction_rad), 0.0])
    return rotation_matrix(axis, tilt_rad) @ spin


@dataclass(frozen=True)
class RigidMotion:
    """A plane's pose at frame 0 and its constant linear and angular velocity per frame."""

    centre_m: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3): columns e1, e2, normal
    velocity_m: np.ndarray  # (3,) per frame
    rotation_axis: np.ndarray  # (3,) unit vector (world frame)
    angular_speed_rad: float  # per frame

    def pose(self, frame: float) -> tuple[np.ndarray, np.ndarray]:
        """(centre (3,), rotation (3, 3)) at ``frame``."""
        turn = rotation_matrix(self.rotation_axis, self.angular_speed_rad * frame)
        return self.centre_m + self.velocity_m * frame, turn @ self.rotation

    def poses(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stacked poses: centres (T, 3), rotations (T, 3, 3)."""
        pairs = [self.pose(float(t)) for t in frames]
        return np.stack([c for c, _ in pairs]), np.stack([r for _, r in pairs])

    @staticmethod
    def still(centre_m: np.ndarray, rotation: np.ndarray) -> RigidMotion:
        return RigidMotion(np.asarray(centre_m, np.float64), np.asarray(rotation, np.float64),
                           np.zeros(3), np.array([0.0, 0.0, 1.0]), 0.0)


def camera_centres(camera_velocity_m: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Camera centres (T, 3) at ``frames`` for a camera translating at constant velocity."""
    return np.asarray(frames, np.float64)[:, None] * np.asarray(camera_velocity_m, np.float64)[None]


def project(points_m: np.ndarray, camera_centre_m: np.ndarray, focal_px: float, height: int,
            width: int) -> np.ndarray:
    """Pixel coordinates (..., 2) = (x, y) of world points (..., 3) seen from a camera at
    ``camera_centre_m`` (no rotation); inverse of the ray convention in the module doc."""
    relative = np.asarray(points_m, np.float64) - camera_centre_m
    x = focal_px * relative[..., 0] / relative[..., 2] + (width - 1) / 2
    y = focal_px * relative[..., 1] / relative[..., 2] + (height - 1) / 2
    return np.stack([x, y], -1)
