"""Alignment of a static hand-held focal stack (phone sweeps: hand shake plus focus breathing).

Model, per frame ``i``, of how a point of the reference frame lands in frame ``i``::

    x_i = R_i  S(m_i)  x_ref          (3x3 homographies on pixel coordinates)

``S(m)`` is a scale by ``m`` about the image centre: *focus breathing*. Moving the lens away
from the sensor to focus closer lengthens the image distance ``v = f + f^2 P`` (P = focus in
dioptres, thin lens, P << 1/f), and the image of the scene grows with ``v``: the magnification
is monotone along a sweep and, to first order, affine in the focus position in dioptres.
``R_i`` is what is left, the hand shake (a homography: the scene is far compared with the
shake, or at least static). A residual dense flow (OpenCV DIS) is applied only where it is
clearly super-pixel, because resampling at sub-pixel offsets blurs away the focus cue.

Estimation is robust to the different defocus of the frames: each frame is registered to its
*neighbour* in the sweep (nearly the same focus, so nearly the same blur) with OpenCV's ECC
(``cv2.findTransformECC``, ``MOTION_HOMOGRAPHY``, coarse to fine on Gaussian-smoothed gray
images), falling back to ORB features with RANSAC, and the pair transforms are chained to the
reference. The reference is the most magnified frame, so every other frame is scaled *up* onto
it and the warped frames have (almost) no empty border.

Everything here is a function on numpy arrays; :func:`align_stack` is the one-call entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# ECC works on a gray copy at most this many pixels on its long side at the finest level, and
# at half of that at the coarsest (a few px of shake become ~1 px there: within ECC's reach).
# 480, not 960 (session 12): depth is computed on a working grid of about 320 px, so 960 px bought
# precision nobody reads. A 12-frame 1280x720 synthetic hand-held stack: corners within 0.19 px
# of the truth at full resolution (0.07 at 960) in 0.38 s (1.17 s); the real phone stack
# mobile_depth_balls: the command 13.3 s instead of 17.7, the same depth (medians within 0.003).
ALIGN_MAX_SIDE_PX = 480
ECC_LEVELS = 3
ECC_ITERATIONS, ECC_EPS = 100, 1e-6
ECC_SMOOTH_PX = 5  # ECC's own Gaussian pre-filter (odd size): damps differences of defocus
# Residual flow is applied only above this many pixels of motion (fully from twice as much).
RESIDUAL_FLOW_MIN_PX = 1.0
# A sweep direction is claimed only if the breathing magnification changes by at least this
# much over the stack and rises or falls consistently (|Spearman rho| at least this).
MIN_BREATHING_CHANGE = 1e-3
MIN_BREATHING_RANK_CORRELATION = 0.8


@dataclass
class StackAlignment:
    """Per-frame transforms of a stack to its reference frame.

    ``homographies[i]`` maps reference pixel coordinates to frame ``i`` pixel coordinates
    (warp frame ``i`` onto the reference with :func:`warp_to_reference`).
    ``magnification[i]`` is the breathing scale ``m_i`` of frame i relative to the
    reference (> 1: frame i shows the scene larger); ``shake[i]`` the residual ``R_i``.
    ``pair_correlation[i]`` is ECC's correlation of frame i with frame i - 1 after alignment
    (NaN for frame 0 or when features were used instead).
    """

    reference: int
    homographies: np.ndarray  # (S, 3, 3)
    magnification: np.ndarray  # (S,)
    shake: np.ndarray  # (S, 3, 3)
    pair_correlation: np.ndarray  # (S,)
    size_hw: tuple[int, int]
    methods: list[str] = field(default_factory=list)


@dataclass
class FocusOrder:
    """Relative focus positions estimated from the breathing magnification.

    ``position[i]`` in [0, 1]: 1 = the nearest focus of the stack, 0 = the farthest; affine in
    dioptres to first order (see the module docstring). ``direction`` is ``"near_to_far"``,
    ``"far_to_near"`` or ``"unknown"`` (breathing too weak or not monotone).
    """

    direction: str
    position: list[float]
    magnification_change: float
    rank_correlation: float

    def to_dict(self) -> dict:
        return {
            "sweep_direction": self.direction,
            "relative_focus_position": [round(p, 4) for p in self.position],
            "breathing_magnification_change": self.magnification_change,
            "breathing_rank_correlation": self.rank_correlation,
            "method": "focus breathing: magnification is ~affine in the lens position "
            "(dioptres); larger magnification = nearer focus",
        }


# --- small geometry ------------------------------------------------------------------------


def scale_about_centre(scale: float, height: int, width: int) -> np.ndarray:
    """3x3 homography scaling pixel coordinates by ``scale`` about the image centre."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return np.array([[scale, 0.0, cx * (1 - scale)], [0.0, scale, cy * (1 - scale)], [0, 0, 1.0]])


