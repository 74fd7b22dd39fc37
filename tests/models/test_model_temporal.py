"""SweepNet-T (models/temporal.py): shapes, a state of constant size, the state moving with a
known flow, resets at scene cuts, one training step of the tiny variant, determinism, and the
streaming predictor carrying the state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focaldepth import models
from focaldepth.models.temporal import (
    STILL_FLOW_PX,
    detach_state,
    scene_cut,
    state_numel,
    still_aware_warp,
    lowpass_grey,
)
from focaldepth.optics import Camera


def _inputs(batch=1, slices=4, height=24, width=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    frames = torch.rand(batch, slices, 3, height, width, generator=generator)
    focus = torch.linspace(2.0, 0.5, slices).repeat(batch, 1)
    camera = torch.tensor([[0.05, 2.0, 36e-3 / width]] * batch)
    return frames, focus, camera


def _model(seed=0):
    torch.manual_seed(seed)
    return models.create("sweepnet_temporal_test").eval()


def _textured(height=24, width=32, seed=0):
    """A smooth random texture (so low-passed correlation is meaningful)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 4, width // 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def test_step_shapes_and_first_step_is_the_forward_pass():
    model = _model()
    frames, focus, camera = _inputs(batch=2)
    with torch.no_grad():
        outputs, state = model.step(None, frames, focus, camera)
        plain = model(frames, focus, camera)
    assert outputs["depth_m"].shape == (2, 1, 24, 32) and outputs["confidence"].shape == (2, 1, 24, 32)
    assert outputs["scene_cut"].shape == (2,) and not outputs["scene_cut"].any()
    assert torch.equal(plain["depth_m"], outputs["depth_m"])
    assert ((outputs["confidence"] >= 0) & (outputs["confidence"] <= 1)).all()
    assert state["dpt"].shape == (2, 1, 24, 32) and state["image"].shape == (2, 3, 24, 32)
    assert state["hidden"].shape == (2, 4, 12, 16)  # half resolution


def test_the_state_has_the_same_size_after_3_and_after_30_frames():
    model = _model()
    frames, focus, camera = _inputs()
    sizes = []
    state = None
    with torch.no_grad():
        for t in range(30):
            flow = torch.full((1, 2, 24, 32), 0.7 * (t % 3))
            _, state = model.step(state, frames.roll(t, dims=-1), focus, camera, flow)
            sizes.append(state_numel(state))
    assert len(set(sizes)) == 1 and sizes[0] == state_numel(detach_state(state))
    assert sizes[0] == 24 * 32 * (1 + 1 + 1 + 3) + 4 * 12 * 16 + 2


def test_state_warping_follows_a_known_flow():
    height, width = 16, 20
    ramp = torch.arange(width, dtype=torch.float32).expand(1, 1, height, width).contiguous()
    shift = torch.zeros(1, 2, height, width)
    shift[:, 0] = 2.0  # pixel x of frame t was at x + 2 in frame t-1
    warped, inside = still_aware_warp(ramp, shift)
    assert torch.allclose(warped[..., : width - 2], ramp[..., 2:], atol=1e-5)
    assert inside[..., : width - 2].all() and not inside[..., width - 1:].any()
    # Sub-pixel flow leaves the state exactly where it is (no blur from resampling every frame).
    still, _ = still_aware_warp(ramp, shift * (0.9 * STILL_FLOW_PX / 2.0))
    assert torch.equal(still, ramp)


def test_the_fused_depth_moves_with_the_flow_when_the_observation_says_nothing():
    model = _model()
    height, width = 24, 32
    image = _textured(height, width)
    focus = torch.tensor([[2.0, 0.5]])
    depth = (0.6 + torch.arange(width, dtype=torch.float32) / width).expand(1, 1, height, width).contiguous()
    confident = torch.ones(1, 1, height, width)
    with torch.no_grad():
        _, state = model.fuse(None, depth, confident, image, focus)
        flow = torch.zeros(1, 2, height, width)
        flow[:, 0] = 3.0
        moved_image = torch.roll(image, shifts=-3, dims=-1)  # the scene moved 3 px to the left
        outputs, _ = model.fuse(state, torch.full_like(depth, 1.0), torch.zeros_like(depth), moved_image,
                                focus, flow)
    expected = depth[..., 3:]
    got = outputs["depth_m"][..., : width - 3]
    assert not outputs["scene_cut"].any()
    assert torch.allclose(got, expected, rtol=2e-2)


