"""predict's streaming cost, upsampling, all-in-focus images and affordable outputs (issue 10)."""

import json

import cv2
import numpy as np
import pytest
import torch

from focaldepth.classical import ClassicalDFF
from focaldepth.errors import UserError
from focaldepth.io import write_sequence
from focaldepth.optics import dioptric_ramp, repeated_ramps
from focaldepth.predict import StreamingPredictor, guided_upsample, load_model, predict_sequence
from focaldepth.render import render_focal_stack

from test_predict import CAMERA, render_sweep, textured_scene


def test_one_optical_flow_per_frame_whatever_the_window():
    focus = list(repeated_ramps(0.5, 2.0, 8, 2))
    frames, _ = render_sweep(focus)
    predictor = StreamingPredictor(ClassicalDFF(), CAMERA, focus, 64, 96, window=8)
    for frame, f in zip(frames, focus):
        predictor.push(frame, f)
    assert predictor.flows_computed == len(focus) - 1  # not sum(min(t, window - 1))
    assert len(predictor.displacements) == len(predictor.buffer) == 8


def test_composed_flow_undoes_a_steady_motion_and_leaves_a_still_stack_untouched():
    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (96, 160, 3)).astype(np.uint8), (0, 0), 2.0)
    focus = [0.5, 0.7, 1.0, 1.4, 2.0]
    moving = [np.roll(texture, 2 * i, axis=1) for i in range(5)]  # 2 px to the right per frame
    predictor = StreamingPredictor(ClassicalDFF(), CAMERA.resized(160), focus, 96, 160, max_pixels=10**6)
    for frame, f in zip(moving, focus):
        predictor.push(frame, f)
    window = predictor._aligned_window()
    inner = (slice(16, -16), slice(24, -24))
    current = moving[-1][inner].astype(float)
    before = np.abs(moving[0][inner] - current).mean()  # 8 px apart
    after = np.abs(window[0][inner] - current).mean()
    assert after < 0.25 * before
    still = StreamingPredictor(ClassicalDFF(), CAMERA.resized(160), focus, 96, 160, max_pixels=10**6)
    for f in focus:
        still.push(texture, f)
    assert all(np.array_equal(frame, texture) for frame in still._aligned_window())


def test_guided_upsampling_keeps_a_step_edge_sharper_than_bilinear():
    height, width, factor = 120, 160, 4
    rng = np.random.default_rng(0)
    grey = np.where(np.arange(width)[None, :] < 83, 0.25, 0.75) * np.ones((height, 1))
    grey = grey + rng.normal(0, 0.01, grey.shape)  # the edge at column 83: not on the small grid
    truth = np.where(np.arange(width)[None, :] < 83, 2.0, 0.5) * np.ones((height, 1))  # dioptres
    full = torch.tensor(grey, dtype=torch.float32)[None, None]
    small = torch.nn.functional.interpolate(full, scale_factor=1 / factor, mode="area")
    value = torch.nn.functional.interpolate(torch.tensor(truth, dtype=torch.float32)[None, None],
                                            scale_factor=1 / factor, mode="area")
    guided = guided_upsample(value, small, full)[0, 0].numpy()
    bilinear = torch.nn.functional.interpolate(value, size=(height, width), mode="bilinear",
                                               align_corners=False)[0, 0].numpy()
    band = slice(70, 96)  # around the edge
    error_guided = np.abs(guided - truth)[:, band].mean()
    error_bilinear = np.abs(bilinear - truth)[:, band].mean()
    assert error_guided < 0.5 * error_bilinear
    assert guided.min() >= 0.5 - 1e-5 and guided.max() <= 2.0 + 1e-5  # no overshoot


