"""The streaming predictor and `focaldepth predict` (files in, files out)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from focaldepth.errors import UserError
from focaldepth.io import write_sequence
from focaldepth.models import create, save
from focaldepth.optics import Camera, dioptric_ramp, repeated_ramps
from focaldepth.predict import (StreamingPredictor, display_range_m, predict_sequence, ramp_length,
                                sweep_blur_px, working_scale)
from focaldepth.render import render_focal_stack

CAMERA = Camera(focal_length_mm=25.0, f_number=2.0, sensor_width_mm=4.8, image_width_px=96)


def textured_scene(height=64, width=96, seed=0):
    """A random texture on two planes: left half at 0.6 m, right half at 1.6 m."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, height // 4, width // 4, generator=generator)
    image = torch.nn.functional.interpolate(image, size=(height, width), mode="bilinear")
    depth = torch.full((1, 1, height, width), 1.6)
    depth[..., : width // 2] = 0.6
    return image, depth


def render_sweep(focus_m, camera=CAMERA):
    image, depth = textured_scene(width=camera.image_width_px)
    focus = torch.tensor([list(focus_m)], dtype=torch.float32)
    cam = torch.tensor([[camera.focal_length_m, camera.f_number, camera.pixel_pitch_m]])
    stack = render_focal_stack(image, depth, focus, cam)
    frames = (stack[0].permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()
    return frames, depth[0, 0].numpy()


def test_ramp_length_and_sweep_blur():
    assert ramp_length(list(repeated_ramps(0.5, 3.0, 5, 3))) == 5
    assert ramp_length([1.0, 2.0, None]) == 2
    assert ramp_length([None, 1.0]) is None
    blur = sweep_blur_px(CAMERA, [0.5, 1.0, 2.0])
    assert blur == pytest.approx(CAMERA.coc_px_per_dpt * (2.0 - 0.5))


def test_working_scale_shrinks_large_blur_and_respects_pixel_budget():
    dslr = Camera(85, 1.4, 36, 1920)
    assert sweep_blur_px(dslr, [0.8, 3.0]) > 100
    scale = working_scale(dslr, [0.8, 3.0], 1080, 1920)
    assert scale * sweep_blur_px(dslr, [0.8, 3.0]) == pytest.approx(32.0, rel=1e-6)
    phone = Camera(4.2, 1.8, 5.6, 256)
    assert working_scale(phone, [0.1, 1.0], 256, 256, max_pixels=10**9) == 1.0
    assert working_scale(phone, [0.1, 1.0], 1000, 1000, max_pixels=250_000) == pytest.approx(0.5)


def test_display_range_covers_the_sweep():
    near, far = display_range_m([0.5, 1.0, 2.0])
    assert near < 0.5 and far > 2.0


def test_streaming_memory_is_bounded_and_first_frame_has_zero_confidence():
    focus = list(repeated_ramps(0.5, 2.0, 4, 3))
    frames, _ = render_sweep(focus)
    predictor = StreamingPredictor(create("sweepnet_test"), CAMERA, focus, 64, 96)
    results = [predictor.push(frame, f) for frame, f in zip(frames, focus)]
    assert len(predictor.buffer) == predictor.window == 4
    assert results[0].confidence.max() == 0.0
    assert all(r.depth_m.shape == (64, 96) and np.isfinite(r.depth_m).all() for r in results)
    assert results[-1].frames_used == 4


def test_classical_streaming_recovers_two_planes():
    focus = list(dioptric_ramp(0.45, 2.2, 6))
    frames, depth = render_sweep(focus)
    predictor = StreamingPredictor(create_classical(), CAMERA, focus, 64, 96, align=False)
    for frame, f in zip(frames, focus):
        result = predictor.push(frame, f)
    near = np.median(result.depth_m[8:-8, 8:40])
    far = np.median(result.depth_m[8:-8, 56:-8])
    assert near == pytest.approx(0.6, rel=0.15) and far == pytest.approx(1.6, rel=0.15)


def create_classical():
    from focaldepth.classical import ClassicalDFF

    return ClassicalDFF()


@pytest.fixture()
def sweep_folder(tmp_path):
    focus = list(repeated_ramps(0.5, 2.0, 4, 2))
    frames, _ = render_sweep(focus)
    folder = tmp_path / "sweep"
    write_sequence(folder, frames, focus, CAMERA)
    return folder, focus


@pytest.fixture()
def model_file(tmp_path):
    path = tmp_path / "tiny.pt"
    save(create("sweepnet_test"), path)
    return path


def test_predict_sequence_writes_every_output(sweep_folder, model_file, tmp_path):
    folder, focus = sweep_folder
    out = tmp_path / "out"
    summary = predict_sequence(folder, out, model=str(model_file), extra_formats=("png16",), progress=False)
    depth_files = sorted((out / "depth").glob("*.npy"))
    assert len(depth_files) == len(focus) == summary["num_frames"]
    depth = np.load(depth_files[-1])
    confidence = np.load(out / "confidence" / depth_files[-1].name)
    assert depth.shape == (64, 96) and depth.dtype == np.float32
    assert ((confidence >= 0) & (confidence <= 1)).all()
    assert len(list((out / "png16").glob("*.png"))) == len(focus)
    assert (out / "depth.mp4").stat().st_size > 0
    written = json.loads((out / "summary.json").read_text())
    assert written["metric"] is True and written["window_frames"] == 4
    # a convex vote over focus distances cannot leave the swept range
    assert 0.5 - 1e-3 <= depth.min() and depth.max() <= 2.0 + 1e-3


def test_unknown_focus_gives_relative_depth(tmp_path, model_file):
    frames, _ = render_sweep(list(dioptric_ramp(0.5, 2.0, 4)))
    folder = tmp_path / "unknown"
    write_sequence(folder, frames, [None] * 4, CAMERA)
    summary = predict_sequence(folder, tmp_path / "out", model=str(model_file), progress=False)
    assert summary["metric"] is False and "relative" in summary["depth_units"]
    depth = np.load(tmp_path / "out" / "depth" / "000003.npy")
    assert depth.min() >= -1e-4 and depth.max() <= 1 + 1e-4


def test_single_frame_and_nonempty_output_are_refused(tmp_path, model_file, sweep_folder):
    frames, _ = render_sweep([1.0])
    single = tmp_path / "single"
    write_sequence(single, frames, [1.0], CAMERA)
    with pytest.raises(UserError, match="at least 2 frames"):
        predict_sequence(single, tmp_path / "o1", model=str(model_file), progress=False)
    assert not (tmp_path / "o1").exists()
    folder, _ = sweep_folder
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "other.txt").write_text("a previous run")
    with pytest.raises(UserError, match="not empty"):
        predict_sequence(folder, taken, model=str(model_file), progress=False)
    assert (taken / "other.txt").read_text() == "a previous run"


def test_cli_bad_meta_is_one_line_and_exit_2(tmp_path, sweep_folder):
    folder, _ = sweep_folder
    (folder / "meta.json").write_text("{not json")
    run = subprocess.run([sys.executable, "-m", "focaldepth.cli", "predict", str(folder), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True)
    assert run.returncode == 2
    assert "meta.json" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_relative_mode_sweep_order_sets_the_pseudo_focus_order(model_file):
    from focaldepth.models import load

    frames, _ = render_sweep(list(dioptric_ramp(0.5, 2.0, 4)))
    predictor = {}
    for order in (False, True):
        p = StreamingPredictor(load(model_file), CAMERA, [None] * 4, 64, 96, far_to_near=order)
        predictor[order] = p
        for frame in frames:
            p.push(frame, None)
    near_first, far_first = predictor[False]._window_focus(), predictor[True]._window_focus()
    assert near_first[0] < near_first[-1] and far_first[0] > far_first[-1]


def test_flow_aligner_leaves_still_pixels_untouched_and_moves_shifted_ones():
    """Sub-pixel flow is treated as no motion (resampling would blur away focus cues), while a
    real shift is undone."""
    import cv2

    from focaldepth.predict import FlowAligner

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.uniform(0, 255, (96, 128, 3))).astype(np.uint8), (0, 0), 1.5)
    gray = cv2.cvtColor(texture, cv2.COLOR_RGB2GRAY)
    aligner = FlowAligner()
    assert np.array_equal(aligner.align(gray, gray, texture), texture)
    shifted = np.roll(texture, 3, axis=1)  # content moved 3 px right
    aligned = aligner.align(gray, cv2.cvtColor(shifted, cv2.COLOR_RGB2GRAY), shifted)
    inner = (slice(16, -16), slice(16, -16))
    before = np.abs(shifted[inner].astype(float) - texture[inner]).mean()
    after = np.abs(aligned[inner].astype(float) - texture[inner]).mean()
    assert after < 0.25 * before


