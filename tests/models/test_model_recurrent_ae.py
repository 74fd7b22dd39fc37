"""The recurrent autoencoder streams: frame by frame equals the whole sequence, causally."""

from __future__ import annotations

import pytest
import torch

from focaldepth import models
from focaldepth.models.base import depth_range_dpt


@pytest.fixture
def model():
    return models.create("recurrent_ae_test").eval()


def stream(model, frames, focus_distance_m, camera):
    state, depths = None, []
    for s in range(frames.shape[1]):
        out, state = model.step(frames[:, s], focus_distance_m[:, s], camera, state)
        depths.append(out["depth_m"])
    return torch.stack(depths, dim=1), state


def test_streaming_equals_whole_sequence(model, make_inputs):
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=5)
    with torch.no_grad():
        whole = model(frames, focus_distance_m, camera)
        streamed, _ = stream(model, frames, focus_distance_m, camera)
    torch.testing.assert_close(streamed, whole["depth_m_per_frame"], atol=1e-6, rtol=0)
    torch.testing.assert_close(streamed[:, -1], whole["depth_m"], atol=1e-6, rtol=0)


def test_state_carries_the_past_and_only_the_past(model, make_inputs):
    frames, focus_distance_m, camera = make_inputs(batch=1, slices=4)
    with torch.no_grad():
        base = model(frames, focus_distance_m, camera)["depth_m_per_frame"]
        changed_first = frames.clone()
        changed_first[:, 0] = 1.0 - changed_first[:, 0]
        after_first = model(changed_first, focus_distance_m, camera)["depth_m_per_frame"]
        changed_last = frames.clone()
        changed_last[:, -1] = 1.0 - changed_last[:, -1]
        after_last = model(changed_last, focus_distance_m, camera)["depth_m_per_frame"]
    assert (after_first[:, -1] - base[:, -1]).abs().max() > 1e-5  # the first frame is remembered
    torch.testing.assert_close(after_last[:, :-1], base[:, :-1], atol=0, rtol=0)  # causal


def test_output_range_grows_with_the_focus_seen(model, make_inputs):
    frames, focus_distance_m, camera = make_inputs(batch=1, slices=4, near_m=0.5, far_m=4.0)
    with torch.no_grad():
        per_frame = model(frames, focus_distance_m, camera)["depth_m_per_frame"]
    for s in range(4):
        low_dpt, high_dpt = depth_range_dpt(focus_distance_m[:, : s + 1])
        assert per_frame[:, s].min() >= 1 / high_dpt.item() - 1e-6
        assert per_frame[:, s].max() <= 1 / low_dpt.item() + 1e-6


def test_init_state_and_detach(model, make_inputs):
    state = model.init_state(batch_size=2, height_px=32, width_px=64)
    assert [tuple(h.shape) for h in state.hidden] == [
        (2, 4, 32, 64),
        (2, 4, 16, 32),
        (2, 8, 8, 16),
        (2, 8, 4, 8),
        (2, 8, 2, 4),
        (2, 8, 1, 2),
    ]
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=1)
    _, state = model.step(frames[:, 0], focus_distance_m[:, 0], camera, None)
    assert any(h.requires_grad for h in state.hidden)
    assert not any(h.requires_grad for h in state.detach().hidden)


def test_step_checks_its_inputs(model, make_inputs):
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=2)
    with pytest.raises(ValueError, match=r"one frame \(B, C, H, W\)"):
        model.step(frames, focus_distance_m[:, 0], camera)
    with pytest.raises(ValueError, match=r"focus_distance_m: expected \(B,\)"):
        model.step(frames[:, 0], focus_distance_m, camera)
    with pytest.raises(ValueError, match="multiples of 32"):
        model.step(frames[:, 0, :, :24], focus_distance_m[:, 0], camera)
