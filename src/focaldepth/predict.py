"""Depth for every frame of a focus sweep, streamed in constant memory.

:class:`StreamingPredictor` takes frames one at a time (``push``) and returns, for each frame
``t``, a metric depth map and a confidence map computed from the frames seen so far: the
last ``window`` frames (by default one focus ramp), each warped onto frame ``t`` with dense
optical flow (OpenCV DIS) so that moving cameras and objects do not smear the depth, then
passed to any model of the zoo through the common interface (or the classical baseline).

The network runs at a *working resolution* chosen from the camera: the blur a focus sweep
produces, in pixels, is ``coc_px_per_dpt * sweep_dpt`` (thin lens); images are shrunk when
that blur is larger than what the network was trained on or when they exceed the pixel
budget, and the inverse depth is upsampled back to the input resolution.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from focaldepth.errors import UserError
from focaldepth.models.base import (
    DepthModel,
    camera_tensor,
    order_equivariant,
    run_model,
    single_thread_cpu,
    takes_frame_f_number,
)
from focaldepth.optics import Camera

# The default model was trained on sweeps whose total blur lies in roughly 4-48 px; shrink
# the image when a camera's sweep blurs more than this, so the network sees familiar blur.
MAX_SWEEP_BLUR_PX = 32.0
# Pixel budget of the working resolution: 640x360 runs at 320x180. Measured on 2 CPU cores
# (benchmarks/predict.json) this is ~12 frames/s against ~7.6 at 427x240, and on the demo clip
# it was also the more accurate of the two (the model was trained on 128x128 sequences).
DEFAULT_MAX_PIXELS = 57_600
# Pseudo focus distances used when the metadata gives none: relative depth only.
RELATIVE_NEAR_M, RELATIVE_FAR_M = 0.5, 1.0
OUTPUT_RESOLUTIONS = ("input", "working")
# torch threads for predict: one. With another process on one of the two cores, the default
# model's forward pass (5 x 320x180) took 358 ms with one thread and 3,897 ms with two (median
# of 5, 2026-12-01; issue 10 saw 115 vs 2,008 ms): a thread that waits for a busy core stalls
# every parallel op. The second core is used by Python threads instead (the plane sweep beside
# the vote, finishing frame t while frame t+1 is observed, the writer), which share a busy core
# rather than stall on it: on an idle machine too, one torch thread now beats two (640x360
# command, alternating runs, session 10: 6.87 and 6.62 frames/s against 5.99 and 5.32).
DEFAULT_THREADS = 1
# Height of the side-by-side video: the depth holds no more detail than the working grid,
# and encoding full-height 1080p panels took longer than predicting (issue 10).
VIDEO_HEIGHT_PX = 360
# x264 preset of the side-by-side preview: medium spent 24 ms of CPU per 1280x360 panel,
# superfast 10 ms, for ~25 % more bytes (the encode shares the two cores with the model).
PREVIEW_PRESET = "superfast"


@dataclass
class FramePrediction:
    """Result for one frame: depth in metres (or relative units if ``metric`` is False) and
    confidence in [0, 1], both ``(H, W)`` float32 at the input resolution."""

    depth_m: np.ndarray
    confidence: np.ndarray
    frames_used: int
    all_in_focus: np.ndarray | None = None  # uint8 (H, W, 3) when asked for and available


class PendingPrediction:
    """A submitted frame's :class:`FramePrediction`, finished now or on the finishing thread."""

    def __init__(self, value: Any = None, future: Any = None):
        self._value, self._future = value, future

    def result(self) -> Any:
        return self._value if self._future is None else self._future.result()


def pipelined(device: torch.device) -> bool:
    """Whether :meth:`StreamingPredictor.submit` finishes frames on a second thread: CPU
    inference on one torch thread (predict's default), where the second core is otherwise
    idle while the vote runs; with more torch threads they would oversubscribe the cores."""
    return single_thread_cpu(device)


_FINISHING_POOL = None


def _finishing_pool():
    """One worker for every predictor: finishing runs strictly in submission order."""
    global _FINISHING_POOL
    if _FINISHING_POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _FINISHING_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="focaldepth-finish")
    return _FINISHING_POOL


def _in_inference_mode(finish: Callable[[], Any]) -> Any:
    with torch.inference_mode():  # thread-local: the worker does not inherit the caller's
        return finish()


def ramp_length(focus_distance_m: list[float | None]) -> int | None:
    """Frames per focus ramp: the length of the first monotone run of known distances
    (a sweep near->far jumps back to near between ramps). None if fewer than 2 are known."""
    known = [f for f in focus_distance_m if f is not None]
    if len(known) < 2:
        return None
    direction = math.copysign(1.0, known[1] - known[0])
    length = 2
    while length < len(known) and (known[length] - known[length - 1]) * direction > 0:
        length += 1
    return length


def sweep_blur_px(camera: Camera, focus_distance_m: list[float | None]) -> float:
    """Blur in pixels between the nearest and farthest focus of the schedule."""
    known = [f for f in focus_distance_m if f is not None]
    if len(known) < 2:
        return 0.0
    return camera.coc_px_per_dpt * (1.0 / min(known) - 1.0 / max(known))


def resolve_max_pixels(model, max_pixels: int | None) -> int:
    """The working pixel budget: the user's, else the model's own (``working_max_pixels``, in
    its weight file: the resolution it was trained at), else :data:`DEFAULT_MAX_PIXELS`."""
    if max_pixels is not None:
        return int(max_pixels)
    return int(getattr(model, "working_max_pixels", None) or DEFAULT_MAX_PIXELS)


