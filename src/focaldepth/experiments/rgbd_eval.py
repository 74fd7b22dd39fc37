"""Evaluate depth-from-focus methods on real RGB-D images with synthesised focus sweeps,
across camera presets (phone to full-frame DSLR) and sweep protocols.

The all-in-focus images and depths are real; the sweeps are rendered with the thin-lens,
occlusion-aware renderer, with sensor noise, quantised to 8 bits. A pinhole image does not
change when the whole scene is scaled, so each preset places the scene at a distance typical
for that camera (a phone shoots a close-up, a DSLR a room): the same scene structure seen
through very different optics and blur sizes, which a model meant to work across cameras
must handle. Two scene sources:

* ``--source motorcycle`` (default): Middlebury 2014 *Motorcycle* (shipped inside
  scikit-image, used at its full 741 px width), four presets, one near-to-far sweep over the
  2..98th depth percentile. ``python -m focaldepth.experiments.rgbd_eval --out results/rgbd_presets``
  regenerates that table.
* ``--source dfd``: the 81 real indoor scenes of the "DFD indoor" set (Carvalho et al., "Deep
  Depth from Defocus: how can defocus blur improve 3D estimation using dense neural
  networks?", 3DRW ECCV Workshops 2018) at ``../shared/data/dfd_indoor_train``: the f/8 DSLR
  photo (nearly all in focus) is the all-in-focus image and the registered Xtion depth the
  ground truth. Sweeps are rendered in linear light (blur mixes light, not JPEG code values)
  for the real camera (Nikon D200, 35 mm lens at f/2.8, scene at its real distances) and a
  phone (scene scaled to a close-up), with three sweep protocols that cover the scene
  exactly, too little or too much (see :data:`PROTOCOLS`) and 5 or 10 frames. Metrics per
  scene go to ``per_scene.csv``, means over scenes to ``metrics.json`` and ``table.md``.
  ``python -m focaldepth.experiments.rgbd_eval --source dfd --out results/rgbd_dfd --scenes 4``
  regenerates ``results/rgbd_dfd``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from focaldepth.errors import UserError
from focaldepth.io.rgbd import (
    clean_depth_m,
    default_shared_root,
    list_pairs,
    motorcycle_rgbd,
    read_dfd_depth_m,
)
from focaldepth.metrics import absrel, depth_metrics
from focaldepth.optics import Camera, dioptric_ramp
from focaldepth.predict import StreamingPredictor, load_model
from focaldepth.render import render_defocus, render_focal_stack

NOISE_STD = 0.01  # read noise, fraction of full scale


@dataclass(frozen=True)
class Preset:
    name: str
    focal_length_mm: float
    f_number: float
    sensor_width_mm: float
    scene_near_m: float | None  # where the nearest 2 % of the scene sits (None: as captured)


PRESETS = (
    Preset("phone", 4.2, 1.8, 5.6, 0.15),
    Preset("compact", 9.0, 2.8, 7.6, 0.4),
    Preset("aps-c", 35.0, 2.0, 23.6, 1.0),
    Preset("full-frame", 85.0, 1.8, 36.0, 2.0),
)


def motorcycle(width_px: int = 320) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Middlebury Motorcycle resized to ``width_px``: RGB uint8, depth (m), valid mask."""
    import cv2

    rgb, depth_m, filled = motorcycle_rgbd()
    valid = ~filled  # score only measured disparities, never the in-painted holes
    height_px = round(rgb.shape[0] * width_px / rgb.shape[1])
    size = (width_px, height_px)
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    depth_m = cv2.resize(depth_m.astype(np.float32), size, interpolation=cv2.INTER_NEAREST)
    valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return rgb, depth_m, valid


def scene_scale(preset: Preset, depth_m: np.ndarray, valid: np.ndarray) -> float:
    """Factor for the scene's depth that puts its near end at the preset's distance (1 for a
    preset that keeps the scene's real distances: the camera that captured it)."""
    if preset.scene_near_m is None:
        return 1.0
    return preset.scene_near_m / float(np.percentile(depth_m[valid], 2))


