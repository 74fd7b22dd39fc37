"""Does confidence mean something? AbsRel of all pixels, of the most confident half, and of the
best half by true error (the oracle), plus AUSE (area between the sparsification curve and the
oracle's), read from the ``confidence`` section that ``focaldepth evaluate`` writes into each
``results/default/*/metrics.json`` (per image, then the mean over images).

  python tools/confidence_table.py > results/confidence.md
"""
from __future__ import annotations

import json
from pathlib import Path

SETS = (("cpu_test_v2_10f", "synthetic v2, 10 frames"), ("cpu_test_5f", "synthetic v1, 5 frames"),
        ("cpu_test_blender_v2_8f", "Cycles v2, 8 frames"), ("cpu_test_blender_5f", "Cycles, 5 frames"))
METHODS = (("sweepnet_default", "SweepNet default (v8)"), ("sweepnet_default_v7", "SweepNet v7 (same depth)"),
           ("sweepnet_default_v6", "SweepNet v6"),
           ("sweepnet_default_v3", "SweepNet v3"),
           ("sweepnet_default_v4", "SweepNet+physics (v4, opt-in)"),
           ("classical", "Classical DFF"))


def main() -> None:
    print("| data | model | AbsRel all | AbsRel most confident 50 % | AbsRel oracle 50 % | AUSE (AbsRel) |")
    print("|---|---|---|---|---|---|")
    for set_name, set_label in SETS:
        for method, label in METHODS:
            path = Path("results/default") / f"{method}_{set_name}" / "metrics.json"
            if not path.is_file():
                continue
            conf = json.loads(path.read_text()).get("confidence")
            if not conf:
                continue
            print(f"| {set_label} | {label} | {conf['absrel_all']:.3f} | {conf['absrel_top50']:.3f} | "
                  f"{conf['absrel_oracle_top50']:.3f} | {conf['ause_absrel']:.3f} |")
    print("\nAll stacks (static and dynamic), flow-aligned as `predict` does; `tools/evaluate_default.sh` "
          "writes the metrics, `python tools/confidence_table.py > results/confidence.md` this table.")


if __name__ == "__main__":
    main()
