"""`focaldepth predict`: depth for every frame of a focus sweep or focal stack."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class Method(str, Enum):
    learned = "learned"
    classical = "classical"


def register(app: typer.Typer) -> None:
    app.command(name="predict")(predict)


def predict(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Folder of frames + meta.json, a video + NAME.json, or NAME:PATH[#ITEM] of a published dataset (docs/datasets.md).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (written atomically).")],
    model: Annotated[str, typer.Option(help="Shipped model name or a model/checkpoint file (default: the temporal model over v8 = v7 with a confidence that ranks errors better; sweepnet_default = v8 per window; sweepnet_temporal_v7 = over v7).")] = "sweepnet_temporal_v8",
    method: Annotated[Method, typer.Option(help="learned (a model) or classical (focus measure + argmax).")] = Method.learned,
    meta: Annotated[Optional[Path], typer.Option(help="Metadata JSON, if not beside the input.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    window: Annotated[Optional[int], typer.Option(help="Frames per estimate (default: one focus ramp).")] = None,
    align: Annotated[bool, typer.Option(help="Warp earlier frames onto the current one (optical flow).")] = True,
    max_pixels: Annotated[Optional[int], typer.Option(
        help="Pixel budget of the working resolution (default: the model's own, else 57,600).")] = None,
    format: Annotated[Optional[list[str]], typer.Option("--format", help="Extra depth outputs: png16, exr (per frame); npz16 or h5 (one compressed float16 file per clip, replacing the per-frame .npy).")] = None,
    output_resolution: Annotated[str, typer.Option("--output-resolution", help="input (upsampled to the frames) or working (the network's grid: all the information there is).")] = "input",
    upsample: Annotated[str, typer.Option(help="guided (edge-aware, by the current frame) or bilinear.")] = "guided",
    aif: Annotated[bool, typer.Option("--aif", help="Also write an all-in-focus image per frame (aif/NNNNNN.png, or in the one-file format).")] = False,
    max_slices: Annotated[int, typer.Option("--max-slices", min=2, help="At most this many frames of a long window per estimate, spread over its focus range (flat cost per frame).")] = 10,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch/OpenCV threads (default 1: robust when the machine is shared).")] = None,
    video_height: Annotated[int, typer.Option("--video-height", min=16, help="Height cap of depth.mp4 in pixels.")] = 360,
    video: Annotated[bool, typer.Option(help="Write depth.mp4.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
    far_to_near: Annotated[Optional[bool], typer.Option("--far-to-near/--near-to-far", help="Unknown focus only: the sweep order (default: near to far, or estimated with --stack-align).")] = None,
    stack_align: Annotated[Optional[bool], typer.Option("--stack-align/--no-stack-align", help="Static hand-held stack: pre-align all frames (focus breathing + homography) and estimate an unknown sweep direction. Default: automatic for a static-stack folder, applied when its frames visibly move.")] = None,
    stack: Annotated[Optional[bool], typer.Option("--stack/--stream", help="--stack: every frame estimated from the whole input (a static focal stack); --stream: a causal window (video). Default: a folder of at most 64 frames holding one focus sweep that moves by no more than a homography is a stack; videos and moving scenes stream.")] = None,
    last_only: Annotated[bool, typer.Option("--last-only", help="Static focal stack: one estimate, for the last frame, with the whole stack as one window (unless --window); depth.png instead of depth.mp4.")] = False,
) -> None:
    """Metric depth and confidence for every frame; a side-by-side depth video; summary.json."""
    from focaldepth.errors import UserError
    from focaldepth.predict import predict_sequence

    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but torch sees no CUDA device")
    summary = predict_sequence(
        input_path, out, model="classical" if method is Method.classical else model, meta_path=meta,
        device=device, window=window, align=align, max_pixels=max_pixels,
        extra_formats=tuple(format or ()), overwrite=overwrite, video=video, far_to_near=far_to_near, stack_align=stack_align,
        output_resolution=output_resolution, upsample=upsample, aif=aif, threads=threads, video_height_px=video_height,
        max_slices=max_slices, last_only=last_only, stack=stack)
    for warning in summary.get("warnings", []):
        print(f"focaldepth: warning: {warning}", file=sys.stderr)
    timing = summary["timing_s"]
    units = "m" if summary["metric"] else "(relative)"
    rate = f", {timing['frames_per_s']:.1f} frames/s" if not last_only else \
        f", the last frame of {summary['frames_read']}, {summary['command_timing_s']['wall']:.1f} s"
    print(f"wrote {summary['num_frames']} depth map{'s' * (summary['num_frames'] != 1)} to {out} "
          f"(depth {summary['depth_range']['min']:.3g}-{summary['depth_range']['max']:.3g} {units}{rate})")
    if not summary["metric"]:
        print("focus distances unknown: depth is RELATIVE (1 = nearest focus), not metres")
        direction = summary.get("sweep_direction", "near_to_far").replace("_", " ")
        flag = "--near-to-far" if summary.get("sweep_direction") == "far_to_near" else "--far-to-near"
        print(f"sweep taken as {direction} ({summary.get('sweep_direction_source', 'default')}; "
              f"{flag} to override)")
