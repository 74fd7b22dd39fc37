"""focaldepth.warp: the backward warp along optical flow that models, losses and metrics share."""

from __future__ import annotations

import pytest
import torch

from focaldepth import metrics
from focaldepth.warp import warp_to_current


def test_integer_flow_moves_the_previous_frame_and_marks_what_left_it():
    prev = torch.arange(5 * 6, dtype=torch.float32).view(1, 1, 5, 6)
    flow = torch.zeros(1, 2, 5, 6)
    flow[:, 0] = 2.0  # pixel x of frame t was at x + 2 in frame t-1
    warped, inside = warp_to_current(prev, flow)
    assert torch.equal(warped[..., :4], prev[..., 2:])
    assert inside.shape == (1, 1, 5, 6)
    assert inside[..., :4].all() and not inside[..., 4:].any()


def test_half_pixel_flow_interpolates_bilinearly():
    prev = torch.tensor([[[[0.0, 1.0, 2.0]] * 2]])
    flow = torch.zeros(1, 2, 2, 3)
    flow[:, 0] = 0.5
    warped, _ = warp_to_current(prev, flow)
    assert warped[0, 0, 0, :2].tolist() == pytest.approx([0.5, 1.5])


def test_flow_of_the_wrong_shape_says_what_was_expected():
    with pytest.raises(ValueError, match=r"expected \(B, 2, H, W\)"):
        warp_to_current(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 5))


def test_metrics_keeps_the_old_name():
    assert metrics.warp_to_current is warp_to_current
