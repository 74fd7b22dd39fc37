"""Write a widened copy of a trained SweepNet vote (the same function, more channels at the
1/4-1/16 levels; :func:`focaldepth.models.sweepnet.widened`) as a model file to warm-start
a training run from (``init_from``).

  python tools/widen_vote.py --model src/focaldepth/weights/sweepnet_real_vote.pt \\
      --widths 12 24 48 64 --out runs/sweepnet_v9_init.pt
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from focaldepth import models
from focaldepth.models.sweepnet import widened


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model file of a vote-only SweepNet")
    parser.add_argument("--widths", type=int, nargs=4, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    narrow = models.load(args.model).eval()
    wide = widened(narrow, tuple(args.widths), seed=args.seed).eval()
    # Check on a random stack that nothing changed (the function is the same to rounding).
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(1, 5, 3, 64, 96, generator=generator)
    focus = torch.tensor([[0.5, 0.7, 1.0, 1.6, 4.0]])
    camera = torch.tensor([[0.004, 2.0, 2e-6]])
    with torch.no_grad():
        before, after = narrow(frames, focus, camera)["depth_m"], wide(frames, focus, camera)["depth_m"]
    change = float(((after - before).abs() / before).max())
    if change > 1e-4:
        raise SystemExit(f"widening changed the depth by up to {change:.2e} (relative): not saved")
    models.save(wide, args.out, widened_from=str(args.model), widths=list(args.widths), seed=args.seed,
                largest_relative_change=change)
    print(f"wrote {args.out}: {_count(wide):,} parameters "
          f"(from {_count(narrow):,}), depth changed by at most {change:.1e}")


if __name__ == "__main__":
    main()
