"""Register 7-Scenes redkitchen depth into its colour view with focaldepth.capture.register
and measure how well depth discontinuities meet colour edges, before and after.

    OMP_NUM_THREADS=1 python tools/sevenscenes_registration.py [--shared ../shared] \
        [--out results/capture/sevenscenes_registration.json]

Depth camera fx = fy = 585, cx = 320, cy = 240 (the dataset's camera-intrinsics.txt); colour
camera fx = fy = 525 at the centre (Kinect v1, not shipped with the data); depth-to-colour
translation t_x swept, -0.022 m being generate.rgbd's estimate. Edge alignment
(focaldepth.capture.register.edge_alignment): for each depth-discontinuity pixel (>5 % jump)
more than 40 px inside the image, the distance to the nearest Canny edge of the colour image,
truncated at 10 px; mean over pixels, then over frames 0, 50, ..., 950.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from focaldepth.capture.register import centred_intrinsics, edge_alignment, register_depth
from focaldepth.io.atomic import atomic_write_json, atomic_write_text

FRAMES = tuple(range(0, 1000, 50))
T_X_M = (-0.04, -0.03, -0.022, -0.015, -0.01, 0.0, 0.01, 0.02)
BORDER_PX = 40


def load(root: Path, frame: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    stem = root / f"frame-{frame:06d}"
    rgb = cv2.cvtColor(cv2.imread(f"{stem}.color.jpg"), cv2.COLOR_BGR2RGB)
    raw = cv2.imread(f"{stem}.depth.png", cv2.IMREAD_UNCHANGED)
    return rgb, np.where((raw > 0) & (raw < 65535), raw / 1000.0, np.nan).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default="../shared")
    parser.add_argument("--out", default="results/capture/sevenscenes_registration.json")
    args = parser.parse_args()
    root = Path(args.shared) / "data" / "rgbd" / "7scenes_redkitchen"
    K_depth = np.loadtxt(root / "camera-intrinsics.txt")
    mask = np.zeros((480, 640), bool)
    mask[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX] = True
    rows: dict[str, list[list[float]]] = {"unregistered": []}
    rows.update({f"t_x={t:+.3f}": [] for t in T_X_M})
    coverage = []
    started = time.perf_counter()
    for frame in FRAMES:
        rgb, depth = load(root, frame)
        a = edge_alignment(rgb, depth, mask)
        rows["unregistered"].append([a.mean_px, a.median_px, a.within_2px])
        for t_x in T_X_M:
            registered = register_depth(depth, K_depth, centred_intrinsics(525.0, 640, 480), None,
                                        (t_x, 0.0, 0.0), (480, 640))
            a = edge_alignment(rgb, registered, mask)
            rows[f"t_x={t_x:+.3f}"].append([a.mean_px, a.median_px, a.within_2px])
            if t_x == -0.022:
                coverage.append(float(np.isfinite(registered).mean()))
    summary = {name: {"mean_px": float(np.mean([r[0] for r in v])), "median_px": float(np.mean([r[1] for r in v])),
                      "within_2px": float(np.mean([r[2] for r in v]))} for name, v in rows.items()}
    result = {"frames": list(FRAMES), "colour_focal_px": 525.0, "depth_K": K_depth.tolist(),
              "border_px": BORDER_PX, "summary": summary, "per_frame_mean_px": {k: [r[0] for r in v] for k, v in rows.items()},
              "registered_coverage_t_x=-0.022": float(np.mean(coverage)),
              "seconds": round(time.perf_counter() - started, 1),
              "command": "OMP_NUM_THREADS=1 python tools/sevenscenes_registration.py"}
    atomic_write_json(args.out, result)
    lines = ["| depth map | mean distance to a colour edge (px, capped at 10) | median (px) | within 2 px |",
             "|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['mean_px']:.2f} | {s['median_px']:.2f} | {s['within_2px']:.3f} |")
    atomic_write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