def image_corners(height: int, width: int) -> np.ndarray:
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)


def apply_homography(homography: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped through a 3x3 homography."""
    ones = np.ones((len(points_xy), 1))
    mapped = np.hstack([points_xy, ones]) @ np.asarray(homography, np.float64).T
    return mapped[:, :2] / mapped[:, 2:3]


def corner_error_px(estimated: np.ndarray, truth: np.ndarray, height: int, width: int) -> float:
    """Mean distance in pixels between where two homographies send the image corners."""
    corners = image_corners(height, width)
    return float(np.linalg.norm(apply_homography(estimated, corners)
                                - apply_homography(truth, corners), axis=1).mean())


def magnification_of(homography: np.ndarray, height: int, width: int) -> float:
    """The scale about the centre in a homography: sqrt of its Jacobian determinant at the
    image centre (1 = no breathing). Taken at the centre because perspective terms of the
    shake change the scale across the image but hardly at the centre."""
    h = np.asarray(homography, np.float64)
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0, 1.0])
    mapped = h @ centre
    jacobian = (h[:2, :2] - np.outer(mapped[:2] / mapped[2], h[2, :2])) / mapped[2]
    return math.sqrt(abs(float(np.linalg.det(jacobian))))


def split_breathing(homography: np.ndarray, height: int, width: int) -> tuple[float, np.ndarray]:
    """``H = R S(m)``: the breathing scale ``m`` and the residual (shake) homography ``R``."""
    scale = magnification_of(homography, height, width)
    shake = homography @ np.linalg.inv(scale_about_centre(scale, height, width))
    return scale, shake / shake[2, 2]


# --- pairwise registration -----------------------------------------------------------------


def registration_gray(frame: np.ndarray, max_side_px: int = ALIGN_MAX_SIDE_PX) -> tuple[np.ndarray, float]:
    """Float32 gray copy in [0, 1] for registration, at most ``max_side_px`` on its long
    side, and the factor it was shrunk by (<= 1)."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    factor = min(1.0, max_side_px / float(max(gray.shape)))
    if factor < 1.0:
        gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return gray.astype(np.float32) / (255.0 if gray.dtype == np.uint8 else 1.0), factor


def _rescaled(homography: np.ndarray, factor: float) -> np.ndarray:
    """A homography in pixel coordinates of an image resized by ``factor``."""
    scaling = np.diag([factor, factor, 1.0])
    out = scaling @ homography @ np.linalg.inv(scaling)
    return out / out[2, 2]


def ecc_homography(reference: np.ndarray, moving: np.ndarray, initial: np.ndarray | None = None,
                   levels: int = ECC_LEVELS) -> tuple[np.ndarray, float]:
    """Homography (reference pixel -> moving pixel) by ECC, coarse to fine over ``levels``
    halvings, and the final correlation. Raises cv2.error if ECC does not converge."""
    homography = np.eye(3) if initial is None else np.asarray(initial, np.float64)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, ECC_EPS)
    correlation = math.nan
    for level in reversed(range(levels)):
        factor = 0.5**level
        if min(reference.shape) * factor < 32:
            continue
        ref = cv2.resize(reference, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) if level else reference
        mov = cv2.resize(moving, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) if level else moving
        warp = _rescaled(homography, factor).astype(np.float32)
        correlation, warp = cv2.findTransformECC(ref, mov, warp, cv2.MOTION_HOMOGRAPHY, criteria,
                                                 None, ECC_SMOOTH_PX)
        homography = _rescaled(warp.astype(np.float64), 1.0 / factor)
    return homography, float(correlation)


