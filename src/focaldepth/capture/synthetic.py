"""Synthetic rig captures with known ground truth (the capture tests use them; so can anyone
checking a calibration pipeline): a chessboard seen by pinhole cameras from known poses, and
the depth map of the board's plane in front of a wall.

Board coordinates: metres on the plane z = 0, origin at the first inner corner, x along
``pattern[0]`` (as :func:`focaldepth.capture.calibrate.board_points_m`). A pose (R, t) maps
board points into the camera: X_cam = R X_board + t.
"""

from __future__ import annotations

import numpy as np

TEXTURE_PX_PER_SQUARE = 40


def rotation(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    import cv2

    return cv2.Rodrigues(np.radians([rx_deg, ry_deg, rz_deg]).astype(np.float64))[0]


def board_texture(pattern: tuple[int, int], margin_squares: int = 1) -> tuple[np.ndarray, float]:
    """uint8 texture of the board (``pattern`` inner corners, a white margin) and the texture
    coordinate of the first inner corner (pixel centres at integers)."""
    cols, rows = pattern
    n = TEXTURE_PX_PER_SQUARE
    size_x, size_y = (cols + 1 + 2 * margin_squares) * n, (rows + 1 + 2 * margin_squares) * n
    a = np.arange(size_x)[None, :] // n - margin_squares
    b = np.arange(size_y)[:, None] // n - margin_squares
    on_board = (a >= 0) & (a <= cols) & (b >= 0) & (b <= rows)
    texture = np.where(on_board & ((a + b) % 2 == 0), 20, 235).astype(np.uint8)
    first_corner = (margin_squares + 1) * n - 0.5
    return texture, first_corner


def render_board(K: np.ndarray, R: np.ndarray, t_m: np.ndarray, pattern: tuple[int, int], square_m: float,
                 size_wh: tuple[int, int], background: int = 128, noise_std: float = 2.0,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 grey image of the board seen from pose (R, t) by a pinhole camera K (no
    distortion), lightly blurred and with Gaussian noise."""
    import cv2

    texture, first = board_texture(pattern)
    px_per_m = TEXTURE_PX_PER_SQUARE / square_m
    texture_to_board = np.array([[1 / px_per_m, 0, -first / px_per_m], [0, 1 / px_per_m, -first / px_per_m],
                                 [0, 0, 1]])
    board_to_image = K @ np.column_stack([R[:, 0], R[:, 1], np.asarray(t_m, np.float64).ravel()])
    image = cv2.warpPerspective(texture, board_to_image @ texture_to_board, size_wh, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=background)
    image = cv2.GaussianBlur(image, (0, 0), 0.7).astype(np.float64)
    if noise_std > 0:
        image += (rng or np.random.default_rng(0)).normal(0, noise_std, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def plane_depth(K: np.ndarray, R: np.ndarray, t_m: np.ndarray, size_wh: tuple[int, int],
                extent_m: tuple[float, float, float, float] | None = None, wall_m: float = 3.0) -> np.ndarray:
    """float32 depth (z, metres) of the board's plane seen from pose (R, t) by camera K;
    outside ``extent_m`` = (x0, y0, x1, y1) on the board, a wall at ``wall_m``."""
    width, height = size_wh
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    normal = R[:, 2]
    t = np.asarray(t_m, np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (normal @ t) / (rays @ normal)
    depth = np.where(z > 0, z, np.inf)
    if extent_m is not None:
        board = (rays * depth[..., None] - t) @ R  # back into board coordinates
        x0, y0, x1, y1 = extent_m
        inside = (board[..., 0] >= x0) & (board[..., 0] <= x1) & (board[..., 1] >= y0) & (board[..., 1] <= y1)
        depth = np.where(inside & np.isfinite(depth), depth, wall_m)
    return np.minimum(depth, wall_m).astype(np.float32)


def board_extent_m(pattern: tuple[int, int], square_m: float, margin_squares: int = 1) -> tuple[float, float, float, float]:
    cols, rows = pattern
    m = (1 + margin_squares) * square_m
    return (-m, -m, (cols - 1) * square_m + m, (rows - 1) * square_m + m)


def random_board_poses(count: int, rng: np.random.Generator, pattern: tuple[int, int], square_m: float,
                       distance_m: tuple[float, float] = (0.5, 0.9), tilt_deg: float = 35.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Board poses in front of a camera: the board's centre near the optical axis at a
    random distance, tilted up to ``tilt_deg`` about x and y (no flips: one corner order)."""
    cols, rows = pattern
    centre = np.array([(cols - 1) * square_m / 2, (rows - 1) * square_m / 2, 0.0])
    poses = []
    for _ in range(count):
        R = rotation(rng.uniform(-tilt_deg, tilt_deg), rng.uniform(-tilt_deg, tilt_deg), rng.uniform(-10, 10))
        target = np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.06, 0.06), rng.uniform(*distance_m)])
        poses.append((R, target - R @ centre))
    return poses
