"""The fixed torch reference workload every benchmark is measured beside.

One run = 20 repetitions of (a 3x3, 64 -> 64 channel convolution of a 1x64x256x256 tensor
plus a 1024x1024 by 1024x1024 matrix product), float32 on the CPU, deterministic inputs.
Its time captures what dominates our own workloads (dense convolution and GEMM through
torch's CPU kernels, memory bandwidth, threads), so "benchmark time / reference time"
compares across machines and across moments of load on a shared machine.

NEVER change this workload: old figures would stop comparing with new ones. If it must
change, bump :data:`WORKLOAD_ID` so result files say which reference they were divided by.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from focaldepth.bench import summarise_seconds, timed_runs

WORKLOAD_ID = "conv3x3_64x256x256+matmul1024_x20_float32_v1"
REPETITIONS = 20
DEFAULT_RUNS = 3


def _make_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1234)
    features = torch.rand(1, 64, 256, 256, generator=generator)
    weight = torch.randn(64, 64, 3, 3, generator=generator) * 0.05
    left = torch.rand(1024, 1024, generator=generator)
    right = torch.rand(1024, 1024, generator=generator)
    return features, weight, left, right


def _workload(features: torch.Tensor, weight: torch.Tensor, left: torch.Tensor,
              right: torch.Tensor) -> float:
    checksum = 0.0
    with torch.inference_mode():
        for _ in range(REPETITIONS):
            checksum += float(F.conv2d(features, weight, padding=1)[0, 0, 0, 0])
            checksum += float((left @ right)[0, 0])
    return checksum  # read back so no backend can skip the work


def reference_workload(runs: int = DEFAULT_RUNS, warmup: int = 1) -> dict[str, Any]:
    """Time the reference workload: ``seconds`` is the median of ``runs`` runs after
    ``warmup`` untimed ones; also min/max, every run, and the torch thread count."""
    inputs = _make_inputs()
    seconds = timed_runs(lambda: _workload(*inputs), repeats=runs, warmup=warmup)
    summary = summarise_seconds(seconds)
    return {
        "workload": WORKLOAD_ID,
        "seconds": summary["median_s"],
        "min_s": summary["min_s"],
        "max_s": summary["max_s"],
        "runs_s": summary["runs_s"],
        "torch_threads": torch.get_num_threads(),
    }