def laplacian_energy(image_rgb8):
    grey = cv2.cvtColor(image_rgb8, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float((cv2.Laplacian(grey, cv2.CV_64F)[4:-4, 4:-4] ** 2).mean())


@pytest.mark.parametrize("model_name", ["classical", "sweepnet_default"])
def test_all_in_focus_is_sharper_than_every_frame_and_close_to_the_truth(model_name):
    focus = list(dioptric_ramp(0.45, 2.2, 6))
    frames, _ = render_sweep(focus)
    image, _ = textured_scene(width=CAMERA.image_width_px)
    truth = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    predictor = StreamingPredictor(load_model(model_name), CAMERA, focus, 64, 96, all_in_focus=True)
    for frame, f in zip(frames, focus):
        result = predictor.push(frame, f)
    aif = result.all_in_focus
    assert aif.shape == (64, 96, 3) and aif.dtype == np.uint8
    assert laplacian_energy(aif) > max(laplacian_energy(frame) for frame in frames)
    inner = (slice(6, -6), slice(6, -6))
    aif_error = np.abs(aif[inner].astype(float) - truth[inner]).mean()
    best_frame_error = min(np.abs(frame[inner].astype(float) - truth[inner]).mean() for frame in frames)
    assert aif_error < best_frame_error


def test_all_in_focus_at_input_resolution_from_a_smaller_working_grid():
    focus = list(dioptric_ramp(0.45, 2.2, 6))
    frames, _ = render_sweep(focus)
    predictor = StreamingPredictor(load_model("sweepnet_default"), CAMERA, focus, 64, 96, max_pixels=1536,
                                   all_in_focus=True)
    for frame, f in zip(frames, focus):
        result = predictor.push(frame, f)
    assert (predictor.work_h, predictor.work_w) == (32, 48)
    assert result.all_in_focus.shape == (64, 96, 3) and result.depth_m.shape == (64, 96)
    assert laplacian_energy(result.all_in_focus) > max(laplacian_energy(frame) for frame in frames)


@pytest.fixture()
def sweep(tmp_path):
    focus = list(repeated_ramps(0.5, 2.0, 4, 2))
    frames, _ = render_sweep(focus)
    write_sequence(tmp_path / "sweep", frames, focus, CAMERA)
    return tmp_path / "sweep", focus


@pytest.mark.parametrize("fmt", ["npz16", "h5"])
def test_one_file_per_clip_holds_float16_depth_confidence_and_aif(sweep, tmp_path, fmt):
    folder, focus = sweep
    out = tmp_path / fmt
    predict_sequence(folder, out, model="classical", extra_formats=(fmt,), aif=True, progress=False,
                     video=False)
    reference = tmp_path / "npy"
    predict_sequence(folder, reference, model="classical", progress=False, video=False)
    assert not (out / "depth").exists() and not (out / "aif").exists()
    if fmt == "npz16":
        arrays = dict(np.load(out / "clip.npz"))
    else:
        import h5py

        with h5py.File(out / "clip.h5") as clip:
            arrays = {key: clip[key][()] for key in clip}
    assert arrays["depth"].shape == (len(focus), 64, 96) and arrays["depth"].dtype == np.float16
    assert arrays["all_in_focus"].shape == (len(focus), 64, 96, 3)
    last = np.load(reference / "depth" / f"{len(focus) - 1:06d}.npy")
    np.testing.assert_allclose(arrays["depth"][-1].astype(np.float32), last, rtol=1e-3)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_working_resolution_output_threads_and_time_split_in_summary(sweep, tmp_path):
    folder, focus = sweep
    out = tmp_path / "out"
    summary = predict_sequence(folder, out, model="sweepnet_default", max_pixels=1536,
                               output_resolution="working", aif=True, threads=1, progress=False)
    assert np.load(out / "depth" / "000005.npy").shape == (32, 48)
    assert len(list((out / "aif").glob("*.png"))) == len(focus)
    written = json.loads((out / "summary.json").read_text())
    assert written["threads"] == 1 and written["output_size_hw"] == [32, 48]
    timing = written["command_timing_s"]
    assert timing["wall"] >= timing["predict"] > 0 and timing["video_encode"] >= 0
    assert summary["optical_flows_computed"] == len(focus) - 1


def test_unknown_format_and_resolution_are_user_errors(sweep, tmp_path):
    folder, _ = sweep
    with pytest.raises(UserError, match="unknown output format"):
        predict_sequence(folder, tmp_path / "a", model="classical", extra_formats=("tiff",), progress=False)
    with pytest.raises(UserError, match="output resolution"):
        predict_sequence(folder, tmp_path / "b", model="classical", output_resolution="4k", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_guided_upsampling_in_the_predictor_matches_input_size():
    focus = list(dioptric_ramp(0.45, 2.2, 4))
    frames, _ = render_sweep(focus)
    predictor = StreamingPredictor(ClassicalDFF(), CAMERA, focus, 64, 96, max_pixels=1536)
    for frame, f in zip(frames, focus):
        result = predictor.push(frame, f)
    assert result.depth_m.shape == (64, 96) and np.isfinite(result.depth_m).all()
    assert 0.45 - 1e-3 <= result.depth_m.min() and result.depth_m.max() <= 2.2 + 1e-3


def test_output_stage_writes_in_order_and_hands_errors_back():
    """The writer thread of predict: every frame written, in order; a failing write surfaces
    in the caller's thread (at a later put or at finish), without a deadlock."""
    import threading

    from focaldepth.predict import OutputStage

    seen = []
    stage = OutputStage(lambda index, *rest: seen.append(index))
    for index in range(10):
        stage.put(index, None, None, None)
    assert stage.finish() >= 0.0 and seen == list(range(10))

    def failing(index, *rest):
        if index == 2:
            raise OSError("disk full")

    stage = OutputStage(failing)
    done = threading.Event()

    def feed():
        try:
            for index in range(50):
                stage.put(index, None, None, None)
        except OSError:
            pass
        finally:
            try:
                stage.finish()
            except OSError:
                done.set()

    worker = threading.Thread(target=feed, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert done.is_set() and not worker.is_alive()


def test_last_only_gives_one_estimate_of_the_whole_stack(tmp_path):
    """--last-only: the whole static stack is one window and only its last frame is
    estimated; the same depth as pushing the stack through a predictor whose window is the
    stack and keeping the last answer (a per-window model), a picture instead of a video."""
    focus = list(dioptric_ramp(0.5, 2.0, 6))
    frames, _ = render_sweep(focus)
    write_sequence(tmp_path / "stack", frames, focus, CAMERA)
    summary = predict_sequence(tmp_path / "stack", tmp_path / "out", model="sweepnet_default", max_pixels=1536,
                               progress=False, aif=True, last_only=True)
    assert sorted(p.name for p in (tmp_path / "out" / "depth").iterdir()) == ["000005.npy"]
    assert (tmp_path / "out" / "aif" / "000005.png").is_file()
    assert (tmp_path / "out" / "depth.png").is_file() and not (tmp_path / "out" / "depth.mp4").exists()
    assert summary["num_frames"] == 1 and summary["frames_read"] == 6 and summary["last_only"]
    assert summary["window_frames"] == 6
    predictor = StreamingPredictor(load_model("sweepnet_default"), CAMERA, focus, 64, 96, window=6, max_pixels=1536)
    for frame, f in zip(frames, focus):
        result = predictor.push(frame, f)
    depth = np.load(tmp_path / "out" / "depth" / "000005.npy")
    assert np.allclose(depth, result.depth_m, rtol=1e-5)


def test_adding_frames_leaves_the_temporal_state_to_the_next_estimate():
    focus = list(dioptric_ramp(0.5, 2.0, 5))
    frames, _ = render_sweep(focus)
    predictor = StreamingPredictor(load_model("sweepnet_temporal_v8"), CAMERA, focus, 64, 96, max_pixels=1536)
    for frame, f in zip(frames, focus):
        predictor.push(frame, f)
    assert predictor.state is not None
    predictor.add(frames[0], focus[0])
    predictor._schedule(lambda: None).result()  # wait for what add scheduled (pipelined)
    assert predictor.state is None and len(predictor.buffer) == 5
