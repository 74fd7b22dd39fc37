"""What every dataset adapter shares: the in-memory sample, frame selection, centre crops, and
the conversion to the item dict that :func:`focaldepth.evaluate.open_test_set` datasets yield
(the keys of :class:`focaldepth.data.FocusSweepDataset`) and to the
:class:`~focaldepth.io.sequence.FocusSequence` that ``focaldepth predict`` streams.

An adapter lists its samples cheaply when it is opened (names and file paths, after checking
that the layout is there) and reads one sample from disk only when it is asked for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from focaldepth.errors import UserError
from focaldepth.optics import Camera


@dataclass
class Sample:
    """One focal stack of a dataset, as read from disk.

    ``frames`` uint8 (S, H, W, 3) or float32 in [0, 1], near to far; ``focus_distance_m`` one
    entry per frame (None = unknown); ``depth_m`` float32 (H, W) metres of the reference
    (last) frame, NaN where unknown, or None when the dataset has no ground truth; ``valid``
    bool (H, W): the pixels the published protocol scores (default: finite, positive depth);
    ``f_number`` per frame when the frames differ in aperture (else the camera's)."""

    name: str
    frames: np.ndarray
    focus_distance_m: list[float | None]
    camera: Camera
    depth_m: np.ndarray | None = None
    valid: np.ndarray | None = None
    aif: np.ndarray | None = None
    f_number: list[float] | None = None
    camera_known: bool = True
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(f"Sample {self.name}: frames must be (S, H, W, 3), got "
                             f"{self.frames.shape}")
        if len(self.focus_distance_m) != len(self.frames):
            raise ValueError(f"Sample {self.name}: {len(self.frames)} frames but "
                             f"{len(self.focus_distance_m)} focus distances")
        if self.depth_m is not None and self.valid is None:
            with np.errstate(invalid="ignore"):
                self.valid = np.isfinite(self.depth_m) & (self.depth_m > 0)


def evenly_spaced(count: int, wanted: int | None, where: object) -> list[int]:
    """``wanted`` frame indices spread evenly over ``count`` (all of them for None); the first
    and last frames are always kept (the published sub-stacks, e.g. DFV's 5 of DDFF-12's 10,
    span the whole sweep)."""
    if wanted is None or wanted == count:
        return list(range(count))
    if wanted < 1:
        raise UserError(f"num_frames must be >= 1, got {wanted}", where)
    if wanted > count:
        raise UserError(f"num_frames={wanted} exceeds the {count} frames of each stack of this "
                        f"dataset (pass --num-frames {count} or fewer)", where)
    if wanted == 1:  # the reference frame: the one the ground truth belongs to
        return [count - 1]
    return [int(i) for i in np.round(np.linspace(0, count - 1, wanted)).astype(int)]


def centre_crop_slices(height: int, width: int, crop_size: int | None,
                       where: object) -> tuple[slice, slice]:
    if crop_size is None:
        return slice(0, height), slice(0, width)
    if crop_size < 1 or crop_size > min(height, width):
        raise UserError(f"crop_size={crop_size} must be between 1 and the stored size "
                        f"{height}x{width}", where)
    top, left = (height - crop_size) // 2, (width - crop_size) // 2
    return slice(top, top + crop_size), slice(left, left + crop_size)


def _to_unit_float(frames: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 or float -> (..., 3, H, W) float32 in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames))
    tensor = tensor.float().div(255.0) if frames.dtype == np.uint8 else tensor.float().clamp(0, 1)
    return tensor.movedim(-1, -3).contiguous()


def to_uint8(frames: np.ndarray) -> np.ndarray:
    if frames.dtype == np.uint8:
        return frames
    return np.clip(np.rint(np.asarray(frames, np.float32) * 255.0), 0, 255).astype(np.uint8)


