"""DFD real-photo model variants on the DFD indoor VALIDATION scenes (pairs.csv i % 6 == 3, 13
scenes; the test scenes are never read), through predict's path as tools/dfd_real_table.py
scores the shipped models, beside a constant depth (the training scenes' median). For choosing
between training variants (resolution, cue, registration) without touching the test split.

    OMP_NUM_THREADS=1 .venv/bin/python tools/dfd_real_variants.py \\
        --variants NAME=CHECKPOINT_OR_SHIPPED:MODE ... --out results/dfd_real/variants_val.txt

MODE is the input: wide (f/2.8), sharp (f/8) or pair (f/8 + f/2.8).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dfd_real_table as table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from focaldepth.datasets.dfd_indoor import FOCUS_DISTANCE_M, DFDIndoorPair
    from focaldepth.io.atomic import atomic_write_text
    from focaldepth.io.rgbd import default_shared_root
    from focaldepth.predict import load_model, set_threads

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_shared_root() / "data" / "dfd_indoor_train")
    parser.add_argument("--variants", nargs="+", required=True, help="NAME=MODEL:MODE")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    set_threads(1)
    val = DFDIndoorPair(args.data, split="val")
    samples = [val.sample(i) for i in range(len(val))]
    median_m = table.training_median_m(args.data)
    lines = [f"DFD indoor validation scenes ({len(samples)}), predict's path, mean over scenes; "
             f"constant = {median_m:.2f} m (training median)",
             f"{'variant':34s} {'input':6s} " + " ".join(f"{k:>7s}" for k in table.SHOWN)]
    constant = [table.scene_metrics(np.full(s.depth_m.shape, median_m, np.float32), s) for s in samples]
    rows = [("constant", "none", constant)]
    for spec in args.variants:
        name, rest = spec.split("=", 1)
        model_name, mode = rest.rsplit(":", 1)
        model = load_model(model_name)
        metrics = []
        for sample in samples:
            frames, f_numbers = table.frames_for(sample, mode)
            metrics.append(table.scene_metrics(table.predict_depth(model, frames, f_numbers, FOCUS_DISTANCE_M), sample))
        rows.append((name, mode, metrics))
        print(name, {k: round(float(np.mean([m[k] for m in metrics])), 3) for k in table.SHOWN}, flush=True)
    for name, mode, metrics in rows:
        lines.append(f"{name:34s} {mode:6s} " + " ".join(f"{np.mean([m[k] for m in metrics]):7.3f}" for k in table.SHOWN))
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
