"""Time synchronisation of two streams (the phone's frames and the RGB-D sensor's).

Convention: ``offset_s`` maps stream B's clock onto stream A's, ``t_A = t_B + offset_s``.

1. **Clock offset.** The phone (Android SENSOR_TIMESTAMP: elapsedRealtimeNanos) and the PC
   that records the sensor run different clocks; their offset is estimated from the data:

   * :func:`offset_from_events`: both streams saw the same events (a flash, a clap, a
     board appearing): every pairing of an A event with a B event proposes an offset; the one
     that matches the most events within ``tolerance_s`` wins (a 1-D consensus, robust to
     missed and spurious events), refined as the median of its matched differences.
   * :func:`offset_by_correlation`: a signal both streams measure, e.g. frame-to-frame motion
     magnitude (:func:`motion_signal`: the rig shaken or panned at varying speed moves the
     colour image and the depth map together). Both signals are interpolated on a grid of
     ``step_s`` and the Pearson correlation over their overlap is evaluated for every lag in
     ``coarse_s +- search_s``; the peak is refined by a parabola through its neighbours.
     ``coarse_s`` defaults to the difference of the streams' first timestamps (the two
     recordings were started within a few seconds of each other).

2. **Association** (:func:`associate`): after applying the offset, each A frame is paired
   with its nearest B frame and kept only if that B frame's nearest A frame is the same one
   (mutual nearest neighbours: one-to-one) and the gap is within ``max_gap_s``.

Clock drift (a rate difference) is not modelled: over a capture of minutes it is well under a
frame period for crystal clocks (tens of ppm); re-estimate the offset per capture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from focaldepth.errors import UserError

MIN_OVERLAP_FRACTION = 0.5  # of the shorter stream's duration, for a lag to be scored


@dataclass
class OffsetEstimate:
    offset_s: float  # t_A = t_B + offset_s
    method: str
    score: float  # events matched, or the peak correlation
    num_samples: int  # matched events, or grid samples at the peak


def _as_times(values: np.ndarray | list[float], name: str) -> np.ndarray:
    times = np.asarray(values, dtype=np.float64)
    if times.ndim != 1 or len(times) == 0 or not np.isfinite(times).all():
        raise UserError(f"{name}: expected a non-empty list of finite timestamps")
    if (np.diff(times) <= 0).any():
        raise UserError(f"{name}: timestamps must increase strictly")
    return times


def nearest_index(sorted_times: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of ``sorted_times`` for each query."""
    right = np.clip(np.searchsorted(sorted_times, queries), 1, len(sorted_times) - 1)
    left = right - 1
    if len(sorted_times) == 1:
        return np.zeros(len(queries), dtype=np.int64)
    choose_left = np.abs(queries - sorted_times[left]) <= np.abs(sorted_times[right] - queries)
    return np.where(choose_left, left, right)


def associate(times_a_s: np.ndarray | list[float], times_b_s: np.ndarray | list[float],
              max_gap_s: float, offset_s: float = 0.0) -> np.ndarray:
    """(M, 2) index pairs (i in A, j in B): mutual nearest neighbours after mapping B onto
    A's clock, with |t_A[i] - (t_B[j] + offset_s)| <= max_gap_s."""
    a = _as_times(times_a_s, "stream A")
    b = _as_times(times_b_s, "stream B") + offset_s
    if not max_gap_s > 0:
        raise UserError(f"max gap must be positive, got {max_gap_s}")
    j_of_i = nearest_index(b, a)
    i_of_j = nearest_index(a, b)
    i = np.arange(len(a))
    keep = (i_of_j[j_of_i] == i) & (np.abs(a - b[j_of_i]) <= max_gap_s)
    return np.stack([i[keep], j_of_i[keep]], axis=1)


