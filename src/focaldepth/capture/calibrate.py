"""Chessboard calibration of the phone camera and the RGB-D sensor (OpenCV).

* :func:`calibrate_camera`: intrinsics K and distortion of one camera from views of a
  chessboard (``cv2.findChessboardCorners`` + ``cornerSubPix``, ``cv2.calibrateCamera``).
* :func:`stereo_calibrate`: the rigid transform from the depth camera to the colour camera,
  ``X_colour = R X_depth + t`` (metres), from views that both cameras saw at the same time,
  intrinsics held fixed (``cv2.stereoCalibrate`` with ``CALIB_FIX_INTRINSIC``).

The depth camera is calibrated on its infrared image (cover the IR projector, light the
board with an incandescent lamp or sunlight); for sensors whose depth is already registered
to their own colour camera, calibrate that colour camera instead. ``pattern`` counts inner
corners (columns, rows); a board with an even and an odd number of squares has one
unambiguous corner order. Errors are RMS reprojection errors in pixels.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from focaldepth.errors import UserError
from focaldepth.io.atomic import atomic_write_json

RIG_FORMAT = "focaldepth-rig-calibration/1"


def _json_number(value: float) -> float | None:
    """NaN (not measured, e.g. a rig from known intrinsics) is null in JSON."""
    return None if value != value else float(value)


def _from_json_number(value: Any) -> float:
    return float("nan") if value is None else float(value)
SUBPIX_CRITERIA = (3, 50, 1e-4)  # cv2.TERM_CRITERIA_EPS + MAX_ITER, 50 iterations, 1e-4 px


@dataclass
class CameraCalibration:
    K: np.ndarray  # 3x3, pixel centres at integer coordinates (OpenCV)
    dist: np.ndarray  # (k1, k2, p1, p2, k3)
    image_size_wh: tuple[int, int]
    rms_px: float = float("nan")
    num_views: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {"K": self.K.tolist(), "dist": self.dist.ravel().tolist(),
                "image_size_wh": list(self.image_size_wh), "rms_px": _json_number(self.rms_px),
                "num_views": self.num_views}

    @classmethod
    def from_json_dict(cls, raw: Any, where: object = None) -> CameraCalibration:
        try:
            K = np.array(raw["K"], dtype=np.float64)
            dist = np.array(raw.get("dist", [0.0] * 5), dtype=np.float64).ravel()
            size = tuple(int(v) for v in raw["image_size_wh"])
        except (KeyError, TypeError, ValueError):
            raise UserError("a camera needs K (3x3), image_size_wh and optionally dist", where) from None
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0 or len(size) != 2:
            raise UserError("K must be a 3x3 matrix with positive focal lengths", where)
        return cls(K, dist, (size[0], size[1]), _from_json_number(raw.get("rms_px")),
                   int(raw.get("num_views", 0)))


@dataclass
class RigCalibration:
    """Both cameras and the depth-to-colour transform X_colour = R X_depth + t."""

    colour: CameraCalibration
    depth: CameraCalibration
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t_m: np.ndarray = field(default_factory=lambda: np.zeros(3))
    stereo_rms_px: float = float("nan")

    def to_json_dict(self) -> dict[str, Any]:
        return {"format": RIG_FORMAT, "colour": self.colour.to_json_dict(),
                "depth": self.depth.to_json_dict(), "R": self.R.tolist(),
                "t_m": self.t_m.ravel().tolist(), "stereo_rms_px": _json_number(self.stereo_rms_px)}


def write_rig(path: str | os.PathLike[str], rig: RigCalibration) -> Path:
    return atomic_write_json(path, rig.to_json_dict())


def read_rig(path: str | os.PathLike[str]) -> RigCalibration:
    src = Path(path)
    if not src.is_file():
        raise UserError("rig calibration not found", src)
    try:
        raw = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read rig calibration: {error}", src) from None
    if not isinstance(raw, dict) or raw.get("format") != RIG_FORMAT:
        raise UserError(f"not a rig calibration (format must be {RIG_FORMAT!r})", src)
    if "colour" not in raw or "depth" not in raw:
        raise UserError("rig calibration needs both a colour and a depth camera", src)
    try:
        R = np.array(raw.get("R", np.eye(3).tolist()), dtype=np.float64)
        t = np.array(raw.get("t_m", [0, 0, 0]), dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise UserError("R must be 3x3 and t_m three numbers", src) from None
    if R.shape != (3, 3) or t.shape != (3,) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6):
        raise UserError("R must be a 3x3 rotation matrix and t_m three numbers", src)
    return RigCalibration(CameraCalibration.from_json_dict(raw["colour"], src),
                          CameraCalibration.from_json_dict(raw["depth"], src), R, t,
                          _from_json_number(raw.get("stereo_rms_px")))


def board_points_m(pattern: tuple[int, int], square_m: float) -> np.ndarray:
    """(N, 3) corner positions on the board plane z = 0, in OpenCV's corner order (rows of
    ``pattern[0]`` corners)."""
    cols, rows = pattern
    grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2)
    return np.hstack([grid * square_m, np.zeros((len(grid), 1))]).astype(np.float32)


def find_corners(image: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """(N, 2) sub-pixel corners of the chessboard, or None if it is not found."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if grey.dtype != np.uint8:  # e.g. a 16-bit IR image: stretch to 8 bits
        g = grey.astype(np.float64)
        g = (g - g.min()) / max(g.max() - g.min(), 1e-12)
        grey = (255 * g).astype(np.uint8)
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(grey, pattern, flags=flags)
    if not found:
        return None
    corners = cv2.cornerSubPix(grey, corners, (5, 5), (-1, -1), SUBPIX_CRITERIA)
    return corners.reshape(-1, 2).astype(np.float32)


