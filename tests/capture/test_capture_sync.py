"""Time synchronisation on a synthetic two-stream capture with a known clock offset."""

from __future__ import annotations

import numpy as np
import pytest

from focaldepth.capture.sync import (
    associate,
    motion_signal,
    offset_by_correlation,
    offset_from_events,
)
from focaldepth.errors import UserError

FPS_A, FPS_B = 30.0, 30.0
TRUE_OFFSET_S = 7.3161  # t_A = t_B + offset: the phone's clock is ahead


def camera_path_px(t_s: np.ndarray, seed: int = 3) -> np.ndarray:
    """The rig's horizontal pan (image pixels) over time: bursts of shaking and rest, the
    kind of motion whose magnitude both sensors see."""
    rng = np.random.default_rng(seed)
    centres, widths, amps = rng.uniform(0, 12, 10), rng.uniform(0.2, 0.8, 10), rng.uniform(4, 12, 10)
    speed = sum(a * np.exp(-0.5 * ((t_s - c) / w) ** 2) for c, w, a in zip(centres, widths, amps))
    return np.cumsum(speed) / FPS_A  # integrate speed (px/s) at a fine-enough rate


def render_streams(rng: np.random.Generator):
    """Stream A: grey images of a texture panned by the path; stream B: depth maps of a bumpy
    wall panned by the same path, on a clock TRUE_OFFSET_S behind, both with jittered times."""
    import cv2

    duration = 12.0
    fine_t = np.arange(0, duration, 1 / FPS_A)
    path = camera_path_px(fine_t)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (48, 200)), (0, 0), 1.5)
    bumps = 2.0 + 0.3 * cv2.GaussianBlur(rng.uniform(-1, 1, (40, 200)), (0, 0), 2.0)

    def pan(image: np.ndarray, shift: float) -> np.ndarray:
        m = np.float32([[1, 0, -shift], [0, 1, 0]])
        return cv2.warpAffine(image.astype(np.float32), m, (64, image.shape[0]), flags=cv2.INTER_LINEAR)

    true_a = 0.2 + np.arange(int(duration * FPS_A) - 12) / FPS_A
    true_b = 0.5 + np.arange(int(duration * FPS_B) - 24) / FPS_B
    true_a += rng.normal(0, 0.002, true_a.shape)
    true_b += rng.normal(0, 0.002, true_b.shape)
    frames_a = [pan(texture, np.interp(t, fine_t, path)) for t in true_a]
    frames_b = [pan(bumps, np.interp(t, fine_t, path)) for t in true_b]
    clock_a = true_a + 1000.0  # the phone's clock
    clock_b = true_b + 1000.0 - TRUE_OFFSET_S  # the PC's clock
    return clock_a, frames_a, clock_b, frames_b


def test_correlation_of_motion_recovers_the_clock_offset():
    rng = np.random.default_rng(0)
    clock_a, frames_a, clock_b, frames_b = render_streams(rng)
    ta, sa = motion_signal(frames_a, clock_a)
    tb, sb = motion_signal(frames_b, clock_b, log_scale=True)
    # streams started ~0.3 s apart on the true clock: the coarse guess is off by that much
    estimate = offset_by_correlation(ta, sa, tb, sb, search_s=2.0)
    assert abs(estimate.offset_s - TRUE_OFFSET_S) < 1 / FPS_A  # the target: within one frame
    assert abs(estimate.offset_s - TRUE_OFFSET_S) < 0.5 / FPS_A  # measured: 13 ms
    assert estimate.score > 0.8
    pairs = associate(clock_a, clock_b, 0.5 / FPS_B, estimate.offset_s)
    gaps = clock_a[pairs[:, 0]] - clock_b[pairs[:, 1]] - TRUE_OFFSET_S
    error_s = abs(estimate.offset_s - TRUE_OFFSET_S)
    assert len(pairs) > 0.8 * len(clock_b)  # same rates, 2 ms jitter: a few pairs exceed the gap
    assert np.abs(gaps).max() <= 0.5 / FPS_B + error_s + 1e-9


def test_events_recover_the_offset_despite_missed_and_spurious_events():
    rng = np.random.default_rng(1)
    true_events = np.sort(rng.uniform(0, 60, 12))
    events_a = true_events + rng.normal(0, 0.004, 12) + 50.0
    events_b = true_events + rng.normal(0, 0.004, 12) + 50.0 - TRUE_OFFSET_S
    events_a = np.sort(np.append(np.delete(events_a, [3]), [50.0 + 17.77]))  # one missed, one spurious
    events_b = np.sort(np.delete(events_b, [8]))
    estimate = offset_from_events(events_a, events_b, tolerance_s=1 / FPS_B)
    assert estimate.num_samples == 10
    assert abs(estimate.offset_s - TRUE_OFFSET_S) < 0.01


def test_association_is_one_to_one_and_respects_the_gap():
    a = np.array([0.0, 0.033, 0.066, 0.1, 0.5])
    b = np.array([0.001, 0.030, 0.031, 0.2])
    pairs = associate(a, b, max_gap_s=0.01)
    assert pairs.tolist() == [[0, 0], [1, 2]]  # b[1] and b[2] both near a[1]: only the nearest
    shifted = associate(a, b - 0.1, max_gap_s=0.01, offset_s=0.1)
    assert shifted.tolist() == pairs.tolist()


def test_bad_timestamps_are_user_errors():
    with pytest.raises(UserError, match="increase strictly"):
        associate([0.0, 0.0], [0.0], 0.01)
    with pytest.raises(UserError, match="do not overlap"):
        t = np.arange(20) / 30
        offset_by_correlation(t, np.sin(t * 9), t + 100, np.sin(t * 9), coarse_s=0.0, search_s=1.0)
