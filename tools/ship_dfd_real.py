"""Ship the DFD real-photo models (docs/dfd_real.md) into src/focaldepth/weights/ with their
model cards in ``extra["model_card"]``: the best-on-validation checkpoint of each fine-tuning
run of tools/run_dfd_real.sh, its resolved configs (both stages) and the wall time of both
stages read from the runs' summary.json.

    .venv/bin/python tools/ship_dfd_real.py [--runs runs/dfd_real]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "src" / "focaldepth" / "weights"

#: shipped name -> (input mode, what it is)
SHIPPED = {
    "d3net_dfd_indoor": ("wide", "D3-Net (narrow) on one real f/2.8 DSLR photo (D3Net's protocol)"),
    "aperture_pair_dfd_indoor": (
        "pair", "two-aperture depth from defocus: the f/8 and f/2.8 photos of one scene at one "
        "focus, per-frame f-number (D3-Net body, 8 input channels)"),
    "d3net_dfd_indoor_f8": (
        "sharp", "the same narrow D3-Net fed the f/8 photo (nearly all in focus): the paper's "
        "comparison, opt-in"),
}
INPUTS = {
    "wide": "one frame: the f/2.8 photo; meta.json focal_length_mm 35, f_number 2.8, "
            "sensor_width_mm 23.6, focus_distance_m [1.7]",
    "pair": "two frames [f/8, f/2.8]; meta.json f_number [8, 2.8], focus_distance_m [1.7, 1.7]",
    "sharp": "one frame: the f/8 photo; meta.json f_number 8, focus_distance_m [1.7]",
}
LICENCE = ("research use only: DFD indoor (Carvalho et al., 3DRW ECCV Workshops 2018) came "
           "without a licence from its authors; the weights are derived from it and carry its "
           "research terms (cite the paper). Code: the project's Apache-2.0.")


#: Stage-1 data of the runs with ``--suffix rgbd`` (configs/train/dfd_real_*rgbd_pretrain.yaml).
RGBD_STAGE1 = ("data/dfd_pretrain (tools/render_dfd_pretrain.py: f/8 and f/2.8 rendered with the DFD "
               "rig from 7-Scenes redkitchen training frames 0-799 (every 5th) and the Middlebury 2014 "
               "training scenes, 188 pairs; Microsoft 7-Scenes terms: non-commercial research use; "
               "Middlebury: free with citation) beside data/dfd_synth (f/2.8 rendered from the f/8 photo + "
               "Xtion depth of the DFD train scenes), 1,200 steps")


def card(name: str, mode: str, what: str, runs: Path, suffix: str = "") -> tuple[dict, Path, dict]:
    import yaml

    from focaldepth import models

    stages = {"pretrain": runs / f"dfd_real_{mode}{suffix}_pretrain", "finetune": runs / f"dfd_real_{mode}{suffix}"}
    summaries = {k: json.loads((v / "summary.json").read_text()) for k, v in stages.items()}
    configs = {k: yaml.safe_load((v / "config.yaml").read_text()) for k, v in stages.items()}
    best = stages["finetune"] / "checkpoints" / "best.pt"
    payload = models.read_checkpoint(best)
    model = models.load(best)
    seconds = {k: round(s["wall_time_s"], 1) for k, s in summaries.items()}
    data_stage1 = ("data/dfd_synth (tools/render_dfd_synthetic.py): f/2.8 rendered from the f/8 "
                   "photo + Xtion depth of the DFD train scenes with the real rig, focus 1.7 m, "
                   "effective f/2.99, disk PSF, linear light, read noise 0.005, 8 bits"
                   if mode != "sharp" else
                   "the f/8 photos of the DFD train scenes (the synthetic stage of the f/2.8 "
                   "models renders only f/2.8; f/8 frames are the photos themselves, so this "
                   "stage sees the same inputs as stage 2: same budget, same schedule)")
    if suffix == "rgbd":
        data_stage1 = RGBD_STAGE1
    return {
        "name": name,
        "what": what,
        "architecture": (f"{payload['arch']} {payload['kwargs']} "
                         f"({sum(p.numel() for p in model.parameters()):,} parameters; narrow for the CPU "
                         "budget: the paper's D3-Net is DenseNet-121 (blocks 6-12-24-16, growth "
                         "32), 24.2 M parameters, ImageNet-initialised; this one is random-"
                         "initialised)"),
        "input": INPUTS[mode],
        "working_resolution": "predict's: 645 x 432 -> 293 x 196 (padded to 320 x 224 inside), "
                              "depth upsampled to the input (guided)",
        "training_data": {
            "stage 1 (synthetic pre-training)": data_stage1,
            "stage 2 (fine-tuning)": "the real DFD indoor train scenes, ../shared/data/dfd_indoor_train "
                                     "pairs.csv order i % 6 in {1, 2, 4, 5} (54 scenes): real photo -> "
                                     "registered Xtion depth (<= 10 m)",
            "crops": "random 128 px crops + horizontal flips at the working resolution, batch 8",
            "loss": "masked L1 (m) + scale-invariant log (lambda 0.5)",
            "steps": {k: s["global_step"] for k, s in summaries.items()},
        },
        "chosen_on": (f"lowest validation loss (DFD validation scenes, i % 6 == 3, 13 scenes, "
                      f"192 px centre crops) over stage 2: step {payload['extra'].get('global_step')}"
                      f" (val loss {summaries['finetune']['best_val_loss']:.4f}); the test "
                      "scenes (i % 6 == 0) were never read in training or selection"),
        "cpu_hours": round(sum(seconds.values()) / 3600.0, 3),
        "wall_time_s": seconds,
        "cpu_hours_note": "single-thread wall clock on the project's shared 2-core machine "
                          "(other training and evaluation jobs sharing it), from the runs' summary.json",
        "licence": LICENCE,
        "results": "results/dfd_real/table.md (tools/dfd_real_table.py)",
    }, best, configs


def main(argv: list[str] | None = None) -> int:
    from focaldepth import models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "dfd_real")
    parser.add_argument("--names", nargs="+", default=list(SHIPPED))
    parser.add_argument("--suffix", default="", help="run-name suffix: rgbd = the larger pre-training (session 6)")
    args = parser.parse_args(argv)
    for name in args.names:
        mode, what = SHIPPED[name]
        model_card, best, configs = card(name, mode, what, args.runs, args.suffix)
        model = models.load(best)
        path = models.save(model, WEIGHTS / f"{name}.pt", model_card=model_card, config=configs)
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1e6:.2f} MB, "
              f"{model_card['cpu_hours']} CPU h, {model_card['chosen_on'][:90]}...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