# --- hand-held phone stacks: unknown camera, no metadata, --stack-align ------------------------


def test_null_camera_gives_relative_depth_ordered_by_the_focus_list(tmp_path, model_file):
    focus = list(dioptric_ramp(0.5, 2.0, 4))[::-1]  # far to near
    frames, _ = render_sweep(focus)
    folder = tmp_path / "phone"
    write_sequence(folder, frames, focus, CAMERA)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "focal_length_mm": None}))
    summary = predict_sequence(folder, tmp_path / "out", model=str(model_file), progress=False, video=False)
    assert summary["metric"] is False and summary["camera_known"] is False
    assert "relative" in summary["depth_units"] and any("camera unknown" in w for w in summary["warnings"])
    assert summary["sweep_direction"] == "far_to_near"
    assert summary["sweep_direction_source"].startswith("focus list")
    depth = np.load(tmp_path / "out" / "depth" / "000003.npy")
    assert depth.min() >= -1e-4 and depth.max() <= 1 + 1e-4


def test_folder_without_meta_and_stack_align_estimates_the_sweep_direction(tmp_path, model_file):
    """Frames whose magnification grows along the stack (focus breathing, far -> near)."""
    import cv2

    from focaldepth.align import scale_about_centre
    from focaldepth.io.frames import write_image

    frames, _ = render_sweep(list(dioptric_ramp(0.5, 2.0, 5))[::-1])
    folder = tmp_path / "bare"
    folder.mkdir()
    for i, frame in enumerate(frames):  # 0.png ... 4.png, no meta.json
        warp = scale_about_centre(1.0 + 0.01 * i, 64, 96)
        write_image(folder / f"{i}.png", cv2.warpPerspective(frame, warp, (96, 64), flags=cv2.INTER_CUBIC,
                                                             borderMode=cv2.BORDER_REFLECT))
    summary = predict_sequence(folder, tmp_path / "out", model=str(model_file), progress=False, video=False,
                               stack_align=True)
    assert summary["metric"] is False and any("no meta.json" in w for w in summary["warnings"])
    assert summary["focus_order_estimate"]["sweep_direction"] == "far_to_near"
    assert summary["sweep_direction"] == "far_to_near"
    assert summary["sweep_direction_source"] == "estimated from focus breathing"
    assert summary["stack_alignment"]["reference_frame"] == 4
    given = predict_sequence(folder, tmp_path / "out2", model=str(model_file), progress=False, video=False,
                             stack_align=True, far_to_near=False)
    assert given["sweep_direction"] == "near_to_far" and given["sweep_direction_source"] == "given"


