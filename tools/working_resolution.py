"""Working resolution from measured accuracy against speed, on validation data only (issue 10).

``focaldepth predict`` resizes every frame to a pixel budget (``--max-pixels``) before the
model sees it. A small budget is fast but averages away the fine texture that carries the focus
cue on real photographs; a large one keeps it at a cost that grows with the pixel count. This
tool measures both on the DFD indoor validation scenes (``pairs[3::6]``, never the test table),
with the real DSLR's 5-frame sweeps rendered at full resolution (645x432) and resized as
predict does, for each model and budget: mean AbsRel and δ<1.25 against the full-resolution
ground truth (predictions upsampled bilinearly) and seconds per stack (one thread).

  OMP_NUM_THREADS=1 python tools/working_resolution.py \
      --models sweepnet_default sweepnet_default_v4 classical \
      --budgets 57600 102400 160000 278640 --out results/default_selection/working_resolution.md
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validation_sets import PROTOCOLS, dfd_sweeps, scores_inside_beyond  # noqa: E402

from focaldepth.io.atomic import atomic_write_text  # noqa: E402
from focaldepth.predict import load_model  # noqa: E402

DFD_PIXELS = 645 * 432


def measure(models: dict, budgets: list[int], every: int, offset: int) -> dict:
    rows: dict = {}
    for budget in budgets:
        scale = min(1.0, math.sqrt(budget / DFD_PIXELS))
        for index, stack in enumerate(dfd_sweeps(every, offset, scale=scale)):
            frames, focus, camera = stack[:3]
            for name, model in models.items():
                start = time.perf_counter()
                with torch.inference_mode():
                    pred = model(frames, focus, camera)["depth_m"]
                seconds = time.perf_counter() - start
                entry = rows.setdefault((name, budget), {"scores": [], "seconds": [], "hw": frames.shape[-2:]})
                entry["scores"].append(scores_inside_beyond(pred, stack) + [PROTOCOLS.index(PROTOCOLS[index % 3])])
                entry["seconds"].append(seconds)
            print(f"budget {budget} stack {index}", flush=True)
    return rows


def table(rows: dict, models: list[str], budgets: list[int], command: str, every: int, offset: int) -> str:
    num_scenes = len(rows[(models[0], budgets[0])]["scores"]) // len(PROTOCOLS)
    lines = ["# Working resolution: accuracy against speed on DFD validation scenes",
             "", f"`{command}`", "",
             f"DFD indoor scenes `pairs[{offset}::{every}]` ({num_scenes} scenes x cover / inner / wide 5-frame sweeps "
             "of the real 35 mm f/2.8 DSLR), rendered at 645x432 and resized to the budget with area "
             "averaging; scored at full resolution. Seconds per 5-frame stack on one thread of a shared "
             "2-core machine (compare within this table only).", "",
             "| model | budget (px) | grid | AbsRel | δ<1.25 | AbsRel cover / inner / wide | s per stack |",
             "|---|---|---|---|---|---|---|"]
    for name in models:
        for budget in budgets:
            entry = rows[(name, budget)]
            scores = np.array(entry["scores"])
            per = " / ".join(f"{scores[scores[:, 4] == p, 0].mean():.3f}" for p in range(3))
            h, w = entry["hw"]
            lines.append(f"| {name} | {budget:,} | {w}x{h} | {scores[:, 0].mean():.3f} | {scores[:, 1].mean():.3f} "
                         f"| {per} | {np.median(entry['seconds']):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["sweepnet_default", "classical"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[57_600, 102_400, 160_000, DFD_PIXELS])
    parser.add_argument("--every", type=int, default=6)
    parser.add_argument("--offset", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.every == 6 and args.offset == 0:
        parser.error("pairs[0::6] is the DFD test table: choose on validation scenes only")
    torch.set_num_threads(1)
    models = {name: load_model(name).eval() for name in args.models}
    rows = measure(models, args.budgets, args.every, args.offset)
    command = "python tools/working_resolution.py " + " ".join(sys.argv[1:])
    atomic_write_text(args.out, table(rows, args.models, args.budgets, command, args.every, args.offset))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
