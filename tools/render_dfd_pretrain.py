"""A larger synthetic pre-training set for the DFD real-photo models (docs/dfd_real.md): f/8 and
f/2.8 pairs rendered with the DFD rig (35 mm, 23.6 mm sensor over the image width, focus
1.7 m) from real RGB-D that is NOT DFD indoor: the 7-Scenes redkitchen training frames
(0-799, every 5th; depth registered to the colour camera as data/rgbd_train does) and the
Middlebury 2014 training scenes (not Adirondack, Recycle, Vintage), each Middlebury scene as
four crops (two offsets, mirrored or not). Both apertures are rendered from the colour image
and its depth (disk PSF, 32 layers, linear light), then a random exposure gain of 0.9-1.1 on
the f/8 frame (the real pairs differ in exposure), Gaussian read noise (sigma 0.005) and 8 bits.

The DFD real-photo models were at a constant's level on the validation scenes after training
on the 54 DFD training scenes alone (results/dfd_real/variants_val.txt); the paper pre-trains
on a synthetically defocused indoor set first. This is that set at this project's scale.

The output has the shared DFD layout (pairs.csv, f2.8/, f8/, depth_mm/), so
``focaldepth.datasets.dfd_crops`` reads it unchanged (its i % 6 split: 1/6 of the rows
validate the pre-training).

    OMP_NUM_THREADS=1 .venv/bin/python tools/render_dfd_pretrain.py --out data/dfd_pretrain
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

READ_NOISE = 0.005
FOCUS_DISTANCE_M = 1.7
OUT_HW = (432, 640)  # about DFD's 432 x 645: the same blur in pixels for the same lens


def scenes(shared: str) -> list[tuple[str, str, int, bool]]:
    """(source, scene name, crop offset index, mirrored) for every pair to render."""
    from focaldepth.generate.rgbd import scene_names

    items = [("sevenscenes", name, 0, False) for name in scene_names("sevenscenes", "train", shared)]
    items += [("middlebury2014", name, offset, mirror)
              for name in scene_names("middlebury2014", "train", shared)
              for offset in (0, 1) for mirror in (False, True)]
    return items


def prepare(source: str, name: str, offset: int, mirror: bool, shared: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB and float32 depth (m, holes filled) at OUT_HW."""
    from focaldepth.generate.rgbd import fill_nearest, load_scene
    from focaldepth.io.rgbd import clean_depth_m

    extrinsic = (-0.022, 0.0, 0.0) if source == "sevenscenes" else (0.0, 0.0, 0.0)
    scene = load_scene(source, name, shared, extrinsic)
    rgb, depth = scene.rgb, scene.depth_m
    height, width = OUT_HW
    scale = max(height / rgb.shape[0], width / rgb.shape[1])
    size = (max(width, round(rgb.shape[1] * scale)), max(height, round(rgb.shape[0] * scale)))
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    depth = cv2.resize(fill_nearest(depth), size, interpolation=cv2.INTER_NEAREST)
    top = (rgb.shape[0] - height) * offset
    left = (rgb.shape[1] - width) * offset
    rgb, depth = rgb[top:top + height, left:left + width], depth[top:top + height, left:left + width]
    if mirror:
        rgb, depth = rgb[:, ::-1], depth[:, ::-1]
    return np.ascontiguousarray(rgb), clean_depth_m(np.ascontiguousarray(depth, np.float32), name)


def render_pair(rgb: np.ndarray, depth_m: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from focaldepth.datasets.dfd_indoor import F_NUMBER_SHARP, F_NUMBER_WIDE, camera
    from focaldepth.render import render_defocus

    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255.0)
    depth_t = torch.from_numpy(depth_m)[None, None]
    rng = np.random.default_rng([seed, 2027])
    out = []
    for f_number, gain in ((F_NUMBER_SHARP, rng.uniform(0.9, 1.1)), (F_NUMBER_WIDE, 1.0)):
        frame = render_defocus(image, depth_t, [FOCUS_DISTANCE_M], camera(rgb.shape[1]), f_number=f_number)[0]
        noisy = gain * frame.permute(1, 2, 0).numpy() + rng.normal(0.0, READ_NOISE, size=rgb.shape)
        out.append(np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from focaldepth.io.rgbd import default_shared_root, write_pairs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=default_shared_root())
    parser.add_argument("--out", type=Path, default=Path("data/dfd_pretrain"))
    parser.add_argument("--limit", type=int, default=None, help="render only the first N pairs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    items = scenes(str(args.shared))[:args.limit]
    for sub in ("f2.8", "f8", "depth_mm"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = []
    for index, (source, name, offset, mirror) in enumerate(items):
        stem = f"{index:04d}_{source}_{name.replace('/', '-')}_{offset}{'m' if mirror else ''}"
        rows.append({"f2.8": f"{stem}.png", "f8": f"{stem}.png", "depth_mm": f"{stem}.png"})
        if all((args.out / sub / f"{stem}.png").exists() for sub in ("f2.8", "f8", "depth_mm")):
            continue
        rgb, depth = prepare(source, name, offset, mirror, str(args.shared))
        sharp, wide = render_pair(rgb, depth, index)
        depth_mm = np.clip(np.rint(depth * 1000.0), 1, 65535).astype(np.uint16)
        for sub, array in (("f8", sharp), ("f2.8", wide), ("depth_mm", depth_mm)):
            tmp = args.out / sub / f".{stem}.tmp.png"
            Image.fromarray(array).save(tmp)
            os.replace(tmp, args.out / sub / f"{stem}.png")
        if index % 20 == 0:
            print(f"{index:4d}/{len(items)} {stem} {time.perf_counter() - start:.0f} s", flush=True)
    write_pairs(args.out, rows)
    print(f"done: {len(rows)} pairs in {args.out}, {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