def test_unknown_focus_takes_the_sweep_direction_from_breathing_without_stack_align(tmp_path, model_file):
    """The direction is not a flag a phone user should need: it is estimated by default (a real
    far-to-near phone stack came out inverted with the near-to-far default)."""
    import cv2

    from focaldepth.align import scale_about_centre
    from focaldepth.io.frames import write_image

    frames, _ = render_sweep(list(dioptric_ramp(0.5, 2.0, 5))[::-1])
    for name, order in (("far_to_near", range(5)), ("near_to_far", range(4, -1, -1))):
        folder = tmp_path / name
        folder.mkdir()
        for rank, i in enumerate(order):  # magnification grows with nearer focus
            warp = scale_about_centre(1.0 + 0.01 * i, 64, 96)
            write_image(folder / f"{rank}.png", cv2.warpPerspective(frames[i], warp, (96, 64), flags=cv2.INTER_CUBIC,
                                                                    borderMode=cv2.BORDER_REFLECT))
        summary = predict_sequence(folder, tmp_path / f"out_{name}", model=str(model_file), progress=False,
                                   video=False, stack_align=False)
        assert summary["sweep_direction"] == name
        assert summary["sweep_direction_source"] == "estimated from focus breathing"
        assert "stack_alignment" not in summary  # frames are not pre-aligned with --no-stack-align
        # by default a stack that visibly moves (4 % of breathing) is aligned first, automatically
        auto = predict_sequence(folder, tmp_path / f"auto_{name}", model=str(model_file), progress=False,
                                video=False)
        assert auto["stack_alignment"]["mode"] == "auto" and auto["stack_alignment"]["applied"] is True
        assert auto["sweep_direction"] == name


