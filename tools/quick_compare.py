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

sys.path.insert(0, "tools")
from validation_sets import PROTOCOLS, scores_inside_beyond, stacks  # noqa: E402

from focaldepth.predict import load_model  # noqa: E402


def compare(models: dict, spec: str) -> None:
    rows: dict = {}
    seconds = {m: 0.0 for m in models}
    count = 0
    is_dfd = spec.startswith("dfd:")
    for n, stack in enumerate(stacks(spec)):
        group = PROTOCOLS[n % 3] if is_dfd else "all"
        frames, focus, camera = stack[:3]
        for name, model in models.items():
            start = time.perf_counter()
            with torch.no_grad():
                pred = model(frames, focus, camera)["depth_m"]
            seconds[name] += time.perf_counter() - start
            rows.setdefault((group, name), []).append(scores_inside_beyond(pred, stack))
        count += 1
    groups = sorted({g for g, _ in rows}, key=lambda g: (g == "all", g))
    print(spec, flush=True)
    for group in groups:
        print(f" {group}")
        for name in models:
            r = np.array(rows[(group, name)])
            with np.errstate(all="ignore"):
                print(f"  {name[-28:]:28s} AbsRel {r[:, 0].mean():.3f} d1 {r[:, 1].mean():.3f} "
                      f"inside {np.nanmean(r[:, 2]):.3f} outside {np.nanmean(r[:, 3]):.3f} "
                      f"(n_out {np.isfinite(r[:, 3]).sum()}/{len(r)}) s/stack {seconds[name] / count:.2f}",
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
