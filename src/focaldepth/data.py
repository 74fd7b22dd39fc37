"""Torch datasets over generated focus-sweep data (``focaldepth generate`` output).

:class:`FocusSweepDataset` serves one item per sequence: a window of ``num_frames`` frames
and the ground truth of its *reference* frame (the last frame of the window, the frame
depth models predict for; see :mod:`focaldepth.models.base`). Each item is a dict:

============================ ======================== =========================================
key                          shape, dtype             meaning
============================ ======================== =========================================
``frames``                   (S, 3, H, W) float32     frames in [0, 1], in capture order
``focus_distance_m``         (S,) float32             focus distance of each frame
``camera``                   (3,) float32             [focal_length_m, f_number, pixel_pitch_m]
                                                      (pitch of the stored resolution; crops
                                                      do not change it)
``depth_m``                  (1, H, W) float32        depth of the reference frame
``aif``                      (3, H, W) float32        all-in-focus image of the reference frame
``coc_px``                   (S, 1, H, W) float32     each frame's own CoC map (pixels)
``valid``                    (1, H, W) bool           pixels with a finite, positive depth
``flow``                     (2, H, W) float32        backward flow (dx, dy) of the reference
                                                      frame to its previous frame; zeros if
                                                      static or the reference is frame 0
``sequence_index``           () int64                 the sequence's index in the dataset
``is_dynamic``               () bool
============================ ======================== =========================================

Sampling (``sample``):

* ``"ramp"`` (the seed protocol, default S = 4): one near -> far ramp of the sequence is
  picked at random (a ramp = a maximal run of increasing focus distance) and S of its
  frames, in increasing focus order (all of them if the ramp has exactly S frames);
* ``"window"``: the S consecutive frames ending at a random frame (for video models);
  sequences shorter than S frames are left out (with a warning; ``num_excluded``).

Randomness (ramp/window choice, crop position) comes from
``numpy.random.default_rng([seed, epoch, index])``: an item is a pure function of
``(seed, epoch, index)`` whatever the number of DataLoader workers; call
:meth:`FocusSweepDataset.set_epoch` each epoch for fresh samples. With
``random_crop=False`` the crop is centred (evaluation).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from focaldepth.errors import UserError
from focaldepth.generate.storage import FORMAT_NAME, MANIFEST_NAME, finished_sequences, read_record

SAMPLES = ("ramp", "window")


def increasing_runs(focus_distance_m: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the maximal runs of strictly increasing focus distance
    (the near -> far ramps of a sweep)."""
    runs, start = [], 0
    for i in range(1, len(focus_distance_m) + 1):
        if i == len(focus_distance_m) or not focus_distance_m[i] > focus_distance_m[i - 1]:
            runs.append((start, i))
            start = i
    return runs


