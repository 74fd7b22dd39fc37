"""Export a depth model to ONNX, to run it without Python (onnxruntime from C++, on a phone).

The graph is the network alone: frames ``(B, S, 3, H, W)`` RGB in [0, 1], focus distances
``(B, S)`` in metres and camera ``(B, 3)`` = ``[focal_length_m, f_number, pixel_pitch_m]``
in; ``depth_m`` and ``confidence`` ``(B, 1, H, W)`` (and ``focus_weights`` ``(B, S, H, W)``
for models that vote over slices) out, with batch, frame count, height and width dynamic.
What ``focaldepth predict`` does around the network (working resolution, optical-flow
alignment, upsampling) stays outside; docs/export.md describes it step by step.

onnx, onnxscript and onnxruntime are dev extras: imported only here, on use."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from focaldepth.errors import UserError

INPUT_NAMES = ("frames", "focus_distance_m", "camera")
OPSET = 18
# SweepNet works on a 1/16 grid; the wrapper pads to it (see ExportWrapper.forward).
PAD_MULTIPLE = 16
MIN_SIDE_PX = 32
# Example inputs for tracing: sizes 0/1 would be specialised by torch.export, so none is.
EXAMPLE_SHAPE = (2, 4, 48, 80)  # B, S, H, W


def load_for_export(name_or_path: str) -> torch.nn.Module:
    """A shipped model name, a ``.pt`` model file or a training ``.ckpt`` -> model in eval mode."""
    if name_or_path.endswith(".ckpt"):
        from focaldepth.train.checkpoint import load_trained_model

        return load_trained_model(name_or_path).model
    from focaldepth.predict import load_model

    model = load_model(name_or_path).eval()
    # A hybrid model's physics (FFT plane sweep, Bessel-function OTFs) has no ONNX operators:
    # the graph holds the learned vote; the plane sweep is documented in docs/export.md.
    return getattr(model, "without_physics", lambda: model)().eval()


def output_names(model: torch.nn.Module) -> tuple[str, ...]:
    """``depth_m``, ``confidence`` and, when the model gives them, ``focus_weights``."""
    frames, focus, camera = example_inputs(model)
    with torch.inference_mode():
        outputs = model(frames, focus, camera)
    if "depth_m" not in outputs:
        raise UserError(f"{type(model).__name__} gives no depth_m output: cannot export it")
    return ("depth_m", "confidence") + (("focus_weights",) if "focus_weights" in outputs else ())


def fixed_frame_count(model: torch.nn.Module) -> int | None:
    """Slices a fixed-stack (or single-image) model needs; None when any count is accepted."""
    info = getattr(model, "info", None)
    if info is not None and info.consumes == "single":
        return 1
    if info is not None and info.consumes == "stack_fixed":
        return int(model.num_frames)
    return None


def example_inputs(model: torch.nn.Module, shape: tuple[int, int, int, int] = EXAMPLE_SHAPE):
    batch, slices, height, width = shape
    slices = fixed_frame_count(model) or slices
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(batch, slices, 3, height, width, generator=generator)
    focus = torch.linspace(0.4, 1.6, slices).repeat(batch, 1)
    camera = torch.tensor([[0.025, 2.8, 1.0e-5]]).repeat(batch, 1)
    return frames, focus, camera


class ExportWrapper(torch.nn.Module):
    """The model with tuple outputs (ONNX has no dicts) and its padding done branch-free.

    The models pad H and W to a multiple of 16 only when needed (``if pad == 0``); traced at
    one size that branch would be frozen into the graph. Padding here to
    ``16 * ceil(H / 16)`` - replicate, as the model does itself, so the numbers are the same -
    gives the model a size it never needs to pad, whatever H and W are at run time."""

    def __init__(self, model: torch.nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor):
        height, width = frames.shape[-2], frames.shape[-1]
        pad_h = (height + PAD_MULTIPLE - 1) // PAD_MULTIPLE * PAD_MULTIPLE - height
        pad_w = (width + PAD_MULTIPLE - 1) // PAD_MULTIPLE * PAD_MULTIPLE - width
        padded = F.pad(frames.flatten(0, 1), (0, pad_w, 0, pad_h), mode="replicate")
        outputs = self.model(padded.unflatten(0, frames.shape[:2]), focus_distance_m, camera)
        depth = outputs["depth_m"]
        confidence = outputs.get("confidence")
        if confidence is None:  # what predict assumes for a model without one
            confidence = torch.ones_like(depth)
        crop = {"depth_m": depth, "confidence": confidence, "focus_weights": outputs.get("focus_weights")}
        return tuple(crop[name][..., :height, :width] for name in self.names)


def dynamic_shapes(fixed_frames: int | None) -> dict:
    dim = torch.export.Dim
    batch = dim("batch")
    # A vote needs two slices (and torch.export would specialise a size-1 axis anyway).
    slices = None if fixed_frames is not None else dim("frames", min=2)
    height, width = dim("height", min=MIN_SIDE_PX), dim("width", min=MIN_SIDE_PX)
    frame_axes = {0: batch, 3: height, 4: width} | ({1: slices} if slices is not None else {})
    focus_axes = {0: batch} | ({1: slices} if slices is not None else {})
    return {"frames": frame_axes, "focus_distance_m": focus_axes, "camera": {0: batch}}


def check_output_path(out: str | Path) -> Path:
    """Refuse a bad output name before the (slow) export rather than after it."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise UserError("the output file must end in .onnx", out)
    if out.is_dir():
        raise UserError("is a folder, expected an .onnx file name", out)
    existing = next(parent for parent in out.absolute().parents if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write here ({existing} is not a writable folder)", out)
    return out


def export_onnx(model: torch.nn.Module, out: str | Path, *, opset: int = OPSET) -> tuple[str, ...]:
    """Write ``model`` as an ONNX file (atomically) and return its output names."""
    from focaldepth.io.atomic import atomic_path

    try:
        import onnxscript  # noqa: F401 - torch's dynamo exporter needs it
    except ImportError:
        raise UserError("ONNX export needs onnx and onnxscript: pip install 'focaldepth[dev]'") from None
    out = check_output_path(out)
    model = model.eval().cpu()
    from focaldepth.models.base import takes_frame_f_number

    if takes_frame_f_number(model):
        raise UserError(f"{type(model).__name__} reads a per-frame f-number, which the exported "
                        "interface (frames, focus_distance_m, camera) does not carry: ONNX export "
                        "of two-aperture models is not supported yet")
    if hasattr(model, "without_physics"):
        # the plane sweep's data-dependent hypothesis range and Wiener deconvolution do not
        # trace (torch.export); say what does instead of failing deep in the exporter
        raise UserError(f"{type(model).__name__} (a vote fused with the physics plane sweep, e.g. "
                        "sweepnet_default v6) cannot be exported to ONNX: the plane sweep does not "
                        "trace; export its vote alone (e.g. --model sweepnet_real_vote, v6's vote: "
                        "depth inside the swept range only)")
    names = output_names(model)
    wrapper = ExportWrapper(model, names).eval()
    try:
        program = torch.onnx.export(
            wrapper, example_inputs(model), dynamo=True, input_names=list(INPUT_NAMES),
            output_names=list(names), dynamic_shapes=dynamic_shapes(fixed_frame_count(model)),
            opset_version=opset, verbose=False)
    except Exception as error:  # noqa: BLE001 - say which model, in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot export {type(model).__name__} to ONNX: {first}") from None
    try:
        with atomic_path(out) as tmp:
            program.save(str(tmp), external_data=False)  # one self-contained file
    except OSError as error:
        raise UserError(f"cannot write ({error.strerror or error})", out) from None
    return names