def test_cli_no_meta_folder_warns_on_one_line(tmp_path):
    frames, _ = render_sweep(list(dioptric_ramp(0.5, 2.0, 3)))
    folder = tmp_path / "bare"
    folder.mkdir()
    from focaldepth.io.frames import write_image

    for i, frame in enumerate(frames):
        write_image(folder / f"{i}.png", frame)
    run = subprocess.run([sys.executable, "-m", "focaldepth.cli", "predict", str(folder), "--out",
                          str(tmp_path / "o"), "--method", "classical", "--no-video", "--near-to-far"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("focaldepth: warning:")]
    assert len(warnings) == 1 and "no meta.json" in warnings[0] and "RELATIVE" in warnings[0]
    assert "relative" in run.stdout.lower()
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["sweep_direction_source"] == "given"


def test_select_slices_spreads_over_the_focus_range_and_keeps_the_newest():
    from focaldepth.predict import select_slices

    ramp = list(np.linspace(0.5, 3.0, 32))  # one slow 32-frame sweep
    chosen = select_slices(ramp, 8)
    assert len(chosen) == 8 and chosen[-1] == 31 and chosen == sorted(set(chosen))
    dioptres = 1.0 / np.asarray(ramp)[chosen]
    assert dioptres.max() - dioptres.min() > 0.9 * (1 / 0.5 - 1 / 3.0)  # covers the range
    assert select_slices(ramp[:6], 8) == list(range(6))
    assert select_slices(ramp, None) == list(range(32))
    # Two ramps in the window: among frames of equal focus the recent one is chosen.
    two = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
    assert select_slices(two, 3) == [3, 4, 5]


def test_long_window_costs_as_much_as_max_slices_frames():
    focus = list(np.linspace(0.5, 3.0, 24))
    calls = []

    model = create("sweepnet_test")
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[1]))
    predictor = StreamingPredictor(model, CAMERA, focus, 64, 96, window=24, max_slices=6)
    rng = np.random.default_rng(0)
    for value in focus:
        predictor.push(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), value)
    assert max(calls) == 6 and calls[-1] == 6


# --- static focal stacks: every frame from the whole stack ------------------------------------


def stack_folder(tmp_path, count=5):
    """A tripod focal stack of ``count`` frames (one sweep) as a folder: (folder, focus, frames, truth)."""
    focus = list(dioptric_ramp(0.45, 2.2, count))
    frames, truth = render_sweep(focus)
    folder = tmp_path / "stack"
    write_sequence(folder, frames, focus, CAMERA)
    return folder, focus, frames, truth


