"""HCI 4D Light Field Benchmark (Honauer, Johannsen, Kondermann, Goldluecke, ACCV 2016):
synthetic 9 x 9 light fields of 512 x 512 views, refocused here into focal stacks.

On disk, one folder per scene: ``input_Cam000.png`` ... ``input_Cam080.png`` (row-major:
view k is row k // num_cams_x, column k % num_cams_x), ``parameters.cfg`` (INI: [intrinsics]
image_resolution_x_px / _y_px, focal_length_mm, sensor_size_mm; [extrinsics] num_cams_x / _y,
baseline_mm, focus_distance_m; [meta] disp_min, disp_max, category) and, except for the test
scenes, ``gt_disp_lowres.pfm`` (disparity between neighbouring views, pixels).

Disparity -> depth from parameters.cfg: the cameras are shifted so that disparity is 0 at the
focus distance F, d = B f_px (1/Z - 1/F) with B = baseline_mm / 1000, f_px = focal_length_mm
/ sensor_size_mm * max(width, height) (the toolkit's pixel focal length), hence
Z = 1 / (d / (B f_px) + 1/F). Positive disparity is nearer than F.

Refocusing (shift-and-add, as the DDFF toolbox refocuses its light fields): for a focus
disparity delta every view (r, c) is resampled at (x - (c - c0) delta, y - (r - r0) delta)
(bilinear, edges replicated) and the 81 views averaged; NUM_SLICES slices at disparities evenly
spaced from disp_max (near) to disp_min (far), so focus distances Z(delta) evenly spaced in
dioptres. The synthetic aperture is num_cams_x baselines wide: the camera given to models has
the scene's focal length and pixel pitch and f-number f / (num_cams_x B).
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import numpy as np

from focaldepth.datasets.base import AdapterDataset, Sample
from focaldepth.errors import UserError
from focaldepth.optics import Camera

NUM_SLICES = 10
GT_NAME = "gt_disp_lowres.pfm"
CATEGORIES = ("training", "stratified", "additional", "test")
SPLITS = ("all", "any", *CATEGORIES)


def read_parameters(scene: Path) -> dict[str, Any]:
    """The keys of parameters.cfg this adapter uses (floats / ints), checked."""
    path = scene / "parameters.cfg"
    parser = configparser.ConfigParser()
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
        params: dict[str, Any] = {
            "width": parser.getint("intrinsics", "image_resolution_x_px"),
            "height": parser.getint("intrinsics", "image_resolution_y_px"),
            "focal_length_mm": parser.getfloat("intrinsics", "focal_length_mm"),
            "sensor_size_mm": parser.getfloat("intrinsics", "sensor_size_mm"),
            "num_cams_x": parser.getint("extrinsics", "num_cams_x"),
            "num_cams_y": parser.getint("extrinsics", "num_cams_y"),
            "baseline_mm": parser.getfloat("extrinsics", "baseline_mm"),
            "focus_distance_m": parser.getfloat("extrinsics", "focus_distance_m"),
            "disp_min": parser.getfloat("meta", "disp_min"),
            "disp_max": parser.getfloat("meta", "disp_max"),
            "category": parser.get("meta", "category", fallback=scene.parent.name),
        }
    except FileNotFoundError:
        raise UserError("hci: parameters.cfg not found", path) from None
    except (configparser.Error, ValueError) as error:
        raise UserError(f"hci: bad parameters.cfg ({error})".replace("\n", " "), path) from None
    for key in ("width", "height", "focal_length_mm", "sensor_size_mm", "num_cams_x",
                "num_cams_y", "baseline_mm", "focus_distance_m"):
        if not params[key] > 0:
            raise UserError(f"hci: {key} must be positive, got {params[key]}", path)
    if not params["disp_max"] > params["disp_min"]:
        raise UserError("hci: disp_max must exceed disp_min", path)
    return params


def focal_px(params: dict[str, Any]) -> float:
    return params["focal_length_mm"] / params["sensor_size_mm"] * max(params["width"],
                                                                      params["height"])


def disparity_to_depth_m(disparity_px: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Z = 1 / (d / (B f_px) + 1/F); non-finite or beyond-infinity disparity -> NaN."""
    baseline_focal = params["baseline_mm"] * 1e-3 * focal_px(params)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.asarray(disparity_px, np.float64) / baseline_focal + 1.0 / params["focus_distance_m"]
        depth = np.where(np.isfinite(inverse) & (inverse > 0), 1.0 / inverse, np.nan)
    return depth.astype(np.float32)


def refocus_disparities(params: dict[str, Any], num_slices: int = NUM_SLICES) -> np.ndarray:
    return np.linspace(params["disp_max"], params["disp_min"], num_slices)


def camera(params: dict[str, Any]) -> Camera:
    pitch_mm = params["sensor_size_mm"] / max(params["width"], params["height"])
    aperture_mm = params["num_cams_x"] * params["baseline_mm"]
    return Camera(params["focal_length_mm"], params["focal_length_mm"] / aperture_mm,
                  pitch_mm * params["width"], int(params["width"]))