def sample_to_item(sample: Sample, index: int, *, frames: list[int] | None = None,
                   crop_size: int | None = None) -> dict[str, Any]:
    """The item dict of :class:`focaldepth.data.FocusSweepDataset` for one sample: frames
    (S, 3, H, W), focus (S,), camera (3,) with the reference (last) frame's f-number, depth
    and valid (1, H, W), zero flow, coc_px of each frame (thin lens, NaN where the depth is
    unknown), sequence_index, is_dynamic (False); plus f_number (S,) and aif when known."""
    chosen = frames if frames is not None else list(range(len(sample.frames)))
    height, width = sample.frames.shape[1:3]
    rows, cols = centre_crop_slices(height, width, crop_size, sample.name)
    stack = sample.frames[chosen][:, rows, cols]
    focus = np.array([math.nan if f is None else f for f in sample.focus_distance_m],
                     np.float32)[chosen]
    f_numbers = np.array(sample.f_number if sample.f_number is not None
                         else [sample.camera.f_number] * len(sample.frames), np.float32)[chosen]
    cam = sample.camera
    if sample.depth_m is None:
        depth = np.full((height, width), np.nan, np.float32)[rows, cols]
        valid = np.zeros_like(depth, dtype=bool)
    else:
        depth = np.asarray(sample.depth_m, np.float32)[rows, cols]
        valid = np.asarray(sample.valid, bool)[rows, cols] & np.isfinite(depth) & (depth > 0)
    depth_t = torch.from_numpy(np.ascontiguousarray(depth))[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        coc = np.stack([cam.coc_px(depth, float(f)) * cam.f_number / float(n)
                        for f, n in zip(focus, f_numbers)]).astype(np.float32)
    item = {
        "frames": _to_unit_float(stack),
        "focus_distance_m": torch.from_numpy(focus),
        "camera": torch.tensor([cam.focal_length_m, float(f_numbers[-1]), cam.pixel_pitch_m],
                               dtype=torch.float32),
        "depth_m": depth_t,
        "coc_px": torch.from_numpy(coc)[:, None],
        "valid": torch.from_numpy(np.ascontiguousarray(valid))[None],
        "flow": torch.zeros(2, *depth.shape, dtype=torch.float32),
        "sequence_index": torch.tensor(index, dtype=torch.int64),
        "is_dynamic": torch.tensor(False),
        "f_number": torch.from_numpy(f_numbers),
    }
    if sample.aif is not None:
        item["aif"] = _to_unit_float(sample.aif[rows, cols])
    return item


class AdapterDataset(Dataset):
    """Base of every adapter: subclasses set ``self.entries`` (one cheap record per sample,
    listed when opened) and implement :meth:`read` (one entry -> :class:`Sample`, from
    disk). Items are deterministic (centre crops, evenly spaced frames)."""

    #: the ``NAME`` of ``NAME:PATH``
    name = ""
    #: frames per stack, when every stack has the same number (None: varies)
    stack_size: int | None = None
    #: False for datasets without ground-truth depth (evaluation refuses them)
    has_ground_truth = True

    def __init__(self, root: str | Path, *, num_frames: int | None = None,
                 crop_size: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise UserError(f"{self.name}: data not found", self.root)
        self.num_frames = num_frames
        self.crop_size = crop_size
        self.entries: list[Any] = []

    def _check_not_empty(self, what: str) -> None:
        if not self.entries:
            raise UserError(f"{self.name}: no {what} found", self.root)
        if self.num_frames is not None and self.stack_size is not None:
            evenly_spaced(self.stack_size, self.num_frames, self.root)  # fail at open time

    def read(self, entry: Any) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, index: int) -> Sample:
        if not 0 <= index < len(self.entries):
            raise UserError(f"{self.name}: item {index} does not exist (the dataset has "
                            f"{len(self.entries)} items, 0..{len(self.entries) - 1})", self.root)
        return self.read(self.entries[index])

    def __len__(self) -> int:
        return len(self.entries)

    def item_is_dynamic(self, index: int) -> bool:
        return False

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.sample(index)
        chosen = evenly_spaced(len(sample.frames), self.num_frames, sample.name)
        return sample_to_item(sample, index, frames=chosen, crop_size=self.crop_size)

    def describe(self) -> dict[str, Any]:
        """What metrics.json records about the data (subclasses add their protocol)."""
        return {"adapter": self.name, "root": str(self.root), "num_items": len(self)}


class NoItems(Dataset):
    """The empty temporal set of a static dataset (every adapter's stacks are static)."""

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        raise IndexError(index)


def sample_to_sequence(sample: Sample, source: str) -> Any:
    """A :class:`~focaldepth.io.sequence.FocusSequence` (frames in memory) for ``predict``."""
    from focaldepth.io.sequence import FocusSequence

    frames = to_uint8(sample.frames)
    f_numbers = list(sample.f_number) if sample.f_number is not None else \
        [sample.camera.f_number] * len(frames)
    return FocusSequence(
        frames=frames, focus_distance_m=list(sample.focus_distance_m), camera=sample.camera,
        f_number=[float(n) for n in f_numbers], timestamps_s=None,
        meta={"source": source, "sample": sample.name}, size_hw=(frames.shape[1], frames.shape[2]),
        source_path=Path(source.split(":", 1)[1]) if ":" in source else Path(source),
        depth_m=None if sample.depth_m is None else np.asarray(sample.depth_m, np.float32),
        camera_known=sample.camera_known, notes=list(sample.notes))
