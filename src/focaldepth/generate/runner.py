"""Running a procedural generation job: ``make_one`` for the procedural scenes, the config
check of the output folder, and the dispatch of ``generator: rgbd`` configs to
:mod:`focaldepth.generate.rgbd`. Sharding, resuming, workers and the summary are
:mod:`focaldepth.generate.jobs` (shared with the RGB-D generator; its names are re-exported here).
"""

from __future__ import annotations

import os
from pathlib import Path

from focaldepth.errors import UserError
from focaldepth.generate.config import GenerateConfig, dump_config, load_config, read_yaml_file
from focaldepth.generate.jobs import (
    Shard,
    Summary,
    check_counts,
    parse_shard,
    record_config,
    run_job,
    shard_indices,
)
from focaldepth.generate.rgbd import RgbdConfig, run_rgbd
from focaldepth.generate.storage import make_record, sequence_filename, write_sequence

__all__ = ["Shard", "Summary", "default_workers", "is_rgbd_config", "make_one", "parse_shard",
           "prepare_out_dir", "run_generate", "shard_indices"]


# --- worker --------------------------------------------------------------------------------


def make_one(config: GenerateConfig, out_dir: Path, index: int) -> int:
    """Generate and write sequence ``index``; returns its number of frames."""
    from focaldepth.scenes.pools import split_pools
    from focaldepth.scenes.sequence import generate_sequence

    pools = split_pools(config.split_seed)[config.split]
    data = generate_sequence(config.scene, pools, config.seed, index)
    record = make_record(data, index, config.seed, config.split, config.split_seed)
    write_sequence(out_dir / sequence_filename(index), data, record)
    return int(data.frames.shape[0])


# --- the job -------------------------------------------------------------------------------


def prepare_out_dir(config: GenerateConfig, out_dir: Path) -> None:
    """Create ``out_dir`` and record the config; refuse a directory made with another config."""
    record_config(out_dir, dump_config(config),
                  lambda path: load_config(path).fingerprint() == config.fingerprint())


def run_generate(config: GenerateConfig | str | Path, out_dir: str | Path, *, num: int | None = None,
                 shard: Shard | str | None = None, workers: int = 1, contact_sheet: str | Path | None = None,
                 progress: bool = True) -> Summary:
    """Generate (or finish generating) this shard's part of a dataset; see the module doc.
    A config with ``generator: rgbd`` is run by :mod:`focaldepth.generate.rgbd` (sweeps from
    real RGB-D images, same storage format)."""
    if not isinstance(config, GenerateConfig) and is_rgbd_config(config):
        return run_rgbd(config, out_dir, num=num, shard=shard, workers=workers, contact_sheet=contact_sheet,
                        progress=progress)
    if not isinstance(config, GenerateConfig):
        config = load_config(config)
    shard = shard if isinstance(shard, Shard) else parse_shard(shard)
    num_sequences = config.num_sequences if num is None else num
    check_counts(num_sequences, workers)
    out_dir = Path(out_dir)
    prepare_out_dir(config, out_dir)
    return run_job(make_one, config, out_dir, shard_indices(num_sequences, shard), workers=workers,
                   contact_sheet=contact_sheet, progress=progress)


def is_rgbd_config(config: object) -> bool:
    """Whether ``config`` (a path or a loaded config) is an RGB-D sweep config (``generator: rgbd``)."""
    if isinstance(config, RgbdConfig):
        return True
    if not isinstance(config, (str, Path)):
        return False
    try:
        mapping = read_yaml_file(config)
    except UserError:
        return False  # load_config reports the problem
    return isinstance(mapping, dict) and mapping.get("generator") == "rgbd"


def default_workers() -> int:
    """One worker per available core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
