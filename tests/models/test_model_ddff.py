"""DDFFNet and LSTM-DDFF specifics: fixed stack size, fixed input size, ordered recurrence."""

from __future__ import annotations

import pytest
import torch

from focaldepth import models
from focaldepth.errors import UserError


def test_ddffnet_takes_exactly_its_stack_size(make_inputs):
    model = models.create("ddffnet_test", num_frames=3).eval()
    assert model.info.consumes == "stack_fixed"
    frames, focus_distance_m, camera = make_inputs(batch=1, slices=4)
    with pytest.raises(ValueError, match="exactly 3 slices, got 4"):
        model(frames, focus_distance_m, camera)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(*make_inputs(batch=1, slices=3, size_px=48))


def test_lstm_ddff_takes_exactly_its_image_size(make_inputs):
    model = models.create("lstm_ddff_test").eval()
    with pytest.raises(ValueError, match="exactly H x W = 32 x 32"):
        model(*make_inputs(batch=1, slices=2, size_px=64))


@pytest.mark.parametrize("variant", ["fc", "stacking"])
def test_lstm_ddff_reads_any_number_of_slices_in_order(variant, make_inputs):
    model = models.create("lstm_ddff_test", variant=variant).eval()
    frames, focus_distance_m, camera = make_inputs(batch=1, slices=5)
    with torch.no_grad():
        out = model(frames, focus_distance_m, camera)["depth_m"]
        reversed_order = model(frames.flip(1), focus_distance_m.flip(1), camera)["depth_m"]
        fewer = model(frames[:, :3], focus_distance_m[:, :3], camera)["depth_m"]
    assert fewer.shape == out.shape == (1, 1, 32, 32)
    assert (reversed_order - out).abs().max() > 1e-6  # a recurrence, not a set function


def test_lstm_ddff_convolutional_skip_over_all_slices(make_inputs):
    with pytest.raises(UserError, match="set num_frames"):
        models.create("lstm_ddff_test", skip_source="conv")
    model = models.create("lstm_ddff_test", skip_source="conv", num_frames=3).train()
    assert model.info.consumes == "stack_fixed"
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=3)
    model(frames, focus_distance_m, camera)["depth_m"].mean().backward()
    assert model.skip_reduce.weight.grad is not None
    with pytest.raises(ValueError, match="exactly 3 slices"):
        model(*make_inputs(batch=2, slices=4))