def test_a_folder_with_one_sweep_is_a_stack_and_every_frame_gets_the_whole_stack(tmp_path, model_file):
    from focaldepth.models import load

    folder, focus, frames, _ = stack_folder(tmp_path)
    summary = predict_sequence(folder, tmp_path / "out", model=str(model_file), progress=False, video=False)
    assert summary["mode"] == "stack" and "one focus sweep" in summary["mode_reason"]
    assert summary["stack_alignment"]["applied"] is False  # a tripod stack: pixels left alone
    depth = [np.load(tmp_path / "out" / "depth" / f"{i:06d}.npy") for i in range(5)]
    # frame 0 is estimated from all five frames (streamed, it is a one-frame guess) ...
    assert np.load(tmp_path / "out" / "confidence" / "000000.npy").max() > 0.0
    # ... exactly as a stream whose window ends at frame 0 (no alignment: the same pixels)
    unaligned = predict_sequence(folder, tmp_path / "unaligned", model=str(model_file), progress=False,
                                 video=False, align=False)
    predictor = StreamingPredictor(load(model_file), CAMERA, focus, 64, 96, window=5, align=False)
    for i in [1, 2, 3, 4]:
        predictor.add(frames[i], focus[i])
    expected = predictor.push(frames[0], focus[0]).depth_m
    np.testing.assert_allclose(np.load(tmp_path / "unaligned" / "depth" / "000000.npy"), expected, rtol=1e-5)
    streamed = predict_sequence(folder, tmp_path / "streamed", model=str(model_file), progress=False, video=False,
                                stack=False)
    assert streamed["mode"] == "stream" and streamed["mode_reason"] == "given"
    assert np.load(tmp_path / "streamed" / "confidence" / "000000.npy").max() == 0.0
    # the last frame sees the same frames, aligned along the same flows, either way
    np.testing.assert_allclose(depth[4], np.load(tmp_path / "streamed" / "depth" / "000004.npy"), rtol=1e-4)


@pytest.mark.parametrize("name", ["sweepnet_test", "sweepnet_physics_test", "sweepnet_temporal_test", "classical",
                                  "defocus_volume"])
def test_order_equivariant_models_only_reorder_their_per_frame_outputs(name):
    """What a still stack relies on to observe its frames once (hold_stack_still)."""
    from focaldepth.models.base import order_equivariant
    from focaldepth.predict import PER_FRAME_OUTPUTS, load_model

    model = load_model(name) if name in ("classical", "defocus_volume") else create(name).eval()
    assert order_equivariant(model)
    focus = list(dioptric_ramp(0.45, 2.2, 5))
    frames = torch.from_numpy(render_sweep(focus)[0]).permute(0, 3, 1, 2).float().div(255)[None]
    camera = torch.tensor([[CAMERA.focal_length_m, CAMERA.f_number, CAMERA.pixel_pitch_m]])
    order = [3, 0, 4, 1, 2]
    with torch.no_grad():
        plain = model(frames, torch.tensor([focus], dtype=torch.float32), camera)
        shuffled = model(frames[:, order], torch.tensor([[focus[i] for i in order]], dtype=torch.float32), camera)
    for key in ("depth_m", "confidence"):
        torch.testing.assert_close(shuffled[key], plain[key], rtol=1e-4, atol=1e-5)
    for key in set(PER_FRAME_OUTPUTS) & set(plain):
        torch.testing.assert_close(shuffled[key], plain[key][:, order], rtol=1e-4, atol=1e-5)
    assert not order_equivariant(create("lstm_ddff_test"))  # a recurrent model reads the order


def test_a_tripod_stack_is_observed_once_with_the_same_depth(tmp_path, model_file):
    from focaldepth.models import load

    folder, focus, frames, _ = stack_folder(tmp_path)
    summary = predict_sequence(folder, tmp_path / "out", model=str(model_file), progress=False, video=False)
    assert summary["mode"] == "stack" and summary["stack_still"] is True
    assert summary["observations_computed"] == 1
    depth, aif = {}, {}
    for hold in (False, True):  # every window observed, or one observation reordered
        predictor = StreamingPredictor(load(model_file), CAMERA, focus, 64, 96, align=False, all_in_focus=True)
        predictor.load_stack(list(frames), focus)
        if hold:
            predictor.hold_stack_still()
        results = [predictor.submit_stack_frame(i).result() for i in range(5)]
        depth[hold], aif[hold] = [r.depth_m for r in results], [r.all_in_focus for r in results]
        assert predictor.observations_computed == (1 if hold else 5)
    for i in range(5):
        np.testing.assert_allclose(depth[True][i], depth[False][i], rtol=1e-5)
        # the focus weights are reordered with the frames: the same all-in-focus image
        assert np.abs(aif[True][i].astype(int) - aif[False][i].astype(int)).max() <= 1
        np.testing.assert_allclose(np.load(tmp_path / "out" / "depth" / f"{i:06d}.npy"), depth[True][i], rtol=1e-5)


