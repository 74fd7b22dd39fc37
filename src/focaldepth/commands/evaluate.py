"""`focaldepth evaluate` (metrics of a model on a test set) and `focaldepth tables` (results
tables from evaluation outputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add ``focaldepth evaluate`` and ``focaldepth tables``."""

    @app.command("evaluate")
    def evaluate_command(
        checkpoint: str = typer.Option(
            ..., "--checkpoint", help="A training checkpoint (.ckpt), an exported model file "
            "(.pt), or 'classical' for the classical depth-from-focus baseline."),
        data: Path = typer.Option(..., "--data", help="Test folder made by `focaldepth generate`."),
        out: Path = typer.Option(..., "--out", help="Output folder (metrics.json, "
                                 "per_sequence.csv, metrics.md, error_vs_depth.png, sheet.png)."),
        num_frames: Optional[int] = typer.Option(
            None, "--num-frames", help="Frames per focal stack [default: the training config's, "
            "else 4]."),
        device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda:0."),
        split: Optional[str] = typer.Option(None, "--split", help="Dataset split, if the folder "
                                            "has several."),
        crop_size: Optional[int] = typer.Option(None, "--crop-size",
                                                help="Centre crop (default: full frames)."),
        temporal: bool = typer.Option(True, "--temporal/--no-temporal",
                                      help="Temporal stability on dynamic sequences."),
        sheet: int = typer.Option(4, "--sheet", help="Sequences shown in sheet.png."),
    ) -> None:
        """Evaluate a model (or the classical baseline) on a test set: metrics in metres and on
        normalised depth, temporal stability, CSV/JSON/markdown, plots."""
        from focaldepth.evaluate import evaluate

        summary = evaluate(checkpoint, data, out, num_frames=num_frames, device=device,
                           split=split, crop_size=crop_size, temporal=temporal, sheet_count=sheet)
        metres, norm = summary["all"]["metres"], summary["all"]["normalised"]
        fmt = lambda v, f: "n/a" if v is None else f.format(v)  # noqa: E731
        print(f"{summary['all']['counts']['num_images']} stacks from {summary['num_sequences']} "
              f"sequences: RMSE {fmt(metres.get('rmse'), '{:.4g}')} m, AbsRel "
              f"{fmt(metres.get('absrel'), '{:.4f}')}, δ1 {fmt(metres.get('delta1'), '{:.2%}')}; "
              f"normalised MSE {fmt(norm.get('mse'), '{:.3g}')}")
        print(f"wrote {out}/metrics.json, per_sequence.csv, metrics.md, error_vs_depth.png, sheet.png")

    @app.command("tables")
    def tables_command(
        spec: Path = typer.Option(Path("configs/tables.yaml"), "--spec",
                                  help="Table spec (which results files form which rows)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Markdown file to write "
                                           "[default: print to stdout]."),
        names: list[str] = typer.Option([], "--table", help="Only these tables (repeatable)."),
        strict: bool = typer.Option(False, "--strict", help="Fail if a results file is missing."),
    ) -> None:
        """Build the markdown results tables from evaluation outputs (results/*/metrics.json)."""
        from focaldepth.tables import build_tables, write_tables

        if out is None:
            print(build_tables(spec, names=names, strict=strict))
        else:
            write_tables(spec, out, names=names, strict=strict)
            print(f"wrote {out}")
