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
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from focaldepth.errors import UserError
from focaldepth.models.base import DepthModel, camera_tensor
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


@dataclass
class FramePrediction:
    """Result for one frame: depth in metres (or relative units if ``metric`` is False) and
    confidence in [0, 1], both ``(H, W)`` float32 at the input resolution."""

    depth_m: np.ndarray
    confidence: np.ndarray
    frames_used: int


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


def working_scale(camera: Camera, focus_distance_m: list[float | None], height: int, width: int,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> float:
    """Scale factor (<= 1) from the input to the working resolution (see module docstring)."""
    scale = min(1.0, math.sqrt(max_pixels / float(height * width)))
    blur = sweep_blur_px(camera, focus_distance_m)
    if blur > MAX_SWEEP_BLUR_PX:
        scale = min(scale, MAX_SWEEP_BLUR_PX / blur)
    return max(scale, 32.0 / min(height, width))  # never below 32 px on the short side


STILL_FLOW_PX = 0.5  # flow below this is treated as no motion (see FlowAligner.align)


class FlowAligner:
    """Warps earlier frames onto the current one with OpenCV's DIS optical flow."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST):
        self.flow = cv2.DISOpticalFlow_create(preset)
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def align(self, reference_gray: np.ndarray, other_gray: np.ndarray, other_rgb: np.ndarray) -> np.ndarray:
        """``other_rgb`` resampled so that it lines up with the reference frame."""
        flow = self.flow.calc(reference_gray, other_gray, None)  # reference pixel -> other
        height, width = reference_gray.shape
        if self._grid is None or self._grid[0].shape != (height, width):  # built once per clip
            self._grid = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        grid_x, grid_y = self._grid
        # Bicubic, not bilinear: bilinear resampling at sub-pixel offsets low-passes the frame,
        # and a depth-from-focus model reads the loss of detail as defocus (it then leans to
        # the current frame's focus; measured in results/default_aligned).
        warped = cv2.remap(other_rgb, grid_x + flow[..., 0], grid_y + flow[..., 1],
                           interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        # Where the flow is sub-pixel (static parts, or DIS reacting to a change of blur rather
        # than to motion) resampling costs more focus cue than misalignment does: keep the
        # original pixels there, fading to the warped ones between 0.5 and 1 px of motion.
        motion_px = np.hypot(flow[..., 0], flow[..., 1])
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
        max_pixels: pixel budget of the working resolution.
        far_to_near: only when focus distances are unknown: the sweep starts at the far end
            (default: near to far). Relative depth is only defined up to this order.
    """

    def __init__(self, model: DepthModel, camera: Camera, focus_distance_m: list[float | None],
                 height: int, width: int, *, window: int | None = None, align: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS, device: str | torch.device = "cpu",
                 far_to_near: bool = False):
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
        scale = working_scale(camera, focus_distance_m, height, width, max_pixels) if self.metric else \
            min(1.0, math.sqrt(max_pixels / float(height * width)))
        self.work_h = max(16, int(round(height * scale)))
        self.work_w = max(16, int(round(width * scale)))
        self.camera = camera.resized(self.work_w)
        self.aligner = FlowAligner() if align else None
        self.buffer: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=self.window)

    def push(self, frame_rgb8: np.ndarray, focus_distance_m: float | None) -> FramePrediction:
        """Add the next frame; return depth and confidence for it."""
        if frame_rgb8.shape[:2] != (self.height, self.width):
            raise UserError(f"frame is {frame_rgb8.shape[1]}x{frame_rgb8.shape[0]}, expected "
                            f"{self.width}x{self.height}")
        small = cv2.resize(frame_rgb8, (self.work_w, self.work_h), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        self.buffer.append((small, gray, self._focus_value(focus_distance_m)))
        return self._estimate()

    def _focus_value(self, focus_distance_m: float | None) -> float:
        return float(focus_distance_m) if self.metric else math.nan  # relative: see _window_focus

    def _window_focus(self) -> list[float]:
        focus = [entry[2] for entry in self.buffer]
        if self.metric:
            return focus
        count = len(focus)
        near_dpt, far_dpt = 1.0 / RELATIVE_NEAR_M, 1.0 / RELATIVE_FAR_M
        if self.far_to_near:
            near_dpt, far_dpt = far_dpt, near_dpt
        dioptres = np.linspace(near_dpt, far_dpt, max(self.window, 2))[-count:] \
            if count > 1 else np.array([0.5 * (near_dpt + far_dpt)])
        return list(1.0 / dioptres)

    def _aligned_window(self) -> np.ndarray:
        reference_rgb, reference_gray, _ = self.buffer[-1]
        frames = []
        for rgb, gray, _ in list(self.buffer)[:-1]:
            frames.append(self.aligner.align(reference_gray, gray, rgb) if self.aligner else rgb)
        frames.append(reference_rgb)
        return np.stack(frames)

    def _estimate(self) -> FramePrediction:
        count = len(self.buffer)
        focus = self._window_focus()
        needed = self.required or 2
        distinct_focus = len(set(np.round(focus, 9))) >= min(needed, 2)
        usable = count >= needed and distinct_focus
        if not usable:
            return self._fallback(focus)
        frames = torch.from_numpy(self._aligned_window()).to(self.device)
        frames = frames.permute(0, 3, 1, 2).float().div(255.0).unsqueeze(0)
        focus_t = torch.tensor([focus], dtype=torch.float32, device=self.device)
        camera = camera_tensor([self.camera], device=self.device)
        with torch.inference_mode():
            outputs = self.model(frames, focus_t, camera)
        inverse_depth = 1.0 / outputs["depth_m"].clamp_min(1e-6)
        confidence = outputs.get("confidence", torch.ones_like(inverse_depth))
        # Fewer frames than a full window: keep the estimate, lower the trust.
        confidence = confidence * min(1.0, count / self.window)
        return FramePrediction(self._upsample(1.0 / self._upsample_t(inverse_depth)),
                               self._upsample(self._upsample_t(confidence)), count)

    def _upsample_t(self, image: torch.Tensor) -> torch.Tensor:
        return F.interpolate(image, size=(self.height, self.width), mode="bilinear", align_corners=False)

    @staticmethod
    def _upsample(image: torch.Tensor) -> np.ndarray:
        return image[0, 0].float().cpu().numpy().astype(np.float32)

    def _fallback(self, focus: list[float]) -> FramePrediction:
        """One frame (or one focus distance) says nothing about depth: report the focus
        distance itself with zero confidence."""
        guess = float(np.median(focus))
        shape = (self.height, self.width)
        return FramePrediction(np.full(shape, guess, np.float32), np.zeros(shape, np.float32), len(self.buffer))


def required_frames(model: DepthModel) -> int | None:
    """The exact number of slices a fixed-stack model needs, else None."""
    if model.info.consumes == "single":
        return 1
    if model.info.consumes == "stack_fixed":
        return int(getattr(model, "num_frames"))
    return None


# --- whole sequences: files in, files out ------------------------------------------------

DEFAULT_WEIGHTS = "sweepnet_default"


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
    return ((1.0 / depth_m - low) / (high - low)).astype(np.float32)


def predict_sequence(input_path, out_dir, *, model: str = DEFAULT_WEIGHTS, meta_path=None,
                     device: str = "cpu", window: int | None = None, align: bool = True,
                     max_pixels: int = DEFAULT_MAX_PIXELS, extra_formats: tuple[str, ...] = (),
                     overwrite: bool = False, video: bool = True, progress: bool = True,
                     far_to_near: bool | None = None, stack_align: bool = False) -> dict:
    """Run the predictor over a sequence on disk and write ``out_dir`` atomically:
    ``depth/NNNNNN.npy`` (float32 metres, or relative inverse depth when focus distances are
    unknown), ``confidence/NNNNNN.npy`` ([0, 1]), ``depth.mp4`` (input | depth with one fixed
    colour range for the clip), ``summary.json``; ``extra_formats`` adds ``png16``/``exr``.
    ``stack_align``: a static hand-held stack, pre-aligned (focus breathing + homography) and
    its sweep direction estimated when unknown (:func:`focaldepth.align.prepare_handheld`)."""
    import time
    from pathlib import Path

    from tqdm import tqdm

    from focaldepth.align import prepare_handheld
    from focaldepth.io import load_sequence
    from focaldepth.io.atomic import atomic_dir, atomic_write_json
    from focaldepth.io.depth import write_depth
    from focaldepth.io.frames import write_video

    for fmt in extra_formats:
        if fmt not in ("png16", "exr"):
            raise UserError(f"unknown output format {fmt!r} (choose png16 or exr)")
    sequence = load_sequence(input_path, meta_path, lazy=True)
    sequence, far_to_near, handheld = prepare_handheld(sequence, stack_align=stack_align, far_to_near=far_to_near)
    depth_model = load_model(model, device)
    height, width = sequence.size_hw
    predictor = StreamingPredictor(depth_model, sequence.camera, sequence.focus_distance_m, height, width,
                                   window=window, align=align, max_pixels=max_pixels, device=device,
                                   far_to_near=far_to_near)
    check_enough_frames(predictor, len(sequence), input_path)
    near_m, far_m = display_range_m(sequence.focus_distance_m) if predictor.metric else (1.0, 2.0)
    latencies_s: list[float] = []
    depth_stats = RunningRange()
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        tmp = Path(tmp)
        for sub in ("depth", "confidence", *extra_formats):
            (tmp / sub).mkdir()

        def frames_out():
            frames = tqdm(sequence.iter_frames(), total=len(sequence), unit="frame", disable=not progress,
                          desc="predict")
            for index, (frame, focus) in enumerate(zip(frames, sequence.focus_distance_m)):
                start = time.perf_counter()
                result = predictor.push(frame, focus)
                latencies_s.append(time.perf_counter() - start)
                depth = result.depth_m if predictor.metric else relative_inverse_depth(result.depth_m)
                depth_stats.update(depth)
                np.save(tmp / "depth" / f"{index:06d}.npy", depth)
                np.save(tmp / "confidence" / f"{index:06d}.npy", result.confidence)
                if predictor.metric:
                    for fmt in extra_formats:
                        write_depth(tmp / fmt / f"{index:06d}.{'png' if fmt == 'png16' else 'exr'}", depth)
                yield video_panel(frame, depth, near_m, far_m, predictor.metric)

        if video:
            fps = clip_fps(sequence.timestamps_s)
            write_video(tmp / "depth.mp4", frames_out(), fps=fps)
        else:
            for _ in frames_out():
                pass
        summary = run_summary(sequence, depth_model, predictor, model, latencies_s, depth_stats,
                              (near_m, far_m), input_path)
        summary.update(handheld)
        atomic_write_json(tmp / "summary.json", summary)
    return summary


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


def video_panel(frame: np.ndarray, depth: np.ndarray, near_m: float, far_m: float, metric: bool) -> np.ndarray:
    """Input frame | colourised inverse depth (fixed clip range) | colour bar."""
    from focaldepth import viz

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
        "aligned_with_optical_flow": predictor.aligner is not None,
        "metric": predictor.metric,
        "depth_units": "metres" if predictor.metric else
        "relative inverse depth (1 = nearest focus, 0 = farthest); focus distances unknown",
        "depth_range": depth_stats.to_dict(),
        "display_range_m": list(display_range) if predictor.metric else None,
        "timing_s": {"per_frame_mean": float(latencies.mean()), "per_frame_median": float(np.median(latencies)),
                     "total": float(latencies.sum()), "frames_per_s": float(len(latencies_s) / max(latencies.sum(), 1e-9))},
    }
