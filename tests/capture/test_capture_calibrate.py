"""Chessboard calibration of a synthetic rig (known intrinsics and pose) and depth registration."""

from __future__ import annotations

import numpy as np
import pytest

from focaldepth.capture import calibrate as cal
from focaldepth.capture import register as reg
from focaldepth.capture import synthetic as syn
from focaldepth.errors import UserError

PATTERN, SQUARE_M = (8, 5), 0.03
K_COLOUR = np.array([[520.0, 0, 319.5], [0, 520.0, 239.5], [0, 0, 1]])
K_DEPTH = np.array([[575.0, 0, 321.2], [0, 577.0, 238.7], [0, 0, 1]])
SIZE = (640, 480)
R_TRUE = syn.rotation(0.8, -1.2, 0.5)  # depth -> colour
T_TRUE = np.array([-0.025, 0.003, 0.002])  # metres


def depth_pose(R_board: np.ndarray, t_board: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The board's pose in the depth camera from its pose in the colour camera."""
    return R_TRUE.T @ R_board, R_TRUE.T @ (t_board - T_TRUE)


@pytest.fixture(scope="module")
def rig_capture():
    rng = np.random.default_rng(1)
    poses = syn.random_board_poses(12, rng, PATTERN, SQUARE_M)
    colour_views, depth_views = [], []
    for R_b, t_b in poses:
        colour_views.append(cal.find_corners(syn.render_board(K_COLOUR, R_b, t_b, PATTERN, SQUARE_M, SIZE, rng=rng), PATTERN))
        depth_views.append(cal.find_corners(syn.render_board(K_DEPTH, *depth_pose(R_b, t_b), PATTERN, SQUARE_M, SIZE, rng=rng), PATTERN))
    colour = cal.calibrate_camera(colour_views, PATTERN, SQUARE_M, SIZE)
    depth = cal.calibrate_camera(depth_views, PATTERN, SQUARE_M, SIZE)
    rig = cal.stereo_calibrate(colour_views, depth_views, colour, depth, PATTERN, SQUARE_M)
    return poses, colour_views, depth_views, rig


def test_calibration_recovers_intrinsics_and_extrinsics(rig_capture):
    _, colour_views, depth_views, rig = rig_capture
    assert all(v is not None for v in colour_views + depth_views)
    for found, true in ((rig.colour, K_COLOUR), (rig.depth, K_DEPTH)):
        assert found.rms_px < 0.4
        assert np.abs(np.diag(found.K)[:2] / np.diag(true)[:2] - 1).max() < 0.015
        assert np.abs(found.K[:2, 2] - true[:2, 2]).max() < 4.0
    assert np.linalg.norm(rig.t_m - T_TRUE) < 0.01  # within 1 cm of the 2.5 cm baseline
    angle_deg = np.degrees(np.arccos(np.clip((np.trace(rig.R.T @ R_TRUE) - 1) / 2, -1, 1)))
    assert angle_deg < 0.5
    assert rig.stereo_rms_px < 0.4


def test_registration_reprojection_error_is_small(rig_capture, tmp_path):
    poses, colour_views, depth_views, rig = rig_capture
    errors = []
    for (R_b, t_b), c, d in zip(poses[:4], colour_views, depth_views):
        depth_m = syn.plane_depth(K_DEPTH, *depth_pose(R_b, t_b), SIZE, syn.board_extent_m(PATTERN, SQUARE_M))
        errors.append(reg.registration_reprojection_error(d, depth_m, c, rig.depth.K, rig.colour.K, rig.R,
                                                          rig.t_m, dist_depth=rig.depth.dist,
                                                          dist_colour=rig.colour.dist))
    errors = np.concatenate(errors)
    assert np.isfinite(errors).all()
    assert np.sqrt(np.mean(errors**2)) < 0.5  # px, the whole chain (corners, depth, calibration)
    # the calibration file round-trips
    cal.write_rig(tmp_path / "rig.json", rig)
    again = cal.read_rig(tmp_path / "rig.json")
    assert np.allclose(again.R, rig.R) and np.allclose(again.depth.K, rig.depth.K)


def test_registered_depth_matches_the_colour_views_depth():
    R_b, t_b = syn.rotation(15, -20, 3), np.array([-0.1, -0.06, 0.7])
    extent = syn.board_extent_m(PATTERN, SQUARE_M)
    depth_m = syn.plane_depth(K_DEPTH, *depth_pose(R_b, t_b), SIZE, extent, wall_m=np.inf)
    depth_m[~np.isfinite(depth_m)] = np.nan
    registered = reg.register_depth(depth_m, K_DEPTH, K_COLOUR, R_TRUE, T_TRUE, (480, 640))
    truth = syn.plane_depth(K_COLOUR, R_b, t_b, SIZE, extent, wall_m=np.inf)
    board = np.isfinite(truth) & np.isfinite(registered)
    assert board.sum() > 0.9 * np.isfinite(truth).sum()
    assert np.median(np.abs(registered[board] - truth[board])) < 1e-3
    # the same map without registration sits a few pixels off: its support differs
    unregistered = np.isfinite(depth_m)
    assert (unregistered != np.isfinite(truth)).sum() > 3 * (np.isfinite(registered) != np.isfinite(truth)).sum()


def test_coarse_depth_is_supersampled_into_a_finer_colour_view():
    K_coarse = reg.centred_intrinsics(150.0, 160, 120)
    depth = np.full((120, 160), 2.0, np.float32)
    registered = reg.register_depth(depth, K_coarse, reg.centred_intrinsics(500.0, 640, 480), None, (0, 0, 0), (480, 640))
    inside = registered[41:439, 54:586]  # the depth camera sees 533 x 400 colour pixels
    assert np.isfinite(inside).all() and np.nanmax(np.abs(inside - 2.0)) < 1e-6
    assert reg.supersample_factor(K_coarse, reg.centred_intrinsics(500.0, 640, 480)) == 4


def test_nearest_surface_wins():
    depth = np.full((5, 5), np.nan, np.float32)
    depth[2, 2], depth[2, 3] = 1.0, 3.0
    merged = reg.register_depth(depth, reg.centred_intrinsics(100.0, 5, 5), reg.centred_intrinsics(1.0, 5, 5))
    assert np.nanmin(merged) == pytest.approx(1.0) and np.isfinite(merged).sum() == 1


def test_edge_alignment_drops_when_depth_is_registered():
    rgb = np.full((120, 160, 3), 60, np.uint8)
    rgb[30:90, 50:110] = 200  # a bright box in front of a dark wall
    depth = np.full((120, 160), 3.0, np.float32)
    depth[30:90, 50:110] = 1.0
    shifted = np.roll(depth, 6, axis=1)
    assert reg.edge_alignment(rgb, depth).mean_px < 1.0
    assert reg.edge_alignment(rgb, shifted).mean_px > 3.0


def test_too_few_boards_is_a_user_error():
    with pytest.raises(UserError, match="at least 3"):
        cal.calibrate_camera([None, None, np.zeros((40, 2), np.float32)], PATTERN, SQUARE_M, SIZE)


def test_same_result_as_the_rgbd_generators_registration():
    """generate.rgbd registers 7-Scenes through this function (principal points at the centre,
    a translation only, the colour camera's own output size): its wrapper builds those
    intrinsics from focal lengths and shapes, and must give exactly what the full call gives."""
    from focaldepth.generate import rgbd

    rng = np.random.default_rng(4)
    depth = rng.uniform(0.8, 4.0, (48, 64)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.1] = np.nan
    old = rgbd.register_depth_to_colour(depth, 585.0, 525.0, (-0.022, 0.0, 0.0), (48, 64))
    new = reg.register_depth(depth, reg.centred_intrinsics(585.0, 64, 48), reg.centred_intrinsics(525.0, 64, 48),
                             None, (-0.022, 0.0, 0.0), (48, 64))
    assert np.array_equal(old, new, equal_nan=True)
