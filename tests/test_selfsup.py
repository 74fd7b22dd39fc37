"""Self-supervised adaptation (focaldepth.train.selfsup): the loss falls, depth error on a
stack rendered with known depth does not get worse, the loop is deterministic."""

import kornia
import pytest
import torch

from focaldepth.errors import UserError
from focaldepth.metrics import depth_metrics
from focaldepth.models import create
from focaldepth.predict import load_model
from focaldepth.render import render_focal_stack
from focaldepth.train.selfsup import (AdaptSettings, UnlabeledStack, adapt, all_in_focus_estimate,
                                      fit_blur_scale, focus_composite, reconstruction_error,
                                      reconstruction_loss, sweep_normalised_inverse_depth, with_blur_scale)

HEIGHT, WIDTH = 32, 48
FOCUS = torch.tensor([[0.6, 0.8, 1.1, 1.5, 2.0]])
# 25 mm f/2, 30 um pixels: 10.4 px of blur per dioptre, 12 px over the sweep.
CAMERA = torch.tensor([[0.025, 2.0, 3e-5]])


def scene(seed=0):
    """Texture on two planes (0.7 m left, 1.6 m right) tilted in inverse depth from top to bottom."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, HEIGHT // 4, WIDTH // 4, generator=generator)
    image = torch.nn.functional.interpolate(image, size=(HEIGHT, WIDTH), mode="bilinear")
    depth = torch.full((1, 1, HEIGHT, WIDTH), 1.6)
    depth[..., : WIDTH // 2] = 0.7
    depth = 1.0 / (1.0 / depth + 0.3 * torch.linspace(0, 1, HEIGHT).view(1, 1, HEIGHT, 1))
    return image, depth


def rendered_stack(camera=CAMERA, seed=0):
    """8-bit frames blurred in linear light by the renderer (as adapt's loss assumes)."""
    image, depth = scene(seed)
    linear = render_focal_stack(kornia.color.rgb_to_linear_rgb(image), depth, FOCUS, camera, num_layers=32)
    frames = kornia.color.linear_rgb_to_rgb(linear.flatten(0, 1).clamp(0, 1)).unflatten(0, linear.shape[:2])
    return UnlabeledStack((frames * 255).round() / 255, FOCUS, camera), image, depth


def absrel(model, stack, depth):
    with torch.no_grad():
        predicted = model(stack.frames, stack.focus_distance_m, stack.camera)["depth_m"]
    return float(depth_metrics(predicted, depth, torch.ones_like(depth, dtype=torch.bool))["absrel"])


def test_loss_is_lowest_at_the_true_depth_with_the_true_sharp_image():
    stack, image, depth = rendered_stack()
    settings = AdaptSettings()
    at_truth = float(reconstruction_loss(depth, stack, image, settings))
    flat = float(reconstruction_loss(torch.full_like(depth, 1.0), stack, image, settings))
    swapped = float(reconstruction_loss(depth.flip(-1), stack, image, settings))
    assert at_truth < 0.25 * min(flat, swapped)


def test_focus_composite_is_sharper_than_any_frame():
    stack, image, _ = rendered_stack()
    composite = focus_composite(stack.frames)
    error = (composite - image).abs().mean()
    assert all(error < (stack.frames[0, s] - image).abs().mean() for s in range(stack.frames.shape[1]))


def test_all_in_focus_estimate_prefers_the_models_own_and_is_detached():
    frames = torch.rand(1, 3, 3, 8, 8)
    own = torch.rand(1, 3, 8, 8, requires_grad=True)
    assert torch.equal(all_in_focus_estimate({"aif": own}, frames), own.detach())
    assert not all_in_focus_estimate({"all_in_focus": own}, frames).requires_grad
    assert all_in_focus_estimate({}, frames).shape == (1, 3, 8, 8)


def test_sweep_normalised_inverse_depth_is_zero_far_one_near():
    focus = torch.tensor([[0.5, 1.0, 2.0]])
    value = sweep_normalised_inverse_depth(torch.tensor([2.0, 0.5]).view(1, 1, 1, 2), focus)
    assert value.flatten().tolist() == pytest.approx([0.0, 1.0])


def test_adaptation_lowers_the_loss_and_does_not_worsen_depth():
    """A trained model on a synthetic stack: 20 steps lower the reconstruction loss and the
    depth error against the depth the stack was rendered from (measured 0.057 -> 0.032)."""
    stack, _, depth = rendered_stack()
    model = load_model("sweepnet_real_vote")
    settings = AdaptSettings(steps=20, lr=1e-3, crop_px=None)
    adapted, log = adapt(model, [stack], settings=settings)
    assert reconstruction_error(adapted, [stack]) < 0.9 * reconstruction_error(model, [stack])
    first, last = log.steps[0]["defocus"], sum(s["defocus"] for s in log.steps[-3:]) / 3
    assert last < first
    before, after = absrel(model, stack, depth), absrel(adapted, stack, depth)
    assert after <= before
    assert log.cpu_s > 0 and len(log.steps) == 20


def test_anchor_keeps_the_prediction_nearer_the_start():
    stack, _, _ = rendered_stack()
    model = load_model("sweepnet_real_vote")

    def moved(anchor_weight):
        adapted, _ = adapt(model, [stack], steps=10, lr=1e-2, crop_px=None, anchor_weight=anchor_weight,
                           smooth_weight=0.0)
        with torch.no_grad():
            a, b = (m(stack.frames, FOCUS, CAMERA)["depth_m"] for m in (model, adapted))
        return float((sweep_normalised_inverse_depth(a, FOCUS) - sweep_normalised_inverse_depth(b, FOCUS)).abs().mean())

    assert moved(100.0) < moved(0.0)


def test_adapt_is_deterministic_and_leaves_the_input_model_alone():
    stack, _, _ = rendered_stack()
    model = create("sweepnet_test")
    original = {k: v.clone() for k, v in model.state_dict().items()}
    runs = [adapt(model, [stack, stack], steps=3, lr=1e-3, crop_px=16, seed=4)[0] for _ in range(2)]
    for key, value in runs[0].state_dict().items():
        assert torch.equal(value, runs[1].state_dict()[key]), key
        assert torch.equal(model.state_dict()[key], original[key]), key
    assert not all(torch.equal(v, original[k]) for k, v in runs[0].state_dict().items())


def test_batchnorm_statistics_stay_those_of_training():
    stack, _, _ = rendered_stack()
    model = create("sweepnet_test")
    adapted, _ = adapt(model, [stack], steps=2, lr=1e-3, crop_px=None)
    for key, value in model.state_dict().items():
        if "running_" in key:
            assert torch.equal(value, adapted.state_dict()[key]), key


def test_fit_blur_scale_finds_the_lens():
    """Frames rendered with twice the blur of the stand-in lens: the fit says about 2."""
    stack, image, depth = rendered_stack(camera=torch.tensor([[0.025, 1.0, 3e-5]]))
    stand_in = UnlabeledStack(stack.frames, FOCUS, CAMERA)

    class Oracle(torch.nn.Module):  # the true depth and sharp image: only the scale is unknown
        def forward(self, frames, focus, camera):
            return {"depth_m": depth, "aif": image}

    scale, losses = fit_blur_scale(Oracle(), [stand_in])
    assert scale == pytest.approx(2.0, rel=0.2) and len(losses) > 3
    assert with_blur_scale(stand_in, 2.0).render_camera()[0, 1] == pytest.approx(1.0)


def test_bad_settings_and_stacks_are_user_errors():
    stack, _, _ = rendered_stack()
    model = create("sweepnet_test")
    with pytest.raises(UserError, match="lr"):
        adapt(model, [stack], steps=1, lr=0.0)
    with pytest.raises(UserError, match="no stacks"):
        adapt(model, [], steps=1)
    unknown = UnlabeledStack(stack.frames, torch.full_like(FOCUS, float("nan")), CAMERA)
    with pytest.raises(UserError, match="focus distances"):
        adapt(model, [unknown], steps=1)
