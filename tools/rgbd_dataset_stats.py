"""Summary of a dataset made by focaldepth.generate.rgbd, from its manifest.jsonl: sequences per
source, scenes used, protocols, metric share, camera and blur distributions, unknown-depth and
beyond-sweep fractions (the figures quoted in docs/rgbd_training_data.md).

    python tools/rgbd_dataset_stats.py data/rgbd_train data/rgbd_val
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def summarise(folder: Path) -> str:
    records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    params = [r["params"] for r in records]
    camera = [r["camera"] for r in records]
    lines = [(f"{folder}: {len(records)} sequences, {sum(r['num_frames'] for r in records)} frames, "
              f"{records[0]['height']}x{records[0]['width']}, split {records[0]['split']}")]
    sources = Counter(p["source"] for p in params)
    scenes = {s: len({p["scene"].split("/")[0] for p in params if p["source"] == s}) for s in sources}
    lines.append("  sources: " + ", ".join(f"{s} {n} ({scenes[s]} scenes)" for s, n in sorted(sources.items())))
    lines.append("  protocols: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(p["protocol"] for p in params).items())))
    lines.append(f"  real distances (metric): {sum(p['metric'] for p in params)}")

    def quartiles(values) -> str:
        q = np.percentile(values, [5, 25, 50, 75, 95])
        return " / ".join(f"{v:.3g}" for v in q)

    lines.append("  percentiles 5/25/50/75/95:")
    lines.append(f"    focal length mm   {quartiles([c['focal_length_mm'] for c in camera])}")
    lines.append(f"    f-number          {quartiles([c['f_number'] for c in camera])}")
    lines.append(f"    sensor width mm   {quartiles([c['sensor_width_mm'] for c in camera])}")
    lines.append(f"    scene near m      {quartiles([p['scene_near_m'] for p in params])}")
    lines.append(f"    scene far m       {quartiles([p['scene_far_m'] for p in params])}")
    lines.append(f"    target blur px    {quartiles([p['target_max_coc_px'] for p in params])}")
    lines.append(f"    max CoC px        {quartiles([p['max_coc_px'] for p in params])}")
    lines.append(f"    valid fraction    {quartiles([p['valid_fraction'] for p in params])}")
    lines.append(f"    beyond sweep      {quartiles([p['outside_sweep_fraction'] for p in params])}")
    return "\n".join(lines)


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(summarise(Path(argument)))
