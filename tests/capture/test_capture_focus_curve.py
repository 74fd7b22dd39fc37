"""Focus calibration: a known lens curve recovered from a few shots at known distances."""

from __future__ import annotations

import numpy as np
import pytest

from focaldepth.capture.focus_curve import (
    fit_focus_curve,
    read_focus_curve,
    sharpest_focus_value,
    write_focus_curve,
)
from focaldepth.errors import UserError

FOCAL_M = 4.2e-3


def thin_lens_dioptres(position: np.ndarray) -> np.ndarray:
    """A voice-coil lens: lens-to-sensor distance v = f + travel * position (50 um of travel
    from infinity), focus 1/s = 1/f - 1/v. Position 0 = infinity, as Android's raw scale."""
    v = FOCAL_M + 0.05e-3 * position
    return 1 / FOCAL_M - 1 / v


def test_affine_fit_recovers_a_thin_lens_curve():
    rng = np.random.default_rng(0)
    shots = np.array([0.1, 0.25, 0.4, 0.6, 0.8, 0.95])
    distance_m = 1 / thin_lens_dioptres(shots)
    measured = shots + rng.normal(0, 0.002, shots.shape)  # the lens value logged with a little noise
    curve = fit_focus_curve(measured, distance_m, degree=1)
    dense = np.linspace(0.1, 0.95, 50)
    assert np.abs(curve.diopters(dense) - thin_lens_dioptres(dense)).max() < 0.05  # dioptres
    assert curve.rms_dpt < 0.03 and curve.leave_one_out_dpt is not None
    quadratic = fit_focus_curve(shots, distance_m, degree=2)  # noise-free: the thin lens bends a little
    assert np.abs(quadratic.diopters(dense) - thin_lens_dioptres(dense)).max() < 0.01


def test_ios_like_curve_decreasing_in_dioptres():
    positions = np.array([0.05, 0.3, 0.55, 0.8])
    truth = lambda p: 9.0 - 10.5 * p + 2.0 * p**2
    curve = fit_focus_curve(positions, 1 / truth(positions), degree=2)
    assert curve.coefficients == pytest.approx([9.0, -10.5, 2.0], abs=1e-6)


def test_curve_round_trip(tmp_path):
    curve = fit_focus_curve([0.1, 0.5, 0.9], [2.0, 0.5, 0.25])
    write_focus_curve(tmp_path / "curve.json", curve)
    again = read_focus_curve(tmp_path / "curve.json")
    assert again.coefficients == pytest.approx(curve.coefficients) and again.raw_range == curve.raw_range


def test_non_monotone_fit_is_refused():
    with pytest.raises(UserError, match="not monotone"):
        fit_focus_curve([0.1, 0.5, 0.9], [1.0, 0.25, 1.0], degree=2)
    with pytest.raises(UserError, match="at least 3 shots"):
        fit_focus_curve([0.1, 0.9], [1.0, 0.5], degree=2)


def test_sharpest_frame_of_a_sweep_gives_the_shot_value():
    import cv2

    rng = np.random.default_rng(1)
    target = cv2.GaussianBlur(rng.uniform(0, 255, (64, 64)), (0, 0), 0.8)
    positions = np.linspace(0.0, 1.0, 15)
    dioptres = 4.0 - 3.0 * positions
    target_dpt = 4.0 - 3.0 * 0.437  # the target sits where position 0.437 focuses
    frames = []
    for d in dioptres:
        sigma = 0.3 + 6.0 * abs(d - target_dpt)  # blur grows with the defocus in dioptres
        frames.append(np.clip(cv2.GaussianBlur(target, (0, 0), sigma), 0, 255).astype(np.uint8))
    value = sharpest_focus_value(frames[::-1], positions[::-1])  # order of the sweep does not matter
    assert value == pytest.approx(0.437, abs=0.5 * (positions[1] - positions[0]))
