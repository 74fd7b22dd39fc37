"""SweepNet specifics: the vote stays inside the sweep; the extrapolation head reaches beyond
it, by a bounded amount, and starts as the identity (warm starts from vote-only weights)."""

from __future__ import annotations

import pytest
import torch

from focaldepth import models
from focaldepth.models.sweepnet import EXTRAPOLATION_SWEEPS, FARTHEST_FRACTION


def _depth(model, inputs) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(*inputs)["depth_m"]


def test_the_vote_alone_stays_between_the_nearest_and_farthest_focus(make_inputs):
    inputs = make_inputs(slices=5, near_m=0.5, far_m=3.0)
    depth = _depth(models.create("sweepnet_test"), inputs)
    assert depth.min() >= 0.5 - 1e-5 and depth.max() <= 3.0 + 1e-5


def test_a_fresh_extrapolation_head_leaves_the_vote_unchanged(make_inputs):
    inputs = make_inputs(slices=5)
    extrapolating = models.create("sweepnet_test", extrapolate=True)
    vote_only = models.create("sweepnet_test")
    state = {k: v for k, v in extrapolating.state_dict().items() if not k.startswith("offset_head")}
    vote_only.load_state_dict(state, strict=True)
    assert torch.allclose(_depth(extrapolating, inputs), _depth(vote_only, inputs), rtol=1e-5)


def test_the_extrapolation_head_reaches_beyond_the_sweep_by_a_bounded_amount(make_inputs):
    near_m, far_m = 0.5, 2.0  # 2.0 .. 0.5 dpt: a sweep 1.5 dpt wide
    inputs = make_inputs(slices=5, near_m=near_m, far_m=far_m)
    model = models.create("sweepnet_test", extrapolate=True)
    vote_dpt = 1 / _depth(model, inputs)  # fresh head: the vote
    with torch.no_grad():
        model.offset_head.bias.fill_(20.0)  # tanh -> +1: the largest step towards the camera
    nearer_dpt = 1 / _depth(model, inputs)
    assert torch.allclose(nearer_dpt - vote_dpt, torch.full_like(vote_dpt, EXTRAPOLATION_SWEEPS * 1.5), atol=1e-4)
    with torch.no_grad():
        model.offset_head.bias.fill_(-20.0)
    farther_dpt = 1 / _depth(model, inputs)
    assert torch.allclose(vote_dpt - farther_dpt, torch.full_like(vote_dpt, EXTRAPOLATION_SWEEPS * 1.5), atol=1e-4)


def test_depth_never_passes_the_floor_behind_the_farthest_focus(make_inputs):
    far_m = 10.0  # a sweep 1.9 dpt wide ending at 0.1 dpt: the offset alone could go negative
    inputs = make_inputs(slices=5, near_m=0.5, far_m=far_m)
    model = models.create("sweepnet_test", extrapolate=True)
    with torch.no_grad():
        model.offset_head.bias.fill_(-20.0)
    depth = _depth(model, inputs)
    assert torch.isfinite(depth).all() and (depth > 0).all()
    assert depth.max() <= far_m / FARTHEST_FRACTION * (1 + 1e-4)


def _randomised(model):
    """A SweepNet whose BatchNorm statistics are not the identity (as after training)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
                module.weight.copy_(0.5 + torch.rand(module.num_features, generator=generator))
                module.bias.copy_(0.1 * torch.randn(module.num_features, generator=generator))
    return model


def test_a_widened_sweepnet_computes_the_same_function_and_its_copies_learn_apart(make_inputs):
    from focaldepth.models.sweepnet import widened

    inputs = make_inputs(slices=4)
    narrow = _randomised(models.create("sweepnet", widths=(4, 6, 8, 8)))
    wide = widened(narrow, (4, 10, 12, 16), seed=2)
    assert wide.down3.convs[1][0].weight.shape[0] == 16 and wide.stem[0][0].weight.shape[0] == 4
    assert torch.allclose(_depth(wide, inputs), _depth(narrow, inputs), rtol=1e-5)
    # training mode (batch statistics) too, and the copies of a channel get different gradients
    narrow.train()
    wide.train()
    out_wide = wide(*inputs)["depth_m"]
    assert torch.allclose(out_wide, narrow(*inputs)["depth_m"], rtol=1e-4)
    out_wide.mean().backward()
    grads = wide.down2.convs[1][0].weight.grad.flatten(1)
    assert torch.unique(grads.norm(dim=1)).numel() == grads.shape[0]


def test_widening_refuses_a_narrower_or_changed_first_level():
    from focaldepth.models.sweepnet import widened

    narrow = models.create("sweepnet", widths=(4, 6, 8, 8))
    for widths in ((6, 6, 8, 8), (4, 4, 8, 8), (4, 6, 8)):
        with pytest.raises(ValueError, match="widths"):
            widened(narrow, widths)
