"""`focaldepth adapt`: fine-tune a model without labels on one recording (docs/selfsup.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from focaldepth.train.selfsup import AdaptSettings


def register(app: typer.Typer) -> None:
    app.command(name="adapt")(adapt)


def adapt(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Folder of frames + meta.json, a video + NAME.json, or NAME:PATH[#ITEM] of a published dataset (as predict).")],
    model: Annotated[str, typer.Option(help="Shipped model name or a model file to start from (a per-window model).")],
    out: Annotated[Path, typer.Option("--out", help="Model file to write (FILE.pt, atomically); predict --model FILE.pt loads it.")],
    steps: Annotated[int, typer.Option(min=1, help="Optimisation steps (one window crop each).")] = AdaptSettings.steps,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = AdaptSettings.lr,
    meta: Annotated[Optional[Path], typer.Option(help="Metadata JSON, if not beside the input.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch/OpenCV threads (default 1).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    window: Annotated[Optional[int], typer.Option(help="Frames per window (default: one focus ramp).")] = None,
    align: Annotated[bool, typer.Option(help="Warp each window onto its newest frame (optical flow), as predict.")] = True,
    max_pixels: Annotated[int, typer.Option(help="Pixel budget of the working resolution (as predict).")] = 57_600,
    stack_align: Annotated[bool, typer.Option(help="Static hand-held stack: pre-align all frames (as predict).")] = False,
    far_to_near: Annotated[Optional[bool], typer.Option("--far-to-near/--near-to-far", help="Unknown focus only: the sweep order.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the crops and window order.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Fine-tune MODEL on INPUT with the defocus-reconstruction loss (no depth needed) and
    write the adapted model with a model card (what, steps, CPU seconds, loss before/after)."""
    from focaldepth.adapt import adapt_recording
    from focaldepth.errors import UserError

    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but torch sees no CUDA device")
    card = adapt_recording(input_path, out, model=model, steps=steps, lr=lr, meta_path=meta, threads=threads,
                           device=device, window=window, align=align, max_pixels=max_pixels,
                           stack_align=stack_align, far_to_near=far_to_near, seed=seed, overwrite=overwrite)
    loss = card["reconstruction_loss"]
    print(f"wrote {out} ({model} adapted on {card['windows']} window(s) of {input_path}, {card['steps']} steps, "
          f"{card['cpu_seconds']['total']:.0f} CPU s; reconstruction loss {loss['before']:.4f} -> {loss['after']:.4f})")
    if card["blur_scale"] is not None:
        print(f"focus distances or lens unknown: relative mode, blur scale fitted x{card['blur_scale']['fitted_scale']:.2f}")
