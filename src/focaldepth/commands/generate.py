"""`focaldepth generate`: make a synthetic focus-sweep dataset from a config file.

    focaldepth generate --config configs/data/seed_train.yaml --out data/seed_train
        [--num N] [--shard i/n] [--workers K] [--contact-sheet sheet.png] [--quiet]

Deterministic from the config's seed (byte-identical files for any --shard/--workers),
resumable (rerun the same command after a kill), shardable over machines (see
:mod:`focaldepth.generate.jobs`). File format: :mod:`focaldepth.generate.storage`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[Path, typer.Option(
    "--config", help="Dataset config (YAML), e.g. configs/data/seed_train.yaml.")]
OutOption = Annotated[Path, typer.Option(
    "--out", help="Output directory (created; an unfinished run there is resumed).")]
NumOption = Annotated[int | None, typer.Option(
    "--num", help="Number of sequences (default: the config's num_sequences).")]
ShardOption = Annotated[str | None, typer.Option(
    "--shard", help="Make only shard i of n (i/n, 0-based): the indices k with k % n == i. "
    "Run all n anywhere (job array, several machines) with the same --out.")]
WorkersOption = Annotated[int, typer.Option("--workers", help="Worker processes (one core each).")]
SheetOption = Annotated[Path | None, typer.Option(
    "--contact-sheet", help="Also write a PNG of the first few sequences (frames, depth, CoC).")]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]


def generate(config: ConfigOption, out: OutOption, num: NumOption = None, shard: ShardOption = None,
             workers: WorkersOption = 1, contact_sheet: SheetOption = None, quiet: QuietOption = False) -> None:
    """Generate a synthetic focus-sweep dataset: one HDF5 file per sequence plus
    manifest.jsonl; deterministic from the config's seed, resumable and shardable."""
    from focaldepth.generate.runner import run_generate

    summary = run_generate(config, out, num=num, shard=shard, workers=workers, contact_sheet=contact_sheet,
                           progress=not quiet)
    for line in summary.lines():
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add `generate` to the app."""
    app.command("generate")(generate)