def feature_homography(reference: np.ndarray, moving: np.ndarray) -> np.ndarray | None:
    """Homography (reference pixel -> moving pixel) from ORB matches and RANSAC; None if
    too few matches."""
    orb = cv2.ORB_create(4000)
    to8 = [np.clip(image * 255.0, 0, 255).astype(np.uint8) for image in (reference, moving)]
    (kp_ref, des_ref), (kp_mov, des_mov) = (orb.detectAndCompute(image, None) for image in to8)
    if des_ref is None or des_mov is None or len(kp_ref) < 8 or len(kp_mov) < 8:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(des_ref, des_mov)
    if len(matches) < 8:
        return None
    src = np.float32([kp_ref[m.queryIdx].pt for m in matches])
    dst = np.float32([kp_mov[m.trainIdx].pt for m in matches])
    homography, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 2.0)
    if homography is None or int(inliers.sum()) < 8:
        return None
    return homography / homography[2, 2]


def pair_homography(reference: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, float, str]:
    """Reference -> moving homography of two gray registration images: ECC from identity,
    else ECC from ORB+RANSAC, else ORB+RANSAC alone, else identity. Returns (H, correlation,
    method)."""
    try:
        homography, correlation = ecc_homography(reference, moving)
        return homography, correlation, "ecc"
    except cv2.error:
        pass
    features = feature_homography(reference, moving)
    if features is None:
        return np.eye(3), math.nan, "identity (registration failed)"
    try:
        homography, correlation = ecc_homography(reference, moving, features, levels=1)
        return homography, correlation, "features+ecc"
    except cv2.error:
        return features, math.nan, "features"


# --- whole stacks --------------------------------------------------------------------------


def estimate_stack_alignment(frames: np.ndarray | list[np.ndarray], reference: int | None = None,
                             max_side_px: int = ALIGN_MAX_SIDE_PX) -> StackAlignment:
    """Transforms of every frame to the reference (default: the most magnified frame) from
    neighbour-to-neighbour registration chained along the sweep (see the module docstring).
    ``frames``: (S, H, W, 3) uint8 RGB or (S, H, W) gray."""
    count = len(frames)
    height, width = frames[0].shape[:2]
    grays, factors = zip(*(registration_gray(frame, max_side_px) for frame in frames))
    factor = factors[0]
    # to_first[i]: frame-0 pixel -> frame-i pixel (full-resolution coordinates)
    to_first = [np.eye(3)]
    correlation, methods = [math.nan], ["reference chain start"]
    for i in range(1, count):
        pair, corr, method = pair_homography(grays[i - 1], grays[i])
        to_first.append(_rescaled(pair, 1.0 / factor) @ to_first[-1])
        correlation.append(corr)
        methods.append(method)
    to_first = [h / h[2, 2] for h in to_first]
    first_magnification = np.array([magnification_of(h, height, width) for h in to_first])
    ref = int(np.argmax(first_magnification)) if reference is None else int(reference)
    if not 0 <= ref < count:
        raise ValueError(f"reference frame {ref} outside a stack of {count} frames")
    from_ref = np.linalg.inv(to_first[ref])
    homographies = np.stack([h @ from_ref for h in to_first])
    homographies /= homographies[:, 2:3, 2:3]
    split = [split_breathing(h, height, width) for h in homographies]
    return StackAlignment(reference=ref, homographies=homographies,
                          magnification=np.array([s for s, _ in split]),
                          shake=np.stack([r for _, r in split]),
                          pair_correlation=np.array(correlation), size_hw=(height, width),
                          methods=methods)


# A transform that moves no image corner by more than this is left alone (as the streaming
# flow leaves sub-half-pixel motion): resampling would blur away the focus cue for nothing.
STILL_CORNER_PX = 0.5


