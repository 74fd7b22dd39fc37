"""Build the v8 model files: v7 with a confidence that ranks its errors better.

v7's confidence is the analytic fusion's mix of the vote's spread and the plane sweep's peak
sharpness. On the synthetic v2 test stacks its most confident half scored worse than all
pixels (results/confidence.md). v8 multiplies it by the agreement of the two independent
estimates, ``exp(-|vote - physics| / sweep step)`` (``models/hybrid.agreement``). On the two
validation sets this was the best of the candidates in tools/confidence_candidates.py
(results/default_selection/confidence_candidates.txt):
- cpu_val_v2: most confident half 0.379 -> 0.355, AUSE 0.198 -> 0.169;
- DFD pairs[3::6]: 0.081 -> 0.073, AUSE 0.049 -> 0.038.

No weights change and no depth changes: smoothing is off in v7, and SweepNet-T's filter reads
the fusion's own confidence (``fusion_confidence``). ``tests/models/test_shipped_hybrids.py``
checks that v8's depth equals v7's.

  python tools/build_default_v8.py --out src/focaldepth/weights/sweepnet_default_v8.pt \
      --temporal-out src/focaldepth/weights/sweepnet_temporal_v8.pt
"""
from __future__ import annotations

import argparse

from focaldepth import models
from focaldepth.predict import shipped_weights_path

CANDIDATES = "results/default_selection/confidence_candidates.txt"


def with_agreement(name: str) -> tuple[models.DepthModel, dict]:
    """The shipped ``name`` rebuilt with ``confidence_agreement`` on, and its checkpoint."""
    path = str(shipped_weights_path(name))
    shipped = models.read_checkpoint(path)
    kwargs = dict(shipped["kwargs"])
    if shipped["arch"] == "sweepnet_temporal":
        kwargs["observer_kwargs"] = {**kwargs["observer_kwargs"], "confidence_agreement": True}
    else:
        kwargs["confidence_agreement"] = True
    model = models.create(shipped["arch"], **kwargs)
    model.load_state_dict(models.load(path).state_dict(), strict=True)
    return model, shipped


def card_v8(v7_card: dict, name: str) -> dict:
    return {
        **v7_card,
        "name": name,
        "what": f"{v7_card['name']} with its confidence multiplied by the agreement of the vote and the "
                "plane sweep, exp(-|vote - physics| / sweep step); same weights, same depth",
        "cpu_hours": _plus(v7_card.get("cpu_hours"), 0.1),
        "confidence_chosen_on": "AbsRel of the most confident 50 % and AUSE on data/cpu_val_v2 (every 2nd "
                                "10-frame ramp) and DFD pairs[3::6] (cover/inner/wide): 0.379 -> 0.355 and "
                                f"0.081 -> 0.073 ({CANDIDATES}); test sets never consulted",
    }


def _plus(hours, extra: float):
    """Add the candidate scoring's CPU hours to a card's figure (a number or a breakdown)."""
    if isinstance(hours, dict):
        return {**hours, "confidence candidates (2 validation sets, 1 thread)": extra}
    return round(float(hours or 0.0) + extra, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--temporal-out", help="also write SweepNet-T over v8 here")
    args = parser.parse_args()
    model, shipped = with_agreement("sweepnet_default_v7")
    card = card_v8(shipped["extra"]["model_card"], "sweepnet_default_v8")
    models.save(model, args.out, **{**shipped["extra"], "model_card": card})
    print(f"wrote {args.out}")
    if args.temporal_out:
        temporal, shipped_t = with_agreement("sweepnet_temporal_v7")
        t_card = shipped_t["extra"]["model_card"]
        temporal_card = {**card_v8(t_card, "sweepnet_temporal_v8"), "observer": card,
                         "how_chosen": "no new training: sweepnet_temporal_v7 whose output confidence is "
                                       "multiplied by the current window's agreement; the filter and depth "
                                       "are v7's"}
        models.save(temporal, args.temporal_out, **{**shipped_t["extra"], "model_card": temporal_card})
        print(f"wrote {args.temporal_out}")


if __name__ == "__main__":
    main()
