"""Data-generation throughput: sequences/s and frames/s at 256x256, and peak memory.

Workload: the scene distribution of ``configs/data/seed_train.yaml`` (256x256, 2x2
anti-aliasing, 5-15 objects, 24 render layers, disk PSF), one torch thread per process as
``focaldepth generate`` runs it. Cases:

* ``static stack``: a static scene rendered as one 5-frame near -> far focal stack (the
  issue's target: "well under a second per core");
* ``dynamic sweep``: a moving scene, 25 frames (5 ramps of 5), each frame ray-cast,
  given flow ground truth and rendered from its own image and depth;
* ``generate --workers K``: end to end through ``run_generate`` (scene + render + noise +
  HDF5 write), the config's static/dynamic mix, with 1 worker and with one worker per core.

Every case reports seconds per sequence (median and best), sequences/s, frames/s and
peak resident memory; the fixed reference workload (:mod:`focaldepth.bench.reference`) is
timed before and after in the same process, and ``sequence_time_over_reference`` makes the
figures comparable across machines. Run:

    python -m focaldepth.bench.generate --out benchmarks/generate.json
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from focaldepth.bench import peak_memory, platform_info, summarise_seconds
from focaldepth.bench.reference import reference_workload
from focaldepth.generate.config import GENERATOR_VERSION, GenerateConfig, load_config
from focaldepth.scenes.pools import split_pools
from focaldepth.scenes.sequence import generate_sequence

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "data" / "seed_train.yaml"
TARGET_STACKS = 10_000  # the "10,000-stack training set"


def _with_dynamic_fraction(config: GenerateConfig, fraction: float) -> GenerateConfig:
    scene = dataclasses.replace(config.scene, motion=dataclasses.replace(config.scene.motion,
                                                                         dynamic_fraction=fraction))
    return dataclasses.replace(config, scene=scene)


def _sequence_case(name: str, config: GenerateConfig, indices: list[int], warmup: int) -> dict[str, Any]:
    """Time ``generate_sequence`` (no file writing) on one thread."""
    pools = split_pools(config.split_seed)[config.split]
    for index in range(warmup):  # FFT plans, allocator, imports
        generate_sequence(config.scene, pools, config.seed, 10_000 + index)
    seconds, frames = [], []
    with peak_memory() as memory:
        for index in indices:
            start = time.perf_counter()
            data = generate_sequence(config.scene, pools, config.seed, index)
            seconds.append(time.perf_counter() - start)
            frames.append(int(data.frames.shape[0]))
    summary = summarise_seconds(seconds)
    frames_per_sequence = statistics.median(frames)
    return {
        "name": name, "workers": 1, "height": config.scene.resolution[0], "width": config.scene.resolution[1],
        "sequences": len(indices), "frames_per_sequence": frames_per_sequence,
        "seconds_per_sequence": summary,
        "sequences_per_s": 1.0 / summary["median_s"], "sequences_per_s_best": 1.0 / summary["min_s"],
        "frames_per_s": frames_per_sequence / summary["median_s"],
        "frames_per_s_best": frames_per_sequence / summary["min_s"],
        "memory": memory.to_dict(),
    }


def _generate_case(config: GenerateConfig, num: int, workers: int) -> dict[str, Any]:
    """Time ``run_generate`` end to end (files written to a temporary folder)."""
    from focaldepth.generate.runner import run_generate

    with tempfile.TemporaryDirectory(prefix="focaldepth-bench-") as out, peak_memory() as memory:
        summary = run_generate(config, out, num=num, workers=workers, progress=False)
        bytes_written = sum(p.stat().st_size for p in Path(out).glob("seq_*.h5"))
    # Pool workers are child processes: their peak RSS is the children's rusage.
    children_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "name": f"generate --workers {workers}", "workers": workers,
        "height": config.scene.resolution[0], "width": config.scene.resolution[1],
        "sequences": summary.generated, "frames": summary.frames, "seconds": summary.seconds,
        "frames_per_sequence": summary.frames / summary.generated,
        "sequences_per_s": summary.sequences_per_s, "frames_per_s": summary.frames_per_s,
        "mib_per_sequence": bytes_written / summary.generated / 2**20,
        "memory": {**memory.to_dict(), "largest_worker_peak_rss_mib": round(children_peak_mib, 1)
                   if workers > 1 else None},
    }


def run(config_path: str | Path = CONFIG, *, static_sequences: int = 8, dynamic_sequences: int = 3,
        end_to_end_sequences: int = 8, workers: tuple[int, ...] = (1, 2), warmup: int = 1,
        reference_runs: int = 3) -> dict[str, Any]:
    """Run the generation benchmark and return JSON-ready results (see the module doc)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every generate worker does
    try:
        config = load_config(config_path)
        platform = platform_info()
        before = reference_workload(runs=reference_runs)
        cases = [
            _sequence_case("static stack", _with_dynamic_fraction(config, 0.0),
                           list(range(static_sequences)), warmup),
            _sequence_case("dynamic sweep", _with_dynamic_fraction(config, 1.0),
                           list(range(dynamic_sequences)), warmup),
        ]
        for count in workers:
            cases.append(_generate_case(config, end_to_end_sequences, count))
        after = reference_workload(runs=reference_runs, warmup=0)
        platform["load_average_after"] = platform_info()["load_average_1_5_15min"]
    finally:
        torch.set_num_threads(threads)
    reference_runs_s = before["runs_s"] + after["runs_s"]
    reference_s = statistics.median(reference_runs_s)
    for case in cases:
        seconds_per_sequence = 1.0 / case["sequences_per_s"]
        case["sequence_time_over_reference"] = seconds_per_sequence / reference_s
        # The yardstick: hours for 10,000 sequences of this kind at this rate.
        case["hours_for_10000"] = TARGET_STACKS * seconds_per_sequence / 3600
    return {
        "benchmark": "generate",
        "description": "procedural data generation at 256x256 (configs/data/seed_train.yaml scenes); "
                       "static stack = 5 frames, dynamic sweep = 25 frames; one torch thread per "
                       "worker; sequence_time_over_reference = seconds per sequence / reference seconds",
        "generator_version": GENERATOR_VERSION,
        "config": str(Path(config_path).name),
        "platform": platform,
        "reference": {"workload": before["workload"], "seconds": reference_s, "best_s": min(reference_runs_s),
                      "runs_s": reference_runs_s, "torch_threads": before["torch_threads"]},
        "results": cases,
    }


def table_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """Human-readable rows for a table."""
    rows = []
    for case in result["results"]:
        rows.append({
            "case": f"{case['name']} {case['width']}x{case['height']} ({case['frames_per_sequence']:.0f} frames)",
            "s/seq": f"{1.0 / case['sequences_per_s']:.2f}",
            "seq/s": f"{case['sequences_per_s']:.2f}",
            "frames/s": f"{case['frames_per_s']:.1f}",
            "h/10k": f"{case['hours_for_10000']:.1f}",
            "seq/ref": f"{case['sequence_time_over_reference']:.2f}",
            "RSS MiB": f"{case['memory']['peak_rss_mib']:.0f}",
        })
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here (atomically)")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--quick", action="store_true", help="a smoke run (figures not meaningful)")
    args = parser.parse_args(argv)
    if args.quick:
        result = run(args.config, static_sequences=1, dynamic_sequences=1, end_to_end_sequences=2,
                     workers=(1,), warmup=0, reference_runs=1)
    else:
        result = run(args.config)
    for row in table_rows(result):
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    print(f"reference {result['reference']['workload']}: {result['reference']['seconds']:.3f} s")
    if args.out is not None:
        from focaldepth.io.atomic import atomic_write_json

        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
