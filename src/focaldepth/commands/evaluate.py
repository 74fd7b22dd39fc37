"""`focaldepth evaluate` (metrics of a model on a test set) and `focaldepth tables` (results
tables from evaluation outputs).

    focaldepth evaluate --checkpoint runs/X/checkpoints/best.pt|...ckpt|classical
        --data data/test --out results/X [--num-frames 4] [--device cpu] [--crop-size N]
        [--align] [--quiet]
    focaldepth tables [--spec configs/tables.yaml] [--out results/tables.md]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

CheckpointOption = Annotated[str, typer.Option(
    "--checkpoint", help="A training checkpoint (.ckpt), an exported model file (.pt), the name "
    "of a shipped model (sweepnet_default), or 'classical' for the classical depth-from-focus "
    "baseline.")]
DataOption = Annotated[Path, typer.Option("--data", help="Test folder made by `focaldepth generate`, or "
    "NAME:PATH of a published dataset (ddff12, fod500, dfd_indoor, nyuv2_d3net, hci, ...; "
    "docs/datasets.md).")]
EvalOutOption = Annotated[Path, typer.Option(
    "--out", help="Output folder (metrics.json, per_sequence.csv, metrics.md, "
    "error_vs_depth.png, sheet.png).")]
FramesOption = Annotated[int | None, typer.Option(
    "--num-frames", help="Frames per focal stack (default: the training config's, else 4).")]
DeviceOption = Annotated[str, typer.Option("--device", help="torch device: cpu, cuda:0, ...")]
SplitOption = Annotated[str | None, typer.Option("--split", help="Dataset split, if any.")]
CropOption = Annotated[int | None, typer.Option(
    "--crop-size", help="Centre crop of the test frames (default: full frames).")]
TemporalOption = Annotated[bool, typer.Option(
    "--temporal/--no-temporal", help="Temporal stability on the dynamic sequences.")]
MarginOption = Annotated[float | None, typer.Option(
    "--valid-range-margin", help="Score only pixels within the stack's focus range widened by "
    "this fraction (0.25 = the models' output range) (default: every pixel with ground truth).")]
AlignOption = Annotated[bool, typer.Option(
    "--align/--no-align", help="Warp every stack onto its last frame with optical flow (OpenCV "
    "DIS) first, as `focaldepth predict` does (default: raw frames, as the committed tables).")]
QuietOption = Annotated[bool, typer.Option(
    "--quiet", help="No progress bars (also off whenever stderr is not a terminal, e.g. a log "
    "file).")]
SheetOption = Annotated[int, typer.Option("--sheet", min=0, help="Sequences shown in sheet.png.")]
SpecOption = Annotated[Path, typer.Option(
    "--spec", help="Table spec: which results files form which rows.")]
TablesOutOption = Annotated[Path | None, typer.Option(
    "--out", help="Markdown file to write (default: print to stdout).")]
TableNamesOption = Annotated[list[str] | None, typer.Option(
    "--table", help="Only these tables (repeatable).")]
StrictOption = Annotated[bool, typer.Option("--strict", help="Fail if a results file is missing.")]


def _fmt(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def register(app: typer.Typer) -> None:
    """Add ``focaldepth evaluate`` and ``focaldepth tables``."""

    @app.command("evaluate")
    def evaluate_command(checkpoint: CheckpointOption, data: DataOption, out: EvalOutOption,
                         num_frames: FramesOption = None, device: DeviceOption = "cpu",
                         split: SplitOption = None, crop_size: CropOption = None,
                         temporal: TemporalOption = True,
                         valid_range_margin: MarginOption = None, sheet: SheetOption = 4,
                         align: AlignOption = False, quiet: QuietOption = False) -> None:
        """Evaluate a model (or the classical baseline) on a test set: metrics in metres and on
        normalised depth, temporal stability, CSV/JSON/markdown, plots."""
        from focaldepth.evaluate import evaluate

        summary = evaluate(checkpoint, data, out, num_frames=num_frames, device=device,
                           split=split, crop_size=crop_size, temporal=temporal,
                           valid_range_margin=valid_range_margin, sheet_count=sheet,
                           align=align, progress=not quiet and sys.stderr.isatty())
        metres, norm = summary["all"]["metres"], summary["all"]["normalised"]
        print(f"{summary['all']['counts']['num_images']} stacks from {summary['num_sequences']} "
              f"sequences: RMSE {_fmt(metres.get('rmse'), '{:.4g}')} m, AbsRel "
              f"{_fmt(metres.get('absrel'), '{:.4f}')}, δ1 {_fmt(metres.get('delta1'), '{:.2%}')}"
              f"; normalised MSE {_fmt(norm.get('mse'), '{:.3g}')}"
              f" ({'flow-aligned' if align else 'raw'} frames)")
        dynamic = summary["by_motion"].get("dynamic")
        if dynamic:  # the scenes alignment is for: say how they fared on their own
            print(f"dynamic sequences: {dynamic['counts']['num_images']} stacks, AbsRel "
                  f"{_fmt(dynamic['metres'].get('absrel'), '{:.4f}')}, δ1 "
                  f"{_fmt(dynamic['metres'].get('delta1'), '{:.2%}')}, temporal Δ error "
                  f"{_fmt(dynamic['temporal'].get('temporal_err_m'), '{:.3g}')} m")
        print(f"wrote {out}/metrics.json, per_sequence.csv, metrics.md, error_vs_depth.png, "
              "sheet.png")

    @app.command("tables")
    def tables_command(spec: SpecOption = Path("configs/tables.yaml"),
                       out: TablesOutOption = None, names: TableNamesOption = None,
                       strict: StrictOption = False) -> None:
        """Build the markdown results tables from evaluation outputs (results/*/metrics.json)."""
        from focaldepth.tables import build_tables, write_tables

        if out is None:
            print(build_tables(spec, names=names or (), strict=strict))
        else:
            write_tables(spec, out, names=names or (), strict=strict)
            print(f"wrote {out}")
