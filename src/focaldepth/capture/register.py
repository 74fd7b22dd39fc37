"""Registration of a depth map into the colour (phone) camera's view, and how well it fits.

:func:`register_depth`: every valid depth pixel is back-projected with the depth camera's
intrinsics (undistorted when its distortion is given), moved by X_colour = R X_depth + t,
projected with the colour camera's intrinsics (and distortion) and z-buffered: the nearest
surface wins a colour pixel. Isolated one-pixel cracks of the splat are closed; pixels no
depth lands on (occlusion shadows, the colour image beyond the depth camera's field) are NaN.

Two measures of the result:

* :func:`registration_reprojection_error`: chessboard corners seen by the depth camera,
  lifted to 3-D with the depth map and projected into the colour image, against the corners
  the colour camera detected (pixels): the error of the whole chain, depth included.
* :func:`edge_alignment`: on any real frame, the distance from each depth discontinuity to
  the nearest colour edge (Canny), in colour pixels. Registration should bring it down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A depth discontinuity: neighbouring depths differ by more than this fraction.
DEPTH_EDGE_RELATIVE_JUMP = 0.05
# Distances beyond this (px) are truncated in the mean: an edge with no colour edge near it
# (a depth edge between two surfaces of the same colour) should not dominate.
EDGE_DISTANCE_CAP_PX = 10.0


def centred_intrinsics(focal_px: float, width: int, height: int) -> np.ndarray:
    """K of a pinhole camera with the principal point at the image centre."""
    return np.array([[focal_px, 0, (width - 1) / 2.0], [0, focal_px, (height - 1) / 2.0], [0, 0, 1]])


def back_project(depth_m: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) points (metres, camera frame) of the valid pixels and their (rows, cols)."""
    ys, xs = np.nonzero(np.isfinite(depth_m) & (depth_m > 0))
    z = depth_m[ys, xs].astype(np.float64)
    if dist is not None and np.any(np.asarray(dist) != 0):
        import cv2

        pixels = np.stack([xs, ys], axis=1).astype(np.float64).reshape(-1, 1, 2)
        normalised = cv2.undistortPoints(pixels, K, np.asarray(dist, np.float64)).reshape(-1, 2)
        x, y = normalised[:, 0] * z, normalised[:, 1] * z
    else:  # this order of operations is generate.rgbd's (byte-identical registered depth)
        x, y = (xs - K[0, 2]) * z / K[0, 0], (ys - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1), np.stack([ys, xs], axis=1)


def project(points: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
    """(N, 2) pixel coordinates (u, v) of camera-frame points with z > 0."""
    if dist is not None and np.any(np.asarray(dist) != 0):
        import cv2

        uv, _ = cv2.projectPoints(points.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K,
                                  np.asarray(dist, np.float64))
        return uv.reshape(-1, 2)
    z = points[:, 2]
    return np.stack([K[0, 0] * points[:, 0] / z + K[0, 2], K[1, 1] * points[:, 1] / z + K[1, 2]], axis=1)


def register_depth(depth_m: np.ndarray, K_depth: np.ndarray, K_colour: np.ndarray,
                   R: np.ndarray | None = None, t_m: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0),
                   out_shape_hw: tuple[int, int] | None = None, *, dist_depth: np.ndarray | None = None,
                   dist_colour: np.ndarray | None = None, fill_cracks: bool = True) -> np.ndarray:
    """Depth (metres, NaN/0 = none) of the depth camera -> float32 depth in the colour view
    (z along the colour camera's axis; NaN where nothing lands). See the module docstring."""
    height, width = depth_m.shape
    out_h, out_w = out_shape_hw or (height, width)
    factor = supersample_factor(K_depth, K_colour)
    if factor > 1 and (dist_depth is None or not np.any(np.asarray(dist_depth) != 0)):
        depth_m, K_depth = supersample(depth_m, K_depth, factor)
    points, _ = back_project(depth_m, K_depth, dist_depth)
    t = np.asarray(t_m, dtype=np.float64).ravel()
    moved = points + t if R is None else points @ np.asarray(R, np.float64).T + t
    front = moved[:, 2] > 0
    moved = moved[front]
    uv = project(moved, K_colour, dist_colour)
    u = np.rint(uv[:, 0]).astype(np.int64)
    v = np.rint(uv[:, 1]).astype(np.int64)
    z = moved[:, 2]
    inside = (u >= 0) & (u < out_w) & (v >= 0) & (v < out_h)
    u, v, z = u[inside], v[inside], z[inside]
    out = np.full(out_h * out_w, np.inf)
    np.minimum.at(out, v * out_w + u, z)
    out = out.reshape(out_h, out_w)
    if fill_cracks:
        out = _close_cracks(out)
    return np.where(np.isfinite(out), out, np.nan).astype(np.float32)


def supersample_factor(K_depth: np.ndarray, K_colour: np.ndarray) -> int:
    """How many depth samples per depth pixel (per axis) give at least one per colour pixel:
    a phone's colour image is finer than a depth sensor's, and one point per depth pixel
    would leave most colour pixels empty."""
    ratio = max(K_colour[0, 0] / K_depth[0, 0], K_colour[1, 1] / K_depth[1, 1])
    return max(1, int(np.ceil(ratio - 1e-9)))


