"""How close each procedural occlusion mode comes to Cycles on the same scenes, and what the
default model makes of each (validation scenes only: data/cpu_val_blender).

  sed 's/    backend: blender/    backend: procedural/' configs/data/cpu_val_blender.yaml > /tmp/aif.yaml
  sed 's/    backend: blender/    backend: procedural\\n    occlusion: complete/' configs/data/cpu_val_blender.yaml > /tmp/complete.yaml
  focaldepth generate --config /tmp/aif.yaml --out /tmp/cvb_aif
  focaldepth generate --config /tmp/complete.yaml --out /tmp/cvb_complete
  OMP_NUM_THREADS=1 python tools/occlusion_check.py data/cpu_val_blender /tmp/cvb_aif /tmp/cvb_complete \\
      --models sweepnet_default > results/occlusion_check.txt

The three folders hold the same scenes, cameras, focus distances and sensor-noise draws; only
the renderer differs (Cycles path tracing; layered from the all-in-focus image; layered from
complete surfaces).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from focaldepth.data import FocusSweepDataset
from focaldepth.metrics import depth_metrics
from focaldepth.predict import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cycles")
    parser.add_argument("aif")
    parser.add_argument("complete")
    parser.add_argument("--models", default="sweepnet_default")
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sets = {name: FocusSweepDataset(path, num_frames=args.frames, sample="ramp", random_crop=False)
            for name, path in (("cycles", args.cycles), ("aif", args.aif), ("complete", args.complete))}
    count = len(sets["cycles"])
    print(f"# OMP_NUM_THREADS=1 python tools/occlusion_check.py {args.cycles} {args.aif} {args.complete} "
          f"--models {args.models}  ({count} scenes, {args.frames} frames)")
    print("## mean |Cycles frame - layered frame| (0-255), per frame index (near focus ... far focus)")
    for name in ("aif", "complete"):
        per_frame = np.zeros(args.frames)
        for i in range(count):
            a, b = sets["cycles"][i]["frames"].numpy(), sets[name][i]["frames"].numpy()
            per_frame += np.abs(a - b).mean(axis=(1, 2, 3)) * 255.0 / count
        print(f"{name:9s} all {per_frame.mean():.3f}  per frame {' '.join(f'{x:.3f}' for x in per_frame)}")
    print("## model scores on each rendering of the same scenes (mean over scenes)")
    for model_name in args.models.split(","):
        model = load_model(model_name).eval()
        for name, dataset in sets.items():
            rows = []
            for i in range(count):
                item = dataset[i]
                with torch.no_grad():
                    pred = model(item["frames"][None], item["focus_distance_m"][None], item["camera"][None])["depth_m"]
                metrics = depth_metrics(pred, item["depth_m"][None], item["valid"][None])
                rows.append([float(metrics["absrel"]), float(metrics["delta1"])])
            r = np.array(rows)
            print(f"{model_name[-30:]:30s} {name:9s} AbsRel {r[:, 0].mean():.3f} d1 {r[:, 1].mean():.3f}")


if __name__ == "__main__":
    main()
