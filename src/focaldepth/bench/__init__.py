"""Benchmarks: speed and memory, always beside a fixed reference workload.

Timings from different machines (or from one busy machine at different moments) only
compare as ratios: every benchmark reports its own figures *and* the time of the fixed
torch workload of :mod:`focaldepth.bench.reference` measured in the same process, so a
figure like "frame time / reference time" carries over between machines.

This module holds the shared helpers: a median-of-N timer, peak resident memory of a
block of code, and a description of the machine (platform, CPU, torch build and threads,
load average at the start).
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch


def timed_runs(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls (the
    first call pays one-off costs: MKL/FFT plans, page faults of fresh allocations)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def summarise_seconds(seconds: list[float]) -> dict[str, Any]:
    """Median (the figure to quote: robust to a neighbour's burst of load), min, max, runs."""
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "runs_s": [round(s, 6) for s in seconds],
    }


# --- memory ------------------------------------------------------------------------------


def _status_kib(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (Linux), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS: writing 5 to
    /proc/self/clear_refs (Linux >= 4.0). Returns False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def process_peak_rss_mib() -> float:
    """Peak resident memory of this process since it started, MiB (getrusage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux and in bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass
class PeakMemory:
    """Result of :func:`peak_memory`: peak RSS during the block and RSS before it, MiB.

    ``scope`` says what ``peak_rss_mib`` covers: "block" when the kernel's peak mark could
    be reset at the start of the block (Linux), else "process" (peak since process start,
    an upper bound). torch's CPU tensors live outside Python's allocator, so tracemalloc
    would not see them: resident memory is the honest measure.
    """

    rss_before_mib: float = 0.0
    peak_rss_mib: float = 0.0
    scope: str = "process"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def peak_increase_mib(self) -> float:
        return max(0.0, self.peak_rss_mib - self.rss_before_mib)

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "rss_before_mib": round(self.rss_before_mib, 1),
            "peak_increase_mib": round(self.peak_increase_mib, 1),
            "scope": self.scope,
        }


@contextlib.contextmanager
def peak_memory() -> Iterator[PeakMemory]:
    """Measure the peak resident memory of the block: ``with peak_memory() as mem: ...``."""
    result = PeakMemory()
    rss_kib = _status_kib("VmRSS")
    result.rss_before_mib = rss_kib / 1024 if rss_kib is not None else process_peak_rss_mib()
    result.scope = "block" if _reset_peak_rss() else "process"
    try:
        yield result
    finally:
        hwm_kib = _status_kib("VmHWM") if result.scope == "block" else None
        result.peak_rss_mib = hwm_kib / 1024 if hwm_kib is not None else process_peak_rss_mib()


# --- machine -----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def platform_info() -> dict[str, Any]:
    """What the figures were measured on. The load average matters on shared machines:
    other processes on the same cores slow everything down, the reference included."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "mkl": bool(torch.backends.mkl.is_available()),
        "cuda": torch.cuda.is_available(),
        "load_average_1_5_15min": load,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
