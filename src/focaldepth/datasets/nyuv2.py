"""NYU Depth v2, labeled set (Silberman, Hoiem, Kohli, Fergus, ECCV 2012), with defocus
synthesised by the project's renderer (:func:`focaldepth.render.render_focal_stack`) under
two published protocols.

On disk: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, read with h5py): ``images`` uint8
stored (1449, 3, 640, 480) and ``depths`` float metres (1449, 640, 480) (MATLAB's column-major
(480, 640, 3, 1449) seen from HDF5; in-painted depth); the official split in ``splits.mat``
beside it (``trainNdxs`` 795, ``testNdxs`` 654, 1-based).

``nyuv2_d3net`` (Carvalho et al., ICIP 2018 / 3DRW 2018; their ``parameters_blurred_NYUv2.m``,
``refoc_image.m``): one defocused image per scene at 640 x 480, lens f = 15 mm, f/2.8, pixel
5.6 um (2 x 2.8 um: the images are subsampled), focus 2 m (the paper's other runs: 4 and 8 m),
Gaussian PSF with sigma = 0.3 x the thin-lens blur diameter, code values blurred directly,
max depth 10 m.

``nyuv2_dered`` (DEReD, Si et al., CVPR 2023; their ``gen_nyuv2_defocus.py``): 5-slice stacks
at 320 x 240 (image and depth resized bilinearly, depth clipped to 0.1-10 m), focus
1, 1.5, 2.5, 4, 6 m, thin lens f = 50 mm, f/8, pixel 12 um, Gaussian PSF with sigma = half
the blur diameter, code values blurred directly.

The project's Gaussian PSF has sigma = CoC / 4, so each protocol's sigma is reproduced by
rendering with the f-number scaled by 0.25 / (sigma / CoC) (f/2.8 -> f/2.33, f/8 -> f/4);
the camera given to models is the published one. Differences that remain: the project's
renderer layers depth in inverse depth (32 layers) with occlusion-aware compositing, where
D3Net layers it in 10/255 m steps, and DEReD's 7 x 7 kernel truncates blurs wider than
about 3 px (the project's kernels are not truncated). Valid pixels: 0 < depth <= 10 m.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from focaldepth.datasets.base import AdapterDataset, Sample
from focaldepth.errors import UserError
from focaldepth.optics import Camera

MAX_DEPTH_M = 10.0
SPLITS = ("train", "test", "all")
PROJECT_SIGMA_PER_COC = 0.25  # focaldepth.render.GAUSSIAN_SIGMA_PER_COC
RENDER_LAYERS = 32


def read_split_indices(mat_path: Path, split: str, count: int) -> list[int]:
    """0-based indices of ``split`` from ``splits.mat`` beside the labeled file."""
    if split == "all":
        return list(range(count))
    splits = mat_path.parent / "splits.mat"
    if not splits.is_file():
        raise UserError("nyuv2: splits.mat (trainNdxs / testNdxs, the official 795 / 654 split) "
                        "not found beside the labeled .mat; put it there or pass --split all",
                        splits)
    from scipy.io import loadmat

    try:
        table = loadmat(splits)
    except (ValueError, OSError, NotImplementedError) as error:
        raise UserError(f"nyuv2: cannot read splits.mat ({error})", splits) from None
    key = "trainNdxs" if split == "train" else "testNdxs"
    if key not in table:
        raise UserError(f"nyuv2: splits.mat has no {key}", splits)
    indices = [int(i) - 1 for i in np.asarray(table[key]).ravel()]
    if not indices or min(indices) < 0 or max(indices) >= count:
        raise UserError(f"nyuv2: {key} indices outside 1..{count}", splits)
    return indices


class NYUv2Defocus(AdapterDataset):
    """Base of the two NYUv2 protocols (subclasses set the constants)."""

    focus_distances_m: tuple[float, ...] = ()
    focal_length_mm = 0.0
    f_number = 0.0
    pixel_pitch_m = 0.0
    sigma_per_coc = 0.0
    size_hw: tuple[int, int] | None = None  # resize to this (None: 480 x 640 as stored)
    depth_clip_m: tuple[float, float] | None = None

    def __init__(self, root: str | Path, *, split: str = "test", num_frames: int | None = None,
                 crop_size: int | None = None) -> None:
        super().__init__(root, num_frames=num_frames, crop_size=crop_size)
        if split not in SPLITS:
            raise UserError(f"{self.name}: split must be one of {list(SPLITS)}, got {split!r}",
                            self.root)
        self.split = split
        with self._open() as file:
            count = self._check(file)
        self.entries = read_split_indices(self.root, split, count)
        self._check_not_empty(f"{split} images")

    @property
    def stack_size(self) -> int:  # type: ignore[override]
        return len(self.focus_distances_m)

    def _open(self) -> Any:
        import h5py

        if not self.root.is_file():
            raise UserError(f"{self.name}: expected nyu_depth_v2_labeled.mat", self.root)
        try:
            return h5py.File(self.root, "r")
        except OSError:
            raise UserError(f"{self.name}: not a MATLAB v7.3 (HDF5) .mat file; the labeled NYUv2 "
                            "file is v7.3", self.root) from None

    def _check(self, file: Any) -> int:
        for key in ("images", "depths"):
            if key not in file:
                raise UserError(f"{self.name}: no {key!r} in the .mat (it has {sorted(file.keys())})",
                                self.root)
        images, depths = file["images"], file["depths"]
        if images.ndim != 4 or images.shape[1] != 3 or depths.shape != (images.shape[0],
                                                                         *images.shape[2:]):
            raise UserError(f"{self.name}: images {images.shape} / depths {depths.shape}; expected "
                            "(N, 3, W, H) and (N, W, H) as MATLAB v7.3 stores them", self.root)
        return int(images.shape[0])

    def camera(self, image_width_px: int) -> Camera:
        return Camera(self.focal_length_mm, self.f_number,
                      self.pixel_pitch_m * 1e3 * image_width_px, int(image_width_px))

    def render_f_number(self) -> float:
        """The f-number whose project-renderer Gaussian has the protocol's sigma."""
        return self.f_number * PROJECT_SIGMA_PER_COC / self.sigma_per_coc

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        with self._open() as file:
            self._check(file)
            rgb = np.ascontiguousarray(np.asarray(file["images"][index]).transpose(2, 1, 0))
            depth = np.ascontiguousarray(np.asarray(file["depths"][index], np.float32).T)
        if self.size_hw is not None:
            size = (self.size_hw[1], self.size_hw[0])
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
            depth = cv2.resize(depth, size, interpolation=cv2.INTER_LINEAR)
        return rgb, depth

    def read(self, index: int) -> Sample:
        import torch

        from focaldepth.render import render_focal_stack

        rgb, depth = self._load(index)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(depth) & (depth > 0) & (depth <= MAX_DEPTH_M)
        if not valid.any():
            raise UserError(f"{self.name}: image {index + 1} has no depth in (0, {MAX_DEPTH_M}] m",
                            self.root)
        low, high = self.depth_clip_m or (float(np.nanmin(np.where(valid, depth, np.nan))),
                                          MAX_DEPTH_M)
        render_depth = np.clip(np.where(valid, depth, high), low, high).astype(np.float32)
        camera = self.camera(rgb.shape[1])
        image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
        focus = torch.tensor([list(self.focus_distances_m)], dtype=torch.float32)
        camera_row = torch.tensor([[camera.focal_length_m, self.render_f_number(),
                                    camera.pixel_pitch_m]], dtype=torch.float32)
        with torch.no_grad():
            stack = render_focal_stack(image, torch.from_numpy(render_depth)[None, None], focus,
                                       camera_row, num_layers=RENDER_LAYERS, psf="gaussian")[0]
        frames = stack.clamp(0, 1).permute(0, 2, 3, 1).numpy()
        if self.depth_clip_m is not None:
            depth = np.where(valid, np.clip(depth, *self.depth_clip_m), depth)
        return Sample(name=f"{index + 1:04d}", frames=(frames * 255.0).round().astype(np.uint8),
                      focus_distance_m=list(self.focus_distances_m), camera=camera,
                      depth_m=depth.astype(np.float32), valid=valid, aif=rgb)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "split": self.split,
                "focus_distance_m": list(self.focus_distances_m),
                "camera": {"focal_length_mm": self.focal_length_mm, "f_number": self.f_number,
                           "pixel_pitch_m": self.pixel_pitch_m},
                "psf_sigma_per_coc": self.sigma_per_coc, "max_depth_m": MAX_DEPTH_M}


class NYUv2D3Net(NYUv2Defocus):
    """``nyuv2_d3net:nyu_depth_v2_labeled.mat``: D3Net's single defocused image (focus 2 m)."""

    name = "nyuv2_d3net"
    focus_distances_m = (2.0,)
    focal_length_mm = 15.0
    f_number = 2.8
    pixel_pitch_m = 5.6e-6
    sigma_per_coc = 0.3


class NYUv2DEReD(NYUv2Defocus):
    """``nyuv2_dered:nyu_depth_v2_labeled.mat``: DEReD's 5-slice stacks at 320 x 240."""

    name = "nyuv2_dered"
    focus_distances_m = (1.0, 1.5, 2.5, 4.0, 6.0)
    focal_length_mm = 50.0
    f_number = 8.0
    pixel_pitch_m = 12e-6
    sigma_per_coc = 0.5
    size_hw = (240, 320)
    depth_clip_m = (0.1, 10.0)
