"""DDFF 12-Scene (Hazirbas, Soyer, Staab, Leal-Taixé, Cremers: "Deep Depth From Focus",
ACCV 2018): focal stacks refocused from Lytro ILLUM light fields, ground truth from a
registered RGB-D sensor, stored as disparity of the sub-aperture views.

On disk (the authors' ``*trainval.h5``): HDF5 datasets ``stack_<split>`` uint8
(N, 10, H, W, 3) and ``disp_<split>`` float (N, H, W) or (N, 1, H, W) for split ``train`` and
``val`` (``stack_test`` has no disparity: its ground truth is withheld by the benchmark).

Disparity -> depth with the light-field camera's constants (ddff-toolbox ``IntParamLF.mat``
and ``refocus.py``): Z = B f_sub / d with f_sub = 521.4052 px (sub-aperture focal length)
and B = K2 / f_lens * 1e-3 m (K2 = 1982.0250823695178, f_lens = 7317.020641763665 px):
B f_sub = 0.14124 m px. The 10 slices were refocused at disparities evenly spaced from
B f_sub / 0.5 m to B f_sub / 7 m (0.2825 ... 0.0202 px), i.e. focus distances 0.5 ... 7 m
evenly spaced in dioptres. Disparity 0 marks pixels without ground truth.

The stacks are synthetic apertures (shift-and-add over the 9 x 9 sub-aperture views), so the
thin-lens camera given to models is the equivalent one: its CoC in pixels,
f_px * A * |1/Z - 1/F|, is that of a 9 B wide aperture (the span of the 9 views plus one
view's own sub-aperture). Only f_px = f / pitch and A enter the blur; the pitch is nominal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from focaldepth.datasets.base import AdapterDataset, Sample
from focaldepth.errors import UserError
from focaldepth.optics import Camera

SUBAPERTURE_FOCAL_PX = 521.4052
K2 = 1982.0250823695178
LENS_FOCAL_PX = 7317.020641763665
BASELINE_M = K2 / LENS_FOCAL_PX * 1e-3
BASELINE_FOCAL_M_PX = BASELINE_M * SUBAPERTURE_FOCAL_PX
REFOCUS_RANGE_M = (0.5, 7.0)
NUM_SLICES = 10
NUM_VIEWS = 9
# Nominal pitch of a sub-aperture pixel (ILLUM microlens pitch ~20 um): sets the focal length
# in metres only; the blur depends on f_px and the aperture alone.
NOMINAL_PIXEL_PITCH_M = 20e-6
SPLITS = ("train", "val")


def focus_distances_m() -> np.ndarray:
    """The 10 refocus distances (m), near to far: B f_sub / d for d evenly spaced from
    B f_sub / 0.5 m to B f_sub / 7 m."""
    near, far = REFOCUS_RANGE_M
    disparities = np.linspace(BASELINE_FOCAL_M_PX / near, BASELINE_FOCAL_M_PX / far, NUM_SLICES)
    return BASELINE_FOCAL_M_PX / disparities


def disparity_to_depth_m(disparity_px: np.ndarray) -> np.ndarray:
    """Depth Z = B f_sub / d; disparity <= 0 or non-finite (no ground truth) -> NaN."""
    disparity = np.asarray(disparity_px, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(np.isfinite(disparity) & (disparity > 0),
                         BASELINE_FOCAL_M_PX / disparity, np.nan)
    return depth.astype(np.float32)


def camera(image_width_px: int) -> Camera:
    """The thin lens equivalent to DDFF-12's synthetic aperture (see the module docstring)."""
    focal_length_m = SUBAPERTURE_FOCAL_PX * NOMINAL_PIXEL_PITCH_M
    aperture_m = NUM_VIEWS * BASELINE_M
    return Camera(focal_length_m * 1e3, focal_length_m / aperture_m,
                  NOMINAL_PIXEL_PITCH_M * 1e3 * image_width_px, int(image_width_px))


class DDFF12(AdapterDataset):
    """``ddff12:FILE.h5``: the stacks of one split (default ``val``, the split DFV and later
    work score, since the test ground truth is not public)."""

    name = "ddff12"
    stack_size = NUM_SLICES

    def __init__(self, root: str | Path, *, split: str = "val", num_frames: int | None = None,
                 crop_size: int | None = None) -> None:
        super().__init__(root, num_frames=num_frames, crop_size=crop_size)
        if split not in SPLITS:
            raise UserError(f"ddff12: split must be one of {list(SPLITS)} (the test split has no "
                            f"public ground truth), got {split!r}", self.root)
        self.split = split
        self.stack_key, self.disp_key = f"stack_{split}", f"disp_{split}"
        with self._open() as file:
            stacks, _ = self._datasets(file)
            self.height, self.width = int(stacks.shape[2]), int(stacks.shape[3])
            self.entries = list(range(int(stacks.shape[0])))
        self._check_not_empty(f"stacks in {self.stack_key}")

    def _open(self) -> Any:
        import h5py

        if not self.root.is_file():
            raise UserError("ddff12: expected the DDFF-12 HDF5 file (e.g. ddff-dataset-trainval.h5)",
                            self.root)
        try:
            return h5py.File(self.root, "r")
        except OSError as error:
            raise UserError(f"ddff12: not a readable HDF5 file ({error})", self.root) from None

    def _datasets(self, file: Any) -> tuple[Any, Any]:
        missing = [key for key in (self.stack_key, self.disp_key) if key not in file]
        if missing:
            raise UserError(f"ddff12: no dataset {missing[0]!r} in the file (it has "
                            f"{sorted(file.keys())})", self.root)
        stacks, disparity = file[self.stack_key], file[self.disp_key]
        if stacks.ndim != 5 or stacks.shape[1] != NUM_SLICES or stacks.shape[4] != 3:
            raise UserError(f"ddff12: {self.stack_key} has shape {stacks.shape}, expected "
                            f"(N, {NUM_SLICES}, H, W, 3)", self.root)
        if stacks.dtype != np.uint8:
            raise UserError(f"ddff12: {self.stack_key} is {stacks.dtype}, expected uint8", self.root)
        shape = tuple(disparity.shape)
        if shape not in ((stacks.shape[0], *stacks.shape[2:4]),
                         (stacks.shape[0], 1, *stacks.shape[2:4])):
            raise UserError(f"ddff12: {self.disp_key} has shape {shape}, expected "
                            f"({stacks.shape[0]}, {stacks.shape[2]}, {stacks.shape[3]})", self.root)
        return stacks, disparity

    def read(self, entry: int) -> Sample:
        with self._open() as file:
            stacks, disparity = self._datasets(file)
            frames = stacks[entry]
            disp = np.asarray(disparity[entry], np.float32).reshape(self.height, self.width)
        depth = disparity_to_depth_m(disp)
        return Sample(name=f"{self.split}_{entry:04d}", frames=frames,
                      focus_distance_m=[float(f) for f in focus_distances_m()],
                      camera=camera(self.width), depth_m=depth)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "split": self.split,
                "depth": "B f_sub / disparity, B f_sub = 0.14124 m px; disparity 0 = no GT"}