def synthesise_sweep(rgb: np.ndarray, depth_m: np.ndarray, valid: np.ndarray, camera: Camera,
                     num_frames: int, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Render, add noise and quantise a near-to-far sweep over the scene's depth range."""
    near, far = np.percentile(depth_m[valid], [2, 98])
    focus_m = [float(f) for f in dioptric_ramp(float(near), float(far), num_frames)]
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    depth = torch.from_numpy(depth_m)[None, None].float()
    cam = torch.tensor([[camera.focal_length_m, camera.f_number, camera.pixel_pitch_m]])
    stack = render_focal_stack(image, depth, torch.tensor([focus_m]), cam, num_layers=32)[0]
    return noisy_frames8(stack, seed), focus_m


def noisy_frames8(stack: torch.Tensor, seed: int) -> np.ndarray:
    """A rendered stack ``(S, 3, H, W)`` in [0, 1] as a camera stores it: Gaussian read noise
    (``NOISE_STD``, seeded), clipped and quantised to ``(S, H, W, 3)`` uint8."""
    generator = torch.Generator().manual_seed(seed)
    stack = stack + NOISE_STD * torch.randn(stack.shape, generator=generator)
    return (stack.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def evaluate_preset(preset: Preset, method: str, num_frames: int = 5, width_px: int = 741) -> dict:
    """Metrics of one method on Motorcycle seen through one camera preset."""
    rgb, depth_m, valid = motorcycle(width_px)
    camera = Camera(preset.focal_length_mm, preset.f_number, preset.sensor_width_mm, width_px)
    scale = scene_scale(preset, depth_m, valid)
    depth_scaled = depth_m * scale
    frames, focus_m = synthesise_sweep(rgb, depth_scaled, valid, camera, num_frames)
    predictor = StreamingPredictor(load_model(method), camera, focus_m, *rgb.shape[:2], align=False,
                                   max_pixels=rgb.shape[0] * rgb.shape[1])
    start = time.perf_counter()
    for frame, focus in zip(frames, focus_m):
        result = predictor.push(frame, focus)
    seconds = time.perf_counter() - start
    pred = torch.from_numpy(result.depth_m)[None, None]
    gt = torch.from_numpy(depth_scaled)[None, None]
    mask = torch.from_numpy(valid)[None, None]
    metrics = depth_metrics(pred, gt, mask)
    return {"preset": preset.name, "method": method, "scene_depth_m": [float(depth_scaled[valid].min()),
            float(depth_scaled[valid].max())], "focus_m": focus_m,
            "sweep_blur_px": float(camera.coc_px_per_dpt * (1 / focus_m[0] - 1 / focus_m[-1])),
            "seconds": seconds, **{k: float(v) for k, v in metrics.items()}}


def markdown(rows: list[dict]) -> str:
    lines = ["| preset | scene depth (m) | sweep blur (px) | method | AbsRel | RMSE (m) | δ<1.25 |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        near, far = row["scene_depth_m"]
        lines.append(f"| {row['preset']} | {near:.2f}–{far:.2f} | {row['sweep_blur_px']:.1f} | {row['method']} | "
                     f"{row['absrel']:.3f} | "
                     f"{row['rmse']:.3f} | {row['delta1']:.3f} |")
    return "\n".join(lines) + "\n"


# --- DFD indoor: 81 real scenes ------------------------------------------------------------

DFD_SUBDIR = Path("data") / "dfd_indoor_train"
DFD_CITATION = ("DFD indoor (train split, 81 scenes), Carvalho et al., \"Deep Depth from Defocus: how "
                "can defocus blur improve 3D estimation using dense neural networks?\", 3DRW ECCV "
                "Workshops 2018")
# The real camera at f/2.8 (the set's wide aperture), scene at its real 1-6 m distances; and a
# phone with the scene scaled to a close-up, as the Motorcycle "phone" preset does.
DFD_PRESETS = (
    Preset("dslr", 35.0, 2.8, 23.6, None),
    Preset("phone", 4.2, 1.8, 5.6, 0.15),
)
# Sweep protocols: which depth range a near-to-far sweep covers. Real sweeps rarely match the
# scene: "inner" leaves the nearest and farthest 15 % of the scene outside the swept range
# (can a method extrapolate beyond the sweep?), "wide" wastes frames beyond both ends.
PROTOCOLS = ("cover", "inner", "wide")
COVER_PERCENTILES = (2.0, 98.0)
INNER_PERCENTILES = (15.0, 85.0)
WIDE_MARGIN = 0.25  # of the cover range's dioptric span, on each side
DFD_FRAMES = (5, 10)
RENDER_LAYERS = 32
# AbsRel beyond the sweep is reported only where at least this fraction of a scene's measured
# pixels lies there: a handful of stray pixels (the "wide" sweep) would give a noisy figure.
MIN_OUTSIDE_FRACTION = 0.01


def dfd_data_root(shared: Path | None = None) -> Path:
    """The DFD indoor folder inside ``shared`` (default: :func:`default_shared_root`); a
    UserError naming the folder if it is not there."""
    root = (default_shared_root() if shared is None else Path(shared)) / DFD_SUBDIR
    if not (root / "pairs.csv").is_file():
        raise UserError("DFD indoor data not found (expected pairs.csv, f8/ and depth_mm/; "
                        "point --shared at the shared/ folder)", root)
    return root


@dataclass(frozen=True)
class RgbdScene:
    """One real RGB-D scene: ``rgb`` uint8 (H, W, 3), ``depth_m`` float32 (H, W) without holes
    (what the sweep is rendered from, hence the ground truth), ``valid`` bool (H, W): pixels
    whose depth was measured (scored)."""

    name: str
    rgb: np.ndarray
    depth_m: np.ndarray
    valid: np.ndarray


def load_dfd_scene(pair, width_px: int | None = None) -> RgbdScene:
    """The f/8 photo and depth of one scene (a :class:`focaldepth.io.rgbd.DfdPair`),
    optionally resized to ``width_px`` (area averaging for the image, nearest for depth so no
    depth between two surfaces is invented). Holes are filled and the Xtion's isolated
    near-range speckles removed (5x5 median, as the renderer check does): a speckle would
    render as a huge blur disk that is not in the scene."""
    import cv2

    from focaldepth.io.frames import read_image

    rgb = read_image(pair.sharp_path)
    raw_m, valid = read_dfd_depth_m(pair.depth_path)
    if raw_m.shape != rgb.shape[:2]:
        raise UserError(f"depth {raw_m.shape} and f/8 image {rgb.shape[:2]} sizes differ", pair.depth_path)
    if not valid.any():
        raise UserError("depth map has no valid pixel", pair.depth_path)
    depth_m = clean_depth_m(np.where(valid, raw_m, np.nan), pair.depth_path)
    height, width = raw_m.shape
    if width_px is not None and width_px != width:
        if not 32 <= width_px <= width:
            raise UserError(f"width must be between 32 and {width} px, got {width_px}", pair.sharp_path)
        size = (width_px, max(32, round(height * width_px / width)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        depth_m = cv2.resize(depth_m, size, interpolation=cv2.INTER_NEAREST)
        valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return RgbdScene(pair.name, np.ascontiguousarray(rgb), depth_m.astype(np.float32), valid)


def select_pairs(root: Path, every: int = 1) -> list:
    """Every ``every``-th scene of ``root/pairs.csv`` (the first, the (every+1)-th, ...)."""
    if every < 1:
        raise UserError(f"--scenes must be at least 1 (every k-th scene), got {every}")
    return list_pairs(root)[::every]


def sweep_range_m(depth_m: np.ndarray, valid: np.ndarray, protocol: str) -> tuple[float, float]:
    """Nearest and farthest focus distance of a sweep under ``protocol`` (see PROTOCOLS)."""
    values = depth_m[valid]
    if protocol == "cover":
        near_m, far_m = np.percentile(values, COVER_PERCENTILES)
    elif protocol == "inner":
        near_m, far_m = np.percentile(values, INNER_PERCENTILES)
    elif protocol == "wide":
        near_m, far_m = np.percentile(values, COVER_PERCENTILES)
        near_dpt, far_dpt = 1.0 / near_m, 1.0 / far_m
        margin_dpt = WIDE_MARGIN * (near_dpt - far_dpt)
        # For a deep scene (far > 3x near) the margin would push the far end past twice the
        # farthest depth (to infinity at 5x): stop at twice it, as a real sweep has to.
        near_m, far_m = 1.0 / (near_dpt + margin_dpt), 1.0 / max(far_dpt - margin_dpt, 0.5 * far_dpt)
    else:
        raise UserError(f"unknown sweep protocol {protocol!r} (choose {', '.join(PROTOCOLS)})")
    if not far_m > near_m:  # a flat scene: give the sweep a minimal depth of field to span
        near_m, far_m = near_m * 0.95, far_m * 1.05
    return float(near_m), float(far_m)


def outside_sweep(depth_m: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """Pixels nearer than the nearest or farther than the farthest focus of the sweep."""
    return (depth_m < near_m) | (depth_m > far_m)


def render_sweeps(rgb: np.ndarray, depth_m: np.ndarray, camera: Camera, focus_lists_m: Sequence[list[float]],
                  seed: int) -> list[np.ndarray]:
    """Frames ``(S, H, W, 3)`` uint8 for each list of focus distances: one renderer call for
    all lists (its cost is mostly per scene, not per slice), in linear light, then
    :func:`noisy_frames8`."""
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    depth = torch.from_numpy(depth_m)[None, None].float()
    focus_all = [f for focus in focus_lists_m for f in focus]
    stack = render_defocus(image, depth, focus_all, camera, f_number=camera.f_number,
                           num_layers=RENDER_LAYERS)
    frames = noisy_frames8(stack, seed)
    splits = np.cumsum([len(focus) for focus in focus_lists_m])[:-1]
    return np.split(frames, splits)


def dfd_validation_sweeps(every: int, offset: int = 0, num_frames: int = 5, scale: float = 0.5,
                          max_scenes: int | None = None):
    """Scenes ``pairs[offset::every]`` of DFD indoor seen by the real DSLR (35 mm f/2.8), each
    with every sweep protocol: yields ``(scene_name, protocol, frames (1, S, 3, h, w), focus
    (1, S) m, camera (1, 3), depth (1, 1, H, W), valid)``, the frames rendered at full resolution
    (noise seed 0) and resized by ``scale`` (area averaging, as predict's working grid). Shared
    by ``tools/validation_sets.py`` and ``experiments/selfsup_adapt.py``."""
    import torch.nn.functional as F

    for pair in select_pairs(dfd_data_root(), 1)[offset::every][:max_scenes]:
        scene = load_dfd_scene(pair)
        camera = Camera(35.0, 2.8, 23.6, scene.rgb.shape[1])
        for protocol in PROTOCOLS:
            near_m, far_m = sweep_range_m(scene.depth_m, scene.valid, protocol)
            focus_m = [float(f) for f in dioptric_ramp(near_m, far_m, num_frames)]
            frames8 = render_sweeps(scene.rgb, scene.depth_m, camera, [focus_m], seed=0)[0]
            frames = torch.from_numpy(frames8).permute(0, 3, 1, 2).float() / 255
            if scale != 1.0:
                size = (round(frames.shape[-2] * scale), round(frames.shape[-1] * scale))
                frames = F.interpolate(frames, size=size, mode="area")
            frames = frames[None]
            pitch_m = camera.pixel_pitch_m * camera.image_width_px / frames.shape[-1]
            camera_t = torch.tensor([[camera.focal_length_m, camera.f_number, pitch_m]])
            yield (pair.name, protocol, frames, torch.tensor([focus_m]), camera_t,
                   torch.from_numpy(scene.depth_m)[None, None], torch.from_numpy(scene.valid)[None, None])


def final_depth_m(predictor: StreamingPredictor, frames: np.ndarray, focus_m: Sequence[float]) -> np.ndarray:
    """The predictor's depth once the whole sweep is in: the result of pushing every frame and
    keeping the last, without the S - 1 estimates on partial windows in between (5.5x the
    model time for 10 frames). The earlier frames enter the window exactly as ``push`` stores
    them (tested against pushing every frame)."""
    import cv2

    for frame, focus in zip(frames[:-1], focus_m[:-1]):
        small = cv2.resize(frame, (predictor.work_w, predictor.work_h), interpolation=cv2.INTER_AREA)
        predictor.buffer.append((small, cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), float(focus)))
    return predictor.push(frames[-1], focus_m[-1]).depth_m


def method_label(method: str) -> str:
    """A short column name: a model file by its stem, a registry name as is."""
    return Path(method).stem if method.endswith(".pt") else method


def load_methods(methods: Sequence[str]) -> dict:
    """Every model loaded once, before hours of work depend on it (a bad name fails now)."""
    if not methods:
        raise UserError("no method given (e.g. --methods sweepnet_default classical)")
    labels = [method_label(m) for m in methods]
    if len(set(labels)) != len(labels):
        raise UserError(f"methods must have distinct names, got {', '.join(labels)}")
    return {method: load_model(method) for method in methods}


def score(pred_m: np.ndarray, scene_depth_m: np.ndarray, valid: np.ndarray, outside: np.ndarray) -> dict:
    """:func:`depth_metrics` on the measured pixels, plus AbsRel separately on the pixels inside
    and outside the swept focus range (nan where there are none, or outside when fewer than
    :data:`MIN_OUTSIDE_FRACTION` of the pixels are)."""
    pred = torch.from_numpy(pred_m)[None, None]
    gt = torch.from_numpy(scene_depth_m)[None, None]
    mask = torch.from_numpy(valid)[None, None]
    out = torch.from_numpy(outside)[None, None]
    metrics = {k: float(v) for k, v in depth_metrics(pred, gt, mask).items() if k != "num_images"}
    metrics["absrel_inside"] = float(absrel(pred, gt, mask & ~out)[0])
    enough_outside = outside[valid].mean() >= MIN_OUTSIDE_FRACTION if valid.any() else False
    metrics["absrel_outside"] = float(absrel(pred, gt, mask & out)[0]) if enough_outside else math.nan
    return metrics


def evaluate_dfd_scene(scene: RgbdScene, models: dict, *, presets: Sequence[Preset] = DFD_PRESETS,
                       protocols: Sequence[str] = PROTOCOLS,
                       frame_counts: Sequence[int] = DFD_FRAMES) -> list[dict]:
    """Rows (one per preset, protocol, frame count and method) of metrics on one scene. The
    image spans the preset's whole sensor width (as the DFD photos span the D200's)."""
    height, width = scene.rgb.shape[:2]
    rows = []
    for preset in presets:
        camera = Camera(preset.focal_length_mm, preset.f_number, preset.sensor_width_mm, width)
        scale = scene_scale(preset, scene.depth_m, scene.valid)
        depth_m = scene.depth_m * np.float32(scale)
        for protocol in protocols:
            near_m, far_m = sweep_range_m(depth_m, scene.valid, protocol)
            focus_lists = [[float(f) for f in dioptric_ramp(near_m, far_m, n)] for n in frame_counts]
            seed = zlib.crc32(f"{scene.name}/{preset.name}/{protocol}".encode())
            start = time.perf_counter()
            sweeps = render_sweeps(scene.rgb, depth_m, camera, focus_lists, seed)
            render_s = time.perf_counter() - start
            outside = outside_sweep(depth_m, near_m, far_m)
            common = {"scene": scene.name, "preset": preset.name, "protocol": protocol, "scale": scale,
                      "sweep_near_m": near_m, "sweep_far_m": far_m,
                      "sweep_blur_px": float(camera.coc_px_per_dpt * (1 / near_m - 1 / far_m)),
                      "outside_frac": float(outside[scene.valid].mean()), "render_s": render_s}
            for frames, focus_m in zip(sweeps, focus_lists):
                for method, model in models.items():
                    predictor = StreamingPredictor(model, camera, focus_m, height, width, align=False,
                                                   max_pixels=height * width)
                    start = time.perf_counter()
                    pred_m = final_depth_m(predictor, frames, focus_m)
                    seconds = time.perf_counter() - start
                    rows.append({**common, "frames": len(focus_m), "method": method, "predict_s": seconds,
                                 **score(pred_m, depth_m, scene.valid, outside)})
    return rows


# --- aggregation and outputs --------------------------------------------------------------

CSV_COLUMNS = ("scene", "preset", "protocol", "frames", "method", "scale", "sweep_near_m", "sweep_far_m",
               "sweep_blur_px", "outside_frac", "mse", "rmse", "mae", "absrel", "sqrel", "rmse_log", "delta1",
               "delta2", "delta3", "bumpiness", "absrel_inside", "absrel_outside", "render_s", "predict_s")
MEAN_COLUMNS = ("outside_frac", "mse", "rmse", "mae", "absrel", "sqrel", "rmse_log", "delta1", "delta2",
                "delta3", "bumpiness", "absrel_inside", "absrel_outside", "predict_s")


def per_scene_csv(rows: list[dict]) -> str:
    """The rows as CSV (6 significant digits; an empty cell for nan: no such pixels)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        cells = []
        for column in CSV_COLUMNS:
            value = row[column]
            if isinstance(value, float):
                value = "" if math.isnan(value) else f"{value:.6g}"
            cells.append(value)
        writer.writerow(cells)
    return buffer.getvalue()


def _nanmean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else None


def config_key(row: dict) -> tuple[str, str, int]:
    return row["preset"], row["protocol"], row["frames"]


def aggregate(rows: list[dict], methods: Sequence[str]) -> list[dict]:
    """Per (preset, protocol, frames): the mean over scenes of every metric for each method,
    the median sweep, and how often the first method beats each other one on AbsRel (paired by
    scene: the sweeps are identical)."""
    configs: dict[tuple, list[dict]] = {}
    for row in rows:
        configs.setdefault(config_key(row), []).append(row)
    summary = []
    for (preset, protocol, frames), group in configs.items():
        by_method = {m: {r["scene"]: r for r in group if r["method"] == m} for m in methods}
        first = by_method[methods[0]]
        entry = {"preset": preset, "protocol": protocol, "frames": frames, "num_scenes": len(first),
                 "sweep_near_m_median": float(np.median([r["sweep_near_m"] for r in first.values()])),
                 "sweep_far_m_median": float(np.median([r["sweep_far_m"] for r in first.values()])),
                 "sweep_blur_px_median": float(np.median([r["sweep_blur_px"] for r in first.values()])),
                 "outside_frac_mean": _nanmean([r["outside_frac"] for r in first.values()]),
                 # Scenes with enough pixels beyond the sweep for "absrel_outside" (the same
                 # for every method: the sweeps are shared).
                 "absrel_outside_scenes": sum(not math.isnan(r["absrel_outside"]) for r in first.values()),
                 "methods": {}}
        for method in methods:
            entry["methods"][method] = {c: _nanmean([r[c] for r in by_method[method].values()])
                                        for c in MEAN_COLUMNS if c != "outside_frac"}
        entry["wins_absrel"] = {
            f"{methods[0]} < {other}": sum(first[s]["absrel"] < by_method[other][s]["absrel"] for s in first)
            for other in methods[1:]}
        summary.append(entry)
    return summary


def outside_is_typical(entry: dict) -> bool:
    """Whether at least half the scenes of a configuration have pixels beyond its sweep (the
    "wide" sweep leaves almost none: its AbsRel outside rests on a few scenes)."""
    return 2 * entry["absrel_outside_scenes"] >= entry["num_scenes"]


def overall(summary: list[dict], methods: Sequence[str]) -> dict:
    """Mean over all configurations (each weighs equally) of each method's scene means;
    AbsRel outside over the configurations where it is typical (:func:`outside_is_typical`)."""
    result = {}
    for method in methods:
        means = {c: _nanmean([e["methods"][method][c] for e in summary]) for c in ("absrel", "rmse", "delta1")}
        means["absrel_outside"] = _nanmean([e["methods"][method]["absrel_outside"] for e in summary
                                            if outside_is_typical(e)
                                            and e["methods"][method]["absrel_outside"] is not None])
        result[method] = means
    return result


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def dfd_markdown(summary: list[dict], methods: Sequence[str], settings: dict) -> str:
    """One row per (preset, protocol, frames), methods side by side."""
    labels = [method_label(m) for m in methods]
    head = ["preset", "protocol", "frames", "sweep (m, median)", "blur (px)", "outside"]
    for metric in ("AbsRel", "RMSE (m)", "δ<1.25", "AbsRel outside"):
        head += [f"{metric} {label}" for label in labels]
    if len(methods) > 1:
        head += [f"{labels[0]} better (AbsRel)" + ("" if len(methods) == 2 else f" vs {label}")
                 for label in labels[1:]]
    lines = [f"# Depth from synthesised focus sweeps on real RGB-D scenes ({settings['dataset_short']})",
             "",
             (f"{settings['num_scenes']} scenes of {DFD_CITATION} (every {settings['scene_every']}-th), "
             f"{settings['width_px']} px wide; the f/8 photo is the all-in-focus image, the registered Xtion "
             f"depth the ground truth. Sweeps rendered with focaldepth.render (disk PSF, {RENDER_LAYERS} "
             f"layers, linear light), read noise {NOISE_STD:g}, 8-bit; predictions through "
             "StreamingPredictor at the image's own resolution (no alignment), scored after the last "
             "frame. Means over scenes. `outside`: fraction of scene pixels outside the swept focus "
             "range; `AbsRel outside`: AbsRel on those pixels only (extrapolation beyond the sweep), "
              f"over the scenes where they are at least {100 * MIN_OUTSIDE_FRACTION:g} % of the image "
              "(the `all` row: over the configurations where that is at least half the scenes). "
             "Last column: scenes on which the first method's AbsRel is lower (paired: same sweeps)."),
             "",
             ("Presets: " + "; ".join(settings["presets"]) + ". Protocols: "
              + "; ".join(f"`{k}` {v}" for k, v in settings["protocols"].items()) + "."),
             "",
             f"Regenerate: `{settings['command']}`",
             "",
             "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for entry in summary:
        cells = [entry["preset"], entry["protocol"], str(entry["frames"]),
                 f"{entry['sweep_near_m_median']:.2f}–{entry['sweep_far_m_median']:.2f}",
                 f"{entry['sweep_blur_px_median']:.1f}", _percent(entry["outside_frac_mean"] or 0.0)]
        for metric in ("absrel", "rmse", "delta1"):
            cells += [_fmt(entry["methods"][m][metric]) for m in methods]
        scenes_outside = entry["absrel_outside_scenes"]
        count = f" ({scenes_outside}/{entry['num_scenes']} scenes)" if 0 < scenes_outside < entry["num_scenes"] else ""
        cells += [_fmt(entry["methods"][m]["absrel_outside"]) + count for m in methods]
        cells += [f"{wins}/{entry['num_scenes']}" for wins in entry["wins_absrel"].values()]
        lines.append("| " + " | ".join(cells) + " |")
    total = overall(summary, methods)
    cells = ["**all**", "", "", "", "", ""]
    for metric in ("absrel", "rmse", "delta1", "absrel_outside"):
        cells += [f"**{_fmt(total[m][metric])}**" for m in methods]
    if len(methods) > 1:
        for key in summary[0]["wins_absrel"]:
            wins = sum(e["wins_absrel"][key] for e in summary)
            cells.append(f"**{wins}/{sum(e['num_scenes'] for e in summary)}**")
    lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Predict time per sweep (s, mean, one thread): " + ", ".join(
        f"{method_label(m)} {_fmt(np.mean([e['methods'][m]['predict_s'] for e in summary]), 2)}"
        for m in methods) + f". Total run: {settings['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %" if fraction < 0.01 else f"{100 * fraction:.0f} %"


def _json_safe(value):
    """nan -> None (JSON has no nan), recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def run_dfd(out: Path, methods: Sequence[str], *, shared: Path | None = None, every: int = 1,
            width_px: int | None = None, presets: Sequence[str] | None = None,
            protocols: Sequence[str] = PROTOCOLS, frame_counts: Sequence[int] = DFD_FRAMES,
            command: str = "", progress: bool = True) -> dict:
    """Evaluate ``methods`` on every ``every``-th DFD indoor scene and write ``out``/
    per_scene.csv, metrics.json and table.md (all computed before the first file is written)."""
    root = dfd_data_root(shared)
    chosen = [p for p in DFD_PRESETS if presets is None or p.name in presets]
    unknown = set(presets or ()) - {p.name for p in DFD_PRESETS}
    if unknown or not chosen:
        raise UserError(f"unknown preset(s) {sorted(unknown)} (choose {', '.join(p.name for p in DFD_PRESETS)})")
    for protocol in protocols:
        sweep_range_m(np.ones((1, 1), np.float32), np.ones((1, 1), bool), protocol)  # validates the name
    if any(n < 2 for n in frame_counts):
        raise UserError(f"a sweep needs at least 2 frames, got {list(frame_counts)}")
    models = load_methods(methods)
    pairs = select_pairs(root, every)
    rows: list[dict] = []
    start = time.perf_counter()
    for index, pair in enumerate(pairs):
        scene = load_dfd_scene(pair, width_px)
        scene_rows = evaluate_dfd_scene(scene, models, presets=chosen, protocols=protocols,
                                        frame_counts=frame_counts)
        rows += scene_rows
        if progress:
            means = {method_label(m): np.mean([r["absrel"] for r in scene_rows if r["method"] == m]) for m in methods}
            print(f"[{index + 1}/{len(pairs)}] {pair.name}: mean AbsRel "
                  + ", ".join(f"{k} {v:.3f}" for k, v in means.items())
                  + f" ({time.perf_counter() - start:.0f} s)", flush=True)
    summary = aggregate(rows, list(methods))
    height, width = scene.rgb.shape[:2]
    settings = {
        "dataset": DFD_CITATION, "dataset_short": "DFD indoor", "data": str(root), "command": command,
        "scene_every": every, "num_scenes": len(pairs), "scenes": [p.name for p in pairs],
        "width_px": width, "height_px": height, "methods": list(methods),
        "presets": [f"{p.name} {p.focal_length_mm:g} mm f/{p.f_number:g}, {p.sensor_width_mm:g} mm sensor, "
                    + ("scene at its real distances" if p.scene_near_m is None else
                       f"scene scaled to {p.scene_near_m:g} m at its 2nd depth percentile") for p in chosen],
        "protocols": {name: {"cover": f"focus {COVER_PERCENTILES[0]:g}..{COVER_PERCENTILES[1]:g}th depth percentile",
                             "inner": f"focus {INNER_PERCENTILES[0]:g}..{INNER_PERCENTILES[1]:g}th depth percentile",
                             "wide": f"cover range widened by {100 * WIDE_MARGIN:g} % of its dioptric span "
                                     "on both sides (far end at most 2x the 98th percentile)"}[name]
                      for name in protocols},
        "frames": list(frame_counts), "noise_std": NOISE_STD, "render_layers": RENDER_LAYERS,
        "linear_light": True, "align": False, "max_pixels": "H*W", "torch_threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - start,
    }
    out.mkdir(parents=True, exist_ok=True)
    from focaldepth.io.atomic import atomic_write_json, atomic_write_text

    atomic_write_text(out / "per_scene.csv", per_scene_csv(rows))
    atomic_write_json(out / "metrics.json", _json_safe({"settings": settings, "configs": summary,
                                                        "overall": overall(summary, list(methods))}))
    atomic_write_text(out / "table.md", dfd_markdown(summary, list(methods), settings))
    return {"settings": settings, "configs": summary}


# --- entry point -----------------------------------------------------------------------------


def run_motorcycle(out: Path, methods: Sequence[str], frames: int) -> None:
    """The original single-scene evaluation (results/rgbd_presets), unchanged."""
    torch.manual_seed(0)
    rows = [evaluate_preset(preset, method, frames) for preset in PRESETS for method in methods]
    out.mkdir(parents=True, exist_ok=True)
    from focaldepth.io.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(out / "metrics.json", rows)
    atomic_write_text(out / "table.md", markdown(rows))
    print(markdown(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("motorcycle", "dfd"), default="motorcycle")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default results/rgbd_presets or results/rgbd_dfd)")
    parser.add_argument("--methods", nargs="+", default=["sweepnet_default", "classical"],
                        help="shipped model names, 'classical', or paths to model files (.pt)")
    parser.add_argument("--frames", type=int, nargs="+", default=None,
                        help="frames per sweep (motorcycle: one value, default 5; dfd: default 5 10)")
    parser.add_argument("--shared", type=Path, default=None,
                        help="the shared/ folder (default: beside the project root)")
    parser.add_argument("--scenes", type=int, default=1, help="dfd: every k-th scene (default all 81)")
    parser.add_argument("--width", type=int, default=None, help="dfd: resize scenes to this width (px)")
    parser.add_argument("--presets", nargs="+", default=None,
                        help=f"dfd: presets (default all: {', '.join(p.name for p in DFD_PRESETS)})")
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), help="dfd: sweep protocols")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/OpenCV threads (dfd default 1: the machine is shared)")
    args = parser.parse_args(argv)
    command = "python -m focaldepth.experiments.rgbd_eval " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        if args.source == "motorcycle":
            frames = args.frames or [5]
            if len(frames) != 1:
                raise UserError(f"--source motorcycle takes one --frames value, got {frames}")
            run_motorcycle(args.out or Path("results/rgbd_presets"), args.methods, frames[0])
            return
        import cv2

        torch.set_num_threads(args.threads or 1)  # the motorcycle run keeps torch's default, as before
        cv2.setNumThreads(args.threads or 1)
        out = args.out or Path("results/rgbd_dfd")
        run_dfd(out, args.methods, shared=args.shared, every=args.scenes, width_px=args.width,
                presets=args.presets, protocols=args.protocols, frame_counts=args.frames or DFD_FRAMES,
                command=command)
        print((out / "table.md").read_text())
    except UserError as error:  # one line, status 2, as the focaldepth CLI does
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
