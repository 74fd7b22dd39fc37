"""Sequence loss terms (temporal, geometry, photometric, defocus on sequences): zero for the
perfect prediction, growing with a known perturbation, occlusion masks on a constructed
occlusion, the pose warp reproducing a synthetic view, clear errors for missing inputs."""

import math

import pytest
import torch

from focaldepth.errors import UserError
from focaldepth.losses import (
    build_loss,
    flow_occlusion_mask,
    intrinsics_from_camera,
    list_losses,
    min_reprojection_loss,
    relative_pose,
    warp_from_pose,
)

H, W = 24, 32


def _moving_square(shift_px=3, frames=3, background_m=3.0, object_m=1.0):
    """A square at ``object_m`` sliding right by ``shift_px`` per frame over a static wall, with
    the exact backward flow (t -> t-1) and forward flow (t -> t+1) of every frame."""
    depth = torch.full((1, frames, 1, H, W), background_m, dtype=torch.float64)
    bwd = torch.zeros(1, frames, 2, H, W, dtype=torch.float64)
    fwd = torch.zeros(1, frames, 2, H, W, dtype=torch.float64)
    for t in range(frames):
        left = 6 + shift_px * t
        depth[0, t, 0, 8:16, left:left + 8] = object_m
        if t > 0:
            bwd[0, t, 0, 8:16, left:left + 8] = -shift_px
        if t < frames - 1:
            fwd[0, t, 0, 8:16, left:left + 8] = shift_px
    return depth, bwd, fwd


def _flow_batch():
    depth, bwd, fwd = _moving_square()
    return {
        "depth_seq": depth,
        "valid_seq": torch.ones_like(depth, dtype=torch.bool),
        "flow_seq": bwd,
        "flow_fwd_seq": fwd,
    }


@pytest.mark.parametrize("occlusion", ["fb", "depth", "both"])
def test_temporal_is_zero_for_the_truth_and_grows_with_flicker(occlusion):
    batch = _flow_batch()
    loss = build_loss({"name": "temporal", "occlusion": occlusion})
    assert float(loss({"depth_seq": batch["depth_seq"].clone()}, batch)[0]) == 0.0
    values = []
    for gain in (1.02, 1.05, 1.10):
        flicker = batch["depth_seq"].clone()
        flicker[:, 1] *= gain  # frame 1 jumps: pairs (0, 1) and (1, 2) both see it
        values.append(float(loss({"depth_seq": flicker}, batch)[0]))
    assert 0 < values[0] < values[1] < values[2]
    # |(g1 k - g0) - (g1 - g0)| / (0.5 (g1 k + g0)) = (k - 1) / ((k + 1) / 2) at every pixel
    assert values[1] == pytest.approx(0.05 / 1.025, rel=1e-6)


def test_temporal_without_ground_truth_penalises_any_change_along_flow():
    batch = _flow_batch()
    del batch["depth_seq"], batch["valid_seq"]
    loss = build_loss({"name": "temporal"})  # auto: forward-backward occlusion, zero target
    depth, _, _ = _moving_square()
    assert float(loss({"depth_seq": depth}, batch)[0]) < 1e-12  # rigid motion: depth constant
    depth[:, 2] += 0.1
    assert float(loss({"depth_seq": depth}, batch)[0]) > 0.01


def test_occlusion_masks_exclude_exactly_the_disoccluded_pixels():
    depth, bwd, fwd = _moving_square(shift_px=3, frames=2)
    flow_cur = bwd[:, 1]
    # In frame 1 the wall at columns 6..8 of rows 8..15 was behind the square in frame 0.
    disoccluded = torch.zeros(1, 1, H, W, dtype=torch.bool)
    disoccluded[..., 8:16, 6:9] = True
    for mask in (
        flow_occlusion_mask(flow_cur, fwd[:, 0]),
        flow_occlusion_mask(flow_cur, None, depth[:, 1], depth[:, 0]),
    ):
        assert torch.equal(~mask, disoccluded)
    # A prediction wrong only where nothing could be compared costs nothing ...
    batch = {"depth_seq": depth[:, :2], "flow_seq": bwd[:, :2], "flow_fwd_seq": fwd[:, :2]}
    wrong = depth[:, :2].clone()
    wrong[:, 1][disoccluded] = 9.0
    for occlusion in ("fb", "depth"):
        loss = build_loss({"name": "temporal", "occlusion": occlusion})
        assert float(loss({"depth_seq": wrong}, batch)[0]) == 0.0
    # ... while without the occlusion mask the disoccluded pixels count.
    loss = build_loss({"name": "temporal", "occlusion": "none"})
    # 24 of 768 pixels with |(9 - 1) - (3 - 1)| / (0.5 (9 + 1)) each
    assert float(loss({"depth_seq": wrong}, batch)[0]) == pytest.approx(24 / 768 * 6 / 5)


