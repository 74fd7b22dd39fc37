"""Real-image check of the renderer (focaldepth.experiments.realcheck): its pieces on synthetic data, and
the check itself on 3 real DFD indoor scenes (skipped when ../shared is absent)."""

from pathlib import Path

import cv2
import kornia
import numpy as np
import pytest
import torch
from skimage import data as skdata

from focaldepth.errors import UserError
from focaldepth.experiments.realcheck import (
    F_NUMBER_SHARP,
    F_NUMBER_WIDE,
    DfdScene,
    dfd_camera,
    effective_f_number,
    estimate_translation_px,
    evaluate_scene,
    focus_sweep_m,
    load_scene,
    match_exposure,
    radius2_map,
    refine_minimum_m,
    translate_srgb,
)
from focaldepth.io.rgbd import list_pairs
from focaldepth.optics import coc_px
from focaldepth.render import render_defocus

DFD_ROOT = Path(__file__).parents[1].parent / "shared" / "data" / "dfd_indoor_train"


def astronaut_srgb(width_px: int) -> torch.Tensor:
    """A real textured image (scikit-image's astronaut, no download), (1, 3, H, W) in [0, 1]."""
    rgb = cv2.resize(skdata.astronaut(), (width_px, round(width_px * 2 / 3)),
                     interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


# --- pieces ----------------------------------------------------------------------------


def test_effective_f_number_adds_the_missing_blur_in_quadrature():
    n_eff = effective_f_number(F_NUMBER_WIDE, F_NUMBER_SHARP)
    assert n_eff == pytest.approx(2.989, abs=1e-3)
    for depth_m in (0.7, 1.2, 2.5, 4.0):
        c_wide, c_sharp, c_eff = (coc_px(depth_m, 1.7, 0.035, n, 36.6e-6)
                                  for n in (F_NUMBER_WIDE, F_NUMBER_SHARP, n_eff))
        assert c_eff**2 + c_sharp**2 == pytest.approx(c_wide**2, rel=1e-9)
    with pytest.raises(ValueError, match="must blur more"):
        effective_f_number(8.0, 2.8)


def test_match_exposure_recovers_per_channel_gain_and_vignetting():
    candidate = torch.rand(2, 3, 40, 60, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    r2 = radius2_map(40, 60)
    gains = torch.tensor([0.9, 1.05, 1.2])[:, None, None]
    vignetting = 1.0 - 0.12 * r2 + 0.03 * r2**2
    target = candidate[:1] * gains * vignetting
    matched = match_exposure(candidate, target, torch.ones(40, 60, dtype=torch.bool))
    assert torch.allclose(matched[0], target[0], atol=1e-5)
    # The second candidate is a different image: its own fit cannot make it equal the target.
    assert (matched[1] - target[0]).abs().mean() > 0.05
    assert radius2_map(40, 60)[0, 0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("blur_sigma_px", [0.0, 1.5])
def test_translation_estimate_recovers_a_subpixel_shift_despite_defocus(blur_sigma_px):
    fixed = astronaut_srgb(240)
    moving = translate_srgb(fixed, (-1.7, 0.6))  # moving(x + 1.7, y - 0.6) = fixed(x, y)
    if blur_sigma_px:  # a symmetric blur (defocus) must not move the estimate
        rgb = moving[0].permute(1, 2, 0).numpy()
        moving = torch.from_numpy(cv2.GaussianBlur(rgb, (0, 0), blur_sigma_px)).permute(2, 0, 1)[None]
    dx, dy = estimate_translation_px(fixed, moving)
    assert dx == pytest.approx(1.7, abs=0.08) and dy == pytest.approx(-0.6, abs=0.08)
    if not blur_sigma_px:
        back = translate_srgb(moving, (dx, dy))
        assert (back - fixed)[..., 8:-8, 8:-8].abs().mean() < 0.01


def test_refine_minimum_finds_the_vertex_of_a_parabola_in_dioptres():
    sweep = focus_sweep_m(1.0, 3.0, 15)
    errors = [(1.0 / f - 1.0 / 1.68) ** 2 + 0.3 for f in sweep]
    assert refine_minimum_m(sweep, errors) == pytest.approx(1.68, rel=1e-6)
    assert refine_minimum_m(sweep, [1.0 / f for f in sweep]) == sweep[-1]  # minimum at an end


def test_focus_sweep_is_even_in_dioptres_and_holds_the_requested_distances():
    sweep = focus_sweep_m(1.0, 3.0, 5, include=(1.7,))
    assert sweep[0] == 1.0 and sweep[-1] == 3.0 and 1.7 in sweep and sweep == sorted(sweep)
    grid = [f for f in sweep if f != 1.7]
    assert np.allclose(np.diff(1.0 / np.array(grid)), -(1.0 - 1.0 / 3.0) / 4)


def test_missing_or_malformed_pairs_csv_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="pairs.csv"):
        list_pairs(tmp_path)
    (tmp_path / "pairs.csv").write_text("f2.8,f8\na.JPG,a.JPG\n")
    with pytest.raises(UserError, match="depth_mm"):
        list_pairs(tmp_path)


def test_synthetic_pair_is_explained_by_the_right_focus_and_beats_the_f8_baseline():
    """A photo pair made by the thin-lens renderer itself (a slanted textured plane 0.6-4 m,
    f/2.8 and f/8 at 1.7 m), with an exposure gain, vignetting and a 1.3 px shift on the
    f/2.8 shot: the check must undo them, find 1.7 m and beat the f/8 image by far."""
    width = 240
    pinhole = astronaut_srgb(width)
    height = pinhole.shape[-2]
    inverse_depth = torch.linspace(1 / 0.6, 1 / 4.0, width).expand(height, width)
    depth_m = (1.0 / inverse_depth)[None, None].contiguous()
    camera = dfd_camera(width)
    sharp = render_defocus(pinhole, depth_m, [1.7], camera, f_number=F_NUMBER_SHARP)[0][None]
    wide = render_defocus(pinhole, depth_m, [1.7], camera, f_number=F_NUMBER_WIDE)[0][None]
    r2 = radius2_map(height, width)
    exposure = torch.tensor([1.04, 1.0, 0.97])[:, None, None] * (1.0 - 0.1 * r2)
    wide = kornia.color.linear_rgb_to_rgb((kornia.color.rgb_to_linear_rgb(wide) * exposure).clamp(0, 1))
    wide = translate_srgb(wide, (1.3, 0.0))
    scene = DfdScene("synthetic", sharp, wide, depth_m, camera)
    result = evaluate_scene(scene, sweep_m=[1.0, 1.4, 1.7, 2.2, 3.0], num_layers=24, variants=False)
    assert result.shift_px[0] == pytest.approx(-1.3, abs=0.1)
    rows = result.rows
    assert rows["render"]["psnr_db"] > rows["f8"]["psnr_db"] + 3.0
    assert rows["render"]["psnr_db"] > max(rows["render_1m"]["psnr_db"], rows["render_3m"]["psnr_db"])
    assert result.best_focus_m == pytest.approx(1.7, abs=0.15)
    # Sharpness: away from focus the f/8 image is too sharp, the rendering about right.
    far_f8, far_render = rows["f8"]["hf_ratio"][-1], rows["render"]["hf_ratio"][-1]
    assert far_f8 > 1.5 and 0.7 < far_render < 1.3


# --- the real check (shared data) ------------------------------------------------------

REAL_SCENES = (0, 40, 80)  # spread over the capture session (first, middle, last)
REAL_WIDTH_PX = 322  # half the stored 645 px: CoCs half as large (up to ~2 px beyond 3 m)


@pytest.fixture(scope="module")
def real_results():
    if not (DFD_ROOT / "pairs.csv").is_file():
        pytest.skip(f"DFD indoor data not found at {DFD_ROOT} (the shared data folder "
                    "../shared beside the project root is absent)")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pairs = list_pairs(DFD_ROOT)
        return [evaluate_scene(load_scene(pairs[i], REAL_WIDTH_PX), sweep_m=[1.0, 1.7, 3.0],
                               num_layers=24, variants=False) for i in REAL_SCENES]
    finally:
        torch.set_num_threads(before)


def test_real_rendering_is_closer_to_the_f2p8_photo_than_the_f8_photo(real_results):
    for result in real_results:
        render, f8 = result.rows["render"], result.rows["f8"]
        assert render["mse"] < f8["mse"], result.name
        assert render["ssim"] > f8["ssim"], result.name


def test_real_photos_are_best_explained_by_focus_at_1p7_m(real_results):
    for result in real_results:
        mse = dict(zip(result.sweep_focus_m, result.sweep_mse))
        assert min(mse, key=mse.get) == 1.7, (result.name, mse)