def load_records(root: Path) -> list[dict[str, Any]]:
    """Sequence records of a generated dataset, sorted by index: from ``manifest.jsonl``
    when it lists exactly the files present, else read from the files themselves (a run
    still in progress or a shard that has not rewritten the manifest yet)."""
    files = finished_sequences(root)
    manifest = root / MANIFEST_NAME
    if manifest.exists():
        with open(manifest, encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        if sorted(r["index"] for r in records) == sorted(files):
            return sorted(records, key=lambda r: r["index"])
    return [read_record(path) for path in files.values()]


class FocusSweepDataset(Dataset):
    """Windows of generated focus sweeps with ground truth (see the module docstring)."""

    def __init__(self, root: str | Path, num_frames: int = 4, crop_size: int | None = None,
                 split: str | None = None, sample: str = "ramp", random_crop: bool = True, seed: int = 0):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError("dataset directory not found", self.root)
        if sample not in SAMPLES:
            raise UserError(f"sample must be one of {list(SAMPLES)}, got {sample!r}", self.root)
        if num_frames < 1:
            raise UserError(f"num_frames must be >= 1, got {num_frames}", self.root)
        if crop_size is not None and crop_size < 1:
            raise UserError(f"crop_size must be >= 1, got {crop_size}", self.root)
        records = load_records(self.root)
        if split is not None:
            records = [r for r in records if r["split"] == split]
        if not records:
            raise UserError("no generated sequences" + (f" of split {split!r}" if split else "")
                            + " (run `focaldepth generate` first)", self.root)
        for record in records:
            self._check_record(record, num_frames, crop_size, sample)
        # Windows longer than a sequence: such sequences (e.g. 5-frame static stacks among
        # 25-frame videos) are left out, and the user is told how many.
        long_enough = [r for r in records if r["num_frames"] >= num_frames]
        self.num_excluded = len(records) - len(long_enough)
        if not long_enough:
            raise UserError(f"no sequence has {num_frames} frames (longest: "
                            f"{max(r['num_frames'] for r in records)})", self.root)
        if self.num_excluded:
            warnings.warn(f"{self.root}: {self.num_excluded} of {len(records)} sequences are shorter than "
                          f"num_frames={num_frames} and are left out", stacklevel=2)
        self.records = long_enough
        self.num_frames = num_frames
        self.crop_size = crop_size
        self.sample = sample
        self.random_crop = random_crop
        self.seed = seed
        self.epoch = 0

    def _check_record(self, record: dict[str, Any], num_frames: int, crop_size: int | None, sample: str) -> None:
        where = self.root / record["file"]
        if sample == "ramp" and num_frames > record["params"]["frames_per_ramp"]:
            raise UserError(f"num_frames={num_frames} exceeds the {record['params']['frames_per_ramp']} frames "
                            "of a focus ramp (use sample='window')", where)
        if crop_size is not None and crop_size > min(record["height"], record["width"]):
            raise UserError(f"crop_size={crop_size} exceeds the stored size "
                            f"{record['height']}x{record['width']}", where)

    def set_epoch(self, epoch: int) -> None:
        """Draw new windows and crops (items are a function of (seed, epoch, index))."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def _frame_indices(self, rng: np.random.Generator, focus_distance_m: np.ndarray) -> list[int]:
        if self.sample == "window":
            stop = int(rng.integers(self.num_frames, len(focus_distance_m) + 1))
            return list(range(stop - self.num_frames, stop))
        ramps = [r for r in increasing_runs(focus_distance_m) if r[1] - r[0] >= self.num_frames]
        if not ramps:
            raise UserError(f"no focus ramp of {self.num_frames} frames in this sequence",
                            self.root / self.records[0]["file"])
        start, stop = ramps[int(rng.integers(len(ramps)))]
        chosen = np.sort(rng.choice(np.arange(start, stop), size=self.num_frames, replace=False))
        return [int(i) for i in chosen]

    def _crop(self, rng: np.random.Generator, height: int, width: int) -> tuple[slice, slice]:
        size = self.crop_size
        if size is None:
            return slice(0, height), slice(0, width)
        if self.random_crop:
            top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        else:
            top, left = (height - size) // 2, (width - size) // 2
        return slice(top, top + size), slice(left, left + size)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        record = self.records[item]
        rng = np.random.default_rng([self.seed, self.epoch, item])
        with h5py.File(self.root / record["file"], "r") as file:
            if file.attrs.get("format") != FORMAT_NAME:
                raise UserError("not a focaldepth sequence file", self.root / record["file"])
            focus = file["focus_distance_m"][()]
            indices = self._frame_indices(rng, focus)
            reference = indices[-1]
            rows, cols = self._crop(rng, int(file.attrs["height"]), int(file.attrs["width"]))
            # h5py reads a frame list (increasing) plus a hyperslab chunk by chunk.
            frames = file["frames"][indices, rows, cols]
            coc = file["coc_px"][indices, rows, cols]
            depth = file["depth_m"][reference, rows, cols]
            aif = file["aif"][reference, rows, cols]
            is_dynamic = bool(file.attrs["is_dynamic"])
            if is_dynamic:
                flow = file["flow"][reference, rows, cols].astype(np.float32)
            else:
                flow = np.zeros(depth.shape + (2,), np.float32)
            camera = [file.attrs["focal_length_m"], file.attrs["f_number"], file.attrs["pixel_pitch_m"]]
        depth_t = torch.from_numpy(np.ascontiguousarray(depth, np.float32))[None]
        return {
            "frames": torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0,
            "focus_distance_m": torch.from_numpy(focus[indices].astype(np.float32)),
            "camera": torch.tensor(camera, dtype=torch.float32),
            "depth_m": depth_t,
            "aif": torch.from_numpy(aif).permute(2, 0, 1).float() / 255.0,
            "coc_px": torch.from_numpy(np.ascontiguousarray(coc, np.float32))[:, None],
            "valid": torch.isfinite(depth_t) & (depth_t > 0),
            "flow": torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1).contiguous(),
            "sequence_index": torch.tensor(record["index"], dtype=torch.int64),
            "is_dynamic": torch.tensor(is_dynamic),
        }
