"""Focus-sweep *videos* with real camera motion, synthesised from the 7-Scenes redkitchen
recording (registered RGB-D + camera poses; ``../shared/data/rgbd/7scenes_redkitchen``).

Each sequence takes ``num_frames`` consecutive recorded frames (every ``frame_step``-th), the
colour image and its depth registered to colour (:func:`focaldepth.generate.rgbd.load_sevenscenes_frame`),
centre-cropped to a square and resized to ``size_px``. A virtual camera and a depth scale are
drawn as in :mod:`focaldepth.generate.rgbd` (one per video), the focus follows repeated
near-to-far ramps (``frames_per_ramp``), and frame t is rendered with the project's renderer
from *its own* image and depth at *its own* focus distance, so the sweep and the hand-held
camera move together as in a real focus-sweep video. The ground-truth backward flow t -> t-1
comes from the recorded geometry: each pixel of frame t is back-projected with its (filled)
depth and the Kinect colour intrinsics (f = 525 px at 640x480, scaled with the resize), moved
by the recorded camera-to-world poses ``inv(P_{t-1}) P_t`` and projected into t-1 (it does not
depend on the depth scale, which scales the translation too). Depth the sensor did not measure
is NaN (unknown) in the stored ground truth.

Splits follow docs/rgbd_training_data.md: recorded frames 0-799 train, 850-999 validation.
The virtual lens's focal length is not the recording's, so intrinsics derived from the stored
camera are wrong for reprojection on these videos (evaluation, flow-based losses are fine).

  OMP_NUM_THREADS=1 python -m focaldepth.generate.sevenscenes_video --split val --num 12 \\
      --out data/sevenscenes_video_val
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from focaldepth.errors import UserError

GENERATOR_VERSION = "sevenscenes-video-1"
COLOUR_SIZE_PX = (480, 640)  # the recording's colour frames (H, W)
DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "data" / "rgbd_val.yaml"


def read_pose(root: Path, frame: int) -> np.ndarray:
    """The recorded camera-to-world pose (4x4, metres) of ``frame``."""
    path = root / f"frame-{frame:06d}.pose.txt"
    try:
        pose = np.loadtxt(path)
    except OSError:
        raise UserError("cannot read the camera pose", path) from None
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise UserError("a camera pose must be a finite 4x4 matrix", path)
    return pose


def backward_flow(depth_t_m: np.ndarray, pose_t: np.ndarray, pose_prev: np.ndarray,
                  focal_px: float) -> np.ndarray:
    """Flow (dx, dy) ``(H, W, 2)`` of every pixel of frame t to frame t-1 from its depth and
    the two camera-to-world poses (pinhole, principal point at the image centre)."""
    height, width = depth_t_m.shape
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    z = depth_t_m.astype(np.float64)
    points = np.stack([(xs - cx) * z / focal_px, (ys - cy) * z / focal_px, z, np.ones_like(z)], -1)
    moved = points @ (np.linalg.inv(pose_prev) @ pose_t).T
    zp = np.where(np.abs(moved[..., 2]) < 1e-9, 1e-9, moved[..., 2])
    u = moved[..., 0] * focal_px / zp + cx
    v = moved[..., 1] * focal_px / zp + cy
    return np.stack([u - xs, v - ys], -1).astype(np.float32)


def _square_resize(rgb: np.ndarray, depth_m: np.ndarray, size_px: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre square crop, resize to ``size_px``; returns rgb, depth (NaN kept) and the scale."""
    import cv2

    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    rgb = cv2.resize(rgb[top:top + side, left:left + side], (size_px, size_px),
                     interpolation=cv2.INTER_AREA)
    depth = cv2.resize(depth_m[top:top + side, left:left + side], (size_px, size_px),
                       interpolation=cv2.INTER_NEAREST)
    return rgb, depth, size_px / side


