"""results/temporal.md from the temporal evaluations in results/temporal/ (one command).

Inputs: ``results/temporal/<model>_<set>.json`` written by ``tools/eval_temporal.py`` (models
scored through predict's streaming path) and, if present, ``results/temporal/training_summary.json``
and ``training_log.jsonl`` (copied from the run folder by ``--run``).

  python tools/temporal_table.py [--run runs/sweepnet_temporal]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

RESULTS = Path("results/temporal")
OUT = Path("results/temporal.md")
#: sets in table order, and what they are for (DEVELOPERS.md: choose on validation only)
SETS = (("cpu_val_v2", "validation (model selection)"), ("cpu_test_v2", "test (held out, reported)"),
        ("cpu_test", "test, 5-frame ramps (held out, reported)"))
MODEL_ORDER = ("sweepnet_default_v3", "sweepnet_temporal", "sweepnet_default_v6", "sweepnet_temporal_v6",
               "sweepnet_default_v7", "sweepnet_temporal_v7", "sweepnet_temporal_v8")
#: (per-window model, its temporal wrapper): the pairs the verdict compares
PAIRS = (("sweepnet_default_v3", "sweepnet_temporal"), ("sweepnet_default_v6", "sweepnet_temporal_v6"),
         ("sweepnet_default_v3", "sweepnet_temporal_v6"), ("sweepnet_default_v7", "sweepnet_temporal_v7"),
         ("sweepnet_default_v3", "sweepnet_temporal_v7"))
#: confidence ranking of the streamed output (eval_temporal since session 9; "–" for older runs)
CONFIDENCE = (("absrel_top50", "AbsRel most confident 50 %", "{:.3f}"),)
DYNAMIC = (("absrel", "AbsRel", "{:.3f}"), *CONFIDENCE, ("delta1", "δ<1.25", "{:.1%}"),
           ("temporal_err_rel", "frame-to-frame error", "{:.3f}"), ("tae", "TAE uncapped", "{:.4f}"),
           ("tae_capped", "TAE", "{:.4f}"))
STATIC = (("absrel", "AbsRel", "{:.3f}"), *CONFIDENCE, ("delta1", "δ<1.25", "{:.1%}"),
          ("flicker_rel", "frame-to-frame flicker", "{:.3f}"),
          ("sweep_change_rel", "sweep-to-sweep change", "{:.2%}"),
          ("sweep_within_1pct", "pixels within 1 %", "{:.1%}"))


def fmt(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def load(set_name: str) -> list[dict]:
    found = {}
    for path in sorted(RESULTS.glob(f"*_{set_name}.json")):
        data = json.loads(path.read_text())
        # the file name names the model: "sweepnet_default" was v3 until session 4, and its
        # files were renamed sweepnet_default_v3_* (the same weights, byte for byte)
        data["label"] = path.name[: -len(f"_{set_name}.json")]
        found[data["label"]] = data
    order = [m for m in MODEL_ORDER if m in found] + sorted(m for m in found if m not in MODEL_ORDER)
    return [found[m] for m in order]


def table(rows: list[dict], group: str, columns) -> list[str]:
    head = "| model | sequences | " + " | ".join(c[1] for c in columns) + " | ms/frame |"
    lines = [head, "|" + "---|" * (len(columns) + 3)]
    for data in rows:
        summary = data["summary"].get(group)
        if not summary:
            continue
        cells = [fmt(summary.get(key), pattern) for key, _, pattern in columns]
        lines.append(f"| `{data['label']}` | {summary['sequences']} | " + " | ".join(cells)
                     + f" | {1000 * summary['latency_s']:.0f} |")
    return lines


def verdict(rows: list[dict]) -> list[str]:
    by_name = {d["label"]: d["summary"] for d in rows}
    lines = []
    for base_name, temporal_name in PAIRS:
        base, temporal = by_name.get(base_name), by_name.get(temporal_name)
        if not base or not temporal or "dynamic" not in base or "dynamic" not in temporal:
            continue
        ratio = temporal["dynamic"]["temporal_err_rel"] / base["dynamic"]["temporal_err_rel"]
        d_abs = temporal["dynamic"]["absrel"] - base["dynamic"]["absrel"]
        s_abs = temporal["static"]["absrel"] - base["static"]["absrel"]
        lines += [f"`{temporal_name}` vs `{base_name}`: moving scenes: frame-to-frame error {ratio:.2f}x "
                  f"(target <= 0.5x: {'met' if ratio <= 0.5 else 'missed'}); AbsRel "
                  f"{temporal['dynamic']['absrel']:.3f} vs {base['dynamic']['absrel']:.3f} ({d_abs:+.3f}). "
                  f"Static scenes: AbsRel {temporal['static']['absrel']:.3f} vs {base['static']['absrel']:.3f} "
                  f"({s_abs:+.3f}); sweep-to-sweep change {temporal['static']['sweep_change_rel']:.2%} vs "
                  f"{base['static']['sweep_change_rel']:.2%} (target < 1 %: "
                  f"{'met' if temporal['static']['sweep_change_rel'] < 0.01 else 'missed'}).", ""]
    return lines[:-1]


def training_section() -> list[str]:
    path = RESULTS / "training_summary.json"
    if not path.exists():
        return []
    summary = json.loads(path.read_text())
    hours = {}
    weights = Path("src/focaldepth/weights/sweepnet_temporal.pt")
    if weights.exists():  # the shipped card holds the whole budget (caches, earlier stage)
        from focaldepth.models import read_checkpoint

        hours = read_checkpoint(weights)["extra"]["model_card"]["cpu_hours_detail"]
    budget = (f"CPU time (one thread, wall clock on the shared 2-core machine): caching the observations "
              f"{hours['cache_observations_h']:.2f} h, training the cell {hours['train_cell_h']:.2f} h "
              f"(a first stage of {hours['earlier_stage_s'] / 3600:.2f} h, `training_stage1_log.jsonl`, then "
              f"this run from its last epoch)." if hours else
              f"Wall time {summary['wall_time_s'] / 3600:.2f} h on one thread.")
    lines = ["## Training of `sweepnet_temporal`", "",
             f"Fusion cell only (observer = `{summary['observer']}`, frozen); {summary['train_clips']} cached "
             f"clips of `data/cpu_train_v3`, {summary['epochs']} epochs, {summary['steps']} optimiser steps, "
             f"loss `{summary['loss']}`, crops {summary['crop']} px. {budget} Chosen: epoch "
             f"{summary['best_epoch']} ({summary['selection']}).", ""]
    log = RESULTS / "training_log.jsonl"
    if log.exists():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        lines += ["| epoch | val dynamic AbsRel | val dynamic frame-to-frame | val static AbsRel |",
                  "|---|---|---|---|"]
        for row in rows:
            lines.append(f"| {row['epoch']} | {row.get('dynamic/fused/absrel', float('nan')):.3f} | "
                         f"{row.get('dynamic/fused/temporal_err_rel', float('nan')):.3f} | "
                         f"{row.get('static/fused/absrel', float('nan')):.3f} |")
        if rows:
            first = rows[0]
            lines += ["", f"Per-window observation on the same cached validation clips: dynamic AbsRel "
                      f"{first.get('dynamic/observed/absrel', float('nan')):.3f}, frame-to-frame "
                      f"{first.get('dynamic/observed/temporal_err_rel', float('nan')):.3f}, static AbsRel "
                      f"{first.get('static/observed/absrel', float('nan')):.3f} (working grid, "
                      "validation subset: every dynamic clip and 12 static ones). The epoch numbers were "
                      "computed with the fusion rules of their time: stage 1 without the rule that a filling "
                      "window's estimate is the observation, both stages with partial windows still carrying "
                      "weight; the shipped model has both rules (`models/temporal.py`), and the tables above "
                      "are its numbers."]
        lines.append("")
    return lines


def command_of(data: dict) -> str:
    """The recorded command; for a file renamed after its run (``sweepnet_default`` was v3),
    with a note saying which model it ran and the command that reruns it today."""
    recorded = data["command"]
    if data["label"] == Path(data["model"]).stem:
        return recorded
    rerun = recorded.replace(f"--model {data['model']} ", f"--model {data['label']} ").replace(
        f"results/temporal/{data['model']}_", f"results/temporal/{data['label']}_")
    return f"{rerun}  # recorded as `--model {data['model']}` (then {data['label']})"


def render() -> str:
    lines = ["# Temporal model vs per-window default (issue 11, parts 1 and 6)", "",
             "Generated by `python tools/temporal_table.py` from `results/temporal/*.json`",
             "(`tools/eval_temporal.py`). Every model runs through `predict`'s streaming path",
             "(`StreamingPredictor`: one-ramp windows, DIS flow, motion-compensated windows, guided",
             "upsampling to the input resolution). Frames with an estimate (from the second on).",
             "Frame-to-frame error: mean |(p_t - w(p_{t-1})) - (g_t - w(g_{t-1}))| / g_t along the",
             "ground-truth flow w (`metrics.temporal_stability`); TAE: `metrics.temporal_alignment_error`",
             "with the aligned depth clipped at the clip's largest true depth, as Video Depth Anything",
             "clips at a dataset's cap (session 10; \"–\" for runs before). \"TAE uncapped\" is the",
             "earlier figure: a per-video disparity fit with a negative shift sends a few per cent of",
             "the pixels to 1000 m, which made single clips reach TAE 2.8-5.2 (a metric artefact).",
             "Static sequences (one ramp: 10 frames in the v2 sets, 5 in cpu_test) are replayed as 3 sweeps",
             "with fresh noise (std 2/255); sweep-to-sweep change: mean |p_t - p_{t-R}| / p_{t-R} for a",
             "ramp of R frames, the earlier frame with a full window.",
             "ms/frame: median `push` latency of each run, from different sessions, machine speeds and",
             "loads (often two evaluations at once): not a speed comparison (docs/speed.md is).", ""]
    for set_name, role in SETS:
        rows = load(set_name)
        if not rows:
            continue
        lines += [f"## `data/{set_name}`: {role}", "", "Moving scenes:", ""]
        lines += table(rows, "dynamic", DYNAMIC)
        lines += ["", "Static scenes, repeated sweeps:", ""]
        lines += table(rows, "static", STATIC)
        lines += [""] + verdict(rows) + ["", "Commands:", ""]
        lines += [f"    {command_of(d)}" for d in rows] + [""]
    lines += training_section()
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="copy summary.json and log.jsonl of this training run first")
    args = parser.parse_args(argv)
    if args.run:
        shutil.copyfile(Path(args.run) / "summary.json", RESULTS / "training_summary.json")
        shutil.copyfile(Path(args.run) / "log.jsonl", RESULTS / "training_log.jsonl")
    from focaldepth.io.atomic import atomic_write_text

    atomic_write_text(OUT, render())
    print(OUT)


if __name__ == "__main__":
    main()
