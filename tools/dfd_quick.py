"""Quick per-protocol comparison on DFD validation scenes (pairs[OFFSET::EVERY], never the DFD
test table's pairs[0::6]): AbsRel, δ1, and AbsRel inside / outside the sweep, per method.

  OMP_NUM_THREADS=1 python tools/dfd_quick.py METHODS [EVERY] [OFFSET] [FRAMES]
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, "tools")
from validation_sets import dfd_sweeps, PROTOCOLS  # noqa: E402

from focaldepth.metrics import depth_metrics, absrel  # noqa: E402
from focaldepth.predict import load_model  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    methods = sys.argv[1].split(",")
    every = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    offset = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    frames_n = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    models = {m: load_model(m).eval() for m in methods}
    rows: dict = {}
    seconds = {m: 0.0 for m in methods}
    for n, stack in enumerate(dfd_sweeps(every, offset, frames_n)):
        protocol = PROTOCOLS[n % 3]
        frames, focus, camera, gt, valid = stack
        near, far = float(focus.min()), float(focus.max())
        outside = (gt < near) | (gt > far)
        for name, model in models.items():
            start = time.perf_counter()
            with torch.no_grad():
                pred = model(frames, focus, camera)["depth_m"]
            seconds[name] += time.perf_counter() - start
            pred = F.interpolate(pred, size=gt.shape[-2:], mode="bilinear")
            m = depth_metrics(pred, gt, valid)
            ins = float(absrel(pred, gt, valid & ~outside)[0])
            out = float(absrel(pred, gt, valid & outside)[0]) if (valid & outside).sum() > 0.01 * valid.sum() else np.nan
            rows.setdefault((protocol, name), []).append([float(m["absrel"]), float(m["delta1"]), ins, out])
    for protocol in PROTOCOLS:
        print(protocol)
        for name in methods:
            r = np.array(rows[(protocol, name)])
            print(f"  {name[-28:]:28s} AbsRel {r[:,0].mean():.3f} d1 {r[:,1].mean():.3f} "
                  f"in {np.nanmean(r[:,2]):.3f} out {np.nanmean(r[:,3]):.3f} (n_out {np.isfinite(r[:,3]).sum()})")
    allr = {name: np.array([x for p in PROTOCOLS for x in rows[(p, name)]]) for name in methods}
    print("all")
    for name, r in allr.items():
        print(f"  {name[-28:]:28s} AbsRel {r[:,0].mean():.3f} d1 {r[:,1].mean():.3f} s/stack {seconds[name]/len(r):.2f}")


if __name__ == "__main__":
    main()
