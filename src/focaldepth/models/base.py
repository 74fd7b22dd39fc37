"""The one interface every depth model implements.

A model's ``forward(frames, focus_distance_m, camera)`` takes

* ``frames``: ``(B, S, C, H, W)`` float in [0, 1], S frames of a focal stack / sweep window,
  ordered as captured (the last frame is the *reference*: depth is predicted for its view),
* ``focus_distance_m``: ``(B, S)`` metres,
* ``camera``: ``(B, 3)`` = ``[focal_length_m, f_number, pixel_pitch_m]`` (see :func:`camera_tensor`),

and returns a dict with at least ``"depth_m"``: ``(B, 1, H, W)`` metres. Optional keys:
``"coc_px"`` ``(B, S, 1, H, W)`` (models with a CoC decoder), ``"confidence"`` ``(B, 1, H, W)``
in [0, 1]. Training, evaluation and prediction only use this interface and the class
attribute :attr:`DepthModel.info`, so they never branch on a model's name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar, Literal, Sequence

import torch
from torch import nn

Consumes = Literal["stack_fixed", "stack_any", "stream", "single"]


@dataclass(frozen=True)
class ModelInfo:
    """What a model consumes and what it needs from the camera metadata."""

    consumes: Consumes  # fixed-size stack, any number of slices, a frame stream, or one image
    uses_focus_distance: bool  # reads focus_distance_m beyond the output depth range mapping
    uses_camera: bool  # reads the camera tensor
    paper: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class DepthModel(nn.Module):
    """Base class: subclasses set ``info`` and implement ``forward``."""

    info: ClassVar[ModelInfo]

    def forward(self, frames: torch.Tensor, focus_distance_m: torch.Tensor,
                camera: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


def check_inputs(frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor,
                 num_frames: int | None = None) -> None:
    """Shape checks with messages that say what was expected."""
    if frames.ndim != 5:
        raise ValueError(f"frames: expected (B, S, C, H, W), got shape {tuple(frames.shape)}")
    batch, slices = frames.shape[:2]
    if focus_distance_m.shape != (batch, slices):
        raise ValueError(f"focus_distance_m: expected (B, S) = {(batch, slices)}, "
                         f"got {tuple(focus_distance_m.shape)}")
    if camera.shape != (batch, 3):
        raise ValueError(f"camera: expected (B, 3) = [focal_length_m, f_number, pixel_pitch_m], "
                         f"got {tuple(camera.shape)}")
    if num_frames is not None and slices != num_frames:
        raise ValueError(f"frames: this model takes exactly {num_frames} slices, got {slices}")


def order_equivariant(model: nn.Module) -> bool:
    """Whether reordering ``model``'s frames (with their focus distances) only reorders its
    per-frame outputs and leaves depth and confidence as they are: models that pool over
    frames or sort them by focus (SweepNet, the plane sweep, classical DFF), not recurrent
    ones. Such a model sets ``frame_order_equivariant = True``; a still stack then observes
    each set of frames once (``StreamingPredictor.hold_stack_still``)."""
    return bool(getattr(model, "frame_order_equivariant", False))


def takes_frame_f_number(model: nn.Module) -> bool:
    """Whether ``model`` reads a per-frame f-number ``(B, S)`` (keyword ``f_number``) besides
    the camera tensor: models whose frames differ in aperture (two-aperture depth from
    defocus). Such a model sets the class attribute ``frame_f_number_input = True``."""
    return bool(getattr(model, "frame_f_number_input", False))


def run_model(model: nn.Module, frames: torch.Tensor, focus_distance_m: torch.Tensor,
              camera: torch.Tensor, f_number: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Call ``model`` through the common interface, adding ``f_number`` (``(B, S)``, one
    f-number per frame) for the models that read it (:func:`takes_frame_f_number`); every
    other model gets the three standard inputs only, so callers need not know which is which.
    A per-frame model called without ``f_number`` raises (it must not guess the apertures)."""
    if takes_frame_f_number(model):
        return model(frames, focus_distance_m, camera, f_number=f_number)
    return model(frames, focus_distance_m, camera)


