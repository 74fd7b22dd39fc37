"""Synthetic f/2.8 photos of the DFD indoor scenes, for pre-training the real-photo models
(docs/dfd_real.md): each scene's f/8 photo and Xtion depth (holes filled nearest, 5x5 median,
as the renderer check) rendered with the real rig (35 mm, 23.6 mm sensor over 645 px, focus
1.7 m) at the effective f/2.99 (f/2.8 minus the f/8 blur the photo already has, in
quadrature: focaldepth.experiments.realcheck.effective_f_number), disk PSF, 32 layers, linear
light, then Gaussian read noise (sigma 0.005) and 8 bits.

The output folder has the shared layout (pairs.csv in the same order, so the project's split
i % 6 applies unchanged): ``f2.8/NAME.png`` rendered, ``f8/`` and ``depth_mm/`` symbolic links
to the real folders. Only the scenes of ``--splits`` are rendered (default: train and val);
pairs.csv lists every scene, and a test scene without its rendered file cannot be read by
accident (``DFDCrops`` raises on the missing file).

    OMP_NUM_THREADS=1 .venv/bin/python tools/render_dfd_synthetic.py --out data/dfd_synth
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

READ_NOISE = 0.005
FOCUS_DISTANCE_M = 1.7


def render_scene(pair, seed: int) -> np.ndarray:
    from focaldepth.datasets.dfd_indoor import F_NUMBER_SHARP, F_NUMBER_WIDE, camera
    from focaldepth.experiments.realcheck import effective_f_number
    from focaldepth.io.frames import read_image
    from focaldepth.io.rgbd import clean_depth_m, read_dfd_depth_m
    from focaldepth.render import render_defocus

    sharp = read_image(pair.sharp_path)
    depth, valid = read_dfd_depth_m(pair.depth_path)
    filled = clean_depth_m(np.where(valid, depth, np.nan), pair.depth_path)
    image = torch.from_numpy(sharp).permute(2, 0, 1)[None].float().div(255.0)
    depth_t = torch.from_numpy(np.ascontiguousarray(filled, np.float32))[None, None]
    f_number = effective_f_number(F_NUMBER_WIDE, F_NUMBER_SHARP)
    wide = render_defocus(image, depth_t, [FOCUS_DISTANCE_M], camera(sharp.shape[1]),
                          f_number=f_number)[0]
    rng = np.random.default_rng([seed, 2026])
    noisy = wide.permute(1, 2, 0).numpy() + rng.normal(0.0, READ_NOISE, size=sharp.shape)
    return np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from focaldepth.generate.rgbd import dfd_split
    from focaldepth.io.rgbd import default_shared_root, list_pairs, write_pairs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_shared_root() / "data" / "dfd_indoor_train")
    parser.add_argument("--out", type=Path, default=Path("data/dfd_synth"))
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pairs = list_pairs(args.data)
    (args.out / "f2.8").mkdir(parents=True, exist_ok=True)
    for sub in ("f8", "depth_mm"):
        link = args.out / sub
        if not link.exists():
            os.symlink((args.data / sub).resolve(), link)
    start = time.perf_counter()
    rows = []
    for index, pair in enumerate(pairs):
        name = f"{pair.name}.png"
        rows.append({"f2.8": name, "f8": pair.sharp_path.name, "depth_mm": pair.depth_path.name})
        target = args.out / "f2.8" / name
        if dfd_split(index) not in args.splits or target.exists():
            continue
        tmp = target.with_name(f".{name}.tmp.png")
        Image.fromarray(render_scene(pair, index)).save(tmp)
        os.replace(tmp, target)
        print(f"{index:3d} {dfd_split(index):5s} {name} {time.perf_counter() - start:.0f} s", flush=True)
    write_pairs(args.out, rows)
    print(f"done: {len(pairs)} scenes listed, splits {args.splits} rendered, "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
