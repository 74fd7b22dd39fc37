"""Physics of the relative-blur plane sweep (focaldepth.defocus_volume)."""

from __future__ import annotations

import kornia
import pytest
import torch

from focaldepth.classical import ClassicalDFF
from focaldepth.defocus_volume import (
    DefocusVolume,
    defocus_volume_depth,
    hypotheses_dpt,
    noise_std_srgb,
    psf_transfer,
    radial_frequency,
)
from focaldepth.optics import dioptric_ramp
from focaldepth.render import disk_kernel, render_focal_stack

SIZE = 96
# 50 mm f/1.4 on a 320 px wide APS-C image: 24 px of blur per dioptre (a sweep of 12 px).
CAMERA = torch.tensor([[0.05, 1.4, 23.6e-3 / 320]])
FOCUS = torch.tensor([list(dioptric_ramp(1.2, 3.0, 5))], dtype=torch.float32)


def textured_plane_stack(depth_m: float, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    texture = torch.rand(1, 3, SIZE // 4, SIZE // 4, generator=generator)
    texture = torch.nn.functional.interpolate(texture, size=(SIZE, SIZE), mode="bicubic").clamp(0, 1)
    depth = torch.full((1, 1, SIZE, SIZE), depth_m)
    stack = render_focal_stack(texture, depth, FOCUS, CAMERA, num_layers=8)
    stack = (stack + noise * torch.randn(stack.shape, generator=generator)).clamp(0, 1)
    return kornia.color.linear_rgb_to_rgb(stack.flatten(0, 1)).unflatten(0, stack.shape[:2])


def centre_depth_m(outputs: dict) -> float:
    return float(outputs["depth_m"][..., 16:-16, 16:-16].median())


@pytest.mark.parametrize("depth_m", [1.5, 2.5])
def test_plane_inside_the_sweep_is_recovered(depth_m):
    outputs = defocus_volume_depth(textured_plane_stack(depth_m, noise=0.01), FOCUS, CAMERA)
    assert centre_depth_m(outputs) == pytest.approx(depth_m, rel=0.04)


@pytest.mark.parametrize("depth_m", [4.0, 6.0])
def test_plane_beyond_the_farthest_focus_is_recovered(depth_m):
    """Beyond the 3 m end of the sweep a vote over focus distances can only say 3 m; the
    frames' different blurs still tell the depth."""
    stack = textured_plane_stack(depth_m, noise=0.01)
    outputs = defocus_volume_depth(stack, FOCUS, CAMERA)
    assert centre_depth_m(outputs) == pytest.approx(depth_m, rel=0.10)
    classical = ClassicalDFF()(stack, FOCUS, CAMERA)
    assert centre_depth_m(classical) <= 3.0 + 1e-4


def test_noise_correction_removes_the_bias_towards_more_relative_blur():
    """With little blur per frame (35 mm f/2.8: 3 px over the sweep) uncorrected noise pulls
    the estimate towards depths where the frames' blurs differ most."""
    camera = torch.tensor([[0.035, 2.8, 23.6e-3 / 320]])
    generator = torch.Generator().manual_seed(1)
    texture = torch.rand(1, 3, SIZE // 4, SIZE // 4, generator=generator)
    texture = torch.nn.functional.interpolate(texture, size=(SIZE, SIZE), mode="bicubic").clamp(0, 1)
    stack = render_focal_stack(texture, torch.full((1, 1, SIZE, SIZE), 4.0), FOCUS, camera, num_layers=8)
    stack = (stack + 0.01 * torch.randn(stack.shape, generator=generator)).clamp(0, 1)
    stack = kornia.color.linear_rgb_to_rgb(stack.flatten(0, 1)).unflatten(0, stack.shape[:2])
    corrected = centre_depth_m(defocus_volume_depth(stack, FOCUS, camera))
    uncorrected = centre_depth_m(defocus_volume_depth(stack, FOCUS, camera, denoise=False))
    assert abs(corrected / 4.0 - 1) < abs(uncorrected / 4.0 - 1)
    assert corrected == pytest.approx(4.0, rel=0.15)


def test_confidence_is_low_without_texture():
    textured = defocus_volume_depth(textured_plane_stack(2.0, noise=0.01), FOCUS, CAMERA)
    flat = torch.full((1, 5, 3, SIZE, SIZE), 0.5) + 0.01 * torch.randn(1, 5, 3, SIZE, SIZE,
                                                                       generator=torch.Generator().manual_seed(2))
    untextured = defocus_volume_depth(flat.clamp(0, 1), FOCUS, CAMERA)
    assert float(textured["confidence"].mean()) > 0.5
    assert float(untextured["confidence"].mean()) < 0.5 * float(textured["confidence"].mean())


def test_all_in_focus_is_sharper_than_every_frame():
    stack = textured_plane_stack(3.0)
    # a two-plane scene: left half near, right half far, so no single frame is sharp everywhere
    left = textured_plane_stack(1.2, seed=3)
    stack = torch.cat([left[..., : SIZE // 2], stack[..., SIZE // 2:]], dim=-1)
    aif = DefocusVolume()(stack, FOCUS, CAMERA)["all_in_focus"]

    def detail(image):
        grey = kornia.color.rgb_to_grayscale(image)
        return float(kornia.filters.laplacian(grey, 3).pow(2).mean())

    assert detail(aif) > max(detail(stack[:, s]) for s in range(stack.shape[1]))


def test_disk_transfer_matches_the_renderers_disk_kernel():
    size = 64
    frequency = radial_frequency(size, size, torch.zeros(1))
    for coc in (4.0, 9.0):
        kernel = disk_kernel(torch.tensor(coc))
        radius = kernel.shape[-1] // 2
        image = torch.zeros(size, size)
        image[:2 * radius + 1, :2 * radius + 1] = kernel
        image = torch.roll(image, (-radius, -radius), dims=(0, 1))
        measured = torch.fft.rfft2(image).real
        analytic = psf_transfer(torch.tensor(coc), frequency)
        # the renderer's disk has an anti-aliased rim; away from the first zero they agree
        low = frequency < 0.6 / coc
        assert torch.allclose(measured[low], analytic[low], atol=0.06)


def test_hypotheses_reach_beyond_both_ends_of_the_sweep():
    hypotheses = hypotheses_dpt(FOCUS, 32)
    assert float(hypotheses.min()) <= 0.5 / 3.0 + 1e-6  # twice the farthest focus is covered
    assert float(hypotheses.max()) > 1 / 1.2
    assert float(hypotheses.min()) > 0


def test_noise_estimate_is_close_to_the_added_noise():
    flat = torch.full((1, 3, 1, 128, 128), 0.5)
    noisy = flat + 0.02 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(4))
    estimate = float(noise_std_srgb(noisy[:, :, 0]))
    assert estimate == pytest.approx(0.02, rel=0.1)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="at least 2 frames"):
        defocus_volume_depth(torch.rand(1, 1, 3, 32, 32), FOCUS[:, :1], CAMERA)


def test_cached_relative_blur_filters_give_the_same_costs():
    """The filter memo is exact: a second call (cache hit) returns the first call's costs, and
    a cleared cache recomputes the same values."""
    from focaldepth import defocus_volume

    stack = textured_plane_stack(2.0, noise=0.01)
    defocus_volume._FILTER_CACHE.clear()
    first = defocus_volume_depth(stack, FOCUS, CAMERA)
    assert len(defocus_volume._FILTER_CACHE) == FOCUS.shape[1] - 1  # one entry per adjacent pair
    second = defocus_volume_depth(stack, FOCUS, CAMERA)
    assert torch.equal(first["cost"], second["cost"]) and torch.equal(first["depth_m"], second["depth_m"])
    defocus_volume._FILTER_CACHE.clear()
    assert torch.equal(defocus_volume_depth(stack, FOCUS, CAMERA)["cost"], first["cost"])
