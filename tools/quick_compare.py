"""Quick comparison on validation data only: AbsRel, δ1, and AbsRel inside / outside the swept
focus range (outside: pixels nearer than the nearest or up to twice as far as the farthest
focus), per method and, for DFD, per sweep protocol. SPEC as in tools/validation_sets.py:
``dfd:EVERY:OFFSET`` (DFD validation scenes: never offset 0 with every 6, the DFD test table's)
or ``FOLDER:FRAMES[:STEP]``.

  OMP_NUM_THREADS=1 python tools/quick_compare.py METHODS SPEC [SPEC ...]
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, "tools")
from validation_sets import PROTOCOLS, stacks  # noqa: E402

from focaldepth.metrics import depth_metrics, absrel  # noqa: E402
from focaldepth.predict import load_model  # noqa: E402


def compare(models: dict, spec: str) -> None:
    rows: dict = {}
    seconds = {m: 0.0 for m in models}
    is_dfd = spec.startswith("dfd:")
    for n, stack in enumerate(stacks(spec)):
        group = PROTOCOLS[n % 3] if is_dfd else "all"
        frames, focus, camera, gt, valid = stack
        near, far = float(focus.min()), float(focus.max())
        outside = ((gt < near) | (gt > far)) & (gt <= 2 * far)
        inside = (gt >= near) & (gt <= far)
        for name, model in models.items():
            start = time.perf_counter()
            with torch.no_grad():
                pred = model(frames, focus, camera)["depth_m"]
            seconds[name] += time.perf_counter() - start
            if pred.shape[-2:] != gt.shape[-2:]:
                pred = F.interpolate(pred, size=gt.shape[-2:], mode="bilinear")
            m = depth_metrics(pred, gt, valid)
            ins = float(absrel(pred, gt, valid & inside)[0]) if (valid & inside).any() else np.nan
            enough = (valid & outside).sum() > 0.01 * valid.sum()
            out = float(absrel(pred, gt, valid & outside)[0]) if enough else np.nan
            rows.setdefault((group, name), []).append([float(m["absrel"]), float(m["delta1"]), ins, out])
    groups = sorted({g for g, _ in rows}, key=lambda g: (g == "all", g))
    print(spec, flush=True)
    for group in groups:
        print(f" {group}")
        for name in models:
            r = np.array(rows[(group, name)])
            with np.errstate(all="ignore"):
                print(f"  {name[-28:]:28s} AbsRel {r[:, 0].mean():.3f} d1 {r[:, 1].mean():.3f} "
                      f"inside {np.nanmean(r[:, 2]):.3f} outside {np.nanmean(r[:, 3]):.3f} "
                      f"(n_out {np.isfinite(r[:, 3]).sum()}/{len(r)}) s/stack {seconds[name] / len(r) * (3 if is_dfd else 1):.2f}",
                      flush=True)
    if is_dfd:
        print(" all")
        for name in models:
            r = np.array([x for g in groups for x in rows[(g, name)]])
            print(f"  {name[-28:]:28s} AbsRel {r[:, 0].mean():.3f} d1 {r[:, 1].mean():.3f}", flush=True)


def main() -> None:
    torch.set_num_threads(1)
    models = {m: load_model(m).eval() for m in sys.argv[1].split(",")}
    for spec in sys.argv[2:]:
        compare(models, spec)


if __name__ == "__main__":
    main()