def refocus(views: np.ndarray, disparity_px: float) -> np.ndarray:
    """Shift-and-add of ``views`` (rows, cols, H, W, 3) float32 at one disparity -> (H, W, 3)."""
    import cv2

    rows, cols, height, width, _ = views.shape
    centre_r, centre_c = (rows - 1) / 2.0, (cols - 1) / 2.0
    total = np.zeros((height, width, 3), np.float64)
    for r in range(rows):
        for c in range(cols):
            # dst(x, y) = view(x - (c - c0) delta, y - (r - r0) delta)
            matrix = np.float32([[1, 0, -(c - centre_c) * disparity_px],
                                 [0, 1, -(r - centre_r) * disparity_px]])
            total += cv2.warpAffine(views[r, c], matrix, (width, height),
                                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_REPLICATE)
    return (total / (rows * cols)).astype(np.float32)


def _pfm_scale(path: Path) -> float:
    with path.open("rb") as handle:
        lines = [handle.readline() for _ in range(3)]
    try:
        return abs(float(lines[2].split()[0])) if len(lines[1].split()) >= 2 else 1.0
    except (ValueError, IndexError):
        return 1.0


def read_disparity(path: Path) -> np.ndarray:
    from focaldepth.generate.rgbd import read_pfm

    disparity = read_pfm(path)
    scale = _pfm_scale(path)  # the toolkit multiplies by |scale| (1 in the benchmark files)
    return disparity * np.float32(scale) if scale not in (0.0, 1.0) else disparity


def find_scenes(root: Path) -> list[Path]:
    if (root / "parameters.cfg").is_file():
        return [root]
    found = sorted({p.parent for pattern in ("*/parameters.cfg", "*/*/parameters.cfg")
                    for p in root.glob(pattern)})
    return found


class HCILightField(AdapterDataset):
    """``hci:FOLDER`` (a scene, or a folder of scenes / categories): one refocused stack per
    scene. ``split``: ``all`` (default: every scene with ground truth), a category (training,
    stratified, additional, test) or ``any`` (every scene, with or without ground truth)."""

    name = "hci"
    stack_size = NUM_SLICES

    def __init__(self, root: str | Path, *, split: str = "all", num_frames: int | None = None,
                 crop_size: int | None = None) -> None:
        super().__init__(root, num_frames=num_frames, crop_size=crop_size)
        if split not in SPLITS:
            raise UserError(f"hci: split must be one of {list(SPLITS)}, got {split!r}", self.root)
        self.split = split
        scenes = find_scenes(self.root) if self.root.is_dir() else []
        if not scenes:
            raise UserError("hci: no scene folder (parameters.cfg + input_Cam*.png) found",
                            self.root)
        for scene in scenes:
            params = read_parameters(scene)
            has_gt = (scene / GT_NAME).is_file()
            if split in CATEGORIES and params["category"] != split:
                continue
            if split != "any" and not has_gt:
                continue
            self.entries.append((scene, params))
        if not self.entries and split in ("all", "test"):
            raise UserError(f"hci: no scene with {GT_NAME} (the test scenes' ground truth is not "
                            "public; use split 'any' to predict on them)", self.root)
        self._check_not_empty(f"{split} scenes")

    def _views(self, scene: Path, params: dict[str, Any]) -> np.ndarray:
        from focaldepth.io.frames import read_image

        rows, cols = params["num_cams_y"], params["num_cams_x"]
        views = np.empty((rows, cols, params["height"], params["width"], 3), np.float32)
        for k in range(rows * cols):
            path = scene / f"input_Cam{k:03d}.png"
            image = read_image(path)
            if image.shape[:2] != (params["height"], params["width"]):
                raise UserError(f"hci: view is {image.shape[1]}x{image.shape[0]}, parameters.cfg "
                                f"says {params['width']}x{params['height']}", path)
            views[k // cols, k % cols] = image.astype(np.float32) / 255.0
        return views

    def read(self, entry: tuple[Path, dict[str, Any]]) -> Sample:
        scene, params = entry
        views = self._views(scene, params)
        disparities = refocus_disparities(params)
        focus = disparity_to_depth_m(disparities, params)
        if not np.all(np.isfinite(focus)):
            raise UserError("hci: disp_min lies beyond infinity for this scene's focus distance "
                            "and baseline", scene / "parameters.cfg")
        stack = np.stack([refocus(views, float(d)) for d in disparities])
        depth = valid = None
        if (scene / GT_NAME).is_file():
            disparity = read_disparity(scene / GT_NAME)
            if disparity.shape != stack.shape[1:3]:
                raise UserError(f"hci: {GT_NAME} is {disparity.shape}, the views "
                                f"{stack.shape[1:3]}", scene / GT_NAME)
            depth = disparity_to_depth_m(disparity, params)
        centre = views[views.shape[0] // 2, views.shape[1] // 2]
        return Sample(name=scene.name, frames=stack, focus_distance_m=[float(f) for f in focus],
                      camera=camera(params), depth_m=depth, valid=valid, aif=centre)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "split": self.split, "num_slices": NUM_SLICES}
