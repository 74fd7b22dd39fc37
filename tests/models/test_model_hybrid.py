"""SweepNet + physics fusion (focaldepth.models.hybrid)."""

from __future__ import annotations

import pytest
import torch

from focaldepth import models
from focaldepth.models.hybrid import beyond_sweep_fraction, end_of_sweep_weight, fuse

FOCUS_DPT = torch.tensor([[1.0, 0.75, 0.5]])  # a 3-frame sweep from 1 m to 2 m


def maps(value: float) -> torch.Tensor:
    return torch.full((1, 1, 2, 2), value)


def test_vote_at_the_far_end_yields_to_physics_beyond_it():
    # the vote sits at the far end (0.5 dpt), the physics says 0.3 dpt (3.3 m, beyond the sweep)
    assert torch.allclose(end_of_sweep_weight(maps(0.5), maps(0.3), FOCUS_DPT), maps(0.0))
    fused, _ = fuse(maps(0.5), maps(0.9), maps(0.3), maps(0.2), FOCUS_DPT, physics_weight=1.0, physics_power=1.0)
    assert torch.allclose(fused, maps(0.3))


def test_inside_the_sweep_the_estimates_are_weighted_by_confidence():
    assert torch.allclose(end_of_sweep_weight(maps(0.6), maps(0.8), FOCUS_DPT), maps(1.0))
    fused, confidence = fuse(maps(0.6), maps(0.5), maps(0.8), maps(0.5), FOCUS_DPT, physics_weight=1.0,
                             physics_power=1.0)
    assert torch.allclose(fused, maps(0.7))
    assert torch.allclose(confidence, maps(0.5))
    vote_only, _ = fuse(maps(0.6), maps(0.5), maps(0.8), maps(0.5), FOCUS_DPT, physics_weight=0.0,
                        physics_power=1.0)
    assert torch.allclose(vote_only, maps(0.6))


def test_inside_weight_scales_the_physics_only_inside_the_sweep():
    # sweep step 0.25 dpt: inside (0.8 dpt) -> 0, half a step beyond the far end -> 0.5, a step -> 1
    fraction = beyond_sweep_fraction(torch.tensor([0.8, 0.375, 0.25, 1.5]).view(1, 1, 2, 2), FOCUS_DPT)
    assert torch.allclose(fraction.flatten(), torch.tensor([0.0, 0.5, 1.0, 1.0]))
    inside, _ = fuse(maps(0.6), maps(0.5), maps(0.8), maps(0.5), FOCUS_DPT, physics_weight=1.0,
                     physics_power=1.0, inside_weight=0.0)
    assert torch.allclose(inside, maps(0.6))  # inside the sweep the vote alone answers
    beyond, _ = fuse(maps(0.5), maps(0.9), maps(0.2), maps(0.2), FOCUS_DPT, physics_weight=1.0,
                     physics_power=1.0, inside_weight=0.0)
    assert torch.allclose(beyond, maps(0.2))  # beyond it the physics keeps its full weight


def test_a_vote_inside_the_sweep_is_kept_when_physics_says_beyond():
    """Only a vote pinned to the end is uninformative; one in the middle still counts."""
    weight = end_of_sweep_weight(maps(0.75), maps(0.3), FOCUS_DPT)
    assert torch.allclose(weight, maps(1.0))


def test_fused_model_answers_beyond_the_sweep():
    from test_defocus_volume import CAMERA, FOCUS, centre_depth_m, textured_plane_stack

    model = models.create("sweepnet_physics_test").eval()
    with torch.no_grad():
        outputs = model(textured_plane_stack(5.0, noise=0.01), FOCUS, CAMERA)
    # the tiny untrained vote says something inside 1.2-3 m; the physics pulls it beyond
    assert centre_depth_m(outputs) > 3.0
    assert outputs["all_in_focus"].shape == (1, 3, 96, 96)


def test_half_resolution_physics_keeps_the_answer_and_the_blur_in_metres():
    """The plane sweep on half-size frames with twice the pixel pitch finds the same depth
    (inside and beyond the sweep), returned at the full size."""
    from test_defocus_volume import CAMERA, FOCUS, centre_depth_m, textured_plane_stack

    from focaldepth.models.hybrid import physics_at_scale

    for depth_m in (2.0, 5.0):
        frames = textured_plane_stack(depth_m, noise=0.01)
        full = physics_at_scale(frames, FOCUS, CAMERA, 1.0)
        half = physics_at_scale(frames, FOCUS, CAMERA, 0.5)
        assert half["depth_m"].shape == full["depth_m"].shape == (1, 1, 96, 96)
        assert half["confidence"].shape == (1, 1, 96, 96)
        assert abs(centre_depth_m(half) - depth_m) / depth_m < 0.15
        assert abs(centre_depth_m(half) - centre_depth_m(full)) / depth_m < 0.1
    with pytest.raises(ValueError, match="physics_scale"):
        models.create("sweepnet_physics_test", physics_scale=0.0)


@pytest.fixture(autouse=True)
def _tests_on_path(monkeypatch):
    import pathlib
    import sys

    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parents[1]))
    yield
    sys.modules.pop("test_defocus_volume", None)
