"""D3-Net: one image in, fixed depth range, Monte-Carlo dropout uncertainty."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from focaldepth import models
from focaldepth.errors import UserError


def test_only_the_last_frame_is_used(make_inputs):
    model = models.create("d3net_test").eval()
    frames, focus_distance_m, camera = make_inputs(batch=1, slices=3)
    with torch.no_grad():
        base = model(frames, focus_distance_m, camera)["depth_m"]
        earlier = frames.clone()
        earlier[:, :-1] = torch.rand_like(earlier[:, :-1])
        last = frames.clone()
        last[:, -1] = 1.0 - last[:, -1]
        assert torch.equal(model(earlier, focus_distance_m, camera)["depth_m"], base)
        assert (model(last, focus_distance_m, camera)["depth_m"] - base).abs().max() > 1e-5


def test_fixed_depth_range_ignores_focus_distances(make_inputs):
    model = models.create("d3net_test", depth_range_m=(0.5, 4.0)).eval()
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=1)
    with torch.no_grad():
        depth = model(frames, focus_distance_m, camera)["depth_m"]
        elsewhere = model(frames, focus_distance_m * 3.0, camera)["depth_m"]
    assert torch.equal(depth, elsewhere)
    assert depth.min() >= 0.5 and depth.max() <= 4.0


def test_mc_dropout_uncertainty(make_inputs):
    model = models.create("d3net_test", mc_dropout=True).eval()
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=1)
    torch.manual_seed(0)
    result = model.predict_with_uncertainty(frames, focus_distance_m, camera, samples=6)
    assert result["depth_m"].shape == result["depth_std_m"].shape == (2, 1, 32, 32)
    assert (result["depth_std_m"] >= 0).all() and result["depth_std_m"].max() > 0
    # Modes restored: inference is deterministic again, dropout off.
    assert not model.training
    assert not any(m.training for m in model.modules() if isinstance(m, nn.Dropout))
    with torch.no_grad():
        assert torch.equal(
            model(frames, focus_distance_m, camera)["depth_m"],
            model(frames, focus_distance_m, camera)["depth_m"],
        )


def test_uncertainty_needs_mc_dropout_and_samples(make_inputs):
    frames, focus_distance_m, camera = make_inputs(batch=1, slices=1)
    with pytest.raises(UserError, match="mc_dropout=True"):
        models.create("d3net_test").predict_with_uncertainty(frames, focus_distance_m, camera)
    with pytest.raises(UserError, match="samples must be"):
        models.create("d3net_test", mc_dropout=True).predict_with_uncertainty(
            frames, focus_distance_m, camera, samples=1
        )
