"""`focaldepth export`: a model as an ONNX file, to run it outside Python (docs/export.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command(name="export")(export)


def export(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Shipped model name (sweepnet_default), a model file (.pt) or a training checkpoint (.ckpt).")],
    out: Annotated[Path, typer.Option("--out", help="ONNX file to write (atomically).")],
) -> None:
    """Export MODEL to ONNX: inputs frames (B,S,3,H,W), focus_distance_m (B,S), camera (B,3);
    outputs depth_m, confidence (and focus_weights); batch, frames, height, width dynamic."""
    from focaldepth.export import check_output_path, export_onnx, load_for_export

    check_output_path(out)
    names = export_onnx(load_for_export(model), out)
    print(f"wrote {out} (inputs frames, focus_distance_m, camera; outputs {', '.join(names)}); "
          "pre/post-processing: docs/export.md")
