"""Focus sweeps synthesised from real RGB-D images: real textures, real depth layouts.

``python -m focaldepth.generate.rgbd --config configs/data/rgbd_train.yaml --out data/rgbd_train``
writes the same dataset format as ``focaldepth generate`` (:mod:`focaldepth.generate.storage`:
``seq_NNNNNN.h5`` + ``manifest.jsonl`` + ``config.yaml``), so
:class:`focaldepth.data.FocusSweepDataset` and the training data module read it unchanged.
``--shard i/n``, resuming and determinism work as for the procedural generator (both run through
:mod:`focaldepth.generate.jobs`): sequence ``i`` depends only on the config and ``i``.

Sources (see docs/rgbd_training_data.md for licences and the split): the DFD indoor scenes
(f/8 photo as the all-in-focus image + registered Xtion depth), Middlebury 2014 (im0 +
disp0GT.pfm + calib.txt: metric depth), Middlebury 2005/2006 (disparity without its offset
``dmin``: a relative depth layout, ``dmin`` drawn per sequence), Microsoft 7-Scenes
redkitchen (Kinect depth reprojected into the colour camera) and skimage's Middlebury
*Motorcycle* (test split only).

One sequence:

1. a source (config weights) and one of its scenes *of the requested split* (:data:`SPLITS`);
2. a random crop (side a log-uniform fraction of the scene's shorter side, never smaller
   than the output), resized to the output size (area for the image, nearest for depth,
   so no depth between two surfaces is invented), optionally mirrored;
3. a random camera (:func:`focaldepth.scenes.camera.sample_camera`: phone to DSLR) and a
   scale for the scene's depth. Pinhole images do not change when the scene is scaled, so a
   blur target (largest CoC of a sweep over the scene, log-uniform in ``depth.max_coc_px``)
   sets the scale: a phone sees the layout as a close-up, a long lens as a room. With
   probability ``metric_fraction`` a metric source keeps its real distances, seen by a
   DSLR-like camera (lens >= 18 mm, sensor >= 13 mm);
4. a sweep protocol (config weights) relative to the scene's 2nd..98th depth percentile
   in dioptres: ``cover`` (the range, ends jittered by 5 % of its span), ``inner`` (both
   ends 10-30 % inwards), ``before_far`` (ends 30-60 % before the far part), ``before_near``
   (starts 30-60 % after the near part), ``wide`` (both ends 10-40 % outwards; the far end
   at most twice the far depth, the near end no closer than 10 focal lengths); frames
   evenly spaced in dioptres, near to far;
5. rendering with the project's occlusion-aware thin-lens renderer (linear light), shot +
   read noise, 8 bits.

Depth where the source has no measurement (Middlebury ``inf``/0, Kinect holes, the
colour-image border the depth camera does not see) is filled (nearest valid) for the
renderer only and stored as NaN in ``depth_m`` and ``coc_px``: the loader's ``valid`` mask
(finite, positive depth) excludes it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import yaml

from focaldepth.errors import UserError
from focaldepth.generate.config import (  # the generator's strict YAML -> dataclass
    _build,
    read_yaml_file,
)
from focaldepth.generate.jobs import (
    Shard,
    Summary,
    check_counts,
    parse_shard,
    record_config,
    run_job,
    shard_indices,
)
from focaldepth.optics import Camera, dioptric_ramp
from focaldepth.scenes.camera import log_uniform, nearest_depth_m, sample_camera
from focaldepth.scenes.config import (
    MIN_FOCUS_FOCAL_LENGTHS,
    CameraConfig,
    DepthConfig,
    NoiseConfig,
    to_plain,
)

#: Bump when the same config and seed would produce different files.
RGBD_GENERATOR_VERSION = "rgbd-1"

SOURCES = ("dfd", "middlebury2014", "middlebury2005_2006", "sevenscenes", "motorcycle")
METRIC_SOURCES = ("dfd", "middlebury2014", "sevenscenes", "motorcycle")
PROTOCOLS = ("cover", "inner", "before_far", "before_near", "wide")
DATASET_SPLITS = ("train", "val", "test")

# --- the fixed split by scene -----------------------------------------------------------------
# DFD indoor (pairs.csv order, 81 scenes): index % 6 == 0 is the project's DFD *test* table
# (experiments.rgbd_eval --scenes 6, select_pairs(every=6)); index % 6 == 3 is the validation set of
# tools/validation_sets.py (dfd:6:3; tune_hybrid and compare_on_validation use it, and
# defocus_volume's pairs[3::27] is a subset). Training uses the other 54 scenes.
DFD_TEST_EVERY, DFD_VAL_OFFSET = 6, 3
MIDDLEBURY2014_VAL = ("Adirondack", "Recycle", "Vintage")
# Whole families are held out (Baby1-3 share objects and lighting).
MIDDLEBURY0506_VAL = ("Baby1", "Baby2", "Baby3", "Moebius", "Reindeer")
# One recording: split in time with a gap, so validation frames are not neighbours of
# training frames (the room is the same: a weak split, documented as such).
SEVENSCENES_TRAIN_FRAMES = (0, 800)
SEVENSCENES_VAL_FRAMES = (850, 1000)

# Middlebury 2005/2006 at full size: f ~ 3740 px, baseline 160 mm -> Z = f B / (d + dmin).
MB0506_FOCAL_BASELINE_PX_M = 3740.0 * 0.160
# Kinect v1 colour camera (7-Scenes gives only the depth camera's intrinsics, 585 px).
SEVENSCENES_COLOUR_FOCAL_PX = 525.0


@dataclass(frozen=True)
class SourceWeights:
    dfd: float = 0.4
    middlebury2014: float = 0.2
    middlebury2005_2006: float = 0.2
    sevenscenes: float = 0.2
    motorcycle: float = 0.0


@dataclass(frozen=True)
class ProtocolWeights:
    cover: float = 0.3
    inner: float = 0.15
    before_far: float = 0.2
    before_near: float = 0.15
    wide: float = 0.2


@dataclass(frozen=True)
class RgbdConfig:
    # Marks the YAML as an RGB-D sweep config, so `focaldepth generate --config` runs this module.
    generator: str = "rgbd"
    seed: int = 0
    num_sequences: int = 2000
    split: str = "train"  # train / val / test: which scenes (see the split constants)
    shared: str = ""  # the shared/ folder; "" = beside the project root
    resolution: tuple[int, int] = (128, 128)  # stored (height, width)
    crop_fraction: tuple[float, float] = (0.25, 1.0)  # crop side / scene's shorter side, log-uniform
    flip: bool = True  # mirror half the crops left-right
    min_valid_fraction: float = 0.6  # redraw crops with fewer measured pixels (up to 20 times)
    frames: tuple[int, int] = (10, 10)  # frames per sweep, uniform integer in this range
    sources: SourceWeights = field(default_factory=SourceWeights)
    protocols: ProtocolWeights = field(default_factory=ProtocolWeights)
    camera: CameraConfig = field(default_factory=lambda: CameraConfig(
        focal_length_mm=(2.5, 200.0), f_number=(1.0, 11.0), sensor_width_mm=(3.5, 36.0),
        field_of_view_deg=(10.0, 80.0)))
    depth: DepthConfig = field(default_factory=lambda: DepthConfig(range_m=(0.05, 20.0), max_coc_px=(1.5, 40.0)))
    metric_fraction: float = 0.2  # of metric-source sequences kept at their real distances
    mb0506_dmin_px: tuple[float, float] = (150.0, 300.0)  # disparity offset (full-size px), uniform
    sevenscenes_frame_step: int = 5  # use every k-th frame of the recording
    # depth->colour translation (m), estimated by depth-edge / colour-edge alignment (docs)
    sevenscenes_extrinsic_m: tuple[float, float, float] = (-0.022, 0.0, 0.0)
    noise: NoiseConfig = field(default_factory=lambda: NoiseConfig(shot=(1e-4, 4e-3), read_std=(5e-4, 8e-3)))
    num_layers: int = 24
    psf: str = "disk"
    linear_light: bool = True

    def check(self, path: object | None = None) -> None:
        def fail(message: str) -> None:
            raise UserError(message, path)

        if self.generator != "rgbd":
            fail(f"generator: must be 'rgbd' for an RGB-D sweep config, got {self.generator!r}")
        if self.split not in DATASET_SPLITS:
            fail(f"split: must be one of {list(DATASET_SPLITS)}, got {self.split!r}")
        if self.num_sequences < 1 or self.seed < 0:
            fail("num_sequences must be >= 1 and seed >= 0")
        if min(self.resolution) < 16:
            fail(f"resolution: at least 16 px, got {list(self.resolution)}")
        low, high = self.crop_fraction
        if not 0 < low <= high <= 1:
            fail(f"crop_fraction: need 0 < low <= high <= 1, got {list(self.crop_fraction)}")
        if not 2 <= self.frames[0] <= self.frames[1]:
            fail(f"frames: need 2 <= low <= high, got {list(self.frames)}")
        weights = to_plain(self.sources)
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            fail("sources: weights must be >= 0 and not all 0")
        if weights["motorcycle"] > 0 and self.split != "test":
            fail("sources.motorcycle: Motorcycle is a test scene; use it only with split: test")
        if self.split == "test" and (weights["middlebury2014"] or weights["middlebury2005_2006"]
                                     or weights["sevenscenes"]):
            fail("split test: only dfd (its test scenes) and motorcycle have test scenes")
        protocols = to_plain(self.protocols)
        if any(w < 0 for w in protocols.values()) or sum(protocols.values()) <= 0:
            fail("protocols: weights must be >= 0 and not all 0")
        if not 0 <= self.metric_fraction <= 1 or not 0 <= self.min_valid_fraction <= 1:
            fail("metric_fraction and min_valid_fraction must be in [0, 1]")
        if self.psf not in ("disk", "gaussian") or self.num_layers < 2:
            fail("psf must be disk or gaussian, num_layers >= 2")
        if self.sevenscenes_frame_step < 1:
            fail("sevenscenes_frame_step must be >= 1")

    def fingerprint(self) -> str:
        content = to_plain(self)
        content.pop("num_sequences")
        content.pop("shared")  # where the data lives does not change the files
        content.pop("generator")
        content["generator_version"] = RGBD_GENERATOR_VERSION
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def parse_rgbd_config(mapping: Any, path: object | None = None) -> RgbdConfig:
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise UserError("an rgbd config must be a YAML mapping of settings", path)
    config = _build(RgbdConfig, mapping, "", path)
    config.check(path)
    return config


def load_rgbd_config(path: str | Path) -> RgbdConfig:
    return parse_rgbd_config(read_yaml_file(path), Path(path))


def dump_rgbd_config(config: RgbdConfig) -> str:
    return yaml.safe_dump(to_plain(config), sort_keys=False, default_flow_style=None)


# --- readers of the on-disk formats ----------------------------------------------------------


@dataclass(frozen=True)
class RgbdImage:
    """``rgb`` uint8 (H, W, 3); ``depth_m`` float32 (H, W), NaN where unknown (for the
    Middlebury 2005/2006 layouts: disparity + dmin is applied per sequence, see ``disparity``)."""

    rgb: np.ndarray
    depth_m: np.ndarray | None
    disparity_px: np.ndarray | None = None  # mb0506: full-size disparity, NaN = unknown


def read_pfm(path: str | Path) -> np.ndarray:
    """A PFM image as float32, top row first (PFM stores rows bottom-up)."""
    path = Path(path)
    with open(path, "rb") as handle:
        kind = handle.readline().strip()
        if kind not in (b"Pf", b"PF"):
            raise UserError("not a PFM file", path)
        dims = handle.readline().split()
        while len(dims) < 2:  # width and height may sit on separate lines
            dims += handle.readline().split()
        width, height = int(dims[0]), int(dims[1])
        scale = float(handle.readline().strip())
        data = np.fromfile(handle, dtype="<f4" if scale < 0 else ">f4")
    channels = 3 if kind == b"PF" else 1
    if data.size != width * height * channels:
        raise UserError(f"PFM data has {data.size} values, header says {width}x{height}x{channels}", path)
    shape = (height, width, channels) if channels == 3 else (height, width)
    return np.ascontiguousarray(np.flipud(data.reshape(shape))).astype(np.float32)


def read_middlebury_calib(path: str | Path) -> dict[str, float]:
    """``f`` (px, from cam0), ``baseline`` (mm) and ``doffs`` (px) of a Middlebury calib.txt."""
    values: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    try:
        focal = float(values["cam0"].strip("[]").split()[0])
        return {"f": focal, "baseline": float(values["baseline"]), "doffs": float(values["doffs"])}
    except (KeyError, ValueError, IndexError):
        raise UserError("calib.txt lacks cam0, baseline or doffs", path) from None


def _read_rgb(path: Path) -> np.ndarray:
    from focaldepth.io.frames import read_image

    return read_image(path)


def load_middlebury2014(scene_dir: Path) -> RgbdImage:
    """im0 + metric depth Z = baseline f / (d + doffs) (mm -> m); inf disparity = unknown."""
    calib = read_middlebury_calib(scene_dir / "calib.txt")
    disparity = read_pfm(scene_dir / "disp0GT.pfm")
    rgb = _read_rgb(scene_dir / "im0.png")
    if disparity.shape != rgb.shape[:2]:
        raise UserError(f"disparity {disparity.shape} and image {rgb.shape[:2]} differ", scene_dir)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = calib["baseline"] * calib["f"] / (disparity + calib["doffs"]) / 1000.0
    depth = np.where(np.isfinite(disparity) & (depth > 0), depth, np.nan).astype(np.float32)
    return RgbdImage(rgb, depth)


def load_middlebury0506(scene_dir: Path, view: int) -> RgbdImage:
    """view1/view5 and its uint8 disparity (full-size pixels, 0 = unknown)."""
    import cv2

    rgb = _read_rgb(scene_dir / f"view{view}.png")
    raw = cv2.imread(str(scene_dir / f"disp{view}.png"), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UserError("cannot read disparity", scene_dir / f"disp{view}.png")
    if raw.ndim == 3:
        raw = raw[..., 0]
    if raw.shape != rgb.shape[:2]:
        raise UserError(f"disparity {raw.shape} and image {rgb.shape[:2]} differ", scene_dir)
    disparity = np.where(raw > 0, raw.astype(np.float32), np.nan)
    return RgbdImage(rgb, None, disparity)


def register_depth_to_colour(depth_m: np.ndarray, depth_focal_px: float, colour_focal_px: float,
                             translation_m: tuple[float, float, float] = (0.0, 0.0, 0.0),
                             out_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Reproject a depth map (NaN = none) into another pinhole camera with the principal point
    at the image centre (pixel centres at integer coordinates): back-project with the depth
    camera's focal length, translate, project with the colour camera's, keep the nearest point
    per pixel (z-buffer), close isolated one-pixel cracks. Pixels nothing projects to are NaN.

    :func:`focaldepth.capture.register.register_depth` with centred intrinsics and no
    rotation (byte-identical to the copy this module had, on 7-Scenes frames). A colour camera
    with a longer focal length than the depth camera's gets that function's supersampling of
    the depth map; 7-Scenes (585 px depth, 525 px colour) never does."""
    from focaldepth.capture.register import centred_intrinsics, register_depth

    height, width = depth_m.shape
    out_h, out_w = out_shape or (height, width)
    return register_depth(depth_m, centred_intrinsics(depth_focal_px, width, height),
                          centred_intrinsics(colour_focal_px, out_w, out_h), None, translation_m,
                          (out_h, out_w))


