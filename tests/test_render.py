"""Physics and behaviour of the occlusion-aware defocus renderer (small images, fast)."""

import itertools
import math
import re

import kornia
import numpy as np
import pytest
import torch

from focaldepth.optics import coc_px, depth_from_coc
from focaldepth.render import (
    FocalStackRenderer,
    disk_kernel,
    fast_fft_size,
    gaussian_kernel,
    layer_coc_px,
    layer_weights,
    reflect_pad,
    render_focal_stack,
)

# A 25 mm f/2 lens on a sensor with 10 um pixels, focused at 1 m (CoC ~ 0.8 px per cm of
# defocus near the focus plane; a 1 m-to-0.5 m step is ~31 px).
FOCAL_LENGTH_M, F_NUMBER, PIXEL_PITCH_M = 0.025, 2.0, 1e-5
FOCUS_M = 1.0


def camera(batch: int = 1, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor([[FOCAL_LENGTH_M, F_NUMBER, PIXEL_PITCH_M]] * batch, dtype=dtype)


def depth_for_coc(coc_px_value: float, side: str = "near") -> float:
    """The depth whose CoC is ``coc_px_value`` pixels when focused at FOCUS_M."""
    near, far = depth_from_coc(coc_px_value * PIXEL_PITCH_M, FOCUS_M, FOCAL_LENGTH_M, F_NUMBER)
    return near if side == "near" else far


def focus(*distances_m: float, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor([list(distances_m)], dtype=dtype)


def texture(height: int, width: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, channels, height, width, generator=generator)


def plane(height: int, width: int, depth_m: float) -> torch.Tensor:
    return torch.full((1, 1, height, width), depth_m)


def render(image, depth_m, focus_m, **kwargs):
    return render_focal_stack(image, depth_m, focus_m, camera(image.shape[0], image.dtype), **kwargs)


def line_spread_width_px(edge_profile: torch.Tensor) -> float:
    """Blur diameter from a step-edge profile: 4 x the standard deviation of the line-spread
    function (its derivative). A uniform disk of diameter c has a per-axis std of c / 4, and
    so has the Gaussian option (sigma = c / 4); the 1/12 px^2 of pixel sampling is removed."""
    lsf = edge_profile.double().diff()
    x = torch.arange(lsf.numel(), dtype=torch.float64)
    mean = (lsf * x).sum() / lsf.sum()
    variance = (lsf * (x - mean) ** 2).sum() / lsf.sum()
    return 4.0 * math.sqrt(max(float(variance) - 1.0 / 12.0, 0.0))


# --- helpers ---------------------------------------------------------------------------


def test_test_camera_produces_the_intended_coc():
    assert coc_px(depth_for_coc(30.0), FOCUS_M, FOCAL_LENGTH_M, F_NUMBER, PIXEL_PITCH_M) == pytest.approx(30.0)


def test_disk_kernel_is_normalised_has_the_disk_second_moment_and_is_identity_below_a_pixel():
    kernels = disk_kernel(torch.tensor([0.0, 0.9, 12.0, 45.0]), radius_px=24)
    assert kernels.shape == (4, 49, 49)
    torch.testing.assert_close(kernels.sum(dim=(-2, -1)), torch.ones(4))
    identity = torch.zeros(49, 49)
    identity[24, 24] = 1.0
    torch.testing.assert_close(kernels[0], identity)
    torch.testing.assert_close(kernels[1], identity)
    offsets = torch.arange(-24, 25, dtype=torch.float32)
    for kernel, diameter in ((kernels[2], 12.0), (kernels[3], 45.0)):
        variance_x = (kernel.sum(dim=0) * offsets**2).sum()
        # per-axis variance of a uniform disk is r^2 / 4 = (c / 4)^2
        assert float(variance_x) == pytest.approx((diameter / 4) ** 2, rel=0.03)
        assert float(kernel[24, 24 + int(diameter / 2) + 2]) == 0.0  # nothing beyond the rim


def test_disk_kernel_changes_smoothly_with_sub_pixel_radius():
    small_step = disk_kernel(torch.tensor([20.0, 20.02]), radius_px=12)
    assert 0 < float((small_step[0] - small_step[1]).abs().sum()) < 0.01


def test_gaussian_kernel_has_sigma_a_quarter_of_the_coc():
    kernel = gaussian_kernel(torch.tensor(16.0))
    radius = kernel.shape[-1] // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    variance_x = (kernel.sum(dim=0) * offsets**2).sum()
    assert float(variance_x) == pytest.approx(4.0**2 + 1 / 12, rel=0.03)
    torch.testing.assert_close(kernel.sum(), torch.tensor(1.0))


def test_layer_weights_sum_to_one_and_are_spaced_in_inverse_depth():
    depth = torch.tensor([1.0, 1.25, 2.0, 4.0, 1.6]).view(1, 1, 1, 5)
    weights, layer_depth = layer_weights(depth, 4)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(1, 1, 5))
    # far (1/4 dpt) to near (1 dpt), evenly in dioptres: 0.25, 0.5, 0.75, 1.0
    torch.testing.assert_close(1.0 / layer_depth, torch.tensor([[0.25, 0.5, 0.75, 1.0]]))
    torch.testing.assert_close(weights[0, :, 0, 2], torch.tensor([0.0, 1.0, 0.0, 0.0]))  # on a layer
    # 1/1.6 = 0.625 dpt lies halfway between layers 1 (0.5) and 2 (0.75)
    torch.testing.assert_close(weights[0, :, 0, 4], torch.tensor([0.0, 0.5, 0.5, 0.0]))
    hard, _ = layer_weights(depth, 4, soft=False)
    assert torch.all(hard.sum(dim=1) == 1) and set(hard.unique().tolist()) == {0.0, 1.0}


def test_reflect_pad_matches_numpy_even_when_the_pad_exceeds_the_image():
    x = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4)
    for pads in ((1, 2, 3, 1), (7, 5, 9, 4)):
        expected = np.pad(x.numpy()[0, 0], ((pads[0], pads[1]), (pads[2], pads[3])), mode="reflect")
        np.testing.assert_array_equal(reflect_pad(x, *pads)[0, 0].numpy(), expected)


