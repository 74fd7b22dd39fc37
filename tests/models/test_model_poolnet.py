"""PoolNet and DefocusNet: permutation invariance, any stack length, the focus channel."""

from __future__ import annotations

import pytest
import torch

from focaldepth import models
from focaldepth.models.base import unit_from_depth
from focaldepth.models.common import focus_unit_channel

POOLING_MODELS = ["poolnet_test", "defocusnet_test"]


@pytest.mark.parametrize("name", POOLING_MODELS)
def test_shuffling_slices_leaves_depth_unchanged(name, make_inputs):
    model = models.create(name).eval()
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=5, near_m=0.3, far_m=3.0)
    order = torch.tensor([3, 0, 4, 2, 1])
    with torch.no_grad():
        out = model(frames, focus_distance_m, camera)
        shuffled = model(frames[:, order], focus_distance_m[:, order], camera)
    torch.testing.assert_close(shuffled["depth_m"], out["depth_m"], atol=1e-5, rtol=0)
    if "coc_px" in out:  # per-frame outputs follow their frames
        torch.testing.assert_close(shuffled["coc_px"], out["coc_px"][:, order], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", POOLING_MODELS)
@pytest.mark.parametrize("slices", [2, 3, 7])
def test_any_stack_length(name, slices, make_inputs):
    model = models.create(name).eval()
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=slices)
    with torch.no_grad():
        out = model(frames, focus_distance_m, camera)
    assert out["depth_m"].shape == (2, 1, 32, 32) and torch.isfinite(out["depth_m"]).all()
    if "coc_px" in out:
        assert out["coc_px"].shape == (2, slices, 1, 32, 32)


def test_a_repeated_slice_changes_nothing(make_inputs):
    """Max-pooling is idempotent: a duplicate frame (same focus) adds no information."""
    model = models.create("poolnet_test").eval()
    frames, focus_distance_m, camera = make_inputs(batch=1, slices=4)
    with torch.no_grad():
        out = model(frames, focus_distance_m, camera)["depth_m"]
        repeated = model(
            torch.cat([frames, frames[:, 1:2]], 1),
            torch.cat([focus_distance_m, focus_distance_m[:, 1:2]], 1),
            camera,
        )["depth_m"]
    torch.testing.assert_close(repeated, out, atol=1e-5, rtol=0)


def test_focus_channel_is_inverse_focus_on_the_stacks_range():
    channel = focus_unit_channel(torch.tensor([[2.0, 1.0, 0.5]]), 4, 6)
    assert channel.shape == (1, 3, 1, 4, 6)
    # 1/F = 0.5, 1, 2 dpt; range widened by 25 % of 1.5 dpt each side: [0.125, 2.375] dpt.
    expected = torch.tensor([(0.5 - 0.125) / 2.25, (1.0 - 0.125) / 2.25, (2.0 - 0.125) / 2.25])
    torch.testing.assert_close(channel[0, :, 0, 0, 0], expected)
    assert torch.all(channel == channel[..., :1, :1])  # constant over the image


@pytest.mark.parametrize("name", POOLING_MODELS)
def test_focus_channel_switch(name, make_inputs):
    """Without the channel, focus distances only set the output range: the normalised output
    does not move when the sweep is rescaled. With it, the network sees the focus distances."""
    frames, focus_distance_m, camera = make_inputs(batch=1, slices=4)
    other_focus_m = focus_distance_m**1.7  # a different spacing of the same sweep
    for focus_channel in (False, True):
        model = models.create(name, focus_channel=focus_channel).eval()
        assert model.info.uses_focus_distance == focus_channel
        with torch.no_grad():
            unit = unit_from_depth(
                model(frames, focus_distance_m, camera)["depth_m"], focus_distance_m
            )
            unit_other = unit_from_depth(
                model(frames, other_focus_m, camera)["depth_m"], other_focus_m
            )
        moved = (unit - unit_other).abs().max().item()
        assert (moved > 1e-4) if focus_channel else (moved < 1e-5)