def _plane_views(tx_m=0.02, tz_m=0.05, depth_m=2.0, frames=3, dtype=torch.float64):
    """A fronto-parallel wall at ``depth_m`` seen by a camera moving by (tx, 0, -tz) per frame
    (towards the wall): camera-to-world poses, depth of every frame, intrinsics, and a
    smooth texture rendered exactly for every view."""
    camera = torch.tensor([[0.02, 2.8, 2e-5]], dtype=dtype)  # 1000 px focal length
    K = intrinsics_from_camera(camera, H, W)
    poses = torch.eye(4, dtype=dtype).repeat(1, frames, 1, 1)
    poses[0, :, 0, 3] = tx_m * torch.arange(frames, dtype=dtype)
    poses[0, :, 2, 3] = tz_m * torch.arange(frames, dtype=dtype)
    depth = torch.stack([torch.full((1, H, W), depth_m - tz_m * t, dtype=dtype)
                         for t in range(frames)])[None]
    v, u = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(W, dtype=dtype),
                          indexing="ij")
    images = []
    for t in range(frames):
        z = depth_m - tz_m * t
        x_world = poses[0, t, 0, 3] + (u - K[0, 0, 2]) * z / K[0, 0, 0]
        y_world = (v - K[0, 1, 2]) * z / K[0, 1, 1]
        texture = [0.5 + 0.3 * torch.sin(60 * x_world + c) * torch.cos(45 * y_world - c)
                   for c in (0.0, 1.0, 2.0)]
        images.append(torch.stack(texture))
    return {"frames": torch.stack(images)[None], "depth_seq": depth, "pose_seq": poses,
            "camera": camera, "intrinsics": K}


def test_pose_warp_reproduces_a_synthetic_view_under_a_known_pose():
    views = _plane_views()
    target, source = views["frames"][:, 0], views["frames"][:, 1]
    to_source = relative_pose(views["pose_seq"][:, 0], views["pose_seq"][:, 1])
    warped, inside, z_source = warp_from_pose(source, views["depth_seq"][:, 0], to_source,
                                              views["intrinsics"])
    assert inside.float().mean() > 0.6  # 10 px of translation, 2.5 % zoom
    error = (warped - target).abs()[inside.expand_as(warped)]
    assert error.max() < 0.02  # bilinear interpolation of the texture only
    assert torch.allclose(z_source, views["depth_seq"][:, 1])  # the wall got 5 cm closer
    wrong, inside_wrong, _ = warp_from_pose(source, 1.3 * views["depth_seq"][:, 0], to_source,
                                            views["intrinsics"])
    assert (wrong - target).abs()[inside_wrong.expand_as(wrong)].mean() > 10 * error.mean()


def test_photometric_is_zero_for_an_exact_warp_and_grows_with_depth_error():
    # 2 px of disparity per frame exactly (f tx / Z = 1000 * 0.004 / 2): integer-pixel warps
    views = _plane_views(tx_m=0.004, tz_m=0.0)
    loss = build_loss({"name": "photometric"})
    outputs = {"depth_seq": views["depth_seq"].clone(), "pose_seq": views["pose_seq"]}
    at_truth = float(loss(outputs, views)[0])
    assert at_truth < 1e-9
    values = [float(loss({**outputs, "depth_seq": views["depth_seq"] * k}, views)[0])
              for k in (1.1, 1.5)]
    assert 1e-4 < values[0] < values[1]
    # pose comes from the outputs (a pose network) before the batch, and gets gradients
    pose = views["pose_seq"].clone().requires_grad_(True)
    depth = (views["depth_seq"] * 1.1).requires_grad_(True)
    batch = {k: v for k, v in views.items() if k != "pose_seq"}
    total, _ = loss({"depth_seq": depth, "pose_seq": pose}, batch)
    total.backward()
    assert depth.grad.abs().sum() > 0 and pose.grad.abs().sum() > 0