def offset_from_events(events_a_s: np.ndarray | list[float], events_b_s: np.ndarray | list[float],
                       tolerance_s: float, max_offset_s: float | None = None,
                       coarse_s: float = 0.0) -> OffsetEstimate:
    """Offset from events seen by both streams (see the module docstring)."""
    a = _as_times(events_a_s, "events of stream A")
    b = _as_times(events_b_s, "events of stream B")
    candidates = (a[:, None] - b[None, :]).ravel()
    if max_offset_s is not None:
        candidates = candidates[np.abs(candidates - coarse_s) <= max_offset_s]
    if len(candidates) == 0:
        raise UserError("no pairing of events gives an offset within the search range")
    best: tuple[int, float, float] | None = None  # (matches, -spread, offset)
    for candidate in candidates:
        pairs = associate(a, b, tolerance_s, candidate)
        differences = a[pairs[:, 0]] - b[pairs[:, 1]]
        key = (len(pairs), -float(np.abs(differences - candidate).sum()), float(np.median(differences)))
        if best is None or key[:2] > best[:2]:
            best = key
    assert best is not None
    offset = best[2]
    # one refinement round: re-associate at the median and take the median again
    pairs = associate(a, b, tolerance_s, offset)
    offset = float(np.median(a[pairs[:, 0]] - b[pairs[:, 1]]))
    return OffsetEstimate(offset, "events", float(len(pairs)), len(pairs))


def motion_signal(frames: list[np.ndarray] | np.ndarray, times_s: np.ndarray | list[float],
                  log_scale: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Frame-to-frame motion magnitude: the mean absolute difference of consecutive frames
    (grey images; depth maps with ``log_scale`` compare log-depth, NaN/0 = unknown skipped),
    placed at the midpoint of the two frames' times. Returns (times_s, values)."""
    times = _as_times(times_s, "frame times")
    if len(frames) != len(times) or len(times) < 3:
        raise UserError("motion signal: need at least 3 frames, one time per frame")
    previous = None
    values = []
    for frame in frames:
        current = _grey_or_log(np.asarray(frame), log_scale)
        if previous is not None:
            both = np.isfinite(current) & np.isfinite(previous)
            values.append(float(np.abs(current[both] - previous[both]).mean()) if both.any() else math.nan)
        previous = current
    mid = 0.5 * (times[1:] + times[:-1])
    signal = np.array(values)
    known = np.isfinite(signal)
    return mid[known], signal[known]


def _grey_or_log(frame: np.ndarray, log_scale: bool) -> np.ndarray:
    data = frame.astype(np.float64)
    if data.ndim == 3:
        data = data.mean(axis=2)
    if log_scale:
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.where(data > 0, np.log(data), np.nan)
    return data


def offset_by_correlation(times_a_s: np.ndarray, signal_a: np.ndarray, times_b_s: np.ndarray,
                          signal_b: np.ndarray, *, coarse_s: float | None = None, search_s: float = 2.0,
                          step_s: float | None = None) -> OffsetEstimate:
    """Offset that best aligns two sampled signals (see the module docstring)."""
    ta = _as_times(times_a_s, "signal A")
    tb = _as_times(times_b_s, "signal B")
    sa, sb = np.asarray(signal_a, np.float64), np.asarray(signal_b, np.float64)
    if sa.shape != ta.shape or sb.shape != tb.shape or len(ta) < 4 or len(tb) < 4:
        raise UserError("correlation needs at least 4 samples per signal, one value per time")
    coarse = float(ta[0] - tb[0]) if coarse_s is None else float(coarse_s)
    step = float(step_s) if step_s is not None else 0.25 * min(np.median(np.diff(ta)), np.median(np.diff(tb)))
    lags = coarse + np.arange(-search_s, search_s + step / 2, step)
    shorter = min(ta[-1] - ta[0], tb[-1] - tb[0])
    scores = np.full(len(lags), -np.inf)
    counts = np.zeros(len(lags), dtype=np.int64)
    for k, lag in enumerate(lags):
        start, stop = max(ta[0], tb[0] + lag), min(ta[-1], tb[-1] + lag)
        if stop - start < MIN_OVERLAP_FRACTION * shorter:
            continue
        grid = np.arange(start, stop, step)
        x, y = np.interp(grid, ta, sa), np.interp(grid - lag, tb, sb)
        if x.std() == 0 or y.std() == 0:
            continue
        scores[k] = float(np.corrcoef(x, y)[0, 1])
        counts[k] = len(grid)
    if not np.isfinite(scores).any():
        raise UserError("the streams do not overlap in time within the search range "
                        f"({coarse:g} +- {search_s:g} s): give a coarse offset")
    peak = int(np.argmax(scores))
    offset = float(lags[peak])
    if 0 < peak < len(lags) - 1 and np.isfinite(scores[peak - 1:peak + 2]).all():
        left, centre, right = scores[peak - 1:peak + 2]
        curvature = left - 2 * centre + right
        if curvature < 0:
            offset += 0.5 * step * (left - right) / curvature
    return OffsetEstimate(offset, "correlation", float(scores[peak]), int(counts[peak]))