def test_scene_cut_detection():
    a, b = _textured(seed=0), _textured(seed=5)
    low_a, low_b = lowpass_grey(a), lowpass_grey(b)
    assert not scene_cut(low_a, low_a).item()
    assert not scene_cut(lowpass_grey(0.6 * a + 0.2), low_a).item()  # exposure change, same scene
    assert scene_cut(low_b, low_a).item()
    flat = torch.full_like(low_a, 0.5)
    assert not scene_cut(flat, low_a).item()  # no contrast: no evidence of a cut


def test_a_scene_cut_restarts_the_state():
    model = _model()
    frames, focus, camera = _inputs()
    first = frames.clone()
    first[:, -1] = _textured(seed=0)[0]
    other = frames.clone()
    other[:, -1] = _textured(seed=5)[0]
    with torch.no_grad():
        _, state = model.step(None, first, focus, camera)
        _, state = model.step(state, first, focus, camera)
        after_cut, _ = model.step(state, other, focus, camera)
        fresh, _ = model.step(None, other, focus, camera)
        carried, _ = model.step(state, first, focus, camera)
    assert after_cut["scene_cut"].all() and not carried["scene_cut"].any()
    assert torch.allclose(after_cut["depth_m"], fresh["depth_m"], rtol=1e-5)


def test_tiny_variant_training_steps_reduce_the_clip_loss():
    torch.manual_seed(0)
    model = models.create("sweepnet_temporal_test").train()
    for parameter in model.observer.parameters():
        parameter.requires_grad_(False)
    optimiser = torch.optim.Adam(model.cell.parameters(), lr=1e-2)
    height, width = 16, 16
    truth = torch.full((1, 1, height, width), 1.0)
    generator = torch.Generator().manual_seed(1)
    observations = [truth * (1 + 0.3 * torch.randn(1, 1, height, width, generator=generator)).clamp(0.5, 1.5)
                    for _ in range(4)]
    image = _textured(height, width)
    focus = torch.tensor([[2.0, 0.5]])

    def clip_loss():
        state, total = None, 0.0
        for observed in observations:
            out, state = model.fuse(state, observed, torch.full_like(observed, 0.5), image, focus)
            total = total + (1 / out["depth_m"] - 1 / truth).abs().mean()
        return total / len(observations)

    losses = []
    for _ in range(6):
        loss = clip_loss()
        optimiser.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.cell.parameters())
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_streams_are_deterministic():
    frames, focus, camera = _inputs()
    flow = torch.full((1, 2, 24, 32), 1.5)
    results = []
    for _ in range(2):
        model = _model(seed=3)
        state, outs = None, []
        with torch.no_grad():
            for t in range(4):
                out, state = model.step(state, frames.roll(t, dims=-1), focus, camera, flow)
                outs.append(out["depth_m"])
        results.append(torch.cat(outs))
    assert torch.equal(results[0], results[1])


def test_the_streaming_predictor_carries_the_state():
    from focaldepth.predict import StreamingPredictor

    model = _model()
    camera = Camera(focal_length_mm=50.0, f_number=2.0, sensor_width_mm=36.0, image_width_px=48)
    focus = [2.0, 1.5, 1.0, 0.7, 0.5] * 2
    rng = np.random.default_rng(0)
    texture = (rng.random((32, 48, 3)) * 255).astype(np.uint8)
    predictor = StreamingPredictor(model, camera, focus, 32, 48, output_resolution="working")
    sizes = []
    for t, focus_m in enumerate(focus):
        result = predictor.push(np.roll(texture, t, axis=1), focus_m)
        assert result.depth_m.shape == (32, 48) and np.isfinite(result.depth_m).all()
        if t == 0:
            assert predictor.state is None  # one frame: no estimate, nothing to carry
        else:
            sizes.append(state_numel(predictor.state))
            assert predictor.last_flow_px is not None and predictor.last_flow_px.shape == (32, 48, 2)
    assert len(set(sizes)) == 1
    predictor.reset_state()
    assert predictor.state is None


@pytest.mark.parametrize("name", ["sweepnet_temporal", "sweepnet_temporal_test"])
def test_registered_with_a_tiny_variant(name):
    assert name in models.list_models()
    assert models.parameter_count("sweepnet_temporal_test") < models.parameter_count("sweepnet_temporal")


