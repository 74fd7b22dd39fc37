"""The job machinery both generators share (procedural scenes: :mod:`focaldepth.generate.runner`,
sweeps from real RGB-D: :mod:`focaldepth.generate.rgbd`): shards, resuming, one-thread workers,
progress, manifest and summary. It knows nothing of either generator: each passes its
``make_one(config, out_dir, index) -> frames`` function.

Determinism. Sequence ``i`` depends only on the config and ``i`` (its random streams
come from ``SeedSequence([seed, i])``), never on the shard, the worker or the order of
work; every worker runs torch on one thread, so the floating-point results (and the
files) are the same for any ``--workers``.

Sharding. ``--shard i/n`` (0 <= i < n) makes this run own the indices ``k`` with
``k % n == i`` (round robin, so every shard gets the same mix of static and dynamic
sequences). The n shards cover every index exactly once; run them anywhere (a job
array, Ray, several machines on a shared file system) with the same config and
``--out``. Each shard rewrites ``manifest.jsonl`` from the files present when it
finishes; after all shards are done, one more run without ``--shard`` (it finds every
sequence finished and generates nothing) writes the complete manifest.

Resuming. A sequence file is written under a temporary name and renamed when complete,
so an existing ``seq_NNNNNN.h5`` is always whole and is skipped; temporary files left by
a killed run are deleted. ``DIR/config.yaml`` records the config: resuming into a
directory made with a different config is refused rather than mixing two datasets.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from focaldepth.errors import UserError
from focaldepth.generate.storage import (
    CONFIG_NAME,
    finished_sequences,
    rebuild_manifest,
    temporary_files,
)
from focaldepth.io.atomic import atomic_write_text

#: ``make_one(config, out_dir, index)`` generates and writes sequence ``index``; returns its frames.
MakeOne = Callable[[Any, Path, int], int]


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def owns(self, sequence_index: int) -> bool:
        return sequence_index % self.count == self.index


def parse_shard(text: str | None) -> Shard:
    """``"i/n"`` with 0 <= i < n (``None`` means the whole dataset, ``0/1``)."""
    if text is None:
        return Shard(0, 1)
    parts = text.split("/")
    try:
        index, count = int(parts[0]), int(parts[1])
        if len(parts) != 2:
            raise ValueError
    except (ValueError, IndexError):
        raise UserError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text}: need 0 <= i < n")
    return Shard(index, count)


def shard_indices(num_sequences: int, shard: Shard) -> list[int]:
    """The sequence indices a shard owns."""
    return [k for k in range(num_sequences) if shard.owns(k)]


@dataclass(frozen=True)
class Summary:
    out_dir: Path
    owned: int  # sequences this shard owns
    generated: int  # made by this run
    skipped: int  # already finished before this run
    frames: int  # frames made by this run
    seconds: float
    manifest: Path
    manifest_sequences: int  # sequences listed in the manifest (all shards)
    contact_sheet: Path | None = None

    @property
    def sequences_per_s(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        text = [(f"generated {self.generated} sequences ({self.frames} frames) in {self.seconds:.1f} s: "
                 f"{self.sequences_per_s:.2f} sequences/s, {self.frames_per_s:.1f} frames/s"),
                f"skipped {self.skipped} already finished; this shard owns {self.owned}",
                f"manifest: {self.manifest} ({self.manifest_sequences} sequences)"]
        if self.contact_sheet is not None:
            text.append(f"contact sheet: {self.contact_sheet}")
        return text


def record_config(out_dir: Path, config_text: str, same_config: Callable[[Path], bool]) -> None:
    """Create ``out_dir`` and write ``config_text`` as its config file; refuse a directory whose
    config file ``same_config`` does not accept (a dataset made with another config)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError("--out exists and is not a directory", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / CONFIG_NAME
    if config_path.exists() and not same_config(config_path):
        raise UserError(f"this directory holds a dataset made with a different config ({config_path}); "
                        "use another --out or the same config", out_dir)
    atomic_write_text(config_path, config_text)


def check_counts(num_sequences: int, workers: int) -> None:
    if num_sequences < 1:
        raise UserError(f"--num must be >= 1, got {num_sequences}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")


# --- workers -------------------------------------------------------------------------------

_WORKER: tuple[MakeOne, Any, Path] | None = None


def _init_worker(make_one: MakeOne, config: Any, out_dir: Path) -> None:
    global _WORKER
    import cv2
    import torch

    torch.set_num_threads(1)  # one thread per worker: identical numerics for any --workers
    cv2.setNumThreads(1)
    _WORKER = (make_one, config, out_dir)


def _worker_make(index: int) -> tuple[int, int]:
    assert _WORKER is not None
    make_one, config, out_dir = _WORKER
    return index, make_one(config, out_dir, index)


def _run_in_process(make_one: MakeOne, config: Any, out_dir: Path, todo: list[int]) -> Iterator[tuple[int, int]]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for index in todo:
            yield index, make_one(config, out_dir, index)
    finally:
        torch.set_num_threads(threads)


def _run_in_pool(make_one: MakeOne, config: Any, out_dir: Path, todo: list[int],
                 workers: int) -> Iterator[tuple[int, int]]:
    # "spawn": safe with torch's thread pools (fork after threads were started can hang).
    # make_one must be a module-level function (it is pickled by name).
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(make_one, config, out_dir)) as pool:
        yield from pool.imap_unordered(_worker_make, todo, chunksize=1)


# --- the job -------------------------------------------------------------------------------


def run_job(make_one: MakeOne, config: Any, out_dir: Path, owned: Sequence[int], *, workers: int = 1,
            contact_sheet: str | Path | None = None, progress: bool = True, desc: str = "generate") -> Summary:
    """Make the sequences of ``owned`` not yet finished in ``out_dir`` (whose config is already
    recorded), then rewrite the manifest and optionally a contact sheet."""
    from tqdm import tqdm

    done = finished_sequences(out_dir)
    for index in owned:  # leftovers of a killed run (only ours: other shards may be writing)
        for leftover in temporary_files(out_dir, index):
            leftover.unlink(missing_ok=True)
    todo = [k for k in owned if k not in done]
    start = time.perf_counter()
    frames = 0
    bar = tqdm(total=len(owned), initial=len(owned) - len(todo), unit="seq", desc=desc,
               disable=not progress, dynamic_ncols=True, smoothing=0.1)
    try:
        if todo:
            runs = (_run_in_process(make_one, config, out_dir, todo) if workers == 1 or len(todo) == 1
                    else _run_in_pool(make_one, config, out_dir, todo, min(workers, len(todo))))
            for _, num_frames in runs:
                frames += num_frames
                bar.update(1)
                bar.set_postfix(frames_per_s=f"{frames / max(time.perf_counter() - start, 1e-9):.1f}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    manifest, listed = rebuild_manifest(out_dir)
    sheet = None
    if contact_sheet is not None:
        from focaldepth.generate.contact_sheet import write_contact_sheet

        sheet = write_contact_sheet(out_dir, contact_sheet)
    return Summary(out_dir, len(owned), len(todo), len(owned) - len(todo), frames, seconds, manifest, listed, sheet)
