import math

import numpy as np
import pytest
import torch

from focaldepth.errors import UserError
from focaldepth.optics import (Camera, coc_m, coc_px, coc_px_dioptric, depth_from_coc,
                               dioptric_ramp, focus_schedule, repeated_ramps, signed_coc_m)


def test_coc_matches_hand_computed_value():
    # f = 50 mm, N = 2 -> A = 25 mm; F = 1 m, D = 2 m:
    # c = 0.025 * 0.05 * 1 / (2 * 0.95) = 6.578947e-4 m
    assert coc_m(2.0, 1.0, 0.05, 2.0) == pytest.approx(6.578947368e-4, rel=1e-9)
    # 36 mm sensor over 1000 px -> 36 um pitch -> 18.27 px
    assert coc_px(2.0, 1.0, 0.05, 2.0, 36e-6) == pytest.approx(18.2748538, rel=1e-7)


def test_coc_is_zero_in_focus_and_works_on_all_array_types():
    assert coc_m(1.3, 1.3, 0.035, 2.8) == 0.0
    depths = np.array([0.5, 1.0, 3.0])
    np.testing.assert_allclose(coc_m(depths, 1.0, 0.035, 2.8)[1], 0.0)
    t = torch.tensor([0.5, 1.0, 3.0], requires_grad=True)
    coc_m(t, 1.0, 0.035, 2.8).sum().backward()
    assert torch.isfinite(t.grad).all() and t.grad[0] < 0 and t.grad[2] > 0


def test_coc_monotone_in_dioptric_defocus():
    focus = 1.5
    depths = np.concatenate([np.linspace(0.2, focus, 50), np.linspace(focus, 50, 50)])
    defocus_dpt = np.abs(1 / focus - 1 / depths)
    order = np.argsort(defocus_dpt)
    coc = coc_m(depths, focus, 0.05, 1.8)[order]
    assert np.all(np.diff(coc) >= -1e-15)


def test_dioptric_form_agrees_with_exact_form():
    depths = np.geomspace(0.1, 20, 200)
    for focus in (0.2, 1.0, 7.0):
        np.testing.assert_allclose(coc_px_dioptric(depths, focus, 0.026, 1.8, 1.4e-6),
                                   coc_px(depths, focus, 0.026, 1.8, 1.4e-6), rtol=1e-10)


def test_signed_coc_sign():
    assert signed_coc_m(2.0, 1.0, 0.05, 2.0) > 0 > signed_coc_m(0.5, 1.0, 0.05, 2.0)


@pytest.mark.parametrize("depth", [0.3, 0.9, 1.7, 4.0])
def test_depth_from_coc_inverts_on_both_sides(depth):
    focus, f, n = 1.2, 0.035, 2.0
    near, far = depth_from_coc(coc_m(depth, focus, f, n), focus, f, n)
    assert min(abs(near - depth), abs(far - depth)) < 1e-9 * depth
    assert near <= focus <= far


def test_depth_from_coc_far_side_infinite_beyond_hyperfocal_blur():
    focus, f, n = 1.0, 0.05, 2.0
    infinity_blur = coc_m(1e12, focus, f, n)
    _, far = depth_from_coc(infinity_blur * 1.01, focus, f, n)
    assert math.isinf(far)


def test_camera_validation_and_derived_values():
    cam = Camera(focal_length_mm=35, f_number=2.0, sensor_width_mm=23.6, image_width_px=645)
    assert cam.pixel_pitch_m == pytest.approx(23.6e-3 / 645)
    assert cam.coc_px_per_dpt == pytest.approx(0.035**2 / (2.0 * cam.pixel_pitch_m))
    with pytest.raises(UserError, match="f_number"):
        Camera(35, 0, 23.6, 645)
    with pytest.raises(UserError, match="focal length"):
        cam.check_focus([1.0, 0.02])
    with pytest.raises(UserError, match="positive and finite"):
        cam.check_focus([float("nan")])
    cam.check_focus([None, 1.0])


def test_focus_schedules():
    ramp = dioptric_ramp(0.5, 4.0, 5)
    assert ramp[0] == pytest.approx(0.5) and ramp[-1] == pytest.approx(4.0)
    assert np.allclose(np.diff(1 / ramp), np.diff(1 / ramp)[0])  # even steps in dioptres
    video = repeated_ramps(0.5, 4.0, 5, 5)
    assert video.shape == (25,) and np.allclose(video[5:10], ramp)
    assert np.all(np.diff(video)[4::5] < 0)  # jump back to near, no far-to-near ramp
    with pytest.raises(UserError):
        dioptric_ramp(4.0, 0.5, 5)
    with pytest.raises(UserError):
        focus_schedule([1.0, -2.0])
