"""What the vote's slice cap (``predict --max-slices``, default 10) costs in accuracy: every
validation stack scored with all of its frames and with the frames :func:`select_slices`
keeps under a smaller cap (spread evenly in dioptres, the newest always kept), on
validation data only.

  OMP_NUM_THREADS=1 python tools/slice_cap.py sweepnet_default data/cpu_val_v2:10:2 6 8 \\
      > results/default_selection/slice_cap.txt
"""
from __future__ import annotations

import sys

import numpy as np
import torch

sys.path.insert(0, "tools")
from validation_sets import stacks  # noqa: E402

from focaldepth.metrics import depth_metrics  # noqa: E402
from focaldepth.predict import load_model, select_slices  # noqa: E402


def main(model_name: str, spec: str, caps: list[int]) -> None:
    torch.set_num_threads(1)
    model = load_model(model_name).eval()
    rows: dict[str, list] = {}
    count = 0
    for frames, focus, camera, depth, valid in stacks(spec):
        count += 1
        for cap in [None, *caps]:
            keep = select_slices(focus[0].tolist(), cap)
            with torch.no_grad():
                pred = model(frames[:, keep], focus[:, keep], camera)["depth_m"]
            metrics = depth_metrics(pred, depth, valid)
            rows.setdefault("all" if cap is None else str(cap), []).append(
                [float(metrics[k]) for k in ("absrel", "rmse", "delta1")] + [len(keep)])
    print(f"# OMP_NUM_THREADS=1 python tools/slice_cap.py {model_name} {spec} {' '.join(map(str, caps))}"
          f"  ({count} stacks)")
    for name, values in rows.items():
        r = np.array(values)
        print(f"slices {name:>4s} (mean {r[:, 3].mean():.1f} read): AbsRel {r[:, 0].mean():.4f} "
              f"RMSE {r[:, 1].mean():.3f} d1 {r[:, 2].mean():.4f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(c) for c in sys.argv[3:]])
