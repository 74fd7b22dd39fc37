"""Hand-held stack alignment (focus breathing + homography) and the focus order it implies."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from focaldepth import align

HEIGHT, WIDTH = 240, 320
SHARED_BALLS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mobile_depth_balls"


def textured_scene(height: int, width: int) -> np.ndarray:
    """A real photograph (scikit-image's astronaut, shipped in the wheel) as the scene."""
    from skimage import data

    return cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)


def synthetic_stack(count=9, breathing=0.03, perspective=5e-6, shift_px=4.0, rotation_deg=0.5, seed=0):
    """A static hand-held sweep: frame i sees the scene magnified by 1 + breathing * i/(S-1)
    about the centre (focus moving far -> near), then a random shake homography, then a
    Gaussian defocus that varies along the sweep. Returns frames and the true
    reference -> frame homographies (reference = frame 0's geometry)."""
    rng = np.random.default_rng(seed)
    margin = 1.4  # the scene is larger than the frame: no borders enter the view
    big = textured_scene(int(HEIGHT * margin), int(WIDTH * margin))
    offset = np.array([[1, 0, (big.shape[1] - WIDTH) / 2], [0, 1, (big.shape[0] - HEIGHT) / 2], [0, 0, 1.0]])
    frames, truths = [], []
    for i in range(count):
        scale = align.scale_about_centre(1.0 + breathing * i / (count - 1), HEIGHT, WIDTH)
        angle = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
        shake = np.array([[np.cos(angle), -np.sin(angle), rng.uniform(-shift_px, shift_px)],
                          [np.sin(angle), np.cos(angle), rng.uniform(-shift_px, shift_px)],
                          [*rng.uniform(-perspective, perspective, 2), 1.0]])
        truth = shake @ scale
        truths.append(truth / truth[2, 2])
        view = cv2.warpPerspective(big, truth @ np.linalg.inv(offset), (WIDTH, HEIGHT), flags=cv2.INTER_CUBIC)
        sigma_px = 0.4 + 2.0 * abs(i - count / 2) / count  # sharp mid-sweep, blurred at both ends
        frames.append(cv2.GaussianBlur(view, (0, 0), sigma_px))
    return np.stack(frames), truths


@pytest.fixture(scope="module")
def stack():
    return synthetic_stack()


def test_recovered_transforms_are_within_half_a_pixel_at_the_corners(stack):
    frames, truths = stack
    result = align.estimate_stack_alignment(frames)
    assert result.reference == len(frames) - 1  # the most magnified frame
    reference_truth = truths[result.reference]
    errors = []
    for estimated, truth in zip(result.homographies, truths):
        relative = truth @ np.linalg.inv(reference_truth)
        errors.append(align.corner_error_px(estimated, relative / relative[2, 2], HEIGHT, WIDTH))
    assert max(errors) < 0.5, errors
    # a sloppy alignment (identity) would be several pixels off
    identity_errors = [align.corner_error_px(np.eye(3), t @ np.linalg.inv(reference_truth), HEIGHT, WIDTH)
                       for t in truths[:-1]]
    assert min(identity_errors) > 2.0


def test_breathing_scale_is_recovered_and_gives_the_sweep_direction(stack):
    frames, truths = stack
    result = align.estimate_stack_alignment(frames)
    true_scale = [align.magnification_of(t @ np.linalg.inv(truths[-1]), HEIGHT, WIDTH) for t in truths]
    np.testing.assert_allclose(result.magnification, true_scale, atol=2e-3)
    order = align.estimate_focus_order(result.magnification)
    assert order.direction == "far_to_near"  # magnification grows along the stack
    assert order.position[-1] == 1.0 and order.position[0] < 0.1
    reversed_order = align.estimate_focus_order(align.estimate_stack_alignment(frames[::-1]).magnification)
    assert reversed_order.direction == "near_to_far"


def test_focus_order_is_unknown_without_clear_breathing():
    assert align.estimate_focus_order(np.ones(6)).direction == "unknown"
    noisy = 1.0 + 1e-3 * np.array([0.0, 0.9, 0.1, 0.8, 0.2, 1.0])  # not monotone
    assert align.estimate_focus_order(noisy).direction == "unknown"
    assert align.estimate_focus_order(np.linspace(1.0, 0.97, 6)).direction == "near_to_far"


def test_split_breathing_separates_scale_from_shake():
    scale = align.scale_about_centre(1.02, HEIGHT, WIDTH)
    shake = np.array([[1, 0, 3.0], [0, 1, -2.0], [0, 0, 1.0]])
    magnification, residual = align.split_breathing(shake @ scale, HEIGHT, WIDTH)
    assert magnification == pytest.approx(1.02, abs=1e-9)
    np.testing.assert_allclose(residual, shake, atol=1e-9)


def test_align_stack_reduces_the_misalignment(stack):
    frames, _ = stack
    aligned, result, report = align.align_stack(frames)
    before = align.mean_abs_gray_difference(frames, result.reference)
    after = align.mean_abs_gray_difference(aligned, result.reference)
    assert after < 0.6 * before, (before, after)
    assert np.array_equal(aligned[result.reference], frames[result.reference])  # never resampled
    assert report["reference_frame"] == result.reference and report["registration_methods"] == ["ecc"]


def test_residual_flow_moves_only_clearly_super_pixel_motion():
    frame = cv2.GaussianBlur(textured_scene(HEIGHT, WIDTH), (0, 0), 1.0)
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    same, moved_fraction = align.residual_flow_warp(gray, frame)
    assert np.array_equal(same, frame) and moved_fraction == 0.0
    shifted = np.roll(frame, 4, axis=1)
    restored, moved_fraction = align.residual_flow_warp(gray, shifted)
    inner = (slice(20, -20), slice(20, -20))
    assert moved_fraction > 0.5
    before = np.abs(shifted[inner].astype(float) - frame[inner]).mean()
    after = np.abs(restored[inner].astype(float) - frame[inner]).mean()
    assert after < 0.3 * before


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_BALLS.is_dir(), reason="../shared/data/mobile_depth_balls not present")
def test_real_phone_stack_breathing_says_far_to_near():
    from focaldepth.io import load_sequence

    frames = load_sequence(SHARED_BALLS).frames
    aligned, result, _ = align.align_stack(frames)
    assert align.estimate_focus_order(result.magnification).direction == "far_to_near"
    assert align.mean_abs_gray_difference(aligned, result.reference) < 0.6 * align.mean_abs_gray_difference(
        frames, result.reference)


def test_a_still_transform_leaves_the_frame_untouched():
    frame = (np.random.default_rng(0).uniform(0, 255, (40, 60, 3))).astype(np.uint8)
    nearly = np.array([[1.0, 0, 0.2], [0, 1.0, -0.1], [0, 0, 1.0]])  # corners move < 0.5 px
    assert align.warp_to_reference(frame, nearly) is frame
    moved = np.array([[1.0, 0, 2.0], [0, 1.0, 0.0], [0, 0, 1.0]])
    assert not np.array_equal(align.warp_to_reference(frame, moved), frame)


def test_the_quick_tripod_check_passes_a_tripod_and_not_a_hand_held_stack(stack):
    """The automatic alignment skips the full registration only for a stack that holds still."""
    tripod, _ = synthetic_stack(breathing=0.0, perspective=0.0, shift_px=0.0, rotation_deg=0.0)
    quick = align.tripod_check(tripod)
    assert quick is not None and max(quick.size_hw) == max(tripod.shape[1:3])
    assert align.tripod_check(stack[0]) is None  # 3 % breathing and a shake: fully registered
