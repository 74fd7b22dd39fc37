"""``focaldepth adapt``: fine-tune a model on one unlabeled recording, files in, a model file out.

The recording is read as ``predict`` reads it (folder + meta.json, video + sidecar, or
``NAME:PATH`` of a dataset adapter; ``--stack-align`` for a static hand-held stack), shrunk to
``predict``'s working resolution and cut into its windows (one focus ramp each, every frame
warped onto the window's newest frame with the same optical flow, at most ``max_slices``
frames spread over the focus range). :func:`focaldepth.train.selfsup.adapt` then fine-tunes
the model on those windows with the defocus-reconstruction loss, and the result is written
with :func:`focaldepth.models.save` (atomic) with a model card saying what it was adapted on.

Unknown lens or focus distances (relative mode): the loss renders blur from the thin lens,
CoC = f^2 / (N p) |1/d - 1/F|, so it needs both. ``predict`` then uses pseudo focus distances
(0.5 -> 1 m, evenly spaced in dioptres) and a stand-in lens; here the stand-in lens's blur
per pseudo dioptre is fitted to the frames first (:func:`fit_blur_scale`). This assumes the
real sweep is evenly spaced in dioptres (else the pseudo schedule is wrong and so is the
loss); the card records the fitted scale and the assumption.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from focaldepth.errors import UserError
from focaldepth.predict import (DEFAULT_MAX_PIXELS, MAX_SLICES, RELATIVE_FAR_M, RELATIVE_NEAR_M, FlowAligner,
                                load_model, ramp_length, select_slices, set_threads, working_scale)
from focaldepth.train.selfsup import AdaptSettings, UnlabeledStack, adapt, fit_blur_scale, reconstruction_error

# At most this many windows of a long recording are kept (evenly spaced): the adaptation sees
# a few dozen steps, and every window is held in memory at the working resolution.
MAX_WINDOWS = 64


@dataclass
class Windows:
    """The windows of one recording and how they were made."""

    stacks: list[UnlabeledStack]
    metric: bool
    working_size_hw: tuple[int, int]
    window_frames: int
    num_frames: int
    far_to_near: bool
    notes: list[str]


def pseudo_focus_m(count: int, far_to_near: bool) -> list[float]:
    """Relative mode's focus distances for a full window (as StreamingPredictor._window_focus)."""
    near_dpt, far_dpt = 1.0 / RELATIVE_NEAR_M, 1.0 / RELATIVE_FAR_M
    if far_to_near:
        near_dpt, far_dpt = far_dpt, near_dpt
    return [float(1.0 / d) for d in np.linspace(near_dpt, far_dpt, max(count, 2))[-count:]]


def aligned_window(frames8: list[np.ndarray], aligner: FlowAligner | None) -> np.ndarray:
    """The frames of one window warped onto its newest frame (predict's optical flow)."""
    if aligner is None:
        return np.stack(frames8)
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames8]
    newest = grays[-1]
    out = [aligner.align(newest, gray, rgb) for gray, rgb in zip(grays[:-1], frames8[:-1])]
    return np.stack([*out, frames8[-1]])


def window_stack(frames8: np.ndarray, focus_m: list[float], camera, device) -> UnlabeledStack:
    frames = torch.from_numpy(np.ascontiguousarray(frames8)).permute(0, 3, 1, 2).float().div(255.0)[None]
    camera_t = torch.tensor([[camera.focal_length_m, camera.f_number, camera.pixel_pitch_m]])
    return UnlabeledStack(frames.to(device), torch.tensor([focus_m], dtype=torch.float32, device=device),
                          camera_t.to(device))