def generate_video(index: int, *, split: str, seed: int, num_frames: int = 20,
                   frames_per_ramp: int = 10, frame_step: int = 2, size_px: int = 128,
                   config_path: str | Path = DEFAULT_CONFIG) -> SimpleNamespace:
    """Video ``index`` of the split (a :class:`focaldepth.scenes.sequence.SequenceData`-like
    object for :func:`focaldepth.generate.storage.write_sequence`)."""
    import torch

    from focaldepth.generate import rgbd
    from focaldepth.optics import repeated_ramps
    from focaldepth.render import render_defocus
    from focaldepth.scenes.sequence import add_sensor_noise, coc_ground_truth, seed_streams, to_uint8

    if num_frames % frames_per_ramp:
        raise UserError(f"num_frames ({num_frames}) must be a multiple of frames_per_ramp "
                        f"({frames_per_ramp})")
    config = dataclasses.replace(rgbd.load_rgbd_config(config_path), resolution=(size_px, size_px))
    root = rgbd.shared_root(config) / "data" / "rgbd" / "7scenes_redkitchen"
    if not root.is_dir():
        root = rgbd.shared_root(config) / "rgbd" / "7scenes_redkitchen"
    if not root.is_dir():
        raise UserError("7-Scenes redkitchen not found under the shared folder", root)
    low, high = rgbd.SEVENSCENES_TRAIN_FRAMES if split == "train" else rgbd.SEVENSCENES_VAL_FRAMES
    span = (num_frames - 1) * frame_step
    rng, noise_rng = seed_streams(seed, index)
    start = int(rng.integers(low, high - span))
    recorded = [start + k * frame_step for k in range(num_frames)]
    images, depths, poses = [], [], []
    for frame in recorded:
        image = rgbd.load_sevenscenes_frame(root, frame, tuple(config.sevenscenes_extrinsic_m))
        rgb, depth, scale = _square_resize(image.rgb, image.depth_m, size_px)
        images.append(rgb)
        depths.append(depth)
        poses.append(read_pose(root, frame))
    focal_px = rgbd.SEVENSCENES_COLOUR_FOCAL_PX * scale
    valid = [np.isfinite(d) & (d > 0) for d in depths]
    measured = np.concatenate([d[v] for d, v in zip(depths, valid)])
    if measured.size < 16:
        raise UserError(f"video {index}: frames {recorded[0]}-{recorded[-1]} have no depth")
    near0, far0 = (float(x) for x in np.percentile(measured, [2, 98]))
    camera, depth_scale, target_px = rgbd.sample_camera_and_scale(rng, config, near0, far0, False)
    protocol = rgbd._choose(rng, rgbd.to_plain(config.protocols))
    sweep_near, sweep_far = rgbd.sweep_for_protocol(rng, protocol, near0 * depth_scale,
                                                    far0 * depth_scale, camera)
    focus = repeated_ramps(sweep_near, sweep_far, frames_per_ramp,
                           num_frames // frames_per_ramp).astype(np.float64)
    rendered, stored, flows = [], [], []
    for t, (rgb, depth, ok) in enumerate(zip(images, depths, valid)):
        filled = rgbd.fill_nearest(np.where(ok, depth, np.nan)).astype(np.float32)
        image_t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
        depth_t = torch.from_numpy(filled * np.float32(depth_scale))[None, None]
        frame = render_defocus(image_t, depth_t, [float(focus[t])], camera, f_number=camera.f_number,
                               psf=config.psf, num_layers=config.num_layers,
                               linear_light=config.linear_light)[0]
        rendered.append(frame.permute(1, 2, 0).numpy())
        stored.append(np.where(ok, filled * depth_scale, np.nan).astype(np.float32))
        flows.append(np.zeros(depth.shape + (2,), np.float32) if t == 0
                     else backward_flow(filled, poses[t], poses[t - 1], focal_px))
    shot = rgbd.log_uniform(noise_rng, config.noise.shot)
    read_std = rgbd.log_uniform(noise_rng, config.noise.read_std)
    frames = to_uint8(add_sensor_noise(np.stack(rendered), noise_rng, shot, read_std))
    depth_seq = np.stack(stored)
    with np.errstate(invalid="ignore"):
        coc = coc_ground_truth(depth_seq, focus, camera)
    near_m, far_m = near0 * depth_scale, far0 * depth_scale
    params = {"source": "sevenscenes_video", "scene": "redkitchen", "scene_split": split,
              "recorded_frames": recorded, "frame_step": frame_step, "motion": "camera",
              "depth_scale": round(float(depth_scale), 8), "protocol": protocol,
              "near_m": round(near_m, 6), "far_m": round(far_m, 6),
              "sweep_near_m": round(float(focus[0]), 6),
              "sweep_far_m": round(float(focus[frames_per_ramp - 1]), 6),
              "target_max_coc_px": round(float(target_px), 4),
              "max_flow_px": round(float(max(np.abs(f).max() for f in flows)), 3),
              "noise_shot": round(shot, 8), "noise_read_std": round(read_std, 8),
              "num_layers": config.num_layers, "frames_per_ramp": frames_per_ramp,
              "num_ramps": num_frames // frames_per_ramp}
    scene = SimpleNamespace(depth_range=SimpleNamespace(near_m=near_m, far_m=far_m))
    return SimpleNamespace(frames=frames, aif=np.stack(images), depth_m=depth_seq, coc_px=coc,
                           flow=np.stack(flows), focus_distance_m=focus, camera=camera,
                           scene=scene, params=params, is_dynamic=True)


def run(out_dir: str | Path, *, split: str, num: int, seed: int, **kwargs) -> Path:
    """Write ``num`` videos (resumable: finished files are kept) and the manifest."""
    from focaldepth.generate.storage import (
        MANIFEST_NAME,
        make_record,
        sequence_filename,
        write_sequence,
    )
    from focaldepth.io.atomic import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(num):
        path = out / sequence_filename(index)
        if path.is_file():
            from focaldepth.generate.storage import read_record

            records.append(read_record(path))
            continue
        data = generate_video(index, split=split, seed=seed, **kwargs)
        record = make_record(data, index, seed, split, 0)
        record["generator_version"] = GENERATOR_VERSION
        write_sequence(path, data, record, generator_version=GENERATOR_VERSION)
        records.append(record)
    atomic_write_text(out / MANIFEST_NAME, "".join(json.dumps(r) + "\n" for r in records))
    atomic_write_text(out / "config.yaml", json.dumps(
        {"generator": GENERATOR_VERSION, "split": split, "num_sequences": num, "seed": seed,
         **{k: (str(v) if isinstance(v, Path) else v) for k, v in kwargs.items()}}) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="7-Scenes focus-sweep videos with real camera motion")
    parser.add_argument("--out", required=True)
    parser.add_argument("--split", choices=("train", "val"), default="val")
    parser.add_argument("--num", type=int, default=12)
    parser.add_argument("--seed", type=int, default=71)
    parser.add_argument("--frame-step", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    try:
        run(args.out, split=args.split, num=args.num, seed=args.seed, frame_step=args.frame_step,
            size_px=args.size)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