def load_sevenscenes_frame(root: Path, frame: int, extrinsic_m: tuple[float, float, float]) -> RgbdImage:
    """Colour frame + Kinect depth (uint16 mm, 0/65535 invalid) registered to the colour
    camera (depth camera f = 585 px from camera-intrinsics.txt, colour f ~ 525 px)."""
    import cv2

    stem = root / f"frame-{frame:06d}"
    rgb = _read_rgb(Path(f"{stem}.color.jpg"))
    raw = cv2.imread(f"{stem}.depth.png", cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UserError("cannot read depth", f"{stem}.depth.png")
    depth = np.where((raw > 0) & (raw < 65535), raw.astype(np.float32) / 1000.0, np.nan)
    focal = read_sevenscenes_focal(root / "camera-intrinsics.txt")
    registered = register_depth_to_colour(depth, focal, SEVENSCENES_COLOUR_FOCAL_PX, extrinsic_m, rgb.shape[:2])
    return RgbdImage(rgb, registered)


def read_sevenscenes_focal(path: Path) -> float:
    try:
        return float(np.loadtxt(path)[0, 0])
    except (OSError, ValueError, IndexError):
        raise UserError("cannot read the depth camera's intrinsics", path) from None


def load_dfd(root: Path, index: int) -> RgbdImage:
    from focaldepth.io.rgbd import clean_depth_m, list_pairs, read_dfd_depth_m

    pair = list_pairs(root)[index]
    rgb = _read_rgb(pair.sharp_path)
    depth, valid = read_dfd_depth_m(pair.depth_path)
    if depth.shape != rgb.shape[:2]:
        raise UserError(f"depth {depth.shape} and f/8 image {rgb.shape[:2]} differ", pair.depth_path)
    # The Xtion's isolated near-range speckles would render as huge disks that are not in the
    # scene: 5x5 median, as experiments.rgbd_eval.load_dfd_scene and the renderer check do.
    cleaned = clean_depth_m(np.where(valid, depth, np.nan), pair.depth_path)
    return RgbdImage(rgb, np.where(valid, cleaned, np.nan).astype(np.float32))


def load_motorcycle() -> RgbdImage:
    from focaldepth.io.rgbd import motorcycle_rgbd

    rgb, depth_m, filled = motorcycle_rgbd()
    return RgbdImage(rgb, np.where(filled, np.nan, depth_m).astype(np.float32))


# --- the scene lists of each split -----------------------------------------------------------


def shared_root(config: RgbdConfig) -> Path:
    if config.shared:
        return Path(config.shared)
    from focaldepth.io.rgbd import default_shared_root

    return default_shared_root()


def dfd_split(index: int) -> str:
    if index % DFD_TEST_EVERY == 0:
        return "test"
    return "val" if index % DFD_TEST_EVERY == DFD_VAL_OFFSET else "train"


@functools.lru_cache(maxsize=8)
def scene_names(source: str, split: str, shared: str, frame_step: int = 5) -> tuple[str, ...]:
    """The scenes of ``source`` in ``split`` (names; frame numbers for 7-Scenes)."""
    root = Path(shared) / "data"
    if source == "motorcycle":
        return ("Motorcycle",) if split == "test" else ()
    if source == "dfd":
        from focaldepth.io.rgbd import list_pairs

        folder = root / "dfd_indoor_train"
        if not (folder / "pairs.csv").is_file():
            raise UserError("DFD indoor data not found (pairs.csv)", folder)
        return tuple(str(i) for i in range(len(list_pairs(folder))) if dfd_split(i) == split)
    if source == "middlebury2014":
        folder = root / "rgbd" / "middlebury2014"
        names = sorted(p.name for p in folder.iterdir() if (p / "disp0GT.pfm").is_file()) if folder.is_dir() else []
        if not names:
            raise UserError("Middlebury 2014 scenes not found", folder)
        chosen = [n for n in names if (n in MIDDLEBURY2014_VAL) == (split == "val")]
        return tuple(chosen) if split != "test" else ()
    if source == "middlebury2005_2006":
        folder = root / "rgbd" / "middlebury2005_2006"
        names = sorted(p.name for p in folder.iterdir() if (p / "disp1.png").is_file()) if folder.is_dir() else []
        if not names:
            raise UserError("Middlebury 2005/2006 scenes not found", folder)
        chosen = [n for n in names if (n in MIDDLEBURY0506_VAL) == (split == "val")]
        # both views of every scene: view1 and view5
        return tuple(f"{n}/{v}" for n in chosen for v in (1, 5)) if split != "test" else ()
    if source == "sevenscenes":
        folder = root / "rgbd" / "7scenes_redkitchen"
        if not (folder / "camera-intrinsics.txt").is_file():
            raise UserError("7-Scenes redkitchen not found", folder)
        if split == "test":
            return ()
        low, high = SEVENSCENES_TRAIN_FRAMES if split == "train" else SEVENSCENES_VAL_FRAMES
        return tuple(str(k) for k in range(low, high, frame_step)
                     if (folder / f"frame-{k:06d}.depth.png").is_file())
    raise UserError(f"unknown source {source!r}")


@functools.lru_cache(maxsize=96)
def load_scene(source: str, name: str, shared: str,
               extrinsic_m: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> RgbdImage:
    root = Path(shared) / "data"
    if source == "dfd":
        return load_dfd(root / "dfd_indoor_train", int(name))
    if source == "middlebury2014":
        return load_middlebury2014(root / "rgbd" / "middlebury2014" / name)
    if source == "middlebury2005_2006":
        scene, view = name.split("/")
        return load_middlebury0506(root / "rgbd" / "middlebury2005_2006" / scene, int(view))
    if source == "sevenscenes":
        return load_sevenscenes_frame(root / "rgbd" / "7scenes_redkitchen", int(name), extrinsic_m)
    if source == "motorcycle":
        return load_motorcycle()
    raise UserError(f"unknown source {source!r}")


# --- one sequence ----------------------------------------------------------------------------


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = [k for k, w in weights.items() if w > 0]
    p = np.array([weights[k] for k in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def fill_nearest(depth_m: np.ndarray) -> np.ndarray:
    """NaNs replaced by the nearest valid value (for the renderer only)."""
    from scipy import ndimage

    missing = ~np.isfinite(depth_m)
    if not missing.any():
        return depth_m
    _, (rows, cols) = ndimage.distance_transform_edt(missing, return_indices=True)
    return depth_m[rows, cols]


def random_crop(rng: np.random.Generator, image: RgbdImage, depth_m: np.ndarray, out_hw: tuple[int, int],
                fraction: tuple[float, float], flip: bool, min_valid: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A crop of ``out_hw``'s aspect, resized to ``out_hw``: (rgb uint8, depth NaN-holed, info)."""
    import cv2

    height, width = depth_m.shape
    out_h, out_w = out_hw
    aspect = out_w / out_h
    max_side = min(height, width / aspect)
    best = None
    for _ in range(20):
        side = max(out_h, log_uniform(rng, fraction) * max_side)
        side = min(side, max_side)
        crop_h, crop_w = round(side), min(width, round(side * aspect))
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        valid_fraction = float(np.isfinite(depth_m[top:top + crop_h, left:left + crop_w]).mean())
        if best is None or valid_fraction > best[-1]:
            best = (top, left, crop_h, crop_w, valid_fraction)
        if valid_fraction >= min_valid:
            break
    top, left, crop_h, crop_w, valid_fraction = best
    rgb = image.rgb[top:top + crop_h, left:left + crop_w]
    depth = depth_m[top:top + crop_h, left:left + crop_w]
    if (crop_h, crop_w) != (out_h, out_w):
        rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)
        depth = cv2.resize(depth, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
    mirrored = bool(flip and rng.uniform() < 0.5)
    if mirrored:
        rgb, depth = rgb[:, ::-1], depth[:, ::-1]
    info = {"crop": [top, left, crop_h, crop_w], "flip": mirrored}
    return np.ascontiguousarray(rgb), np.ascontiguousarray(depth, np.float32), info


def sample_camera_and_scale(rng: np.random.Generator, config: RgbdConfig, near_m: float, far_m: float,
                            metric: bool) -> tuple[Camera, float, float]:
    """A camera, the factor for the scene's depth and the blur target (see module doc step 3)."""
    width = config.resolution[1]
    span_dpt = max(1.0 / near_m - 1.0 / far_m, 1e-6)
    if metric:
        best = None
        for _ in range(64):
            camera = sample_camera(rng, config.camera, width)
            dslr = camera.focal_length_mm >= 18.0 and camera.sensor_width_mm >= 13.0
            blur_px = camera.coc_px_per_dpt * span_dpt
            # Real distances, but a sweep whose blur is visible (at least the smallest target).
            if dslr and MIN_FOCUS_FOCAL_LENGTHS * camera.focal_length_m <= near_m and \
                    config.depth.max_coc_px[0] <= blur_px <= config.depth.max_coc_px[1]:
                return camera, 1.0, blur_px
        # no DSLR-like camera sees this layout with a useful blur: scale it as for other cameras
    target_px = log_uniform(rng, config.depth.max_coc_px)
    best, best_scale, best_reach = None, 0.0, 0.0
    for _ in range(64):
        camera = sample_camera(rng, config.camera, width)
        scale = span_dpt * camera.coc_px_per_dpt / target_px  # span / scale = target / k
        nearest = nearest_depth_m(camera, config.depth)
        if scale * near_m >= nearest and scale * far_m <= config.depth.range_m[1]:
            return camera, scale, target_px
        # the scale that puts the scene as close as allowed: the largest blur this camera reaches
        closest = nearest / near_m
        reach = camera.coc_px_per_dpt * span_dpt / closest
        if best is None or reach > best_reach:
            best, best_scale, best_reach = camera, closest, reach
    assert best is not None
    return best, best_scale, best_reach


def sweep_for_protocol(rng: np.random.Generator, protocol: str, near_m: float, far_m: float,
                       camera: Camera) -> tuple[float, float]:
    """Nearest and farthest focus of a sweep under ``protocol`` (module doc step 4)."""
    shifts = {"cover": ((-0.05, 0.05), (-0.05, 0.05)), "inner": ((-0.3, -0.1), (-0.3, -0.1)),
              "before_far": ((-0.05, 0.05), (-0.6, -0.3)), "before_near": ((-0.6, -0.3), (-0.05, 0.05)),
              "wide": ((0.1, 0.4), (0.1, 0.4))}[protocol]
    near_dpt, far_dpt = 1.0 / near_m, 1.0 / far_m
    span = near_dpt - far_dpt
    if span < 0.02 * near_dpt:  # a nearly flat layout: give the sweep some depth of field to span
        span = 0.02 * near_dpt
        near_dpt, far_dpt = near_dpt + span / 2, max(far_dpt - span / 2, 1e-6)
    u, v = rng.uniform(*shifts[0]), rng.uniform(*shifts[1])
    sweep_near = min(near_dpt + u * span, 1.0 / (MIN_FOCUS_FOCAL_LENGTHS * camera.focal_length_m))
    sweep_far = max(far_dpt - v * span, 0.5 * far_dpt)
    if not sweep_near > sweep_far * 1.001:
        sweep_near = sweep_far * 1.05
    return 1.0 / sweep_near, 1.0 / sweep_far


def generate_rgbd_sequence(config: RgbdConfig, index: int) -> Any:
    """Sequence ``index`` (a :class:`focaldepth.scenes.sequence.SequenceData`-like object)."""
    import torch

    from focaldepth.render import render_defocus
    from focaldepth.scenes.sequence import (
        add_sensor_noise,
        coc_ground_truth,
        seed_streams,
        to_uint8,
    )

    rng, noise_rng = seed_streams(config.seed, index)
    shared = str(shared_root(config))
    source = _choose(rng, to_plain(config.sources))
    names = scene_names(source, config.split, shared, config.sevenscenes_frame_step)
    if not names:
        raise UserError(f"source {source!r} has no {config.split} scenes")
    name = names[int(rng.integers(len(names)))]
    image = load_scene(source, name, shared, tuple(config.sevenscenes_extrinsic_m))
    extra: dict[str, Any] = {}
    if image.disparity_px is not None:  # Middlebury 2005/2006: a depth layout up to dmin
        dmin = float(rng.uniform(*config.mb0506_dmin_px))
        depth_full = (MB0506_FOCAL_BASELINE_PX_M / (image.disparity_px + dmin)).astype(np.float32)
        extra["dmin_px"] = round(dmin, 3)
    else:
        depth_full = image.depth_m
    rgb, depth_holed, crop_info = random_crop(rng, image, depth_full, config.resolution, config.crop_fraction,
                                              config.flip, config.min_valid_fraction)
    valid = np.isfinite(depth_holed) & (depth_holed > 0)
    if valid.sum() < 16:
        raise UserError(f"sequence {index}: crop of {source} {name} has almost no measured depth")
    near0, far0 = (float(x) for x in np.percentile(depth_holed[valid], [2, 98]))
    metric = source in METRIC_SOURCES and bool(rng.uniform() < config.metric_fraction)
    camera, scale, target_px = sample_camera_and_scale(rng, config, near0, far0, metric)
    depth_render = fill_nearest(np.where(valid, depth_holed, np.nan)).astype(np.float32) * np.float32(scale)
    near_m, far_m = near0 * scale, far0 * scale
    protocol = _choose(rng, to_plain(config.protocols))
    sweep_near_m, sweep_far_m = sweep_for_protocol(rng, protocol, near_m, far_m, camera)
    num_frames = int(rng.integers(config.frames[0], config.frames[1] + 1))
    focus = dioptric_ramp(sweep_near_m, sweep_far_m, num_frames).astype(np.float64)

    image_t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    depth_t = torch.from_numpy(depth_render)[None, None]
    stack = render_defocus(image_t, depth_t, [float(f) for f in focus], camera, f_number=camera.f_number,
                           psf=config.psf, num_layers=config.num_layers, linear_light=config.linear_light)
    rendered = stack.permute(0, 2, 3, 1).numpy()
    shot = log_uniform(noise_rng, config.noise.shot)
    read_std = log_uniform(noise_rng, config.noise.read_std)
    frames = to_uint8(add_sensor_noise(rendered, noise_rng, shot, read_std))

    depth_store = np.where(valid, depth_render, np.nan).astype(np.float32)
    depth_seq = np.repeat(depth_store[None], num_frames, axis=0)
    with np.errstate(invalid="ignore"):
        coc = coc_ground_truth(depth_seq, focus, camera)
    outside = valid & ((depth_store < sweep_near_m) | (depth_store > sweep_far_m))
    params = {
        "source": source, "scene": name, "scene_split": config.split, **extra, **crop_info,
        "metric": metric and scale == 1.0, "depth_scale": round(float(scale), 8), "protocol": protocol,
        "scene_near_m": round(near_m, 6), "scene_far_m": round(far_m, 6),
        "sweep_near_m": round(float(focus[0]), 6), "sweep_far_m": round(float(focus[-1]), 6),
        "target_max_coc_px": round(float(target_px), 4),
        "max_coc_px": round(float(np.nanmax(coc)), 4),
        "valid_fraction": round(float(valid.mean()), 4),
        "outside_sweep_fraction": round(float(outside.sum() / max(valid.sum(), 1)), 4),
        "noise_shot": round(shot, 8), "noise_read_std": round(read_std, 8),
        "linear_light": config.linear_light, "num_layers": config.num_layers,
        "frames_per_ramp": num_frames, "num_ramps": 1,
    }
    scene = SimpleNamespace(depth_range=SimpleNamespace(near_m=near_m, far_m=far_m))
    return SimpleNamespace(frames=frames, aif=np.repeat(rgb[None], num_frames, axis=0), depth_m=depth_seq,
                           coc_px=coc, flow=None, focus_distance_m=focus, camera=camera, scene=scene,
                           params=params, is_dynamic=False)


# --- the job ---------------------------------------------------------------------------------


def make_one(config: RgbdConfig, out_dir: Path, index: int) -> int:
    from focaldepth.generate.storage import make_record, sequence_filename, write_sequence

    data = generate_rgbd_sequence(config, index)
    record = make_record(data, index, config.seed, config.split, 0)
    record["generator_version"] = RGBD_GENERATOR_VERSION
    write_sequence(out_dir / sequence_filename(index), data, record, generator_version=RGBD_GENERATOR_VERSION)
    return int(data.frames.shape[0])


def prepare_out_dir(config: RgbdConfig, out_dir: Path) -> None:
    """Create ``out_dir`` and record the config; refuse a directory made with another config."""

    def same_config(path: Path) -> bool:
        previous = yaml.safe_load(path.read_text())
        if not (isinstance(previous, dict) and set(previous) <= set(to_plain(config))):
            return False
        return parse_rgbd_config(previous, path).fingerprint() == config.fingerprint()

    record_config(out_dir, dump_rgbd_config(config), same_config)


def run_rgbd(config: RgbdConfig | str | Path, out_dir: str | Path, *, num: int | None = None,
             shard: Shard | str | None = None, workers: int = 1, contact_sheet: str | Path | None = None,
             progress: bool = True) -> Summary:
    """Generate (or finish) this shard's part of the dataset (:func:`focaldepth.generate.jobs.run_job`)."""
    if not isinstance(config, RgbdConfig):
        config = load_rgbd_config(config)
    num_sequences = config.num_sequences if num is None else num
    check_counts(num_sequences, workers)
    out_dir = Path(out_dir)
    prepare_out_dir(config, out_dir)
    owned = shard_indices(num_sequences, shard if isinstance(shard, Shard) else parse_shard(shard))
    return run_job(make_one, config, out_dir, owned, workers=workers, contact_sheet=contact_sheet,
                   progress=progress, desc="rgbd")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num", type=int, default=None, help="number of sequences (default: the config's)")
    parser.add_argument("--shard", default=None, help="i/n: generate only indices k with k %% n == i")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--contact-sheet", type=Path, default=None, help="write a PNG of the first sequences")
    parser.add_argument("--shared", type=Path, default=None, help="the shared/ folder (overrides the config)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = load_rgbd_config(args.config)
        if args.shared is not None:
            import dataclasses

            config = dataclasses.replace(config, shared=str(args.shared))
        summary = run_rgbd(config, args.out, num=args.num, shard=args.shard, workers=args.workers,
                           contact_sheet=args.contact_sheet, progress=not args.no_progress)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    for line in summary.lines():
        print(line)

if __name__ == "__main__":
    main()
