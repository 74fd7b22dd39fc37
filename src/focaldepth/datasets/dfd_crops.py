"""Training crops of DFD indoor (Carvalho et al., 3DRW ECCV Workshops 2018) for the real-photo
models ``d3net_dfd_indoor`` and ``aperture_pair_dfd_indoor`` (``docs/dfd_real.md``).

Each scene is read once, shrunk to the resolution ``focaldepth predict`` runs a one-focus
DFD frame at (:func:`working_size`: the pixel budget of
:data:`focaldepth.predict.DEFAULT_MAX_PIXELS`, 645 x 432 -> 293 x 196, INTER_AREA as predict),
so a network sees at training time the blur in pixels it will see in use; the depth is shrunk
by nearest neighbour (no mixing of surfaces). Items are random crops with random horizontal
flips (training) or centre crops (validation), in the item layout of
:class:`focaldepth.data.FocusSweepDataset`, plus ``f_number`` (S,).

Three inputs (``frames_mode``): ``wide`` (the f/2.8 photo, D3Net's input), ``sharp`` (the
f/8 photo, the all-in-focus comparison) and ``pair`` ([f/8, f/2.8], two-aperture depth from
defocus). The folder is the shared layout (``pairs.csv`` + ``f2.8/`` ``f8/`` ``depth_mm/``)
and the split the project's (pairs.csv order: i % 6 == 0 test, == 3 val, else train); the
synthetic pre-training set ``tools/render_dfd_synthetic.py`` writes has the same layout, with
the f/2.8 frames rendered from the f/8 photo and the depth.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from focaldepth.datasets.dfd_indoor import (
    F_NUMBER_SHARP,
    F_NUMBER_WIDE,
    FOCUS_DISTANCE_M,
    MAX_DEPTH_M,
    _shared_layout,
    camera,
)
from focaldepth.errors import UserError

#: = focaldepth.predict.DEFAULT_MAX_PIXELS (tests check they agree; not imported, because
#: the data layer sits below predict).
WORKING_MAX_PIXELS = 57_600
FRAMES_MODES = ("wide", "sharp", "pair")


def working_size(height: int, width: int, max_pixels: int = WORKING_MAX_PIXELS) -> tuple[int, int]:
    """The (h, w) ``StreamingPredictor`` works at for one focus distance (no sweep blur to
    limit it): the pixel budget, never below 32 px on the short side."""
    scale = min(1.0, math.sqrt(max_pixels / float(height * width)))
    scale = max(scale, 32.0 / min(height, width))
    return max(16, int(round(height * scale))), max(16, int(round(width * scale)))


def register_onto(moving_rgb8: np.ndarray, fixed_rgb8: np.ndarray) -> np.ndarray:
    """``moving`` shifted onto ``fixed`` by one global sub-pixel translation
    (:func:`focaldepth.align.translation_px`). The f/8 and f/2.8 photos of a DFD scene are up
    to ~2 px apart: a shift of the size of the blur difference itself, which a two-aperture
    model would otherwise have to tell apart from defocus."""
    from focaldepth.align import translate, translation_px

    def gray(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0

    return translate(moving_rgb8, translation_px(gray(fixed_rgb8), gray(moving_rgb8)))


def _shrink_depth(depth_m: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    return cv2.resize(depth_m, size_hw[::-1], interpolation=cv2.INTER_NEAREST)


class DFDCrops(Dataset):
    """Random (or centre) crops of DFD scenes at predict's working resolution; see the module
    docstring. Keyword arguments are those the training data module passes."""

    frames_mode = "wide"
    #: Pixel budget the scenes are shrunk to (predict's default; None = native resolution,
    #: the ``*Full`` classes: 645 x 432, 2.2x the blur in pixels).
    max_pixels: int | None = WORKING_MAX_PIXELS

    def __init__(self, root: str | Path, *, split: str = "train", num_frames: int | None = None,
                 crop_size: int | None = 128, sample: str = "ramp", random_crop: bool = True,
                 seed: int = 0) -> None:
        from focaldepth.io.depth import read_depth  # noqa: F401  (fail early if missing)

        self.root = Path(root)
        if self.frames_mode not in FRAMES_MODES:
            raise UserError(f"frames_mode must be one of {FRAMES_MODES}, got {self.frames_mode!r}")
        if not (self.root / "pairs.csv").is_file():
            raise UserError("dfd crops: expected the shared DFD layout (pairs.csv, f2.8/, f8/, "
                            "depth_mm/)", self.root)
        if split not in ("train", "val", "test", "all"):
            raise UserError(f"dfd crops: split must be train, val, test or all, got {split!r}",
                            self.root)
        self.stack_size = 2 if self.frames_mode == "pair" else 1
        if num_frames is not None and num_frames != self.stack_size:
            raise UserError(f"dfd crops ({self.frames_mode}): every item has {self.stack_size} "
                            f"frame(s), data.num_frames is {num_frames}", self.root)
        self.entries = _shared_layout(self.root, split)
        if not self.entries:
            raise UserError(f"dfd crops: no {split} scenes", self.root)
        self.split, self.crop_size, self.random_crop = split, crop_size, random_crop
        self.seed, self.epoch = seed, 0
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def item_is_dynamic(self, index: int) -> bool:
        return False

    def scene(self, index: int) -> dict[str, Any]:
        """The scene's frames (uint8 (S, h, w, 3)), depth (h, w, NaN = none) and valid mask
        at the working resolution (read once, then cached)."""
        if index not in self._cache:
            self._cache[index] = self._read(self.entries[index])
        return self._cache[index]

    def _read(self, entry: dict[str, Any]) -> dict[str, Any]:
        from focaldepth.io.depth import read_depth
        from focaldepth.io.frames import read_image

        wide = read_image(entry["wide"])
        height, width = wide.shape[:2]
        size_hw = (height, width) if self.max_pixels is None else working_size(height, width, self.max_pixels)
        images = {"wide": wide}
        if self.frames_mode != "wide":
            images["sharp"] = read_image(entry["sharp"])
            if images["sharp"].shape != wide.shape:
                raise UserError(f"f/8 {images['sharp'].shape[:2]} and f/2.8 {wide.shape[:2]} "
                                "sizes differ", entry["sharp"])
        depth = read_depth(entry["depth"])
        if depth.shape != (height, width):
            raise UserError(f"depth {depth.shape} and image {(height, width)} sizes differ",
                            entry["depth"])
        if self.frames_mode == "pair":
            images["sharp"] = register_onto(images["sharp"], wide)
        small = {k: cv2.resize(v, size_hw[::-1], interpolation=cv2.INTER_AREA)
                 for k, v in images.items()}
        order = {"wide": ["wide"], "sharp": ["sharp"], "pair": ["sharp", "wide"]}[self.frames_mode]
        depth_small = _shrink_depth(np.nan_to_num(depth, nan=0.0).astype(np.float32), size_hw)
        valid = (depth_small > 0) & (depth_small <= MAX_DEPTH_M)
        f_numbers = {"wide": [F_NUMBER_WIDE], "sharp": [F_NUMBER_SHARP],
                     "pair": [F_NUMBER_SHARP, F_NUMBER_WIDE]}[self.frames_mode]
        return {"frames": np.stack([small[k] for k in order]),
                "depth": np.where(valid, depth_small, np.nan).astype(np.float32),
                "valid": valid, "f_number": f_numbers, "camera": camera(size_hw[1])}

    def _window(self, height: int, width: int, rng: np.random.Generator) -> tuple[slice, slice]:
        size = self.crop_size
        if size is None:
            return slice(0, height), slice(0, width)
        if size > min(height, width):
            raise UserError(f"crop_size {size} exceeds the working resolution {height}x{width}",
                            self.root)
        if self.random_crop:
            top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        else:
            top, left = (height - size) // 2, (width - size) // 2
        return slice(top, top + size), slice(left, left + size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.scene(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        frames, depth, valid = scene["frames"], scene["depth"], scene["valid"]
        rows, cols = self._window(*depth.shape, rng)
        frames, depth, valid = frames[:, rows, cols], depth[rows, cols], valid[rows, cols]
        if self.random_crop and rng.random() < 0.5:  # a mirrored scene defocuses the same way
            frames, depth, valid = frames[:, :, ::-1], depth[:, ::-1], valid[:, ::-1]
        cam = scene["camera"]
        slices = len(frames)
        tensor = torch.from_numpy(np.ascontiguousarray(frames)).float().div(255.0)
        depth_t = torch.from_numpy(np.ascontiguousarray(depth))[None]
        return {
            "frames": tensor.permute(0, 3, 1, 2).contiguous(),
            "focus_distance_m": torch.full((slices,), FOCUS_DISTANCE_M, dtype=torch.float32),
            "camera": torch.tensor([cam.focal_length_m, scene["f_number"][-1], cam.pixel_pitch_m],
                                   dtype=torch.float32),
            "f_number": torch.tensor(scene["f_number"], dtype=torch.float32),
            "depth_m": torch.nan_to_num(depth_t, nan=1.0),
            "valid": torch.from_numpy(np.ascontiguousarray(valid))[None],
            "flow": torch.zeros(2, *depth.shape, dtype=torch.float32),
            "sequence_index": torch.tensor(index, dtype=torch.int64),
            "is_dynamic": torch.tensor(False),
        }


class DFDWideCrops(DFDCrops):
    """The f/2.8 photo (D3Net's single defocused input)."""

    frames_mode = "wide"


class DFDSharpCrops(DFDCrops):
    """The f/8 photo (the nearly all-in-focus input of the paper's comparison)."""

    frames_mode = "sharp"


class DFDPairCrops(DFDCrops):
    """[f/8, f/2.8] with per-frame f-number (two-aperture depth from defocus)."""

    frames_mode = "pair"


class DFDWideCropsFull(DFDWideCrops):
    """:class:`DFDWideCrops` at the photos' native resolution (645 x 432)."""

    max_pixels = None


class DFDSharpCropsFull(DFDSharpCrops):
    """:class:`DFDSharpCrops` at the photos' native resolution."""

    max_pixels = None


class DFDPairCropsFull(DFDPairCrops):
    """:class:`DFDPairCrops` at the photos' native resolution."""

    max_pixels = None