def supersample(depth_m: np.ndarray, K: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour upsampling by ``factor`` (no depth mixed across an edge) and the
    intrinsics of the finer grid (pixel centres at integers on both grids)."""
    fine = np.repeat(np.repeat(depth_m, factor, axis=0), factor, axis=1)
    K_fine = K.astype(np.float64).copy()
    K_fine[0, 0] *= factor
    K_fine[1, 1] *= factor
    K_fine[0, 1] *= factor
    K_fine[:2, 2] = (K[:2, 2] + 0.5) * factor - 0.5
    return fine, K_fine


def _close_cracks(out: np.ndarray) -> np.ndarray:
    """Fill empty pixels with at least 6 of 8 filled neighbours with their mean: a finer depth
    sampling leaves such cracks on surfaces; a 3x3 min would thicken edges instead."""
    empty = ~np.isfinite(out)
    if not empty.any():
        return out
    import cv2

    finite = np.where(np.isfinite(out), out, 0).astype(np.float32)
    count = cv2.boxFilter((~empty).astype(np.float32), -1, (3, 3), normalize=False)
    total = cv2.boxFilter(finite, -1, (3, 3), normalize=False)
    crack = empty & (count >= 6)
    out = out.copy()
    out[crack] = total[crack] / count[crack]
    return out


def sample_depth(depth_m: np.ndarray, points_uv: np.ndarray) -> np.ndarray:
    """Depth at sub-pixel positions: bilinear over the four neighbours when all are valid,
    else the nearest valid of them, else NaN."""
    out = np.full(len(points_uv), np.nan)
    h, w = depth_m.shape
    for k, (u, v) in enumerate(points_uv):
        x0, y0 = int(np.floor(u)), int(np.floor(v))
        if not (0 <= x0 < w - 1 and 0 <= y0 < h - 1):
            continue
        patch = depth_m[y0:y0 + 2, x0:x0 + 2].astype(np.float64)
        fx, fy = u - x0, v - y0
        weights = np.array([[(1 - fx) * (1 - fy), fx * (1 - fy)], [(1 - fx) * fy, fx * fy]])
        valid = np.isfinite(patch) & (patch > 0)
        if valid.all():
            out[k] = float((weights * patch).sum())
        elif valid.any():
            out[k] = float(patch[valid][np.argmax(weights[valid])])
    return out


def registration_reprojection_error(corners_depth_uv: np.ndarray, depth_m: np.ndarray,
                                    corners_colour_uv: np.ndarray, K_depth: np.ndarray,
                                    K_colour: np.ndarray, R: np.ndarray, t_m: np.ndarray, *,
                                    dist_depth: np.ndarray | None = None,
                                    dist_colour: np.ndarray | None = None) -> np.ndarray:
    """Per-corner error (colour pixels; NaN where the depth map has no value): corners of the
    depth camera lifted with the measured depth, moved and projected, against the colour
    camera's detections of the same corners."""
    z = sample_depth(depth_m, corners_depth_uv)
    if dist_depth is not None and np.any(np.asarray(dist_depth) != 0):
        import cv2

        normalised = cv2.undistortPoints(corners_depth_uv.reshape(-1, 1, 2).astype(np.float64), K_depth,
                                         np.asarray(dist_depth, np.float64)).reshape(-1, 2)
    else:
        normalised = (corners_depth_uv - K_depth[:2, 2]) / np.diag(K_depth)[:2]
    points = np.column_stack([normalised * z[:, None], z])
    moved = points @ np.asarray(R, np.float64).T + np.asarray(t_m, np.float64).ravel()
    errors = np.full(len(z), np.nan)
    ok = np.isfinite(z)
    if ok.any():
        errors[ok] = np.linalg.norm(project(moved[ok], K_colour, dist_colour) - corners_colour_uv[ok], axis=1)
    return errors


# --- edge alignment on real frames ------------------------------------------------------------


@dataclass
class EdgeAlignment:
    mean_px: float  # mean distance, each truncated at EDGE_DISTANCE_CAP_PX
    median_px: float
    within_2px: float  # fraction of depth-edge pixels within 2 px of a colour edge
    num_edge_px: int


def depth_edges(depth_m: np.ndarray, relative_jump: float = DEPTH_EDGE_RELATIVE_JUMP) -> np.ndarray:
    """Pixels on the near side of a depth discontinuity (4-neighbours, both valid)."""
    depth = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype(np.float64)
    edges = np.zeros(depth.shape, dtype=bool)
    for axis in (0, 1):
        a = depth[:-1, :] if axis == 0 else depth[:, :-1]
        b = depth[1:, :] if axis == 0 else depth[:, 1:]
        with np.errstate(invalid="ignore"):
            jump = np.abs(a - b) > relative_jump * np.minimum(a, b)
            near_a, near_b = jump & (a < b), jump & (b <= a)
        if axis == 0:
            edges[:-1, :] |= near_a
            edges[1:, :] |= near_b
        else:
            edges[:, :-1] |= near_a
            edges[:, 1:] |= near_b
    return edges


def colour_edges(rgb: np.ndarray, low: int = 50, high: int = 150) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    return cv2.Canny(cv2.GaussianBlur(grey, (5, 5), 1.0), low, high) > 0


def edge_alignment(rgb: np.ndarray, depth_m: np.ndarray, mask: np.ndarray | None = None) -> EdgeAlignment:
    """Distances from depth discontinuities to the nearest colour edge (depth_m on the colour
    grid; ``mask`` restricts which depth edges count, e.g. to compare two registrations on
    the same pixels)."""
    import cv2

    colour = colour_edges(rgb)
    distance = cv2.distanceTransform((~colour).astype(np.uint8), cv2.DIST_L2, 5)
    edges = depth_edges(depth_m)
    if mask is not None:
        edges &= mask
    d = distance[edges]
    if d.size == 0:
        return EdgeAlignment(float("nan"), float("nan"), float("nan"), 0)
    return EdgeAlignment(float(np.minimum(d, EDGE_DISTANCE_CAP_PX).mean()), float(np.median(d)),
                         float((d <= 2.0).mean()), int(d.size))