def working_scale(camera: Camera, focus_distance_m: list[float | None], height: int, width: int,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> float:
    """Scale factor (<= 1) from the input to the working resolution (see module docstring)."""
    scale = min(1.0, math.sqrt(max_pixels / float(height * width)))
    blur = sweep_blur_px(camera, focus_distance_m)
    if blur > MAX_SWEEP_BLUR_PX:
        scale = min(scale, MAX_SWEEP_BLUR_PX / blur)
    return max(scale, 32.0 / min(height, width))  # never below 32 px on the short side


# A long window (a slow sweep, a 32-frame stack) is read through at most this many of its frames,
# spread evenly over its focus range (the newest always among them), so the per-frame cost of
# the network, the plane sweep and the warps stays flat in the window length. 10 = the most
# slices the shipped models were trained on (data.num_frames).
MAX_SLICES = 10
STILL_FLOW_PX = 0.5  # flow below this is treated as no motion (see FlowAligner.align)
# A static-stack folder whose neighbouring frames' flows average at most this (working pixels)
# is a tripod stack: its frames are not warped and each set of frames is observed once
# (StreamingPredictor.hold_stack_still). cpu_test_v2: tripod stacks 0.08-0.22, moving 0.69-14.
STILL_STACK_MEAN_FLOW_PX = 0.4
# Model outputs with one entry per frame of the window along dim 1 (reordered when a still
# stack's observation is reused for another window).
PER_FRAME_OUTPUTS = ("focus_weights", "coc_px")


class FlowAligner:
    """Warps earlier frames onto the current one with OpenCV's DIS optical flow."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST):
        self.flow = cv2.DISOpticalFlow_create(preset)
        # Pixel grids by size: the working grid, and the input's for a full-resolution
        # all-in-focus image, which is warped on the finishing thread (StreamingPredictor.submit)
        # while the next frame is aligned on the working grid, so one cached grid would race.
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def align(self, reference_gray: np.ndarray, other_gray: np.ndarray, other_rgb: np.ndarray) -> np.ndarray:
        """``other_rgb`` resampled so that it lines up with the reference frame."""
        return self.warp(other_rgb, self.displacement(reference_gray, other_gray))

    def displacement(self, reference_gray: np.ndarray, other_gray: np.ndarray) -> np.ndarray:
        """``(H, W, 2)`` float32: reference pixel -> position in the other frame, minus the pixel."""
        return self.flow.calc(reference_gray, other_gray, None)

    def _pixel_grid(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        grid = self._grids.get((height, width))
        if grid is None:  # built once per clip and size
            grid = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
            self._grids[(height, width)] = grid
        return grid

    def compose(self, newest: np.ndarray, earlier: np.ndarray | None) -> np.ndarray:
        """Displacement current -> frame k from ``newest`` (current -> previous) and ``earlier``
        (previous -> frame k, None when frame k is the previous frame):
        d(x) = newest(x) + earlier(x + newest(x)). Only the (smooth) flow field is resampled,
        never the image, so a frame is resampled once however long it stays in the window."""
        if earlier is None:
            return newest
        grid_x, grid_y = self._pixel_grid(*newest.shape[:2])
        carried = cv2.remap(earlier, grid_x + newest[..., 0], grid_y + newest[..., 1],
                            interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return newest + carried

    def warp(self, other_rgb: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """``other_rgb`` resampled along ``flow`` (see :meth:`displacement`), sub-pixel flow
        leaving the pixels untouched."""
        motion_px = np.hypot(flow[..., 0], flow[..., 1])
        if float(motion_px.max()) <= STILL_FLOW_PX:  # nothing moved: no resampling at all
            return other_rgb
        grid_x, grid_y = self._pixel_grid(*flow.shape[:2])
        # Bicubic, not bilinear: bilinear resampling at sub-pixel offsets low-passes the frame,
        # and a depth-from-focus model reads the loss of detail as defocus (it then leans to
        # the current frame's focus; measured in results/default_aligned).
        warped = cv2.remap(other_rgb, grid_x + flow[..., 0], grid_y + flow[..., 1],
                           interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        # Where the flow is sub-pixel (static parts, or DIS reacting to a change of blur rather
        # than to motion) resampling costs more focus cue than misalignment does: keep the
        # original pixels there, fading to the warped ones between 0.5 and 1 px of motion.
        weight = np.clip((motion_px - STILL_FLOW_PX) / STILL_FLOW_PX, 0.0, 1.0)[..., None]
        blended = other_rgb.astype(np.float32) * (1.0 - weight) + warped.astype(np.float32) * weight
        return np.clip(np.rint(blended), 0, 255).astype(other_rgb.dtype)


class StreamingPredictor:
    """Causal per-frame depth from a focus sweep; see the module docstring.

    Args:
        model: any :class:`DepthModel` (learned or the classical baseline wrapper).
        camera: the camera of the stored frames (``image_width_px`` = frame width).
        focus_distance_m: the whole schedule if known in advance (used for the window length
            and the working resolution); entries may be None.
        window: frames per depth estimate; default: one focus ramp of the schedule.
        align: warp the window onto the current frame with optical flow.
        max_pixels: pixel budget of the working resolution (None: the model's own, else
            :data:`DEFAULT_MAX_PIXELS`; see :func:`resolve_max_pixels`).
        far_to_near: only when focus distances are unknown: the sweep starts at the far end
            (default: near to far). Relative depth is only defined up to this order.
        output_resolution: ``"input"`` (maps upsampled to the frame size) or ``"working"``
            (the network's grid: all the information there is, at a fraction of the bytes).
        upsample: ``"guided"`` (edge-aware, guided by the current full-resolution frame; see
            :func:`guided_upsample`) or ``"bilinear"``.
        all_in_focus: also return an all-in-focus RGB image per frame (see
            :meth:`_all_in_focus`).
        max_slices: at most this many frames of the window go into one estimate (see
            :func:`select_slices`); None = all of them.
    """

    def __init__(self, model: DepthModel, camera: Camera, focus_distance_m: list[float | None],
                 height: int, width: int, *, window: int | None = None, align: bool = True,
                 max_pixels: int | None = None, device: str | torch.device = "cpu",
                 far_to_near: bool = False, output_resolution: str = "input", upsample: str = "guided",
                 all_in_focus: bool = False, max_slices: int | None = MAX_SLICES):
        if max_slices is not None and max_slices < 2:
            raise UserError(f"max_slices must be at least 2, got {max_slices}")
        self.max_slices = max_slices
        if output_resolution not in OUTPUT_RESOLUTIONS:
            raise UserError(f"unknown output resolution {output_resolution!r} (choose {' or '.join(OUTPUT_RESOLUTIONS)})")
        if upsample not in ("guided", "bilinear"):
            raise UserError(f"unknown upsampling {upsample!r} (choose guided or bilinear)")
        self.output_resolution, self.upsample, self.want_aif = output_resolution, upsample, all_in_focus
        self.model = model.eval().to(device)
        self.far_to_near = far_to_near
        self.device = torch.device(device)
        self.metric = all(f is not None for f in focus_distance_m)
        self.window = window or ramp_length(focus_distance_m) or len(focus_distance_m)
        self.required = required_frames(model)
        if self.required is not None:
            self.window = self.required
        if self.window < 1:
            raise UserError(f"window must be at least 1 frame, got {self.window}")
        self.height, self.width = height, width
        max_pixels = resolve_max_pixels(self.model, max_pixels)
        scale = working_scale(camera, focus_distance_m, height, width, max_pixels) if self.metric else \
            min(1.0, math.sqrt(max_pixels / float(height * width)))
        self.work_h = max(16, int(round(height * scale)))
        self.work_w = max(16, int(round(width * scale)))
        self.camera = camera.resized(self.work_w)
        self.aligner = FlowAligner() if align else None
        self.buffer: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=self.window)
        # Per buffered frame: its f-number (None = the camera's), for models whose frames
        # differ in aperture (models.base.takes_frame_f_number); kept beside the buffer.
        self.f_numbers: deque[float | None] = deque(maxlen=self.window)
        self.frame_f_number = takes_frame_f_number(self.model)
        # Per buffered frame: displacement from the newest frame's pixels into that frame
        # (None for the newest itself). One flow per new frame (newest -> previous), composed
        # onto the stored fields: the cost per frame is one DIS flow, whatever the window.
        self.displacements: deque[np.ndarray | None] = deque(maxlen=self.window)
        # Full-resolution frames, kept only for an all-in-focus image at the input resolution.
        self.full_frames: deque[np.ndarray] = deque(maxlen=self.window)
        self._current_full: np.ndarray | None = None
        self.flows_computed = 0
        # A stateful (temporal) model carries a state from frame to frame (models/temporal.py):
        # it gets the newest flow (current -> previous frame) to move its state along.
        self.stateful = bool(getattr(self.model, "stateful", False))
        self.state = None
        self.last_flow_px: np.ndarray | None = None  # (h, w, 2) current -> previous, working grid
        self.scene_cuts = 0
        self._stack: dict | None = None  # set by load_stack
        self._stack_focus: list[float] | None = None
        # A still stack (hold_stack_still): the stack indices of the current window, and the
        # observations already made of a set of its frames, by that set.
        self._window_sources: list[int] | None = None
        self._observations: dict | None = None
        self.observations_computed = 0

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.height, self.width) if self.output_resolution == "input" else (self.work_h, self.work_w)

    def push(self, frame_rgb8: np.ndarray, focus_distance_m: float | None,
             f_number: float | None = None) -> FramePrediction:
        """Add the next frame (``f_number``: its own aperture when frames differ, e.g. an f/8,
        f/2.8 pair; None = the camera's); return depth and confidence for it."""
        return self.submit(frame_rgb8, focus_distance_m, f_number).result()

    def submit(self, frame_rgb8: np.ndarray, focus_distance_m: float | None,
               f_number: float | None = None) -> PendingPrediction:
        """:meth:`push` without waiting for the end: the window is aligned and observed (the
        vote and the plane sweep) now, and the rest (a temporal model's filter, upsampling,
        the all-in-focus image) is finished on a second thread, in order, while the caller
        submits the next frame. ``.result()`` gives the :class:`FramePrediction`. So the
        filter of frame t and the observation of frame t+1 use the two cores at once.
        Finished inline (no thread) unless this is CPU inference on one torch thread
        (:func:`pipelined`); the results are the same either way."""
        self._buffer(frame_rgb8, focus_distance_m, f_number)
        return self._schedule(self._estimate())

    def add(self, frame_rgb8: np.ndarray, focus_distance_m: float | None, f_number: float | None = None) -> None:
        """Put the next frame into the window (aligned like every frame) without an estimate
        for it: a static stack needs depth for its last frame only (``predict --last-only``).
        A stateful model starts afresh at the next estimate, as after a frame without one."""
        self._buffer(frame_rgb8, focus_distance_m, f_number)
        self._schedule(lambda: setattr(self, "state", None))  # in order with submitted frames

    def load_stack(self, frames_rgb8: list[np.ndarray], focus_distance_m: list[float | None],
                   f_numbers: list[float | None] | None = None) -> None:
        """A static focal stack, for :meth:`submit_stack_frame`: every frame is then estimated
        from the whole stack (a non-causal window), not from the frames before it. Neighbours
        in the stack are registered once in both directions (2 (N - 1) flows, between frames of
        nearly the same blur) and chained, as the stream chains its flows."""
        count = len(frames_rgb8)
        if count != len(focus_distance_m):
            raise ValueError(f"load_stack: {count} frames but {len(focus_distance_m)} focus distances")
        smalls, grays = zip(*(self._working_copies(frame) for frame in frames_rgb8))
        backward = [None] + [self.aligner.displacement(grays[k], grays[k - 1]) if self.aligner else None
                             for k in range(1, count)]  # frame k -> k - 1
        forward = [self.aligner.displacement(grays[k], grays[k + 1]) if self.aligner else None
                   for k in range(count - 1)] + [None]  # frame k -> k + 1
        self.flows_computed += 2 * (count - 1) if self.aligner else 0
        self._stream_window = self.window
        self.window, self._stack_focus = count, None
        self._window_sources, self._observations = None, None  # a new stack is not held still yet
        # Unknown focus: the frames' positions along the sweep, as a stream would number them.
        pseudo = None if self.metric else self._relative_focus(count)
        self._stack = {"small": smalls, "gray": grays, "full": list(frames_rgb8), "backward": backward,
                       "forward": forward, "pseudo_focus": pseudo,
                       "focus": [self._focus_value(f) for f in focus_distance_m],
                       "f_number": list(f_numbers) if f_numbers is not None else [None] * count}

    def stack_motion_px(self) -> float:
        """How much the loaded stack moves beyond a homography (hand shake and focus breathing
        are homographies): the largest, over neighbouring frames, 95th percentile of the flow's
        residual after a RANSAC homography fit, in working pixels; 0 without alignment. Static
        cpu_test_v2 stacks score 0.13-0.81, its moving scenes 0.76-15, a real hand-held phone
        stack 0.21."""
        if self._stack is None or self.aligner is None:
            return 0.0
        worst = 0.0
        ys, xs = np.mgrid[0:self.work_h:4, 0:self.work_w:4]
        points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
        for flow in self._stack["backward"][1:]:
            moved = points + flow[ys.ravel(), xs.ravel()]
            homography, _ = cv2.findHomography(points, moved, cv2.RANSAC, 1.0)
            if homography is None:
                return math.inf
            residual = np.hypot(*(moved - cv2.perspectiveTransform(points[None], homography)[0]).T)
            worst = max(worst, float(np.percentile(residual, 95)))
        return worst

    def stack_still_px(self) -> float:
        """How much the loaded stack's pixels move at all: the largest, over neighbouring
        frames, mean length of the flow, in working pixels (0 without alignment). Tripod
        stacks of cpu_test_v2 score 0.08-0.22 (DIS reacting to the change of blur), its moving
        scenes 0.69-14."""
        if self._stack is None or self.aligner is None:
            return 0.0
        return max((float(np.hypot(flow[..., 0], flow[..., 1]).mean()) for flow in self._stack["backward"][1:]),
                   default=0.0)

    def hold_stack_still(self) -> None:
        """Treat the loaded stack as still (a tripod): no frame is warped, so every frame's
        window holds the same frames in another order, and the model, which is equivariant to
        the order of its frames, observes each set of frames once; its per-frame outputs are
        reordered for each window. The temporal filter and the upsampling still run per frame.
        On the 10 tripod stacks of cpu_test_v2 dropping the warps left the mean AbsRel over
        all frames' maps at 0.2934 (0.2935 warped)."""
        if self._stack is None:
            raise RuntimeError("hold_stack_still: call load_stack first")
        stack = self._stack
        stack["still"] = True
        # The same slices for every frame (at most max_slices, spread over the focus range), so
        # that a stack longer than max_slices is also observed once: without warps, depth is
        # in every frame's coordinates whether or not that frame is among them.
        focus = stack["focus"] if self.metric else stack["pseudo_focus"]
        stack["selection"] = set(select_slices(focus, self.max_slices))
        self._observations = {}

    def unload_stack(self) -> None:
        """Back to streaming after :meth:`load_stack` (e.g. the stack turned out to move)."""
        if self._stack is not None:
            self.window, self._stack, self._stack_focus = self._stream_window, None, None
            self._window_sources, self._observations = None, None

    def submit_stack_frame(self, index: int) -> PendingPrediction:
        """Frame ``index`` of the loaded stack (:meth:`load_stack`), estimated from all of it:
        the other frames are warped onto frame ``index``, which goes last in the window (the
        current frame). Submit the frames in order: a temporal model carries its state along."""
        stack = self._stack
        if stack is None:
            raise RuntimeError("submit_stack_frame: call load_stack first")
        count = len(stack["small"])
        displacement: dict[int, np.ndarray | None] = {}
        if self.aligner is not None and not stack.get("still"):
            for i in range(index - 1, -1, -1):  # chained backwards: index -> i + 1 -> i
                displacement[i] = stack["backward"][i + 1] if i == index - 1 else \
                    self.aligner.compose(displacement[i + 1], stack["backward"][i + 1])
            for i in range(index + 1, count):  # and forwards
                displacement[i] = stack["forward"][i - 1] if i == index + 1 else \
                    self.aligner.compose(displacement[i - 1], stack["forward"][i - 1])
        order = [i for i in range(count) if i != index] + [index]
        self._window_sources = order
        self.buffer = deque([(stack["small"][i], stack["gray"][i], stack["focus"][i]) for i in order], maxlen=count)
        self.displacements = deque([displacement.get(i) for i in order[:-1]] + [None], maxlen=count)
        self.f_numbers = deque([stack["f_number"][i] for i in order], maxlen=count)
        if self.want_aif and self.output_resolution == "input":
            self.full_frames = deque([stack["full"][i] for i in order], maxlen=count)
        self._current_full = stack["full"][index]
        self.last_flow_px = displacement.get(index - 1)
        self._stack_focus = None if self.metric else [stack["pseudo_focus"][i] for i in order]
        return self._schedule(self._estimate())

    def _buffer(self, frame_rgb8: np.ndarray, focus_distance_m: float | None, f_number: float | None) -> None:
        """The window's bookkeeping for a new frame: resize, flow to the previous frame, buffers."""
        small, gray = self._working_copies(frame_rgb8)
        if self.aligner is not None and self.buffer and self.window > 1:
            if len(self.displacements) != len(self.buffer):  # frames put into the buffer directly
                kept_frames = list(self.buffer)[1:] if len(self.buffer) == self.window else list(self.buffer)
                self.displacements = deque([self.aligner.displacement(gray, entry[1]) for entry in kept_frames],
                                           maxlen=self.window)
                self.flows_computed += len(kept_frames)
                self.last_flow_px = self.displacements[-1] if self.displacements else None
            else:
                newest = self.aligner.displacement(gray, self.buffer[-1][1])  # current -> previous
                self.flows_computed += 1
                self.last_flow_px = newest
                kept = list(self.displacements)[1:] if len(self.buffer) == self.window else list(self.displacements)
                self.displacements = deque([self.aligner.compose(newest, d) for d in kept[:-1]] + [newest],
                                           maxlen=self.window)
        else:
            self.last_flow_px = None  # first frame, or no alignment: a stateful model assumes no motion
            if len(self.displacements) != len(self.buffer):
                self.displacements = deque([None] * len(self.buffer), maxlen=self.window)
        if len(self.f_numbers) != len(self.buffer):  # frames put into the buffer directly
            self.f_numbers = deque([None] * len(self.buffer), maxlen=self.window)
        self.buffer.append((small, gray, self._focus_value(focus_distance_m)))
        self.f_numbers.append(None if f_number is None else float(f_number))
        self.displacements.append(None)
        self._current_full = frame_rgb8
        if self.want_aif and self.output_resolution == "input":
            self.full_frames.append(frame_rgb8)

    def _working_copies(self, frame_rgb8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A frame on the working grid, in colour and grey (a frame of the wrong size is an error)."""
        if frame_rgb8.shape[:2] != (self.height, self.width):
            raise UserError(f"frame is {frame_rgb8.shape[1]}x{frame_rgb8.shape[0]}, expected "
                            f"{self.width}x{self.height}")
        small = cv2.resize(frame_rgb8, (self.work_w, self.work_h), interpolation=cv2.INTER_AREA)
        return small, cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)

    def reset_state(self) -> None:
        """Forget a stateful model's state (e.g. at a known scene cut); the window is kept.
        Takes effect after the frames already submitted."""
        self._schedule(lambda: setattr(self, "state", None)).result()

    def _schedule(self, finish: Callable[[], Any]) -> PendingPrediction:
        """Run ``finish`` after every earlier one: on the finishing thread, or now."""
        if not pipelined(self.device):
            return PendingPrediction(value=_in_inference_mode(finish))
        return PendingPrediction(future=_finishing_pool().submit(_in_inference_mode, finish))

    def _focus_value(self, focus_distance_m: float | None) -> float:
        return float(focus_distance_m) if self.metric else math.nan  # relative: see _window_focus

    def _window_focus(self) -> list[float]:
        focus = [entry[2] for entry in self.buffer]
        if self.metric:
            return focus
        if self._stack_focus is not None:  # a stack's frames, reordered: their own positions
            return list(self._stack_focus)
        return self._relative_focus(len(focus))

    def _relative_focus(self, count: int) -> list[float]:
        """Stand-in focus distances of the newest ``count`` frames of a window of unknown focus:
        evenly spaced in dioptres along the sweep direction."""
        near_dpt, far_dpt = 1.0 / RELATIVE_NEAR_M, 1.0 / RELATIVE_FAR_M
        if self.far_to_near:
            near_dpt, far_dpt = far_dpt, near_dpt
        dioptres = np.linspace(near_dpt, far_dpt, max(self.window, 2))[-count:] \
            if count > 1 else np.array([0.5 * (near_dpt + far_dpt)])
        return list(1.0 / dioptres)

    def _aligned_window(self, indices: list[int] | None = None) -> np.ndarray:
        """The chosen frames of the window in the newest frame's coordinates; each frame is
        resampled once, from its own pixels, along its composed displacement (static pixels
        not at all)."""
        frames = []
        for index in range(len(self.buffer)) if indices is None else indices:
            rgb, displacement = self.buffer[index][0], self.displacements[index]
            frames.append(rgb if displacement is None or self.aligner is None
                          else self.aligner.warp(rgb, displacement))
        return np.stack(frames)

    def _aligned_full_window(self, indices: list[int] | None = None, full_frames=None,
                             displacements=None) -> np.ndarray:
        """Full-resolution window aligned with the working-resolution displacements (scaled);
        ``full_frames`` and ``displacements``: a snapshot of the buffers (default: now)."""
        full_frames = list(self.full_frames) if full_frames is None else full_frames
        displacements = list(self.displacements) if displacements is None else displacements
        frames = []
        for index in range(len(full_frames)) if indices is None else indices:
            full, displacement = full_frames[index], displacements[index]
            if displacement is None or self.aligner is None:
                frames.append(full)
                continue
            scale_x, scale_y = self.width / self.work_w, self.height / self.work_h
            field = cv2.resize(displacement, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
            field *= np.array([scale_x, scale_y], np.float32)
            frames.append(self.aligner.warp(full, field))
        return np.stack(frames)

    def _all_in_focus(self, outputs: dict, frames: torch.Tensor, indices: list[int],
                      snapshot: tuple | None = None) -> np.ndarray | None:
        """uint8 ``(H, W, 3)`` at the output resolution: the model's own ``all_in_focus`` (or the
        classical ``aif``) if it gives one, else the focus-weighted composite
        sum_s w_s * frame_s of the aligned window; None for a model with neither."""
        image = outputs.get("all_in_focus", outputs.get("aif"))
        weights = outputs.get("focus_weights")
        if image is None and weights is None:
            return None
        if self.output_resolution == "input" and (self.work_h, self.work_w) != (self.height, self.width):
            if weights is not None:  # composite the full-resolution frames with upsampled weights
                full = torch.from_numpy(self._aligned_full_window(indices, *(snapshot or ()))).permute(0, 3, 1, 2).float()
                up = F.interpolate(weights[0].float().cpu()[:, None], size=(self.height, self.width),
                                   mode="bilinear", align_corners=False)
                image = (up * full).sum(dim=0, keepdim=True) / up.sum(dim=0, keepdim=True).clamp_min(1e-6) / 255.0
            else:
                image = F.interpolate(image.float(), size=(self.height, self.width), mode="bicubic",
                                      align_corners=False)
        elif image is None:
            image = (weights[:, :, None] * frames).sum(dim=1)
        rgb = image[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(rgb)

    def _estimate(self) -> Callable[[], FramePrediction]:
        """The current window's estimate: the observation now, and a function that finishes
        it (reads and writes the temporal state, so it must run in frame order)."""
        count = len(self.buffer)
        focus = self._window_focus()
        needed = self.required or 2
        # Depth needs frames that differ in focus, or (two-aperture models) in f-number.
        keys = list(np.round(focus, 9))
        if self.frame_f_number:
            keys = list(zip(keys, self._window_f_numbers()))
        distinct_focus = len(set(keys)) >= min(needed, 2)
        usable = count >= needed and distinct_focus
        if not usable:
            fallback = self._fallback(focus)

            def finish_fallback() -> FramePrediction:
                self.state = None  # nothing to carry across a frame without an estimate
                return fallback
            return finish_fallback
        indices = self._still_selection() if self._observations is not None else \
            select_slices(focus, self.max_slices)
        frames = torch.from_numpy(self._aligned_window(indices)).to(self.device)
        frames = frames.permute(0, 3, 1, 2).float().div(255.0).unsqueeze(0)
        focus_t = torch.tensor([[focus[i] for i in indices]], dtype=torch.float32, device=self.device)
        # The current frame goes last; a still stack's fixed slices may leave it out (it is
        # then only the filter's image and the upsampling's guide; its focus, the filter's phase).
        if indices[-1] == count - 1:
            current, step_focus = frames[:, -1], focus_t
        else:
            current = torch.from_numpy(self.buffer[-1][0]).to(self.device).permute(2, 0, 1).float().div(255.0)[None]
            step_focus = torch.cat([focus_t, torch.tensor([[focus[-1]]], dtype=torch.float32, device=self.device)], 1)
        camera = camera_tensor([self.camera], device=self.device)
        fill = min(1.0, count / self.window)
        # What finishing reads of the buffers, as they are now (the next frame changes them).
        snapshot = (list(self.full_frames), list(self.displacements)) if self.want_aif else None
        current_full = self._current_full
        with torch.inference_mode():
            if self.stateful:
                flow = None if self.last_flow_px is None else \
                    torch.from_numpy(np.ascontiguousarray(self.last_flow_px)).permute(2, 0, 1)[None].to(self.device)
                observed = self._observed(indices, lambda: self.model.observe(frames, focus_t, camera)) \
                    if hasattr(self.model, "step_observed") else None

                def finish() -> FramePrediction:
                    if observed is None:
                        outputs, self.state = self.model.step(self.state, frames, focus_t, camera,
                                                              flow_to_previous_px=flow, window_fill=fill)
                    else:
                        outputs, self.state = self.model.step_observed(self.state, observed, current, step_focus,
                                                                       flow_to_previous_px=flow, window_fill=fill)
                    self.scene_cuts += int(outputs["scene_cut"].sum())
                    return self._finish(outputs, frames, indices, count, fill, snapshot, current_full, current)
                return finish
            f_number = torch.tensor([[self._window_f_numbers()[i] for i in indices]],
                                    dtype=torch.float32, device=self.device) \
                if self.frame_f_number else None
            outputs = self._observed(indices, lambda: self._run_padded(frames, focus_t, camera, f_number))
        return lambda: self._finish(outputs, frames, indices, count, fill, snapshot, current_full, current)

    def _still_selection(self) -> list[int]:
        """A still stack's window positions of its fixed slices (:meth:`hold_stack_still`)."""
        chosen = self._stack["selection"]
        return [position for position, source in enumerate(self._window_sources) if source in chosen]

    def _observed(self, indices: list[int], observe: Callable[[], dict]) -> dict:
        """``observe()``, or, for a still stack (:meth:`hold_stack_still`), the observation of
        the same frames made for an earlier window, its per-frame outputs reordered to this
        window's order."""
        if self._observations is None or self._window_sources is None:
            self.observations_computed += 1
            return observe()
        sources = [self._window_sources[i] for i in indices]
        key = frozenset(sources)
        if key not in self._observations:
            self.observations_computed += 1
            self._observations[key] = (sources, observe())
            return self._observations[key][1]
        made_for, outputs = self._observations[key]
        order = [made_for.index(source) for source in sources]
        return {name: value[:, order] if name in PER_FRAME_OUTPUTS and torch.is_tensor(value) else value
                for name, value in outputs.items()}

    def _finish(self, outputs: dict, frames: torch.Tensor, indices: list[int], count: int, fill: float,
                snapshot: tuple | None, current_full: np.ndarray, current: torch.Tensor) -> FramePrediction:
        """Depth and confidence at the output resolution (and the all-in-focus image) from the
        model's outputs on the working grid."""
        inverse_depth = 1.0 / outputs["depth_m"].clamp_min(1e-6)
        confidence = outputs.get("confidence", torch.ones_like(inverse_depth))
        if not self.stateful:  # (a stateful model weighs partial windows itself: window_fill)
            # Fewer frames than a full window: keep the estimate, lower the trust.
            confidence = confidence * fill
        aif = self._all_in_focus(outputs, frames, indices, snapshot) if self.want_aif else None
        if self.out_hw == (self.work_h, self.work_w):
            return FramePrediction(self._upsample(1.0 / inverse_depth), self._upsample(confidence), count, aif)
        if self.upsample == "guided":
            small_grey = current[0].mean(dim=0, keepdim=True)[None].cpu()
            full_grey = torch.from_numpy(cv2.cvtColor(current_full, cv2.COLOR_RGB2GRAY))
            full_grey = full_grey.float().div(255.0)[None, None]
            upsampled = guided_upsample(inverse_depth.float().cpu(), small_grey, full_grey)
        else:
            upsampled = self._upsample_t(inverse_depth)
        return FramePrediction(self._upsample(1.0 / upsampled.clamp_min(1e-6)),
                               self._upsample(self._upsample_t(confidence)), count, aif)

    def _window_f_numbers(self) -> list[float]:
        return [self.camera.f_number if n is None else n for n in self.f_numbers]

    def _run_padded(self, frames: torch.Tensor, focus_t: torch.Tensor, camera: torch.Tensor,
                    f_number: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The model on the window, padded by edge replication (bottom / right) up to the
        model's ``size_multiple_px`` (encoder-decoders such as D3Net need multiples of 32),
        its image outputs cropped back to the working grid."""
        multiple = int(getattr(self.model, "size_multiple_px", 1) or 1)
        height, width = frames.shape[-2:]
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            flat = F.pad(frames.flatten(0, 1), (0, pad_w, 0, pad_h), mode="replicate")
            frames = flat.unflatten(0, frames.shape[:2])
        outputs = run_model(self.model, frames, focus_t, camera, f_number=f_number)
        if not (pad_h or pad_w):
            return outputs
        return {key: value[..., :height, :width]
                if torch.is_tensor(value) and value.shape[-2:] == frames.shape[-2:] else value
                for key, value in outputs.items()}

    def _upsample_t(self, image: torch.Tensor) -> torch.Tensor:
        return F.interpolate(image, size=self.out_hw, mode="bilinear", align_corners=False)

    @staticmethod
    def _upsample(image: torch.Tensor) -> np.ndarray:
        return image[0, 0].float().cpu().numpy().astype(np.float32)

    def _fallback(self, focus: list[float]) -> FramePrediction:
        """One frame (or one focus distance) says nothing about depth: report the focus
        distance itself with zero confidence."""
        guess = float(np.median(focus))
        shape = self.out_hw
        aif = None
        if self.want_aif:  # the one frame there is
            frame = self._current_full if self.output_resolution == "input" else self.buffer[-1][0]
            aif = np.ascontiguousarray(frame)
        return FramePrediction(np.full(shape, guess, np.float32), np.zeros(shape, np.float32), len(self.buffer), aif)


def select_slices(focus_distance_m: list[float], max_slices: int | None) -> list[int]:
    """Indices (oldest first) of at most ``max_slices`` frames of a window, spread evenly over
    its dioptric focus range: for each of ``max_slices`` evenly spaced target dioptres the
    nearest unchosen frame, the most recent one among equals (recent frames are the best
    aligned). The newest frame is always chosen: depth is reported in its coordinates."""
    count = len(focus_distance_m)
    if max_slices is None or count <= max_slices:
        return list(range(count))
    dioptres = 1.0 / np.asarray(focus_distance_m, dtype=np.float64)
    chosen = {count - 1}
    targets = np.linspace(dioptres.min(), dioptres.max(), max_slices)
    # Serve the targets farthest from the newest frame's focus first, so the newest frame
    # takes the place of the target nearest to it rather than adding a duplicate.
    for target in sorted(targets, key=lambda t: -abs(t - dioptres[-1]))[:max_slices - 1]:
        free = [i for i in range(count) if i not in chosen]
        chosen.add(min(free, key=lambda i: (round(abs(dioptres[i] - target), 9), -i)))
    return sorted(chosen)


def guided_upsample(value: torch.Tensor, guide_small: torch.Tensor, guide_full: torch.Tensor,
                    radius_px: int = 2, eps: float = 1e-3) -> torch.Tensor:
    """``value`` ``(1, 1, h, w)`` upsampled to ``guide_full``'s size, edge-aware: the fast guided
    filter (He & Sun, arXiv:1505.00996). The local linear model value ~ a * grey + b is fitted
    on the working grid (``guide_small``: the grey frame the network saw), a and b are
    upsampled bilinearly and applied to the full-resolution grey frame, so depth steps follow
    the sharp intensity edges of the input instead of a working-pixel-wide bilinear ramp.
    Cost at the input resolution: two bilinear upsamplings and a multiply-add. The result is
    clamped to the range of ``value`` (no overshoot past the swept depths)."""
    from focaldepth.filters import box_blur

    size = 2 * radius_px + 1

    def box(image):
        return box_blur(image, size, border_type="reflect")

    mean_guide, mean_value = box(guide_small), box(value)
    covariance = box(guide_small * value) - mean_guide * mean_value
    variance = box(guide_small * guide_small) - mean_guide * mean_guide
    slope = covariance / (variance + eps)
    offset = mean_value - slope * mean_guide
    coefficients = F.interpolate(torch.cat([box(slope), box(offset)], dim=1), size=guide_full.shape[-2:],
                                 mode="bilinear", align_corners=False)
    result = coefficients[:, :1] * guide_full + coefficients[:, 1:]
    return result.clamp(float(value.min()), float(value.max()))


def required_frames(model: DepthModel) -> int | None:
    """The exact number of slices a fixed-stack model needs, else None."""
    if model.info.consumes == "single":
        return 1
    if model.info.consumes == "stack_fixed":
        return int(getattr(model, "num_frames"))
    return None


# --- whole sequences: files in, files out ------------------------------------------------

DEFAULT_WEIGHTS = "sweepnet_default"
#: What ``predict`` runs by default: the temporal model over the default per-window model v6
#: (v6 = the real-data vote fused with the physics plane sweep, per motion-compensated window,
#: fused over time along the optical flow; models/temporal.py). Chosen on validation
#: (results/temporal.md, results/default_selection/v6_validation.txt). ``--model
#: sweepnet_default`` gives the per-window model, ``--model sweepnet_temporal`` the faster
#: temporal model over v3 (no physics; about 3x less time per frame, worse on real photos).
DEFAULT_PREDICT_MODEL = "sweepnet_temporal_v8"


def shipped_weights_path(name: str = DEFAULT_WEIGHTS):
    """Path of a model file shipped inside the package (``focaldepth/weights/NAME.pt``)."""
    from importlib.resources import files

    return files("focaldepth") / "weights" / f"{name}.pt"


def load_model(name_or_path: str = DEFAULT_WEIGHTS, device: str = "cpu") -> DepthModel:
    """A ready-to-run model: ``"classical"``, the name of a model file shipped in the package
    (default: the project's default model), or a path to a file written by
    ``focaldepth.models.save`` / a training run. Never downloads anything."""
    from pathlib import Path

    from focaldepth import models

    if name_or_path == "classical":
        from focaldepth.classical import ClassicalDFF

        return ClassicalDFF().to(device)
    if name_or_path == "defocus_volume":
        from focaldepth.defocus_volume import DefocusVolume

        return DefocusVolume().to(device)
    shipped = shipped_weights_path(name_or_path)
    path = Path(str(shipped)) if shipped.is_file() else Path(name_or_path)
    if not path.is_file():
        raise UserError(f"no such model file or shipped model (shipped: {', '.join(shipped_model_names())}, "
                        "or 'classical')", name_or_path)
    return models.load(path, map_location=device)


def shipped_model_names() -> list[str]:
    from importlib.resources import files

    folder = files("focaldepth") / "weights"
    return sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".pt")) if folder.is_dir() else []


def display_range_m(focus_distance_m: list[float | None]) -> tuple[float, float]:
    """One colour range for the whole clip: the swept focus range widened by a quarter of its
    width in dioptres on each side (what a focus sweep can observe)."""
    known = [f for f in focus_distance_m if f is not None]
    near_dpt, far_dpt = 1.0 / min(known), 1.0 / max(known)
    margin = 0.25 * max(near_dpt - far_dpt, 1e-3)
    # Far end: never past twice the farthest focus (a sweep says little beyond it).
    return 1.0 / (near_dpt + margin), 1.0 / max(far_dpt - margin, 0.5 * far_dpt)


def relative_inverse_depth(depth_m: np.ndarray) -> np.ndarray:
    """Relative mode: pseudo depth (from pseudo focus distances) -> 1 at the nearest pseudo
    focus, 0 at the farthest."""
    low, high = 1.0 / RELATIVE_FAR_M, 1.0 / RELATIVE_NEAR_M
    # In place on one fresh float32 array (at 12 MP the three temporaries took 0.12 s a frame).
    out = np.reciprocal(depth_m, dtype=np.float32)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return out


def predict_sequence(input_path, out_dir, *, model: str = DEFAULT_PREDICT_MODEL, meta_path=None,
                     device: str = "cpu", window: int | None = None, align: bool = True,
                     max_pixels: int | None = None, extra_formats: tuple[str, ...] = (),
                     overwrite: bool = False, video: bool = True, progress: bool = True,
                     far_to_near: bool | None = None, stack_align: bool | None = None,
                     output_resolution: str = "input", upsample: str = "guided", aif: bool = False,
                     threads: int | None = None, video_height_px: int = VIDEO_HEIGHT_PX,
                     max_slices: int | None = MAX_SLICES, last_only: bool = False,
                     stack: bool | None = None) -> dict:
    """Run the predictor over a sequence on disk and write ``out_dir`` atomically:
    ``depth/NNNNNN.npy`` (float32 metres, or relative inverse depth when focus distances are
    unknown), ``confidence/NNNNNN.npy`` ([0, 1]), ``depth.mp4`` (input | depth with one fixed
    colour range for the clip), ``summary.json``; ``extra_formats`` adds ``png16``/``exr``.
    ``stack_align``: a static hand-held stack, pre-aligned (focus breathing + homography) and
    its sweep direction estimated when unknown (:func:`focaldepth.align.prepare_handheld`);
    None = automatic: a static-stack candidate (:func:`stack_candidate`) is aligned if it
    visibly moves, with flow alignment on (``align``).
    ``extra_formats`` may also hold a one-file-per-clip format, ``npz16`` or ``h5`` (float16
    depth and confidence of the whole clip, compressed; :class:`ClipWriter`), which then
    replaces the per-frame ``.npy`` files. ``output_resolution``: ``input`` or ``working``;
    ``aif``: all-in-focus images (``aif/NNNNNN.png``, or inside the one-file format);
    ``threads``: torch and OpenCV threads (default :data:`DEFAULT_THREADS`); ``max_slices``:
    frames of a long window read per estimate (:func:`select_slices`). ``last_only``: a static
    focal stack, the whole of it one window (unless ``window`` is given), and one estimate, for
    its last frame (the reference view); ``depth.png`` (the side-by-side panel) replaces the video.
    ``stack``: every frame estimated from the whole input (a static focal stack) rather than from
    a causal window; None = decided by :func:`stack_mode` (a folder holding one sweep: yes)."""
    from pathlib import Path

    from tqdm import tqdm

    from focaldepth.align import prepare_handheld
    from focaldepth.io import load_sequence
    from focaldepth.io.atomic import atomic_dir, atomic_write_json
    from focaldepth.io.depth import write_depth

    for fmt in extra_formats:
        if fmt not in OUTPUT_FORMATS:
            raise UserError(f"unknown output format {fmt!r} (choose {', '.join(OUTPUT_FORMATS)})")
    clip_formats = [fmt for fmt in extra_formats if fmt in CLIP_FORMATS]
    image_formats = tuple(fmt for fmt in extra_formats if fmt in ("png16", "exr"))
    thread_count = set_threads(threads)
    from focaldepth.datasets import is_adapter_spec, load_adapter_sequence

    # NAME:PATH[#ITEM] of a published dataset (focaldepth.datasets), else a folder or video
    sequence = load_adapter_sequence(input_path) if is_adapter_spec(input_path) else \
        load_sequence(input_path, meta_path, lazy=True)
    if stack_align is None:
        # (--stack forces a stack of any length, and then it is aligned like any other stack.)
        stack_align = "auto" if align and (stack is True or (stack is None and stack_candidate(sequence)[0])) else False
    sequence, far_to_near, handheld = prepare_handheld(sequence, stack_align=stack_align, far_to_near=far_to_near)
    depth_model = load_model(model, device)
    if not (getattr(sequence, "camera_known", True) and all(f is not None for f in sequence.focus_distance_m)):
        # The physics of a hybrid model needs the real lens and focus distances: without them
        # its thin-lens blur predictions are wrong, so only the learned vote answers.
        depth_model = getattr(depth_model, "without_physics", lambda: depth_model)()
    height, width = sequence.size_hw
    if last_only and window is None:
        window = len(sequence)  # the whole static stack is one window
    predictor = StreamingPredictor(depth_model, sequence.camera, sequence.focus_distance_m, height, width,
                                   window=window, align=align, max_pixels=max_pixels, device=device,
                                   far_to_near=far_to_near, output_resolution=output_resolution,
                                   upsample=upsample, all_in_focus=aif, max_slices=max_slices)
    check_enough_frames(predictor, len(sequence), input_path)
    use_stack, stack_reason = stack_mode(sequence, stack, window=window, last_only=last_only,
                                         model=depth_model)
    near_m, far_m = display_range_m(sequence.focus_distance_m) if predictor.metric else (1.0, 2.0)
    latencies_s: list[float] = []
    depth_stats = RunningRange()
    split_s = {"decode": 0.0, "predict": 0.0, "write": 0.0, "video_panel": 0.0}
    command_start = time.perf_counter()
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        tmp = Path(tmp)
        per_frame = ("depth", "confidence") if not clip_formats else ()
        aif_folder = aif and not clip_formats
        for sub in (*per_frame, *image_formats, *(("aif",) if aif_folder else ())):
            (tmp / sub).mkdir()
        writers = [ClipWriter(tmp, fmt, 1 if last_only else len(sequence), predictor.out_hw, aif)
                   for fmt in clip_formats]

        def write_outputs(index: int, frame: np.ndarray, depth: np.ndarray, result: FramePrediction) -> np.ndarray | None:
            """Every output of one frame; returns its video panel (None without video)."""
            begin = time.perf_counter()
            depth_stats.update(depth)
            for sub, array in zip(per_frame, (depth, result.confidence)):
                np.save(tmp / sub / f"{index:06d}.npy", array)
            for writer in writers:
                writer.add(depth, result.confidence, result.all_in_focus)
            if aif_folder and result.all_in_focus is not None:
                write_png8(tmp / "aif" / f"{index:06d}.png", result.all_in_focus)
            if predictor.metric:
                for fmt in image_formats:
                    write_depth(tmp / fmt / f"{index:06d}.{'png' if fmt == 'png16' else 'exr'}", depth)
            written = time.perf_counter()
            panel = video_panel(frame, depth, near_m, far_m, predictor.metric, video_height_px) if video else None
            if last_only and panel is not None:  # one frame: a picture, not a video
                write_png8(tmp / "depth.png", panel)
                panel = None
            split_s["write"] += written - begin
            split_s["video_panel"] += time.perf_counter() - written
            return panel

        # Writing and encoding run on a second thread, overlapped with decoding and predicting
        # (the predictor uses one core by default: the other one was idle while 1080p maps
        # were written and the video encoded). A bounded queue keeps memory constant.
        movie = video and not last_only
        outputs = OutputStage(write_outputs, video_path=tmp / "depth.mp4" if movie else None,
                              fps=clip_fps(sequence.timestamps_s) if movie else None)
        frames = iter(tqdm(sequence.iter_frames(), total=len(sequence), unit="frame", disable=not progress,
                           desc="predict"))
        # One frame in flight: frame t is finished (filter, upsampling) on a second thread
        # while frame t+1 is decoded and observed (StreamingPredictor.submit). A frame's
        # latency is the caller's time in its submit plus the wait for its result.
        pending, frames_read = None, 0

        def emit(index: int, frame: np.ndarray, handle, submit_s: float) -> None:
            begin = time.perf_counter()
            result = handle.result()
            waited = time.perf_counter() - begin
            latencies_s.append(submit_s + waited)
            split_s["predict"] += waited
            depth = result.depth_m if predictor.metric else relative_inverse_depth(result.depth_m)
            outputs.put(index, frame, depth, result)

        motion_px, still, still_px = None, False, None
        if use_stack:  # the whole stack in memory (at most MAX_STACK_FRAMES), then every frame
            start = time.perf_counter()
            stack_frames = list(frames)
            loaded = time.perf_counter()
            predictor.load_stack(stack_frames, sequence.focus_distance_m, sequence.f_number)
            motion_px = predictor.stack_motion_px()
            if stack_reason != "given" and motion_px > MAX_STACK_MOTION_PX:
                predictor.unload_stack()
                use_stack = False
                stack_reason = (f"objects move ({motion_px:.1f} px beyond a homography between neighbouring "
                                "frames): causal stream")
            else:
                still_px = predictor.stack_still_px()
                if still_stack(still_px, depth_model):
                    predictor.hold_stack_still()
                    still = True
            split_s["decode"] += loaded - start
            split_s["predict"] += time.perf_counter() - loaded
            frames_read = len(stack_frames) if use_stack else 0  # (streamed: counted as read below)
            frames = iter(stack_frames)
        try:
            for index, focus in enumerate(sequence.focus_distance_m):
                start = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
                    break
                frames_read += 0 if use_stack else 1
                decoded = time.perf_counter()
                if last_only and index < len(sequence) - 1:
                    predictor.add(frame, focus, f_number=sequence.f_number[index])
                    split_s["decode"] += decoded - start
                    split_s["predict"] += time.perf_counter() - decoded
                    continue
                handle = predictor.submit_stack_frame(index) if use_stack else \
                    predictor.submit(frame, focus, f_number=sequence.f_number[index])
                submitted = time.perf_counter()
                split_s["decode"] += decoded - start
                split_s["predict"] += submitted - decoded
                if pending is not None:
                    emit(*pending)
                pending = (index, frame, handle, submitted - decoded)
            if pending is not None:
                emit(*pending)
        finally:
            waited_s = outputs.finish()
        close_start = time.perf_counter()
        for writer in writers:
            writer.close()
        split_s["write"] += time.perf_counter() - close_start
        wall_s = time.perf_counter() - command_start
        split_s["video_encode"] = outputs.encode_s if movie else 0.0
        split_s["output_wait"] = waited_s
        summary = run_summary(sequence, depth_model, predictor, model, latencies_s, depth_stats,
                              (near_m, far_m), input_path)
        summary.update(handheld)
        summary.update({"last_only": last_only, "frames_read": frames_read,
                        "mode": "stack" if use_stack else ("last frame" if last_only else "stream"),
                        "mode_reason": stack_reason,
                        **({"stack_motion_px": round(motion_px, 3), "stack_still": still,
                            **({"stack_still_px": round(still_px, 3)} if still_px is not None else {}),
                            "observations_computed": predictor.observations_computed}
                           if motion_px is not None else {})})
        summary.update(outputs_summary(predictor, extra_formats, clip_formats, aif, thread_count,
                                       split_s, wall_s, len(latencies_s)))
        atomic_write_json(tmp / "summary.json", summary)
    return summary


class OutputStage:
    """A second thread that writes each frame's outputs (``write(index, frame, depth, result)``
    returns the video panel) and encodes the side-by-side video, fed through a bounded queue.
    ``put`` blocks when the writer is behind (constant memory) and re-raises its error;
    ``finish`` waits for it, re-raises its error and returns the seconds the caller waited.
    ``encode_s``: the encoder's own time (the writer thread's time outside ``write``)."""

    QUEUE_FRAMES = 4
    _END = object()

    def __init__(self, write, *, video_path=None, fps: float | None = None):
        import queue
        import threading

        self._write, self._video_path, self._fps = write, video_path, fps
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._ended = False
        self.encode_s = 0.0
        self._thread = threading.Thread(target=self._run, name="predict-outputs", daemon=True)
        self._thread.start()

    def _items(self, stats: dict):
        while True:
            begin = time.perf_counter()
            item = self._queue.get()
            stats["wait_s"] += time.perf_counter() - begin
            if item is self._END:
                self._ended = True
                return
            yield item

    def _panels(self, stats: dict):
        for item in self._items(stats):
            begin = time.perf_counter()
            panel = self._write(*item)
            stats["write_s"] += time.perf_counter() - begin
            yield panel

    def _run(self) -> None:
        from focaldepth.io.frames import write_video

        stats = {"write_s": 0.0, "wait_s": 0.0}
        try:
            if self._video_path is None:
                for item in self._items(stats):
                    self._write(*item)
                return
            begin = time.perf_counter()
            write_video(self._video_path, self._panels(stats), fps=self._fps, preset=PREVIEW_PRESET)
            self.encode_s = max(0.0, time.perf_counter() - begin - stats["write_s"] - stats["wait_s"])
        except BaseException as error:  # noqa: BLE001 -- handed to the caller's thread
            self._error = error
            while not self._ended:  # drain, so that a blocked put() returns and sees the error
                if self._queue.get() is self._END:
                    self._ended = True

    def put(self, *item) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def finish(self) -> float:
        begin = time.perf_counter()
        self._queue.put(self._END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return time.perf_counter() - begin


# Output formats of `predict --format`: per-frame images, or one file per clip.
CLIP_FORMATS = ("npz16", "h5")
OUTPUT_FORMATS = ("png16", "exr", *CLIP_FORMATS)


def set_threads(threads: int | None) -> int:
    """Apply the thread count to torch and OpenCV; return it."""
    count = DEFAULT_THREADS if threads is None else int(threads)
    if count < 1:
        raise UserError(f"--threads must be at least 1, got {count}")
    torch.set_num_threads(count)
    cv2.setNumThreads(count)
    return count


def write_png8(path, image_rgb8: np.ndarray) -> None:
    """An 8-bit PNG inside the run's temporary folder (the folder is renamed when complete)."""
    from PIL import Image

    Image.fromarray(image_rgb8).save(path, format="PNG", compress_level=1)


class ClipWriter:
    """One compressed file for the whole clip, written frame by frame in constant memory:
    ``depth`` and ``confidence`` ``(N, H, W)`` float16 (and ``all_in_focus`` ``(N, H, W, 3)``
    uint8 when asked for).

    * ``h5``: ``clip.h5``, chunked one frame per chunk, gzip level 1 with the shuffle filter.
    * ``npz16``: ``clip.npz`` (``numpy.load`` gives one array per key): each array is streamed
      to a raw ``.npy`` beside it, then deflated (level 1) into the zip at the end.

    float16 keeps 3 significant digits: 1 mm at 1 m, far below what a focus sweep resolves."""

    def __init__(self, folder, fmt: str, num_frames: int, size_hw: tuple[int, int], aif: bool):
        self.folder, self.fmt, self.count = folder, fmt, 0
        shapes = {"depth": (num_frames, *size_hw), "confidence": (num_frames, *size_hw)}
        if aif:
            shapes["all_in_focus"] = (num_frames, *size_hw, 3)
        self.dtypes = {key: np.uint8 if key == "all_in_focus" else np.float16 for key in shapes}
        if fmt == "h5":
            import h5py

            self.file = h5py.File(folder / "clip.h5", "w")
            self.arrays = {key: self.file.create_dataset(key, shape=shape, dtype=self.dtypes[key],
                                                         chunks=(1, *shape[1:]), compression="gzip",
                                                         compression_opts=1, shuffle=True)
                           for key, shape in shapes.items()}
        else:
            self.arrays = {key: np.lib.format.open_memmap(folder / f".{key}.npy", mode="w+",
                                                          dtype=self.dtypes[key], shape=shape)
                           for key, shape in shapes.items()}

    def add(self, depth: np.ndarray, confidence: np.ndarray, all_in_focus: np.ndarray | None) -> None:
        values = {"depth": depth, "confidence": confidence, "all_in_focus": all_in_focus}
        for key, array in self.arrays.items():
            if values[key] is not None:
                array[self.count] = values[key].astype(self.dtypes[key])
        self.count += 1

    def close(self) -> None:
        if self.fmt == "h5":
            self.file.attrs["num_frames"] = self.count
            self.file.close()
            return
        import zipfile

        with zipfile.ZipFile(self.folder / "clip.npz", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for key, array in self.arrays.items():
                array.flush()
                path = self.folder / f".{key}.npy"
                del array
                archive.write(path, arcname=f"{key}.npy")
                path.unlink()
        self.arrays = {}


def outputs_summary(predictor, formats, clip_formats, aif, threads, split_s, wall_s, num_frames) -> dict:
    """What was written and where the time of the whole command went."""
    return {
        "threads": threads,
        "output_resolution": predictor.output_resolution,
        "output_size_hw": list(predictor.out_hw),
        "upsampling": predictor.upsample if predictor.out_hw != (predictor.work_h, predictor.work_w) else None,
        "formats": ["npy"] * (not clip_formats) + list(formats),
        "all_in_focus": aif,
        "optical_flows_computed": predictor.flows_computed,
        "command_timing_s": {"wall": wall_s, "frames_per_s": num_frames / max(wall_s, 1e-9),
                             **{key: value for key, value in split_s.items()}},
    }


# An input of at most this many frames (and bytes of 8-bit pixels, held in memory) holding one
# sweep is read as a focal stack (stack_mode).
MAX_STACK_FRAMES = 64
MAX_STACK_BYTES = 2**30
# ... unless it moves more than this beyond a homography (StreamingPredictor.stack_motion_px):
# moving scenes did worse as stacks (stack_mode), so they stream.
MAX_STACK_MOTION_PX = 1.0


def stack_mode(sequence, requested: bool | None, *, window: int | None, last_only: bool,
               model) -> tuple[bool, str]:
    """Whether ``predict`` estimates every frame from the whole input (a static focal stack:
    frame 0 then gets the same evidence as the last one, not a one-frame guess) or streams it
    through a causal window (video); and why. ``requested``: the user's choice, None = auto:
    a stack when the input is a folder (or a dataset item), not a video, of at most
    :data:`MAX_STACK_FRAMES` frames and :data:`MAX_STACK_BYTES` of pixels whose known focus
    distances form one sweep. Videos stream even when they hold one sweep: with motion, frames
    warped from far along the sweep hurt more than they help (on the moving cpu_test_v2 scenes,
    one 10-frame sweep each, mean AbsRel over the frames 0.886 as a stack against 0.527
    streamed; static scenes: 0.294 against 0.414)."""
    fixed = required_frames(model) is not None
    if requested is not None:
        if requested and fixed:
            raise UserError("--stack needs a model that reads any number of frames; this one takes "
                            f"exactly {required_frames(model)}")
        if requested and last_only:
            raise UserError("--stack and --last-only exclude each other (--last-only estimates one frame)")
        return bool(requested), "given"
    if last_only:
        return False, "--last-only: one estimate, for the last frame"
    if window is not None:
        return False, "a window was given: causal stream"
    if fixed:
        return False, "the model reads a fixed number of frames"
    return stack_candidate(sequence)


def still_stack(still_px: float, model) -> bool:
    """Whether a loaded static stack is held still (:meth:`StreamingPredictor.hold_stack_still`):
    its pixels barely move (``still_px``, :meth:`StreamingPredictor.stack_still_px`, at most
    :data:`STILL_STACK_MEAN_FLOW_PX`) and the model's depth does not
    depend on the order of its frames. A hand-held stack counts once aligned (breathing and
    shake removed): the flows are measured on the aligned frames, so only a stack whose
    residual parallax is below the threshold is held. 10 synthetic hand-held cpu_test_v2
    stacks: the same AbsRel held (0.3117) as warped (0.3116), in 6.9 s against 10.0 s; the
    real phone stack mobile_depth_balls (0.077 px): 7.0-7.4 s against 13.0 s for the command."""
    return order_equivariant(model) and still_px <= STILL_STACK_MEAN_FLOW_PX


def stack_candidate(sequence) -> tuple[bool, str]:
    """Whether an input looks like a static focal stack by its form (see :func:`stack_mode`):
    a folder or dataset item, not a video, of at most :data:`MAX_STACK_FRAMES` frames and
    :data:`MAX_STACK_BYTES` of pixels, whose known focus distances form one sweep."""
    from focaldepth.io.frames import VIDEO_EXTENSIONS

    source = getattr(sequence, "source_path", None)
    if source is not None and str(source).lower().endswith(tuple(VIDEO_EXTENSIONS)):
        return False, "a video (motion expected): causal stream"
    if len(sequence) > MAX_STACK_FRAMES:
        return False, f"more than {MAX_STACK_FRAMES} frames: causal stream"
    height, width = sequence.size_hw
    if len(sequence) * height * width * 3 > MAX_STACK_BYTES:
        return False, f"more than {MAX_STACK_BYTES / 2**30:.0f} GiB of frames: causal stream"
    focus = sequence.focus_distance_m
    known = [f for f in focus if f is not None]
    if len(known) == len(focus) and ramp_length(focus) != len(focus):
        return False, "the focus list holds more than one sweep: causal stream"
    return True, "a folder of frames holding one focus sweep: a static focal stack"


def check_enough_frames(predictor: StreamingPredictor, num_frames: int, where) -> None:
    needed = predictor.required or 2
    if num_frames < needed:
        raise UserError(f"has {num_frames} frame(s) but depth from focus needs a stack of at least "
                        f"{needed} frames with different focus distances", where)


def clip_fps(timestamps_s: list[float] | None) -> float:
    if timestamps_s and len(timestamps_s) > 1:
        duration = timestamps_s[-1] - timestamps_s[0]
        if duration > 0:
            return (len(timestamps_s) - 1) / duration
    return 10.0


class RunningRange:
    """Percentile-free running min / max / mean of valid depth over a clip (constant memory)."""

    def __init__(self):
        self.low, self.high, self.total, self.count = math.inf, -math.inf, 0.0, 0

    def update(self, depth: np.ndarray) -> None:
        valid = depth[np.isfinite(depth)]
        if valid.size:
            self.low, self.high = min(self.low, float(valid.min())), max(self.high, float(valid.max()))
            self.total, self.count = self.total + float(valid.sum()), self.count + valid.size

    def to_dict(self) -> dict:
        return {"min": self.low, "max": self.high, "mean": self.total / max(self.count, 1)}


def video_panel(frame: np.ndarray, depth: np.ndarray, near_m: float, far_m: float, metric: bool,
                height_px: int | None = None) -> np.ndarray:
    """Input frame | colourised inverse depth (fixed clip range) | colour bar; at most
    ``height_px`` tall (frame and depth shrunk first: colouring and encoding cost per pixel)."""
    from focaldepth import viz

    if height_px is not None and frame.shape[0] > height_px:
        size = (max(2, round(frame.shape[1] * height_px / frame.shape[0])), height_px)
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if depth.shape != frame.shape[:2]:
        depth = cv2.resize(depth, frame.shape[1::-1], interpolation=cv2.INTER_LINEAR)

    if metric:
        colour = viz.colorize_depth(depth, near_m, far_m)
        bar = _colorbar(near_m, far_m, frame.shape[0], "depth (m)")
    else:  # relative inverse depth in [0, 1]: map through pseudo metres 1..2 for colouring
        colour = viz.colorize_depth(1.0 / (0.5 + 0.5 * np.clip(depth, 0, 1)), 1.0, 2.0)
        bar = _colorbar(None, None, frame.shape[0], "relative depth")  # unitless: far ... near
    return viz.side_by_side([frame, colour, bar])


_COLORBAR_CACHE: dict = {}


def _colorbar(near_m: float | None, far_m: float | None, height: int, label: str) -> np.ndarray:
    """The clip's colour bar; ``near_m`` None: relative depth (no metre ticks)."""
    from focaldepth import viz

    key = (near_m, far_m, height, label)
    if key not in _COLORBAR_CACHE:  # drawn once per clip, not per frame
        _COLORBAR_CACHE[key] = viz.relative_colorbar_image(height, label=label) if near_m is None \
            else viz.colorbar_image(near_m, far_m, height, label=label)
    return _COLORBAR_CACHE[key]


def run_summary(sequence, depth_model, predictor, model_name, latencies_s, depth_stats, display_range,
                input_path) -> dict:
    latencies = np.array(latencies_s) if latencies_s else np.zeros(1)
    return {
        "input": str(input_path),
        "model": model_name,
        "model_class": type(depth_model).__name__,
        "model_info": depth_model.info.to_dict(),
        "camera": sequence.camera.to_dict(),
        "num_frames": len(latencies_s),
        "size_hw": list(sequence.size_hw),
        "working_size_hw": [predictor.work_h, predictor.work_w],
        "window_frames": predictor.window,
        "max_slices": predictor.max_slices,
        "aligned_with_optical_flow": predictor.aligner is not None,
        "temporal_state": predictor.stateful,
        "scene_cuts_detected": predictor.scene_cuts if predictor.stateful else None,
        "metric": predictor.metric,
        "depth_units": "metres" if predictor.metric else
        "relative inverse depth (1 = nearest focus, 0 = farthest); focus distances unknown",
        "depth_range": depth_stats.to_dict(),
        "display_range_m": list(display_range) if predictor.metric else None,
        "timing_s": {"per_frame_mean": float(latencies.mean()), "per_frame_median": float(np.median(latencies)),
                     "total": float(latencies.sum()), "frames_per_s": float(len(latencies_s) / max(latencies.sum(), 1e-9))},
    }