def sequence_windows(sequence, *, far_to_near: bool = False, window: int | None = None, align: bool = True,
                     max_pixels: int = DEFAULT_MAX_PIXELS, max_slices: int | None = MAX_SLICES,
                     device: str | torch.device = "cpu", where=None) -> Windows:
    """Non-overlapping windows of ``sequence`` (one focus ramp each) at predict's working resolution."""
    focus = list(sequence.focus_distance_m)
    metric = getattr(sequence, "camera_known", True) and all(f is not None for f in focus)
    height, width = sequence.size_hw
    size = window or (ramp_length(focus) if metric else None) or len(focus)
    if size < 2:
        raise UserError(f"window must be at least 2 frames, got {size}", where)
    if len(focus) < 2:
        raise UserError(f"has {len(focus)} frame(s); adaptation needs a stack of at least 2 frames "
                        "with different focus distances", where)
    scale = working_scale(sequence.camera, focus, height, width, max_pixels) if metric else \
        min(1.0, (max_pixels / float(height * width)) ** 0.5)
    work_h, work_w = max(16, int(round(height * scale))), max(16, int(round(width * scale)))
    camera = sequence.camera.resized(work_w)
    starts = list(range(0, len(focus) - size + 1, size)) or [0]
    if len(starts) > MAX_WINDOWS:
        starts = [starts[i] for i in np.linspace(0, len(starts) - 1, MAX_WINDOWS).round().astype(int)]
    wanted = {i for s in starts for i in range(s, min(s + size, len(focus)))}
    small: dict[int, np.ndarray] = {}
    for index, frame in enumerate(sequence.iter_frames()):
        if index in wanted:
            small[index] = cv2.resize(frame, (work_w, work_h), interpolation=cv2.INTER_AREA)
    aligner = FlowAligner() if align else None
    stacks, notes = [], []
    for start in starts:
        indices = list(range(start, min(start + size, len(focus))))
        window_focus = [float(focus[i]) for i in indices] if metric else pseudo_focus_m(len(indices), far_to_near)
        if len(set(np.round(window_focus, 9))) < 2:
            notes.append(f"window at frame {start} skipped: one focus distance")
            continue
        chosen = select_slices(window_focus, max_slices)
        frames8 = aligned_window([small[indices[i]] for i in range(len(indices))], aligner)[chosen]
        stacks.append(window_stack(frames8, [window_focus[i] for i in chosen], camera, device))
    if not stacks:
        raise UserError("no window with at least two different focus distances", where)
    return Windows(stacks, bool(metric), (work_h, work_w), size, len(focus), far_to_near, notes)


def check_adaptable(model, name: str) -> None:
    """Refuse, before any work, models this loop cannot fine-tune or save."""
    if getattr(model, "stateful", False):
        raise UserError("is a stateful (temporal) model; adapt fine-tunes per-window models "
                        "(e.g. sweepnet_default, sweepnet_real_vote)", name)
    if getattr(model, "arch_name", None) is None:
        raise UserError("is not a model of the zoo (classical / defocus_volume have no weights to adapt)", name)
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError("has no trainable weights to adapt", name)


def check_output_file(out: Path, overwrite: bool) -> None:
    if out.suffix != ".pt":
        raise UserError("the adapted model is written as a .pt model file (give --out FILE.pt)", out)
    if not out.parent.is_dir():
        raise UserError("the output folder does not exist", out.parent)
    if out.exists() and not overwrite:
        raise UserError("exists already (use --overwrite to replace it)", out)


def read_recording(input_path, meta_path=None, *, stack_align: bool = False, far_to_near: bool | None = None):
    """The sequence as predict reads it (adapter spec, folder or video), hand-held preparation done."""
    from focaldepth.align import prepare_handheld
    from focaldepth.datasets import is_adapter_spec, load_adapter_sequence
    from focaldepth.io import load_sequence

    sequence = load_adapter_sequence(input_path) if is_adapter_spec(input_path) else \
        load_sequence(input_path, meta_path, lazy=True)
    return prepare_handheld(sequence, stack_align=stack_align, far_to_near=far_to_near)


def base_model_card(model_name: str) -> dict | None:
    """The starting model's card (shipped files and model files carry one), if any."""
    from focaldepth.models import read_checkpoint
    from focaldepth.predict import shipped_weights_path

    shipped = Path(str(shipped_weights_path(model_name)))
    path = shipped if shipped.is_file() else Path(model_name)
    if not path.is_file():
        return None
    try:
        return read_checkpoint(path).get("extra", {}).get("model_card")
    except UserError:
        return None