def test_automask_drops_pixels_that_match_without_warping():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, H, W, generator=g, dtype=torch.float64)
    source = torch.rand(1, 3, H, W, generator=g, dtype=torch.float64)
    source[..., :, :10] = target[..., :, :10]  # e.g. an object moving with the camera
    warped = target.clone()
    warped[..., :, :10] = 1 - target[..., :, :10]  # the warp gets that part wrong
    inside = torch.ones(1, 1, H, W, dtype=torch.bool)
    loss, keep = min_reprojection_loss(target, [warped], [inside], [source])
    assert not keep[..., :, :10].any() and keep[..., :, 12:].all()
    assert float(loss) < 0.05
    unmasked, _ = min_reprojection_loss(target, [warped], [inside], None)
    assert float(unmasked) > 5 * float(loss)


def test_minimum_reprojection_takes_the_better_source_per_pixel():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(1, 1, H, W, generator=g, dtype=torch.float64)
    good_left, good_right = target.clone(), target.clone()
    good_left[..., 16:] = 0.0  # each source is right on one half only (occlusion)
    good_right[..., :16] = 0.0
    inside = torch.ones(1, 1, H, W, dtype=torch.bool)
    both, _ = min_reprojection_loss(target, [good_left, good_right], [inside, inside],
                                    alpha=0.0)
    one, _ = min_reprojection_loss(target, [good_left], [inside], alpha=0.0)
    assert float(both) == 0.0 and float(one) > 0.1


@pytest.mark.parametrize("warp", ["pose", "flow"])
def test_geometry_consistency_zero_for_truth_grows_with_scale_drift(warp):
    if warp == "pose":
        batch = _plane_views(tx_m=0.01, tz_m=0.05)
    else:
        batch = _flow_batch()
    loss = build_loss({"name": "geometry", "warp": warp})
    truth = batch["depth_seq"]
    assert float(loss({"depth_seq": truth.clone()}, batch)[0]) < 1e-9
    values = []
    for gain in (1.05, 1.2):
        drift = truth.clone()
        drift[:, 1:] *= gain  # scale inconsistency between frame 0 and the rest
        values.append(float(loss({"depth_seq": drift}, batch)[0]))
    assert 0 < values[0] < values[1]
    if warp == "pose":
        # every pixel of pair (0, 1) sees |Z k - Z| / (Z k + Z) = (k - 1) / (k + 1); pair (1, 2)
        # none: half of the points, in both directions
        assert values[0] == pytest.approx(0.5 * 0.05 / 2.05, rel=0.05)


def test_photometric_geometry_mask_weighs_errors_by_one_minus_ddiff():
    views = _plane_views(tx_m=0.004, tz_m=0.0)
    plain = build_loss({"name": "photometric"})
    masked = build_loss({"name": "photometric", "geometry_mask": True})
    depth = views["depth_seq"].clone()
    depth[:, 1] *= 1.5  # frame 1 inconsistent with its neighbours: the mask shrinks its weight
    outputs = {"depth_seq": depth, "pose_seq": views["pose_seq"]}
    assert 0 < float(masked(outputs, views)[0]) < float(plain(outputs, views)[0])