def check_frame_f_number(f_number: torch.Tensor | None, frames: torch.Tensor) -> torch.Tensor:
    """The per-frame f-number input, checked: ``(B, S)``, finite and positive."""
    batch, slices = frames.shape[:2]
    if f_number is None:
        raise ValueError("f_number: this model reads one f-number per frame, (B, S) = "
                         f"{(batch, slices)}, passed as model(..., f_number=...) "
                         "(focaldepth.models.base.run_model; items carry it as 'f_number', "
                         "meta.json as an f_number list); got none")
    if tuple(f_number.shape) != (batch, slices):
        raise ValueError(f"f_number: expected (B, S) = {(batch, slices)}, "
                         f"got {tuple(f_number.shape)}")
    if not (torch.isfinite(f_number).all() and (f_number > 0).all()):
        raise ValueError("f_number: every per-frame f-number must be finite and positive")
    return f_number.to(frames.dtype)


def camera_tensor(cameras: Sequence, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(B, 3)`` tensor from :class:`focaldepth.optics.Camera` objects."""
    rows = [[c.focal_length_m, c.f_number, c.pixel_pitch_m] for c in cameras]
    return torch.tensor(rows, device=device, dtype=dtype)


def depth_range_dpt(focus_distance_m: torch.Tensor, margin: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-depth interval ``(B,1,1,1)`` spanned by the stack's focus distances, widened by
    ``margin`` of its width on each side (depth is only observable near the swept range)."""
    dpt = 1.0 / focus_distance_m
    low, high = dpt.amin(dim=1), dpt.amax(dim=1)
    width = (high - low).clamp_min(1e-3)
    low = (low - margin * width).clamp_min(1e-3)
    high = high + margin * width
    return low.view(-1, 1, 1, 1), high.view(-1, 1, 1, 1)


def depth_from_unit(unit: torch.Tensor, focus_distance_m: torch.Tensor) -> torch.Tensor:
    """Map a network's output in [0, 1] (0 = far end, 1 = near end of the swept range, linear in
    inverse depth) to metric depth. This lets networks that regress a normalised depth map
    (as the seed architectures do) produce metres for any camera and focus schedule."""
    low, high = depth_range_dpt(focus_distance_m)
    return 1.0 / (low + unit.clamp(0, 1) * (high - low))


def unit_from_depth(depth_m: torch.Tensor, focus_distance_m: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`depth_from_unit` (not clamped)."""
    low, high = depth_range_dpt(focus_distance_m)
    return (1.0 / depth_m - low) / (high - low)


def single_thread_cpu(device: torch.device | str) -> bool:
    """Whether work on ``device`` may go to a second Python thread: a CPU with one torch
    intra-op thread (with more, the threads would oversubscribe the cores). The one policy
    of :class:`Beside` and of predict's pipelining."""
    return torch.device(device).type == "cpu" and torch.get_num_threads() == 1


class Beside:
    """``fn(*args, **kwargs)`` run on a second Python thread while the caller goes on; read
    the result with :meth:`result`. For two independent halves of one CPU forward pass (the
    vote network and the plane sweep): torch releases the GIL inside its kernels, so with one
    intra-op thread each they use two cores, and when a core is busy they merely share the
    other (unlike intra-op threads, which stall at every op on a busy core; predict.py).

    Runs inline (the result is computed at construction) unless the work is CPU inference
    with one intra-op thread: with autograd on, the graph would span threads, and with more
    intra-op threads the two halves would oversubscribe the cores. Grad and inference mode
    are thread-local, so the worker repeats the caller's."""

    _pool = None

    def __init__(self, fn, *args, device: torch.device | str = "cpu", **kwargs):
        self._future, self._value = None, None
        import threading

        # (inline on the worker itself: a nested Beside would wait for its own thread)
        concurrent = (single_thread_cpu(device) and not torch.is_grad_enabled()
                      and not threading.current_thread().name.startswith("focaldepth-beside"))
        if not concurrent:
            self._value = fn(*args, **kwargs)
            return
        if Beside._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            Beside._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="focaldepth-beside")
        inference = torch.is_inference_mode_enabled()

        def call():
            with torch.inference_mode(inference), torch.no_grad():
                return fn(*args, **kwargs)

        self._future = Beside._pool.submit(call)

    def result(self):
        return self._value if self._future is None else self._future.result()