DISTORTION_MODELS = ("none", "radial", "full")


def _distortion_flags(model: str) -> int:
    """none: a pinhole; radial: k1, k2 (the default: enough for phone and depth-sensor lenses,
    and well determined by a dozen views); full: k1, k2, p1, p2, k3 (needs many views that
    reach the image corners, or k3 absorbs noise)."""
    import cv2

    radial_only = cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_FIX_K3
    if model == "full":
        return 0
    if model == "radial":
        return radial_only
    if model == "none":
        return radial_only | cv2.CALIB_FIX_K1 | cv2.CALIB_FIX_K2
    raise UserError(f"unknown distortion model {model!r} (choose {', '.join(DISTORTION_MODELS)})")


def calibrate_camera(views: list[np.ndarray | None], pattern: tuple[int, int], square_m: float,
                     image_size_wh: tuple[int, int], where: object = None,
                     distortion: str = "radial") -> CameraCalibration:
    """Intrinsics from the corners of each view (None = board not found, skipped)."""
    import cv2

    flags = _distortion_flags(distortion)

    found = [c for c in views if c is not None]
    if len(found) < 3:
        raise UserError(f"the chessboard ({pattern[0]}x{pattern[1]} inner corners) was found in "
                        f"{len(found)} of {len(views)} images; calibration needs at least 3", where)
    objects = [board_points_m(pattern, square_m)] * len(found)
    rms, K, dist, _, _ = cv2.calibrateCamera(objects, [c.reshape(-1, 1, 2) for c in found],
                                              image_size_wh, None, None, flags=flags)
    return CameraCalibration(K, dist.ravel(), image_size_wh, float(rms), len(found))


def stereo_calibrate(colour_views: list[np.ndarray | None], depth_views: list[np.ndarray | None],
                     colour: CameraCalibration, depth: CameraCalibration, pattern: tuple[int, int],
                     square_m: float, where: object = None) -> RigCalibration:
    """Depth-to-colour extrinsics from simultaneous views (pairs where both found the board)."""
    import cv2

    pairs = [(c, d) for c, d in zip(colour_views, depth_views) if c is not None and d is not None]
    if len(pairs) < 3:
        raise UserError(f"both cameras found the chessboard in {len(pairs)} image pairs; "
                        "the extrinsics need at least 3", where)
    objects = [board_points_m(pattern, square_m)] * len(pairs)
    rms, _, _, _, _, R, t, _, _ = cv2.stereoCalibrate(
        objects, [d.reshape(-1, 1, 2) for _, d in pairs], [c.reshape(-1, 1, 2) for c, _ in pairs],
        depth.K, depth.dist, colour.K, colour.dist, depth.image_size_wh,
        flags=cv2.CALIB_FIX_INTRINSIC)
    return RigCalibration(colour, depth, R, t.ravel(), float(rms))