def warp_to_reference(frame: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Frame resampled onto the reference (``homography``: reference pixel -> frame pixel),
    bicubic, borders replicated; the frame itself when the transform is within
    :data:`STILL_CORNER_PX` of the identity (a tripod)."""
    height, width = frame.shape[:2]
    corners = image_corners(height, width)
    if np.linalg.norm(apply_homography(homography, corners) - corners, axis=1).max() <= STILL_CORNER_PX:
        return frame
    return cv2.warpPerspective(frame, homography, (width, height),
                               flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


def residual_flow_warp(reference_gray: np.ndarray, frame: np.ndarray,
                       min_motion_px: float = RESIDUAL_FLOW_MIN_PX) -> tuple[np.ndarray, float]:
    """Undo what the global model left (parallax, a moving leaf) with DIS flow, only where
    the flow exceeds ``min_motion_px`` (fading in up to twice that); elsewhere the pixels
    are kept, since resampling by a fraction of a pixel costs focus cue. Returns the frame and
    the fraction of pixels that moved."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(reference_gray, gray, None)  # reference pixel -> frame pixel
    height, width = gray.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    warped = cv2.remap(frame, grid_x + flow[..., 0], grid_y + flow[..., 1],
                       interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    motion_px = np.hypot(flow[..., 0], flow[..., 1])
    weight = np.clip((motion_px - min_motion_px) / min_motion_px, 0.0, 1.0)
    if frame.ndim == 3:
        weight = weight[..., None]
    blended = frame.astype(np.float32) * (1.0 - weight) + warped.astype(np.float32) * weight
    return np.clip(np.rint(blended), 0, 255).astype(frame.dtype), float((motion_px > min_motion_px).mean())


def align_stack(frames: np.ndarray, *, reference: int | None = None, residual_flow: bool = False,
                max_side_px: int = ALIGN_MAX_SIDE_PX) -> tuple[np.ndarray, StackAlignment, dict]:
    """Align a static stack (S, H, W, 3) uint8 onto its reference frame: breathing scale +
    homography per frame, then (``residual_flow``) DIS flow to the reference where clearly
    super-pixel. Returns the aligned frames, the transforms and a small report (JSON-ready).

    The residual flow is off by default: between frames focused far apart it follows the change
    of blur, not motion (on the real phone stack ``mobile_depth_balls`` it moved 87 % of the
    pixels of the far-focused end frame against the near-focused reference by > 1 px after the
    global warp). ``predict`` instead leaves the residual to its streaming flow step."""
    frames = np.asarray(frames)
    alignment = estimate_stack_alignment(frames, reference, max_side_px)
    aligned = np.stack([warp_to_reference(frame, h) for frame, h in zip(frames, alignment.homographies)])
    moved = [0.0] * len(frames)
    if residual_flow:
        reference_gray = cv2.cvtColor(aligned[alignment.reference], cv2.COLOR_RGB2GRAY)
        for i in range(len(frames)):
            if i != alignment.reference:
                aligned[i], moved[i] = residual_flow_warp(reference_gray, aligned[i])
    return aligned, alignment, alignment_report(alignment, moved)


def alignment_report(alignment: StackAlignment, residual_moved_fraction: list[float]) -> dict:
    height, width = alignment.size_hw
    corners = image_corners(height, width)
    shake_px = [float(np.linalg.norm(apply_homography(r, corners) - corners, axis=1).mean())
                for r in alignment.shake]
    return {
        "reference_frame": alignment.reference,
        "breathing_magnification": [round(float(m), 6) for m in alignment.magnification],
        "shake_corner_displacement_px": [round(s, 3) for s in shake_px],
        "neighbour_ecc_correlation": [None if math.isnan(c) else round(float(c), 5)
                                      for c in alignment.pair_correlation],
        "registration_methods": sorted(set(alignment.methods[1:])),
        "residual_flow_moved_fraction": [round(f, 4) for f in residual_moved_fraction],
    }


# --- focus order from the stack --------------------------------------------------------------


def _rank_correlation(values: np.ndarray) -> float:
    """Spearman's rho of ``values`` against their index (ties are not expected)."""
    if len(values) < 3:
        return 0.0
    ranks = np.argsort(np.argsort(values)).astype(np.float64)
    index = np.arange(len(values), dtype=np.float64)
    return float(np.corrcoef(ranks, index)[0, 1])


def estimate_focus_order(magnification: np.ndarray) -> FocusOrder:
    """Sweep direction and relative dioptric focus positions from the breathing
    magnification of each frame (1 = nearest focus)."""
    magnification = np.asarray(magnification, np.float64)
    change = float(magnification.max() - magnification.min())
    rho = _rank_correlation(magnification)
    position = (magnification - magnification.min()) / change if change > 0 else \
        np.full(len(magnification), 0.5)
    if change < MIN_BREATHING_CHANGE or abs(rho) < MIN_BREATHING_RANK_CORRELATION:
        direction = "unknown"
    else:  # nearer focus = larger magnification: growing along the stack means far -> near
        direction = "far_to_near" if rho > 0 else "near_to_far"
    return FocusOrder(direction, [float(p) for p in position], change, rho)


# Without --stack-align the sweep direction is still estimated, from at most this many frames
# spread over the stack, registered at a smaller size: the trend needs only the scale.
DIRECTION_MAX_FRAMES = 16
DIRECTION_MAX_SIDE_PX = 480
DIRECTION_MAX_SPAN = 64  # ... among the first this many frames (one sweep of a stack or a video)


def estimate_sweep_direction(frames, count: int, max_frames: int = DIRECTION_MAX_FRAMES,
                             max_side_px: int = DIRECTION_MAX_SIDE_PX) -> FocusOrder:
    """The sweep direction of a stack with unknown focus distances from the breathing trend of
    at most ``max_frames`` of its first ``min(count, DIRECTION_MAX_SPAN)`` frames (``frames``:
    any iterable of them, in order; read once, up to the last one chosen). Reported "unknown"
    when the trend is weak or not monotone, e.g. a moving camera or several sweeps. The
    relative positions are those of the chosen frames."""
    count = min(count, DIRECTION_MAX_SPAN)  # a long video: its start, not a second full decode
    chosen = set(np.unique(np.linspace(0, count - 1, min(count, max_frames)).round().astype(int)).tolist())
    picked = []
    for index, frame in enumerate(frames):
        if index in chosen:
            picked.append(frame)
        if index >= count - 1:
            break
    if len(picked) < 3:
        return FocusOrder("unknown", [0.5] * len(picked), 0.0, 0.0)
    alignment = estimate_stack_alignment(picked, max_side_px=max_side_px)
    return estimate_focus_order(alignment.magnification)


#: :func:`mean_abs_gray_difference` reads frames shrunk to at most this long side: it is a
#: diagnostic for summary.json, and at 12 MP (4032x2268, 25 frames) it took 5.6 of the
#: command's 33 s at full size. Frames up to 1280 px wide are read as they are.
DIFFERENCE_MAX_SIDE_PX = 1280


def mean_abs_gray_difference(frames: np.ndarray, reference: int, border_fraction: float = 0.05) -> float:
    """Mean absolute gray-level difference (0-255) of every frame to the reference, inside a
    border of ``border_fraction`` of the size: a blunt residual-misalignment measure (defocus
    differences add to it too, so compare before/after on the same stack). Frames larger than
    :data:`DIFFERENCE_MAX_SIDE_PX` are area-shrunk to it first."""
    def gray(frame: np.ndarray) -> np.ndarray:
        out = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        factor = DIFFERENCE_MAX_SIDE_PX / float(max(out.shape))
        if factor < 1.0:
            out = cv2.resize(out, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        return out

    reference_gray = gray(frames[reference])
    height, width = reference_gray.shape
    by, bx = int(height * border_fraction), int(width * border_fraction)
    inner = (slice(by, height - by), slice(bx, width - bx))
    # uint8 |a - b| (cv2.absdiff) is exact; summed per frame in float64.
    totals = [float(cv2.absdiff(gray(frame), reference_gray)[inner].sum(dtype=np.float64))
              for i, frame in enumerate(frames) if i != reference]
    count = (height - 2 * by) * (width - 2 * bx) * len(totals)
    return sum(totals) / count


# --- the predict hook --------------------------------------------------------------------------


# Automatic stack alignment (predict on a static stack) applies the transforms only if some
# frame's corners move by more than this fraction of the image diagonal: ECC reads up to ~1 % of
# motion into tripod stacks (0.2-1.4 px at 128 px), and resampling those frames cost accuracy.
AUTO_ALIGN_MIN_MOTION_FRACTION = 0.015


def largest_corner_motion_px(alignment: StackAlignment) -> float:
    """How far, in pixels, the alignment moves the image corners of its most moved frame."""
    corners = image_corners(*alignment.size_hw)
    return float(max(np.linalg.norm(apply_homography(h, corners) - corners, axis=1).max()
                     for h in alignment.homographies))


#: The automatic alignment first registers the stack at this size; a stack whose corners then
#: move by less than half of :data:`AUTO_ALIGN_MIN_MOTION_FRACTION` is a tripod and is not
#: registered again at :data:`ALIGN_MAX_SIDE_PX`. On a 20-frame 1280x720 sweep: tripod 0.12 %
#: of the diagonal at 240 px (0.11 % at 480), the same frames with 3 % breathing and a 3 px,
#: 0.5 degree shake 1.79 % (1.83 %). The whole command on that tripod stack: 2.6-2.7 s with
#: the check, 3.9-4.1 s registering it at ALIGN_MAX_SIDE_PX instead.
QUICK_CHECK_SIDE_PX = 240


def tripod_check(frames) -> StackAlignment | None:
    """The stack's alignment at :data:`QUICK_CHECK_SIDE_PX` if it shows a tripod, else None."""
    quick = estimate_stack_alignment(frames, max_side_px=QUICK_CHECK_SIDE_PX)
    diagonal_px = math.hypot(*quick.size_hw)
    still = largest_corner_motion_px(quick) < 0.5 * AUTO_ALIGN_MIN_MOTION_FRACTION * diagonal_px
    return quick if still else None


def prepare_handheld(sequence, *, stack_align: bool | str = False, far_to_near: bool | None = None):
    """What ``predict`` does to a sequence before streaming it; returns ``(sequence,
    far_to_near, report)``. An unknown camera makes the depth relative (the focus list is
    dropped: without a lens, blur says nothing in metres). ``stack_align`` (static stacks)
    aligns every frame onto the reference frame (breathing + homography) and, when focus
    distances are unknown and ``far_to_near`` is None, takes the sweep direction from the
    breathing trend; ``"auto"`` does so only when the stack visibly moves (a hand-held stack:
    :data:`AUTO_ALIGN_MIN_MOTION_FRACTION`), and leaves a tripod stack's pixels alone.
    ``report`` goes into summary.json."""
    from dataclasses import replace

    report: dict = {"camera_known": bool(getattr(sequence, "camera_known", True)),
                    "warnings": list(getattr(sequence, "notes", []))}
    known_focus = [f for f in sequence.focus_distance_m if f is not None]
    if not report["camera_known"]:
        if not report["warnings"]:  # (a folder without meta.json has said so already)
            report["warnings"].append("camera unknown (focal length, f-number or sensor width null or "
                                      "missing): depth is RELATIVE")
        if far_to_near is None and len(known_focus) >= 2:
            far_to_near = known_focus[-1] < known_focus[0]  # the focus list still gives the order
            report["sweep_direction_source"] = "focus list (camera unknown)"
        sequence = replace(sequence, focus_distance_m=[None] * len(sequence))
    relative = any(f is None for f in sequence.focus_distance_m)
    if stack_align:
        frames = sequence.load().frames
        quick = tripod_check(frames) if stack_align == "auto" and not relative else None
        if quick is not None:  # a tripod at a glance: the full-resolution registration is skipped
            aligned, alignment = frames, quick
            report["stack_alignment"] = {**alignment_report(alignment, [0.0] * len(frames)),
                                         "registered_at_max_side_px": QUICK_CHECK_SIDE_PX}
        else:
            aligned, alignment, report["stack_alignment"] = align_stack(frames)
        motion_px = largest_corner_motion_px(alignment)
        diagonal_px = math.hypot(*alignment.size_hw)
        applied = stack_align != "auto" or motion_px > AUTO_ALIGN_MIN_MOTION_FRACTION * diagonal_px
        report["stack_alignment"].update({
            "mode": "given" if stack_align != "auto" else "auto", "applied": bool(applied),
            "largest_corner_motion_px": round(motion_px, 2),
            "why": "given" if stack_align != "auto" else
            (f"the stack moves (corners up to {motion_px:.1f} px, more than "
             f"{AUTO_ALIGN_MIN_MOTION_FRACTION:.1%} of the diagonal): hand-held" if applied else
             f"the stack holds still (corners within {motion_px:.1f} px): frames left as they are")})
        if applied:
            report["stack_alignment"]["mean_abs_gray_difference_to_reference"] = {
                "before": round(mean_abs_gray_difference(frames, alignment.reference), 3),
                "after": round(mean_abs_gray_difference(aligned, alignment.reference), 3)}
        # Decoded either way: keep them (a tripod stack is not read from disk a second time).
        sequence = replace(sequence, frames=aligned if applied else frames)
        order = estimate_focus_order(alignment.magnification)
        report["focus_order_estimate"] = order.to_dict()
        if relative and far_to_near is None and order.direction != "unknown":
            far_to_near = order.direction == "far_to_near"
            report["sweep_direction_source"] = "estimated from focus breathing"
    elif relative and far_to_near is None:
        # Not a flag the user should need: a phone stack taken far to near came out inverted
        # (near ball at 0.18 of 1) with the near-to-far default.
        order = estimate_sweep_direction(sequence.iter_frames(), len(sequence))
        report["focus_order_estimate"] = order.to_dict()
        if order.direction != "unknown":
            far_to_near = order.direction == "far_to_near"
            report["sweep_direction_source"] = "estimated from focus breathing"
    if relative:
        report.setdefault("sweep_direction_source", "given" if far_to_near is not None else
                          "default (near to far)")
        report["sweep_direction"] = "far_to_near" if far_to_near else "near_to_far"
    return sequence, bool(far_to_near), report


# --- one global translation between two shots of a scene (e.g. f/8 and f/2.8) -----------------


def translation_px(fixed_gray: np.ndarray, moving_gray: np.ndarray) -> tuple[float, float]:
    """Sub-pixel translation ``(dx, dy)`` with ``moving(x + dx, y + dy) ~ fixed(x, y)`` between
    two float32 gray images of one scene shot with different blur (apertures, focus).

    ECC (OpenCV) on slightly smoothed luminance, which makes a sharp and a defocused shot
    comparable; the start comes from phase correlation (robust to shifts of several pixels).
    A symmetric PSF does not move edges, so defocus does not bias the estimate.
    """
    fixed = cv2.GaussianBlur(np.asarray(fixed_gray, np.float32), (0, 0), 1.0)
    moving = cv2.GaussianBlur(np.asarray(moving_gray, np.float32), (0, 0), 1.0)
    window = cv2.createHanningWindow(fixed.shape[::-1], cv2.CV_32F)
    # phaseCorrelate multiplies its inputs by the window in place: give it copies.
    (dx, dy), _ = cv2.phaseCorrelate(fixed.copy(), moving.copy(), window)
    warp = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    # The mirrored border of a shifted image matches nothing: only the interior counts.
    margin = max(4, min(fixed.shape) // 32)
    interior = np.zeros(fixed.shape, dtype=np.uint8)
    interior[margin:-margin, margin:-margin] = 1
    # A tight tolerance: ECC's default-like (1e-5, 100 iterations) stops ~0.1 px short.
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 1000, 1e-8)
    try:
        _, warp = cv2.findTransformECC(fixed, moving, warp, cv2.MOTION_TRANSLATION, criteria,
                                       interior, 1)
    except cv2.error:  # ECC did not converge (a featureless image): keep the phase estimate
        pass
    return float(warp[0, 2]), float(warp[1, 2])


def translate(image: np.ndarray, shift_px: tuple[float, float]) -> np.ndarray:
    """``image`` (H, W[, C]) resampled at ``(x + dx, y + dy)``: Lanczos (little blur, so a
    sharp shot keeps its sharpness), borders mirrored. uint8 in, uint8 out."""
    dx, dy = shift_px
    warp = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float64)
    return cv2.warpAffine(image, warp, (image.shape[1], image.shape[0]),
                          flags=cv2.INTER_LANCZOS4 | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
