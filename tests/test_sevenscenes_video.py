"""7-Scenes focus-sweep videos with real camera motion (focaldepth.generate.sevenscenes_video)."""

from __future__ import annotations

import numpy as np
import pytest

from focaldepth.generate.sevenscenes_video import backward_flow, generate_video


def test_backward_flow_of_a_sideways_move():
    """Camera t is 0.1 m to the right of camera t-1 (camera-to-world translation +x): a point
    2 m away seen at x in frame t was at x + f * 0.1 / 2 in frame t-1."""
    depth = np.full((8, 10), 2.0, np.float32)
    pose_t, pose_prev = np.eye(4), np.eye(4)
    pose_t[0, 3] = 0.1
    flow = backward_flow(depth, pose_t, pose_prev, focal_px=100.0)
    assert flow.shape == (8, 10, 2)
    assert np.allclose(flow[..., 0], 5.0, atol=1e-4) and np.allclose(flow[..., 1], 0.0, atol=1e-4)
    # moving forward: points spread out from the centre in the later frame, so their earlier
    # positions are closer to the centre (flow points inwards)
    pose_t = np.eye(4)
    pose_t[2, 3] = 0.2
    inwards = backward_flow(depth, pose_t, pose_prev, focal_px=100.0)
    assert inwards[4, 9, 0] < 0 and inwards[4, 0, 0] > 0


def test_a_short_video_from_the_recording():
    from focaldepth.io.rgbd import default_shared_root

    roots = [default_shared_root() / sub / "7scenes_redkitchen" for sub in ("rgbd", "data/rgbd")]
    if not any((root / "frame-000900.pose.txt").is_file() for root in roots):
        pytest.skip("7-Scenes redkitchen is not in ../shared")
    video = generate_video(0, split="val", seed=3, num_frames=4, frames_per_ramp=2, size_px=32)
    assert video.frames.shape == (4, 32, 32, 3) and video.flow.shape == (4, 32, 32, 2)
    assert not video.flow[0].any() and video.is_dynamic
    frames = video.params["recorded_frames"]
    assert all(850 <= f < 1000 for f in frames) and np.all(np.diff(frames) == 2)
    focus = video.focus_distance_m
    assert focus[0] == focus[2] and focus[1] == focus[3] and focus[1] > focus[0]  # two ramps
    assert np.isnan(video.depth_m).any() or np.isfinite(video.depth_m).all()