def test_a_tripod_stack_longer_than_max_slices_is_observed_once(tmp_path, model_file):
    folder, _, _, truth = stack_folder(tmp_path, 7)
    summary = predict_sequence(folder, tmp_path / "out", model=str(model_file), progress=False, video=False,
                               max_slices=4, aif=True)
    assert summary["stack_still"] is True and summary["observations_computed"] == 1
    for i in range(7):  # frames outside the four slices get depth (and an all-in-focus image) too
        depth = np.load(tmp_path / "out" / "depth" / f"{i:06d}.npy")
        assert depth.shape == truth.shape and np.isfinite(depth).all()
        assert (tmp_path / "out" / "aif" / f"{i:06d}.png").exists()
    moving = predict_sequence(folder, tmp_path / "streamed", model=str(model_file), progress=False, video=False,
                              stack=False)
    assert "stack_still" not in moving  # a stream is never held


def test_repeated_sweeps_and_given_windows_are_streamed(tmp_path, model_file, sweep_folder):
    from focaldepth.predict import stack_mode

    folder, focus = sweep_folder  # two ramps
    summary = predict_sequence(folder, tmp_path / "out", model=str(model_file), progress=False, video=False)
    assert summary["mode"] == "stream" and "more than one sweep" in summary["mode_reason"]
    from focaldepth.io import load_sequence
    from focaldepth.io.sequence import write_sequence_video

    frames, _ = render_sweep(focus)
    write_sequence_video(tmp_path / "clip.mp4", frames, focus, CAMERA)
    clip = load_sequence(tmp_path / "clip.mp4", lazy=True)
    model = create("sweepnet_test")
    assert stack_mode(clip, None, window=None, last_only=False, model=model)[0] is False  # two ramps
    assert stack_mode(clip, True, window=None, last_only=False, model=model) == (True, "given")
    assert stack_mode(clip, None, window=4, last_only=False, model=model)[0] is False
    with pytest.raises(UserError, match="exclude each other"):
        stack_mode(clip, True, window=None, last_only=True, model=model)
    # a video of one sweep streams too (motion expected; --stack forces a stack)
    write_sequence_video(tmp_path / "sweep.mp4", frames[:4], focus[:4], CAMERA)
    one_sweep = load_sequence(tmp_path / "sweep.mp4", lazy=True)
    assert stack_mode(one_sweep, None, window=None, last_only=False, model=model) == \
        (False, "a video (motion expected): causal stream")


def test_a_folder_whose_objects_move_streams(tmp_path, model_file):
    """A moving object is no homography: such a folder is streamed (stacks did worse there)."""
    focus = list(dioptric_ramp(0.45, 2.2, 5))
    frames, _ = render_sweep(focus)
    moving = frames.copy()
    for i in range(5):  # a patch sliding 6 px a frame over a still background
        patch = frames[i, 10:40, 10:40].copy()
        moving[i] = frames[i]
        moving[i, 14:44, 10 + 6 * i:40 + 6 * i] = patch
    folder = tmp_path / "moving"
    write_sequence(folder, moving, focus, CAMERA)
    summary = predict_sequence(folder, tmp_path / "out", model=str(model_file), progress=False, video=False)
    assert summary["mode"] == "stream" and "objects move" in summary["mode_reason"]
    assert summary["stack_motion_px"] > 1.0 and summary["frames_read"] == 5
    assert len(list((tmp_path / "out" / "depth").glob("*.npy"))) == 5
    still = predict_sequence(folder, tmp_path / "forced", model=str(model_file), progress=False, video=False,
                             stack=True)
    assert still["mode"] == "stack"  # --stack: the user's call