def test_defocus_on_sequences_renders_each_frame_from_its_own_depth():
    render_focal_stack = pytest.importorskip("focaldepth.render").render_focal_stack
    g = torch.Generator().manual_seed(3)
    frames_t, size = 3, 32
    aif = torch.nn.functional.avg_pool2d(torch.rand(frames_t, 3, size, size, generator=g), 3, 1, 1)
    xx = torch.linspace(0, 1, size).view(1, 1, 1, size).expand(frames_t, 1, size, size)
    depth = 1.0 / (2.0 - 1.2 * xx) * torch.tensor([1.0, 0.9, 0.8]).view(-1, 1, 1, 1)  # moving
    focus = torch.tensor([[0.5, 0.8, 1.2]])
    camera = torch.tensor([[0.025, 2.8, 2e-5]])
    frames = render_focal_stack(aif, depth, focus.view(-1, 1), camera.expand(frames_t, 3),
                                num_layers=16)[:, 0]
    batch = {"frames": frames[None], "focus_distance_m": focus, "camera": camera,
             "aif_seq": aif[None], "depth_seq": depth[None],
             "valid_seq": torch.ones(1, frames_t, 1, size, size, dtype=torch.bool)}
    loss = build_loss([{"name": "defocus", "num_layers": 16}, {"name": "masked_l1"},
                       {"name": "temporal", "occlusion": "none", "weight": 0.1}])
    batch["flow_seq"] = torch.zeros(1, frames_t, 2, size, size)
    _, parts = loss({"depth_seq": depth[None].clone()}, batch)
    assert parts["defocus"] < 1e-5 and parts["masked_l1"] == 0 and parts["temporal"] == 0
    # one depth for the whole clip (what the window layout would assume) is wrong here
    static = depth[None, :1].expand(1, frames_t, 1, size, size)
    assert float(loss({"depth_seq": static}, batch)[1]["defocus"]) > 0.005


def test_supervised_terms_score_every_frame_of_a_sequence():
    batch = _flow_batch()
    pred = batch["depth_seq"].clone()
    pred[:, 2] += 0.3
    loss = build_loss([{"name": "masked_l1"}, {"name": "silog"}, {"name": "gradient"}])
    _, parts = loss({"depth_seq": pred}, batch)
    assert float(parts["masked_l1"]) == pytest.approx(0.1)  # 0.3 m on one frame of three
    assert all(float(v) > 0 for v in parts.values())


def test_sequence_terms_are_registered_and_missing_inputs_are_user_errors():
    assert {"temporal", "geometry", "photometric"} <= set(list_losses())
    depth = torch.ones(1, 3, 1, H, W)
    with pytest.raises(UserError, match="flow_seq"):
        build_loss({"name": "temporal"})({"depth_seq": depth}, {})
    with pytest.raises(UserError, match="flow_fwd_seq"):  # no way to find occlusions
        build_loss({"name": "temporal"})({"depth_seq": depth}, {"flow_seq": torch.zeros(1, 3, 2, H, W)})
    with pytest.raises(UserError, match="depth_seq"):
        build_loss({"name": "temporal"})({"depth_m": depth[:, 0]}, {})
    with pytest.raises(UserError, match="pose_seq"):
        build_loss({"name": "photometric"})({"depth_seq": depth},
                                            {"frames": torch.rand(1, 3, 3, H, W)})
    with pytest.raises(UserError, match="aif_seq"):
        build_loss({"name": "photometric", "images": "aif"})(
            {"depth_seq": depth, "pose_seq": torch.eye(4).repeat(1, 3, 1, 1)},
            {"camera": torch.tensor([[0.02, 2.8, 2e-5]])})
    with pytest.raises(UserError, match="occlusion"):
        build_loss({"name": "temporal", "occlusion": "maybe"})
    with pytest.raises(UserError, match="source_offsets"):
        build_loss({"name": "photometric", "source_offsets": [0]})
    with pytest.raises(UserError, match="layout"):
        build_loss({"name": "defocus", "layout": "movie"})
    with pytest.raises(ValueError, match="flow_seq"):
        build_loss({"name": "temporal", "occlusion": "none"})(
            {"depth_seq": depth}, {"flow_seq": torch.zeros(1, 3, 2, H, W + 1)})
    assert math.isfinite(float(build_loss({"name": "geometry"})(
        {"depth_seq": depth}, {"flow_seq": torch.zeros(1, 3, 2, H, W)})[0]))
