"""Middlebury 2014 stereo (Scharstein, Hirschmüller, Kitajima, Krathwohl, Nesic, Wang,
Westling: "High-resolution stereo datasets with subpixel-accurate ground truth", GCPR 2014)
as RGB-D, with focal stacks synthesised by the project's renderer.

On disk, one folder per scene: ``im0.png`` (left view), ``disp0GT.pfm`` (float32 disparity of
the left view, ``inf`` = unknown, rows stored bottom-up), ``calib.txt`` (``cam0`` gives f in
pixels, ``baseline`` mm, ``doffs`` px), optionally ``mask0nocc.png`` (255 = not occluded).
Metric depth Z = baseline f / (d + doffs) / 1000 m (read by
:func:`focaldepth.generate.rgbd.load_middlebury2014`).

Middlebury publishes no defocus protocol; this adapter's (fixed, deterministic): a DSLR-like
thin lens (35 mm, f/2.8, 23.6 mm sensor imaged by the image width: the DFD indoor rig), 5
frames evenly spaced in dioptres over the 2nd..98th percentile of the scene's valid depth,
disk PSF, linear light, 32 layers, no noise; unknown depth filled (nearest) for the renderer
only. Scored pixels: known disparity and, where mask0nocc.png exists, not occluded (255).
In this project Adirondack, Recycle and Vintage are validation scenes and the others train
the RGB-D sweeps (:mod:`focaldepth.generate.rgbd`): scores on them are not test numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from focaldepth.datasets.base import AdapterDataset, Sample
from focaldepth.errors import UserError
from focaldepth.optics import Camera, dioptric_ramp

FOCAL_LENGTH_MM, F_NUMBER, SENSOR_WIDTH_MM = 35.0, 2.8, 23.6
NUM_FRAMES = 5
COVER_PERCENTILES = (2.0, 98.0)
RENDER_LAYERS = 32
SPLITS = ("all", "train", "val")
SCENE_FILES = ("im0.png", "disp0GT.pfm", "calib.txt")


def camera(image_width_px: int) -> Camera:
    return Camera(FOCAL_LENGTH_MM, F_NUMBER, SENSOR_WIDTH_MM, int(image_width_px))


def read_nonocc_mask(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    import cv2

    if not path.is_file():
        return None
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise UserError("middlebury2014: cannot read the mask", path)
    mask = mask[..., 0] if mask.ndim == 3 else mask
    if mask.shape != shape:
        raise UserError(f"middlebury2014: mask {mask.shape} and image {shape} differ", path)
    return mask == 255


def render_sweep(rgb: np.ndarray, depth_m: np.ndarray, cam: Camera,
                 focus_distance_m: list[float]) -> np.ndarray:
    """Defocus ``rgb`` uint8 (H, W, 3) in linear light: uint8 (S, H, W, 3)."""
    import kornia
    import torch

    from focaldepth.render import render_focal_stack

    image = kornia.color.rgb_to_linear_rgb(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
    row = torch.tensor([[cam.focal_length_m, cam.f_number, cam.pixel_pitch_m]], dtype=torch.float32)
    with torch.no_grad():
        stack = render_focal_stack(image, torch.from_numpy(depth_m)[None, None].float(),
                                   torch.tensor([focus_distance_m], dtype=torch.float32), row,
                                   num_layers=RENDER_LAYERS, psf="disk")[0]
    srgb = kornia.color.linear_rgb_to_rgb(stack.clamp(0, 1))
    return (srgb.permute(0, 2, 3, 1).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)


class Middlebury2014(AdapterDataset):
    """``middlebury2014:FOLDER`` (a scene or a folder of scenes): one rendered sweep each."""

    name = "middlebury2014"
    stack_size = NUM_FRAMES

    def __init__(self, root: str | Path, *, split: str = "all", num_frames: int | None = None,
                 crop_size: int | None = None) -> None:
        from focaldepth.generate.rgbd import MIDDLEBURY2014_VAL

        super().__init__(root, num_frames=num_frames, crop_size=crop_size)
        if split not in SPLITS:
            raise UserError(f"middlebury2014: split must be one of {list(SPLITS)}, got {split!r}",
                            self.root)
        self.split = split
        if not self.root.is_dir():
            raise UserError("middlebury2014: expected a scene folder or a folder of scenes",
                            self.root)
        scenes = [self.root] if (self.root / "im0.png").is_file() else sorted(
            p for p in self.root.iterdir() if p.is_dir() and (p / "im0.png").is_file())
        for scene in scenes:
            missing = [name for name in SCENE_FILES if not (scene / name).is_file()]
            if missing:
                raise UserError(f"middlebury2014: scene lacks {', '.join(missing)}", scene)
            in_val = scene.name in MIDDLEBURY2014_VAL
            if split == "all" or (split == "val") == in_val:
                self.entries.append(scene)
        self._check_not_empty(f"{split} scenes (im0.png + disp0GT.pfm + calib.txt)")

    def read(self, scene: Path) -> Sample:
        from focaldepth.generate.rgbd import fill_nearest, load_middlebury2014

        image = load_middlebury2014(scene)
        depth = image.depth_m
        valid = np.isfinite(depth) & (depth > 0)
        mask = read_nonocc_mask(scene / "mask0nocc.png", depth.shape)
        if mask is not None:
            valid &= mask
        if valid.sum() < 16:
            raise UserError("middlebury2014: almost no pixel has ground-truth depth", scene)
        near, far = (float(v) for v in np.percentile(depth[np.isfinite(depth)], COVER_PERCENTILES))
        cam = camera(image.rgb.shape[1])
        focus = [float(f) for f in dioptric_ramp(near, far, NUM_FRAMES)]
        render_depth = fill_nearest(np.where(np.isfinite(depth), depth, np.nan)).astype(np.float32)
        frames = render_sweep(image.rgb, render_depth, cam, focus)
        return Sample(name=scene.name, frames=frames, focus_distance_m=focus, camera=cam,
                      depth_m=depth, valid=valid, aif=image.rgb)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "split": self.split, "num_frames": NUM_FRAMES}