def adapt_recording(input_path, out: Path, *, model: str, steps: int = AdaptSettings.steps,
                    lr: float = AdaptSettings.lr, meta_path=None, threads: int | None = None,
                    device: str = "cpu", window: int | None = None, align: bool = True,
                    max_pixels: int = DEFAULT_MAX_PIXELS, max_slices: int | None = MAX_SLICES,
                    stack_align: bool = False, far_to_near: bool | None = None, seed: int = 0,
                    overwrite: bool = False, settings: AdaptSettings | None = None) -> dict:
    """Read, cut into windows, adapt, write ``out`` (see the module docstring); returns the card."""
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    out = Path(out)
    check_output_file(out, overwrite)
    thread_count = set_threads(threads)
    settings = AdaptSettings(**{**asdict(settings or AdaptSettings()), "steps": steps, "lr": lr, "seed": seed})
    if settings.steps < 1:
        raise UserError(f"--steps must be at least 1, got {settings.steps}")
    if not settings.lr > 0:
        raise UserError(f"--lr must be positive, got {settings.lr}")
    torch.manual_seed(seed)
    depth_model = load_model(model, device)
    check_adaptable(depth_model, model)  # before reading anything
    sequence, far_to_near, handheld = read_recording(input_path, meta_path, stack_align=stack_align,
                                                     far_to_near=far_to_near)
    windows = sequence_windows(sequence, far_to_near=far_to_near, window=window, align=align,
                               max_pixels=max_pixels, max_slices=max_slices, device=device, where=input_path)
    if not windows.metric:  # as predict: a hybrid's physics needs the real lens
        depth_model = getattr(depth_model, "without_physics", lambda: depth_model)()
    check_adaptable(depth_model, model)
    stacks, blur = windows.stacks, None
    if not windows.metric:
        from focaldepth.train.selfsup import with_blur_scale

        scale, tried = fit_blur_scale(depth_model, stacks, settings)
        stacks = [with_blur_scale(s, scale) for s in stacks]
        blur = {"fitted_scale": scale, "loss_per_scale": {f"{k:.3f}": round(v, 6) for k, v in tried.items()}}
    before = reconstruction_error(depth_model, stacks, settings)
    adapted, log = adapt(depth_model, stacks, settings=settings)
    after = reconstruction_error(adapted, stacks, settings)
    card = {
        "name": out.stem,
        "what": f"{model} fine-tuned without labels on one recording with the defocus-reconstruction "
                "loss (focaldepth adapt; docs/selfsup.md)",
        "adapted_from": model,
        "adapted_on": str(input_path),
        "frames": windows.num_frames,
        "windows": len(stacks),
        "window_frames": windows.window_frames,
        "working_size_hw": list(windows.working_size_hw),
        "focus": "metric (meta.json focus distances and lens)" if windows.metric else
        "relative: focus distances or lens unknown; pseudo focus 0.5-1 m evenly spaced in dioptres, "
        "blur per dioptre fitted (assumes an evenly spaced sweep)",
        "blur_scale": blur,
        "steps": settings.steps,
        "settings": asdict(settings),
        "reconstruction_loss": {"before": round(before, 6), "after": round(after, 6)},
        "cpu_seconds": {"adaptation": round(log.cpu_s, 2), "total": round(time.process_time() - cpu_start, 2)},
        "wall_seconds": round(time.perf_counter() - wall_start, 2),
        "threads": thread_count,
        "no ground truth": "the loss never saw depth; check the result (before/after) on your data",
        "base_model_card": base_model_card(model),
    }
    from focaldepth.models import save

    save(adapted, out, model_card=_plain(card), adaptation_log=_plain(
        {"total": [round(s["total"], 6) for s in log.steps], "defocus": [round(s["defocus"], 6) for s in log.steps]}),
        notes=list(windows.notes) + list(handheld.get("warnings", [])))
    return card


def _plain(value):
    """JSON-like copy (models.save accepts plain types only)."""
    import json

    return json.loads(json.dumps(value, default=str))