def test_while_the_window_fills_the_estimate_is_the_observation():
    model = _model()
    image, focus = _textured(), torch.tensor([[2.0, 0.5]])
    near, far = torch.full((1, 1, 24, 32), 0.6), torch.full((1, 1, 24, 32), 1.6)
    confidence = torch.full_like(near, 0.8)
    with torch.no_grad():
        _, state = model.fuse(None, near, confidence, image, focus, window_fill=1.0)
        growing, _ = model.fuse(state, far, confidence, image, focus, window_fill=0.6)
        full, _ = model.fuse(state, far, confidence, image, focus, window_fill=1.0)
    assert torch.allclose(growing["depth_m"], far, rtol=1e-3)  # a wider window: history ignored
    assert (full["depth_m"] < 1.5).all() and (full["depth_m"] > 0.65).all()  # full windows average


def test_a_single_stack_ends_with_the_per_window_estimate():
    """A focal stack streamed frame by frame: partial windows carry no weight, so the first
    full window's estimate is the observation itself."""
    model = _model()
    image, focus = _textured(), torch.tensor([[2.0, 0.5]])
    state = None
    with torch.no_grad():
        for fill, depth in ((0.5, 0.7), (0.75, 0.9)):
            _, state = model.fuse(state, torch.full((1, 1, 24, 32), depth), torch.full((1, 1, 24, 32), 0.9),
                                  image, focus, window_fill=fill)
        last, _ = model.fuse(state, torch.full((1, 1, 24, 32), 1.2), torch.full((1, 1, 24, 32), 0.9),
                             image, focus, window_fill=1.0)
    assert torch.allclose(last["depth_m"], torch.full_like(last["depth_m"], 1.2), rtol=1e-3)


def test_the_shipped_temporal_model_is_predicts_default_and_carries_its_card():
    from focaldepth.predict import DEFAULT_PREDICT_MODEL, load_model, shipped_weights_path

    path = shipped_weights_path(DEFAULT_PREDICT_MODEL)
    card = models.read_checkpoint(path)["extra"]["model_card"]
    assert {"data", "cpu_hours", "how_chosen", "validation"} <= set(card)
    model = load_model(DEFAULT_PREDICT_MODEL)
    assert getattr(model, "stateful", False)
    # the observer is the shipped per-window default, unchanged
    default = load_model("sweepnet_default").state_dict()
    assert model.observer.state_dict().keys() == default.keys()
    assert all(torch.equal(value, default[key]) for key, value in model.observer.state_dict().items())


def test_the_v3_temporal_model_observes_with_v3():
    from focaldepth.predict import load_model

    model, v3 = load_model("sweepnet_temporal"), load_model("sweepnet_default_v3").state_dict()
    assert all(torch.equal(value, v3[key]) for key, value in model.observer.state_dict().items())


def test_the_cli_default_is_predicts_default():
    import inspect

    from focaldepth.commands.predict import predict
    from focaldepth.predict import DEFAULT_PREDICT_MODEL

    assert inspect.signature(predict).parameters["model"].default == DEFAULT_PREDICT_MODEL


def test_submitting_ahead_gives_the_same_stream_as_pushing():
    """predict's pipelined path (frame t finished on a second thread while frame t+1 is
    observed) against the plain one, frame for frame, across a reset and with the
    all-in-focus image at the input resolution (which reads the buffers as they were)."""
    from focaldepth.predict import StreamingPredictor, pipelined

    assert pipelined(torch.device("cpu"))  # the suite runs one torch thread
    camera = Camera(focal_length_mm=50.0, f_number=2.0, sensor_width_mm=36.0, image_width_px=64)
    focus = [2.0, 1.5, 1.0, 0.7, 0.5] * 3
    rng = np.random.default_rng(1)
    texture = (rng.random((40, 64, 3)) * 255).astype(np.uint8)
    clip = [np.roll(texture, 2 * t, axis=1) for t in range(len(focus))]

    def stream(ahead: bool) -> list:
        predictor = StreamingPredictor(_model(), camera, focus, 40, 64, max_pixels=600, all_in_focus=True)
        results, pending = [], None
        for t, (frame, focus_m) in enumerate(zip(clip, focus)):
            if t == 8:
                predictor.reset_state()
            handle = predictor.submit(frame, focus_m) if ahead else None
            if not ahead:
                results.append(predictor.push(frame, focus_m))
                continue
            if pending is not None:
                results.append(pending.result())
            pending = handle
        if pending is not None:
            results.append(pending.result())
        return results

    plain, ahead = stream(False), stream(True)
    assert len(plain) == len(ahead) == len(focus)
    for a, b in zip(plain, ahead):
        assert np.array_equal(a.depth_m, b.depth_m) and np.array_equal(a.confidence, b.confidence)
        assert (a.all_in_focus is None) == (b.all_in_focus is None)
        if a.all_in_focus is not None:
            assert np.array_equal(a.all_in_focus, b.all_in_focus)
