"""The Monodepth2-style video depth model with and without the defocus module, video clips,
running models over clips, and one training step per loss combination on a tiny clip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from focaldepth import models
from focaldepth.models.video_depth import (
    DEFOCUS_CHANNELS,
    defocus_features,
    focus_position_unit,
    pose_matrix,
)
from focaldepth.train.config import config_from_dict
from focaldepth.train.video import VideoTrainingModule, chain_poses
from focaldepth.video import FocusSweepClips, predict_clip, score_video

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ["video_depth_test", "video_depth_defocus_test"]


@pytest.fixture(scope="module")
def tiny_clips_dir(tmp_path_factory) -> Path:
    """configs/data/tiny.yaml: 4 sequences of 64x64, 5-frame ramps (dynamic ones: two)."""
    from focaldepth.generate.runner import run_generate

    out = tmp_path_factory.mktemp("data") / "tiny"
    run_generate(ROOT / "configs" / "data" / "tiny.yaml", out, progress=False)
    return out


@pytest.mark.parametrize("name", VARIANTS)
def test_shapes_and_pose_output(name, make_inputs):
    model = models.create(name).eval()
    frames, focus, camera = make_inputs(batch=2, slices=5, size_px=32)
    with torch.no_grad():
        out = model(frames, focus, camera)
    assert out["depth_m"].shape == (2, 1, 32, 32)
    assert torch.isfinite(out["depth_m"]).all() and (out["depth_m"] > 0).all()
    assert out["pose_t_to_prev"].shape == (2, 6) and torch.isfinite(out["pose_t_to_prev"]).all()
    # one frame: depth only (no previous frame to relate the pose to)
    with torch.no_grad():
        single = model(frames[:, -1:], focus[:, -1:], camera)
    assert set(single) == {"depth_m"}
    with pytest.raises(ValueError, match="multiples of 8"):
        model(frames[..., :30, :30], focus, camera)


def test_variants_share_the_backbone_and_differ_only_in_the_defocus_inputs():
    plain, defocus = models.create("video_depth"), models.create("video_depth_defocus")
    assert not plain.defocus and defocus.defocus
    assert plain.info.uses_focus_distance is False and defocus.info.uses_focus_distance
    shapes = {n: p.shape for n, p in plain.named_parameters()}
    other = {n: p.shape for n, p in defocus.named_parameters()}
    assert shapes.keys() == other.keys()
    different = [n for n in shapes if shapes[n] != other[n]]
    # only the first conv reads more channels
    assert different == ["depth_net.stem.0.0.weight"]
    assert other[different[0]][1] == shapes[different[0]][1] + DEFOCUS_CHANNELS


def test_defocus_variant_reads_the_focus_distance(make_inputs):
    """Swap the reference frame's focus with an inner frame's: the window's range (and so the
    depth mapping) is unchanged, the RGB-only net sees the same pixels, the defocus net is told
    its frame is focused elsewhere."""
    frames, focus, camera = make_inputs(batch=1, slices=5, size_px=32, seed=3)
    moved = focus.clone()
    moved[:, [1, -1]] = focus[:, [-1, 1]]
    assert moved.amin() == focus.amin() and moved.amax() == focus.amax()
    for name, should_change in (("video_depth_test", False), ("video_depth_defocus_test", True)):
        torch.manual_seed(0)
        model = models.create(name).eval()
        with torch.no_grad():
            a = model(frames, focus, camera)["depth_m"]
            b = model(frames, moved, camera)["depth_m"]
        changed = not torch.allclose(a, b)
        assert changed == should_change, name
    # the blur scale (camera) is read too
    model = models.create("video_depth_defocus_test").eval()
    wider = camera.clone()
    wider[:, 1] /= 4  # f-number / 4: four times the blur
    with torch.no_grad():
        assert not torch.allclose(model(frames, focus, camera)["depth_m"],
                                  model(frames, focus, wider)["depth_m"])


def test_focus_vote_picks_the_sharp_frame():
    """A stack where frame k alone carries the texture, the others a blurred copy: the
    focus-volume vote lands on frame k's focus position."""
    torch.manual_seed(0)
    texture = torch.rand(1, 3, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(texture, 5, stride=1, padding=2,
                                             count_include_pad=False)
    focus = torch.tensor([[3.0, 2.0, 1.5, 1.0, 0.7]])
    camera = torch.tensor([[0.05, 2.0, 1e-5]])
    for k in range(5):
        frames = torch.stack([texture[0] if s == k else blurred[0] for s in range(5)])[None]
        features = defocus_features(frames, focus, camera)
        assert features.shape == (1, DEFOCUS_CHANNELS, 32, 32)
        vote = features[0, 2, 8:-8, 8:-8].median()
        assert vote == pytest.approx(float(focus_position_unit(focus)[0, k]), abs=0.05)
        assert features[0, 0].unique().numel() == 1  # reference focus position: a constant map
    # the blur-scale channel is log2 of f^2 / (N p) times the range in dioptres, / 4
    scale = features[0, 1, 0, 0] * 4
    low, high = 1 / 3.0, 1 / 0.7
    width = high - low
    expected = math.log2(0.05**2 / (2.0 * 1e-5) * (1.5 * width))
    assert float(scale) == pytest.approx(expected, rel=1e-4)


def test_pose_matrix_and_chaining():
    assert torch.allclose(pose_matrix(torch.zeros(2, 6)), torch.eye(4).repeat(2, 1, 1))
    pose = torch.tensor([[0.0, 0.0, math.pi / 2, 0.1, 0.0, 0.0]])
    matrix = pose_matrix(pose)[0]
    point = matrix @ torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert torch.allclose(point, torch.tensor([0.1, 1.0, 0.0, 1.0]), atol=1e-6)
    motions = torch.stack([torch.zeros(1, 6), pose, pose], dim=1)  # (B, T, 6)
    chained = chain_poses(motions)
    assert torch.allclose(chained[:, 0], torch.eye(4)[None])
    assert torch.allclose(chained[:, 2], (matrix @ matrix)[None], atol=1e-6)


def test_clips_replay_static_sweeps_and_carry_crop_intrinsics(tiny_clips_dir):
    clips = FocusSweepClips(tiny_clips_dir, num_frames=6, crop_size=32, random_crop=False)
    static = [i for i, r in enumerate(clips.records) if not r["is_dynamic"]]
    dynamic = [i for i, r in enumerate(clips.records) if r["is_dynamic"]]
    assert static and dynamic
    item = clips.read_clip(static[0], stop=8)  # played frames 2..7 of a replayed 5-frame ramp
    assert item["frames"].shape == (6, 3, 32, 32) and item["depth_m"].shape == (6, 1, 32, 32)
    assert torch.equal(item["frames"][0], item["frames"][5])  # played 2 and 7 = stored 2
    focus = item["focus_distance_m"]  # stored frames 2, 3, 4, 0, 1, 2: the lens jumps back
    assert focus[0] == focus[5] and focus[1] < focus[2] and focus[3] < focus[2]
    assert not item["flow"].any()
    moving = clips.read_clip(dynamic[0], stop=6)
    assert not moving["flow"][0].any()  # the video's first frame has no previous frame
    assert moving["flow"][1:].abs().sum() > 0
    # principal point: the full 64-px frame's centre, shifted by the centred crop's corner (16)
    K = moving["intrinsics"]
    assert K[0, 2] == pytest.approx(31.5 - 16) and K[1, 2] == pytest.approx(31.5 - 16)
    camera = moving["camera"]
    assert K[0, 0] == pytest.approx(float(camera[0] / camera[2]), rel=1e-5)


def test_predict_clip_windows_and_streams(make_inputs):
    frames, focus, camera = make_inputs(batch=2, slices=6, size_px=32)
    video = models.create("video_depth_test").eval()
    with torch.no_grad():
        out = predict_clip(video, frames, focus, camera, window=5)
        direct = video(frames[:, 1:6], focus[:, 1:6], camera)
    assert out["depth_m"].shape == (2, 2, 1, 32, 32) and out["pose_t_to_prev"].shape == (2, 2, 6)
    assert torch.allclose(out["depth_m"][:, 1], direct["depth_m"])
    stream = models.create("recurrent_ae_test").eval()
    with torch.no_grad():
        streamed = predict_clip(stream, frames, focus, camera, window=5)["depth_m"]
        whole = stream(frames, focus, camera)["depth_m_per_frame"]
    assert streamed.shape == (2, 2, 1, 32, 32)
    assert torch.allclose(streamed, whole[:, 4:])  # stepped through all six frames


def test_score_video_flicker_and_frame_to_frame_error():
    gt = torch.full((3, 1, 16, 16), 2.0)
    valid = torch.ones_like(gt, dtype=torch.bool)
    flow = torch.zeros(3, 2, 16, 16)
    steady = score_video(gt.clone(), gt, valid, flow, is_dynamic=False)
    assert steady["absrel"] == 0 and steady["delta1"] == 1 and steady["flicker_rel"] == 0
    jumpy = gt.clone()
    jumpy[1] *= 1.1  # frame 1 10 % too far: changes of +0.1 and -0.1 relative
    row = score_video(jumpy, gt, valid, flow, is_dynamic=False)
    assert row["flicker_rel"] == pytest.approx(0.1, rel=1e-4)
    assert row["f2f_err_rel"] == pytest.approx(0.1, rel=1e-4)
    assert row["absrel"] == pytest.approx(0.1 / 3, rel=1e-4)
    assert math.isnan(score_video(jumpy, gt, valid, flow, is_dynamic=True)["flicker_rel"])
    from focaldepth.video import _tae_function

    if _tae_function() is not None:  # TAE of an exact, steady prediction is 0
        assert steady["tae"] == pytest.approx(0.0, abs=1e-6)


LOSSES = {
    "supervised": [{"name": "sweep_l1"}],
    "temporal": [{"name": "sweep_l1"}, {"name": "temporal"}],
    "geometry": [{"name": "sweep_l1"}, {"name": "geometry"}],
    "photometric": [{"name": "sweep_l1"}, {"name": "photometric"}],
    "defocus": [{"name": "sweep_l1"}, {"name": "defocus", "num_layers": 8}],
    "all": [{"name": "sweep_l1"}, {"name": "temporal"}, {"name": "geometry"},
            {"name": "photometric"}, {"name": "defocus", "num_layers": 8}],
}


@pytest.mark.parametrize("model_name", [*VARIANTS, "recurrent_ae_test", "lstm_ddff_test"])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_one_training_step_per_loss(model_name, loss, tiny_clips_dir):
    if loss in ("photometric", "all") and not model_name.startswith("video_depth"):
        pytest.skip("photometric reprojection needs a pose net")
    config = config_from_dict({"model": {"name": model_name}, "data": {"train": "unused"},
                               "loss": LOSSES[loss]})
    module = VideoTrainingModule(config.to_dict())
    clips = FocusSweepClips(tiny_clips_dir, num_frames=6, crop_size=32, seed=1)
    batch = next(iter(DataLoader(clips, batch_size=2, shuffle=False)))
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    optimiser = torch.optim.SGD(module.model.parameters(), lr=1e-2)
    total, parts, _ = module._clip_loss(batch)
    assert torch.isfinite(total) and set(parts) == {t["name"] for t in LOSSES[loss]}
    assert all(torch.isfinite(v) and v >= 0 for v in parts.values())
    optimiser.zero_grad()
    total.backward()
    optimiser.step()
    moved = [n for n, p in module.model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith(("depth_net", "encoder")) for n in moved)
    if loss in ("photometric", "all") or (loss == "geometry" and model_name.startswith("video")):
        assert any(n.startswith("pose_net") for n in moved), "the pose net must be trained"
    elif model_name.startswith("video"):
        assert not any(n.startswith("pose_net") for n in moved)
