"""Write the vote inside a shipped fused default (state-dict keys under ``net.``) as a sweepnet
model file, so a training config can continue it with ``init_from``.

  python tools/extract_vote.py --model sweepnet_default_v9 --out runs/v9_vote.pt
"""
from __future__ import annotations

import argparse

from focaldepth import models
from focaldepth.predict import shipped_weights_path


def extract_vote(shipped_name: str, prefix: str = "net.") -> models.DepthModel:
    """The sweepnet vote of the shipped ``shipped_name``: same widths, same tensors."""
    shipped = models.read_checkpoint(str(shipped_weights_path(shipped_name)))
    widths = tuple(int(w) for w in shipped["kwargs"]["widths"])
    vote = models.create("sweepnet", widths=widths)
    state = {k[len(prefix):]: v for k, v in shipped["state_dict"].items() if k.startswith(prefix)}
    vote.load_state_dict(state, strict=True)
    return vote


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a shipped fused default, e.g. sweepnet_default_v9")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    models.save(extract_vote(args.model), args.out,
                model_card={"name": "vote of " + args.model, "what": f"the vote (net.*) of {args.model}"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