def test_fast_fft_size_is_2_3_5_smooth():
    assert [fast_fft_size(n) for n in (1, 7, 11, 97, 440, 721)] == [1, 8, 12, 100, 450, 729]


# --- rendering physics -----------------------------------------------------------------


def test_in_focus_plane_comes_out_unchanged():
    image = texture(40, 56)
    stack = render(image, plane(40, 56, FOCUS_M), focus(FOCUS_M, FOCUS_M))
    assert stack.shape == (1, 2, 3, 40, 56)
    assert float((stack - image[:, None]).abs().max()) < 1e-3


@pytest.mark.parametrize("psf", ["disk", "gaussian"])
@pytest.mark.parametrize("coc", [12.0, 30.0])
def test_step_edge_blur_width_matches_the_coc(coc, psf):
    width = 200
    image = torch.zeros(1, 1, 8, width)
    image[..., width // 2:] = 1.0
    depth = plane(8, width, depth_for_coc(coc))
    profile = render(image, depth, focus(FOCUS_M), psf=psf)[0, 0, 0, 4]
    assert line_spread_width_px(profile) == pytest.approx(coc, rel=0.10)
    if psf == "disk":  # a disk's edge response is flat beyond half the CoC on either side
        reach = math.ceil(coc / 2 + 1)
        assert float(profile[: width // 2 - reach].abs().max()) < 1e-4
        assert float((profile[width // 2 + reach:] - 1).abs().max()) < 1e-4


def test_mean_intensity_is_conserved_for_a_defocused_plane_and_a_slanted_scene():
    image = texture(64, 64)
    stack = render(image, plane(64, 64, depth_for_coc(20.0)), focus(FOCUS_M))
    assert float(stack.mean()) == pytest.approx(float(image.mean()), rel=2e-3)
    # a slanted plane swept through focus: every slice keeps the mean
    depth = torch.linspace(0.6, 2.0, 64).view(1, 1, 1, 64).expand(1, 1, 64, 64).contiguous()
    stack = render(image, depth, focus(0.6, 1.0, 2.0), num_layers=12)
    for slice_ in stack[0]:
        assert float(slice_.mean()) == pytest.approx(float(image.mean()), rel=5e-3)


def test_constant_image_stays_constant_across_depth_edges():
    """The blurred-alpha normalisation leaves no dark halo where layers meet."""
    image = torch.full((1, 3, 48, 48), 0.6)
    depth = plane(48, 48, 3.0)
    depth[..., 12:36, 12:36] = 0.5
    depth[..., 30:, :20] = 1.0
    stack = render(image, depth, focus(0.5, 1.0, 3.0), num_layers=8)
    assert float((stack - 0.6).abs().max()) < 1e-3


def _square_scene(foreground_value: float, foreground_m: float = 0.5, background_m: float = 2.0,
                  size: int = 64):
    """A square (rows and columns 20..43) at ``foreground_m`` in front of a bright background."""
    image = torch.ones(1, 1, size, size)
    image[..., 20:44, 20:44] = foreground_value
    depth = plane(size, size, background_m)
    depth[..., 20:44, 20:44] = foreground_m
    return image, depth


def test_sharp_foreground_in_focus_is_not_overlapped_by_the_blurred_background():
    image, depth = _square_scene(foreground_value=0.0)
    coc_background = coc_px(2.0, 0.5, FOCAL_LENGTH_M, F_NUMBER, PIXEL_PITCH_M)
    assert coc_background > 15
    rendered = render(image, depth, focus(0.5))[0, 0, 0]
    # the black square keeps its sharp edge: no bright background bleeds over it
    assert float(rendered[20:44, 20:44].abs().max()) < 1e-3
    # and the background is (uniformly bright here) blurred but not darkened by it
    assert float((rendered[:, :18] - 1.0).abs().max()) < 1e-3


def test_blurred_foreground_spreads_over_the_sharp_background():
    image, depth = _square_scene(foreground_value=0.0, foreground_m=0.7, background_m=1.0)
    background = texture(64, 64, channels=1, seed=3)[0, 0]
    image = torch.where(depth > 0.8, background, image)
    coc_foreground = coc_px(0.7, 1.0, FOCAL_LENGTH_M, F_NUMBER, PIXEL_PITCH_M)
    assert 10 < coc_foreground < 20
    rendered = render(image, depth, focus(1.0))[0, 0, 0]
    ratio = rendered / background
    # the blurred dark square darkens the background just outside its edge...
    assert float(ratio[24:40, 44:47].mean()) < 0.75
    # ...while the background beyond its blur stays sharp and unchanged
    far = slice(44 + int(coc_foreground / 2) + 2, 64)
    assert float((rendered[:, far] - background[:, far]).abs().max()) < 1e-3
    # ...fading out over half the CoC: the darkening falls off monotonically with distance
    reach = int(coc_foreground / 2)
    profile = ratio[24:40, 44:44 + reach + 1].mean(dim=0)
    assert bool((profile.diff() > 0).all()) and float(profile[0]) < 0.6 and float(profile[-1]) > 0.95


def _ikoma_reference(image, layer_index, layer_depth_m, focus_m):
    """Direct evaluation of the documented equations with kornia's spatial convolution:
    out = sum_k c~_k prod_{j nearer than k} (1 - a~_k) / (1 - prod_k (1 - a~_k)), with
    c~_k = h_k*(alpha_k c) / h_k*A_k, a~_k = h_k*alpha_k / h_k*A_k, A_k = sum_{j <= k} alpha_j
    (layer 0 farthest), and blurred alphas floored at 1e-3."""
    alphas = [(layer_index == k).to(image.dtype) for k in range(len(layer_depth_m))]
    slices = []
    for focus_distance_m in focus_m:
        colours, alphas_blurred = [], []
        for k, depth_m in enumerate(layer_depth_m):
            kernel = disk_kernel(torch.tensor(coc_px(depth_m, focus_distance_m, FOCAL_LENGTH_M,
                                                     F_NUMBER, PIXEL_PITCH_M), dtype=image.dtype))

            def blur(x, kernel=kernel):
                return kornia.filters.filter2d(x, kernel[None], border_type="reflect")

            accumulated = blur(sum(alphas[:k + 1])).clamp_min(1e-3)
            colours.append(blur(alphas[k] * image) / accumulated)
            alphas_blurred.append((blur(alphas[k]) / accumulated).clamp(0, 1))
        out = torch.zeros_like(image)
        for k in range(len(layer_depth_m)):
            transmitted = torch.ones_like(alphas_blurred[0])
            for j in range(k + 1, len(layer_depth_m)):
                transmitted = transmitted * (1 - alphas_blurred[j])
            out = out + colours[k] * transmitted
        coverage = 1 - math.prod(1 - a for a in alphas_blurred)
        slices.append(out / coverage.clamp_min(1e-3))
    return torch.stack(slices, dim=1)


def test_matches_a_direct_evaluation_of_the_layered_compositing_equations():
    # float64: in float32 both sides differ by round-off amplified by the 1e-3 alpha floor
    image = texture(48, 48, seed=5).double()
    # three planes whose inverse depths (0.5, 1.25, 2 dpt) are exactly the 3 layers
    layer_depth_m = [2.0, 0.8, 0.5]
    layer_index = torch.zeros(1, 1, 48, 48, dtype=torch.long)
    layer_index[..., 10:40, 24:] = 1
    layer_index[..., 16:30, 8:30] = 2
    depth = torch.tensor(layer_depth_m, dtype=torch.float64)[layer_index]
    focus_m = (0.5, 0.8, 2.0)
    stack = render(image, depth, focus(*focus_m, dtype=torch.float64), num_layers=3, soft_layers=False)
    expected = _ikoma_reference(image, layer_index, layer_depth_m, focus_m)
    torch.testing.assert_close(stack, expected, atol=1e-9, rtol=0)


def test_more_defocus_means_less_high_frequency_energy():
    image = texture(64, 64)
    energies = []
    for coc in (0.0, 2.0, 5.0, 10.0, 20.0, 40.0):
        depth = plane(64, 64, depth_for_coc(coc) if coc else FOCUS_M)
        slice_ = render(image, depth, focus(FOCUS_M))[:, 0]
        energies.append(float(kornia.filters.laplacian(slice_, 3).pow(2).mean()))
    assert all(a > b for a, b in itertools.pairwise(energies)), energies


def test_coc_of_45_px_equals_direct_convolution_with_the_disk():
    image = texture(96, 112)
    coc = 45.0
    stack = render(image, plane(96, 112, depth_for_coc(coc)), focus(FOCUS_M))
    kernel = disk_kernel(torch.tensor(coc))
    direct = kornia.filters.filter2d(image, kernel[None], border_type="reflect")
    torch.testing.assert_close(stack[:, 0], direct, atol=1e-4, rtol=0)


def test_batch_items_render_independently_and_module_matches_function():
    images = torch.cat([texture(32, 40, seed=1), texture(32, 40, seed=2)])
    depth = torch.cat([plane(32, 40, 0.7), torch.linspace(0.6, 2.0, 40).expand(1, 1, 32, 40)])
    focus_m = torch.tensor([[0.8, 1.5], [1.0, 0.6]])
    cameras = torch.tensor([[0.025, 2.0, 1e-5], [0.035, 2.8, 8e-6]])
    renderer = FocalStackRenderer(num_layers=12)
    batched = renderer(images, depth, focus_m, cameras)
    for b in range(2):
        single = render_focal_stack(images[b:b + 1], depth[b:b + 1], focus_m[b:b + 1],
                                    cameras[b:b + 1], num_layers=12)
        torch.testing.assert_close(batched[b:b + 1], single, atol=1e-5, rtol=0)


def test_layer_coc_uses_the_thin_lens_formula():
    depth = torch.linspace(0.5, 2.0, 16).expand(1, 1, 4, 16)
    _, layer_depth = layer_weights(depth, 5)
    coc = layer_coc_px(layer_depth, focus(1.0), camera())
    expected = coc_px(layer_depth, 1.0, FOCAL_LENGTH_M, F_NUMBER, PIXEL_PITCH_M)
    torch.testing.assert_close(coc[..., 0], expected)


# --- differentiability -----------------------------------------------------------------


def _tiny_case():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=generator).requires_grad_()
    depth = (0.6 + 1.4 * torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=generator)).requires_grad_()
    focus_m = focus(0.7, 1.5, dtype=torch.float64)
    # CoCs of a few pixels on an 8x8 image
    cam = torch.tensor([[0.01, 2.0, 5e-6]], dtype=torch.float64)
    return image, depth, focus_m, cam


@pytest.mark.parametrize("psf, fast_mode", [("disk", False), ("gaussian", True)])
def test_gradcheck_wrt_image_and_depth(psf, fast_mode):
    image, depth, focus_m, cam = _tiny_case()
    assert float(layer_coc_px(layer_weights(depth.detach(), 4)[1], focus_m, cam).max()) > 2.0

    def fn(image_, depth_):
        return render_focal_stack(image_, depth_, focus_m, cam, num_layers=4, psf=psf)

    assert torch.autograd.gradcheck(fn, (image, depth), fast_mode=fast_mode)


def test_soft_layers_give_depth_gradients_and_hard_layers_do_not():
    image, depth, focus_m, cam = _tiny_case()
    interior = torch.ones_like(depth, dtype=torch.bool)
    interior.view(-1)[depth.detach().view(-1).argmin()] = False  # the range ends move the grid
    interior.view(-1)[depth.detach().view(-1).argmax()] = False
    for soft in (True, False):
        depth.grad = None
        render_focal_stack(image, depth, focus_m, cam, num_layers=4, soft_layers=soft).sum().backward()
        grad = depth.grad[interior]
        assert (grad.abs().max() > 1e-4) if soft else (grad.abs().max() == 0)


# --- input checks ----------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"image": torch.rand(3, 8, 8)}, "image must be (B, C, H, W)"),
    ({"depth_m": torch.ones(1, 1, 8, 9)}, "depth_m must be (B, 1, H, W)"),
    ({"focus_distance_m": torch.ones(2)}, "focus_distance_m must be (B, S)"),
    ({"camera": torch.ones(1, 2)}, "camera must be (B, 3)"),
    ({"num_layers": 1}, "num_layers must be an integer >= 2"),
    ({"psf": "box"}, "psf must be one of"),
    ({"depth_m": torch.zeros(1, 1, 8, 8)}, "depth_m must be finite and > 0"),
    ({"focus_distance_m": torch.tensor([[0.01]])}, "beyond the focal length"),
])
def test_bad_inputs_give_clear_messages(change, message):
    arguments = {"image": torch.rand(1, 3, 8, 8), "depth_m": torch.ones(1, 1, 8, 8),
                 "focus_distance_m": torch.tensor([[1.0]]), "camera": camera()}
    options = {key: value for key, value in change.items() if key in ("num_layers", "psf")}
    arguments.update({key: value for key, value in change.items() if key not in options})
    with pytest.raises(ValueError, match=re.escape(message)):
        render_focal_stack(**arguments, **options)


# --- complete surfaces: see-through defocused occluders (render_surfaces) -----------------------


def _card_over_wall(size_px: int, card_m: float, wall_m: float, height: int = 64, width: int = 64):
    """A textured wall and a flat grey card of ``size_px`` in its middle, as complete surfaces."""
    from focaldepth.render import render_surfaces  # noqa: F401  (imported by the callers)

    wall = texture(height, width, seed=5)[0]
    mask = torch.zeros(1, height, width)
    top, left = (height - size_px) // 2, (width - size_px) // 2
    mask[:, top:top + size_px, left:left + size_px] = 1.0
    colour = torch.stack([wall, 0.2 * mask.expand(3, -1, -1)])
    alpha = torch.stack([torch.ones(1, height, width), mask])
    depth = torch.stack([torch.full((1, height, width), wall_m), torch.full((1, height, width), card_m)])
    return wall, mask, colour, alpha, depth


def test_complete_surfaces_render_as_the_all_in_focus_renderer_where_nothing_is_hidden():
    from focaldepth.render import render_surfaces

    wall, mask, colour, alpha, depth = _card_over_wall(20, 0.7, 1.0)
    cam = camera()[0]
    # in focus on the card, the wall blurred behind it: nothing hidden matters
    out = render_surfaces(colour, alpha, depth, focus(0.7)[0], cam)
    aif = wall * (1 - mask) + 0.2 * mask
    reference = render(aif[None], torch.where(mask > 0, 0.7, 1.0)[None], focus(0.7))[0]
    torch.testing.assert_close(out[:, :, 25:39, 25:39], reference[:, :, 25:39, 25:39], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, :, :, :8], reference[:, :, :, :8], atol=1e-4, rtol=0)


def test_a_small_heavily_defocused_occluder_turns_see_through_unlike_the_aif_renderer():
    from focaldepth.render import render_surfaces

    # a 6 px card blurred by a CoC of ~15 px over a wall in focus
    wall, mask, colour, alpha, depth = _card_over_wall(6, 0.7, 1.0)
    assert 10 < coc_px(0.7, 1.0, FOCAL_LENGTH_M, F_NUMBER, PIXEL_PITCH_M) < 20
    out = render_surfaces(colour, alpha, depth, focus(1.0)[0], camera()[0])[0]
    aif = wall * (1 - mask) + 0.2 * mask
    old = render(aif[None], torch.where(mask > 0, 0.7, 1.0)[None], focus(1.0))[0, 0]
    centre = (slice(29, 35), slice(29, 35))
    # the card's light spreads over ~15^2 px: at its centre the wall shows through (the
    # card covers 6^2 / (pi 7.5^2) ~ 20 % of the aperture's view there) ...
    see_through = float((out[(slice(None), *centre)] - wall[(slice(None), *centre)]).abs().mean())
    stays = float((old[(slice(None), *centre)] - wall[(slice(None), *centre)]).abs().mean())
    assert see_through < 0.5 * stays
    # ... and the wall's own detail is still there (correlation with the sharp wall)
    a, b = out[(slice(None), *centre)].flatten(), wall[(slice(None), *centre)].flatten()
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.5


def test_an_opaque_surface_between_two_layers_stays_opaque():
    from focaldepth.render import render_surfaces

    # the card's depth between layer depths: it must still hide the wall completely in focus
    wall, mask, colour, alpha, depth = _card_over_wall(30, 0.7, 1.0)
    depth = torch.cat([depth, torch.full_like(depth[:1], 0.5)])  # a third surface sets the grid
    colour = torch.cat([colour, torch.zeros_like(colour[:1])])
    alpha = torch.cat([alpha, torch.zeros_like(alpha[:1])])
    alpha[2, :, :2, :2] = 1.0  # a speck at 0.5 m in a corner
    out = render_surfaces(colour, alpha, depth, focus(0.7)[0], camera()[0], num_layers=7)
    torch.testing.assert_close(out[0, :, 28:36, 28:36], torch.full((3, 8, 8), 0.2), atol=1e-4, rtol=0)