def shaken_stack_folder(tmp_path):
    """:func:`stack_folder`'s 5 frames with 4 % focus breathing and a 2 px shake (clearly beyond
    the tripod check): (folder, tripod folder, truth)."""
    import cv2

    from focaldepth.align import scale_about_centre

    folder, focus, frames, truth = stack_folder(tmp_path, 5)
    shaken = []
    for i, frame in enumerate(frames):
        warp = np.array([[1, 0, 2.0 * (-1) ** i], [0, 1, 1.0], [0, 0, 1]]) @ scale_about_centre(1.0 + 0.01 * i, 64, 96)
        shaken.append(cv2.warpPerspective(frame, warp, (96, 64), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    write_sequence(tmp_path / "shaken", np.stack(shaken), focus, CAMERA)
    return tmp_path / "shaken", folder, truth


def test_an_aligned_hand_held_stack_is_observed_once_like_a_tripod_stack(tmp_path, model_file):
    """Breathing and a shake are removed by the alignment; what is left does not move, so the
    stack is held still too, and its depth matches the tripod stack's."""
    shaken, folder, truth = shaken_stack_folder(tmp_path)
    tripod = predict_sequence(folder, tmp_path / "tripod", model=str(model_file), progress=False, video=False)
    summary = predict_sequence(shaken, tmp_path / "out", model=str(model_file), progress=False, video=False)
    assert summary["stack_alignment"]["applied"] is True
    assert summary["stack_still"] is True and summary["observations_computed"] == 1
    assert summary["stack_still_px"] <= 0.4
    assert tripod["stack_still"] is True
    last = np.load(tmp_path / "out" / "depth" / "000004.npy")
    reference = np.load(tmp_path / "tripod" / "depth" / "000004.npy")
    inner = (slice(8, -8), slice(8, -8))  # away from the borders the shake brings in
    assert np.median(np.abs(last[inner] - reference[inner]) / reference[inner]) < 0.05


SHARED_BALLS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mobile_depth_balls"


@pytest.mark.skipif(not SHARED_BALLS.is_dir(), reason="needs ../shared/data/mobile_depth_balls (see ../shared/README.md)")
def test_the_real_phone_stack_in_reverse_order_gives_the_same_depth(tmp_path):
    """Named near to far instead of far to near, the real hand-held stack must come out the
    same: the direction is read from its breathing, the most magnified frame stays the
    reference, and the aligned stack is held still either way."""
    import shutil

    frames = sorted(SHARED_BALLS.glob("*.jpg"), key=lambda p: int(p.stem))  # all 25: the first 12 breathe too little to be aligned
    forward, reverse = tmp_path / "forward", tmp_path / "reverse"
    forward.mkdir()
    reverse.mkdir()
    for rank, path in enumerate(frames):
        shutil.copy(path, forward / f"{rank}.jpg")
        shutil.copy(path, reverse / f"{len(frames) - 1 - rank}.jpg")
    summaries = {name: predict_sequence(folder, tmp_path / f"out_{name}", progress=False, video=False)
                 for name, folder in (("forward", forward), ("reverse", reverse))}
    assert summaries["forward"]["sweep_direction"] == "far_to_near"
    assert summaries["reverse"]["sweep_direction"] == "near_to_far"
    assert all(s["stack_still"] and s["observations_computed"] == 1 for s in summaries.values())
    last = len(frames) - 1
    a = np.load(tmp_path / "out_forward" / "depth" / f"{last:06d}.npy")
    b = np.load(tmp_path / "out_reverse" / "depth" / "000000.npy")  # the same photograph
    assert np.median(np.abs(a - b) / a) < 0.02
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


def test_a_stack_forced_with_stack_is_aligned_whatever_its_length(tmp_path, model_file, monkeypatch):
    """A folder longer than the automatic stack limit streams by default; --stack makes it a
    stack, and then it must also be aligned (a real 75-frame hand-held sweep was left
    unaligned: 0.96 correlation with its own 25-frame result instead of 0.999)."""
    import focaldepth.predict as predict_module

    shaken, _, _ = shaken_stack_folder(tmp_path)
    monkeypatch.setattr(predict_module, "MAX_STACK_FRAMES", 4)
    streamed = predict_sequence(shaken, tmp_path / "streamed", model=str(model_file), progress=False, video=False)
    assert streamed["mode"] == "stream" and "stack_alignment" not in streamed
    forced = predict_sequence(shaken, tmp_path / "forced", model=str(model_file), progress=False, video=False,
                              stack=True)
    assert forced["mode"] == "stack" and forced["stack_alignment"]["applied"] is True
    assert forced["stack_still"] is True
