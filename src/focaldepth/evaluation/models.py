"""The model under test: resolving a checkpoint argument (a file, a shipped model name or
``classical``) to a model and its description, and wrapping any zoo model as a predictor
``batch -> depth_m`` that runs on full frames (padding to the model's size multiple, tiling a
fixed-input-size model)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

Batch = dict[str, Any]
#: ``batch -> depth_m (B, 1, H, W)``, or ``-> {"depth_m": ..., "confidence": ...}`` (the
#: confidence is optional; when given, metrics.json gets a ``confidence`` section).
Predictor = Callable[[Batch], "torch.Tensor | Mapping[str, torch.Tensor]"]

CLASSICAL = "classical"


def model_predictor(model: torch.nn.Module, device: str | torch.device = "cpu", *,
                    with_confidence: bool = False) -> Predictor:
    """Wrap a :class:`~focaldepth.models.base.DepthModel` as ``batch -> depth_m (B,1,H,W)``
    (with ``with_confidence``: ``batch -> {"depth_m", "confidence"}``, the confidence only if
    the model outputs one).

    Models that declare ``size_multiple_px`` (encoder-decoders that halve the resolution k
    times) get frames padded by edge replication up to the next multiple, and the depth
    cropped back, so every model can be scored on the same full frames. A model with a fixed
    ``image_size_px`` (fully connected layers) runs on tiles of that size, stitched."""
    model = model.to(device).eval()
    multiple = int(getattr(model, "size_multiple_px", 1) or 1)
    fixed_size = getattr(model, "image_size_px", None)

    from focaldepth.models.base import run_model, takes_frame_f_number

    per_frame_f_number = takes_frame_f_number(model)

    def run(frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor,
            f_number: torch.Tensor | None = None) -> torch.Tensor:
        with torch.inference_mode():
            outputs = run_model(model, frames.to(device), focus_distance_m.to(device), camera.to(device),
                                f_number=None if f_number is None else f_number.to(device))
        depth = outputs["depth_m"].float().cpu()
        if with_confidence and outputs.get("confidence") is not None:
            # depth and confidence travel as two channels (tiles are stitched once)
            return torch.cat([depth, outputs["confidence"].float().cpu()], 1)
        return depth

    def predict(batch: Batch) -> torch.Tensor | dict[str, torch.Tensor]:
        frames, focus, camera = batch["frames"], batch["focus_distance_m"], batch["camera"]
        # models that read one f-number per frame (two-aperture pairs) get the items' own
        # (datasets carry 'f_number' (B, S)); without it they raise rather than guess
        f_number = batch.get("f_number") if per_frame_f_number else None
        height, width = frames.shape[-2:]
        tile_h, tile_w = tuple(fixed_size) if fixed_size is not None else (multiple, multiple)
        frames = _pad_to_multiple(frames, tile_h, tile_w)
        if fixed_size is None or frames.shape[-2:] == tuple(fixed_size):
            maps = run(frames, focus, camera, f_number)[..., :height, :width]
        else:
            maps = _tiled(run, frames, focus, camera, tile_h, tile_w, f_number)[..., :height, :width]
        if not with_confidence:
            return maps
        return {"depth_m": maps[:, :1]} | ({"confidence": maps[:, 1:2]} if maps.shape[1] > 1
                                           else {})

    return predict


def _pad_to_multiple(frames: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Pad ``(B, S, C, H, W)`` frames at the bottom/right by edge replication."""
    height, width = frames.shape[-2:]
    pad_h, pad_w = (-height) % multiple_h, (-width) % multiple_w
    if not (pad_h or pad_w):
        return frames
    flat = torch.nn.functional.pad(frames.flatten(0, 1), (0, pad_w, 0, pad_h), mode="replicate")
    return flat.unflatten(0, frames.shape[:2])


def _tiled(run: Callable[..., torch.Tensor], frames: torch.Tensor, focus_distance_m: torch.Tensor,
           camera: torch.Tensor, tile_h: int, tile_w: int,
           f_number: torch.Tensor | None = None) -> torch.Tensor:
    """Run a fixed-input-size model on non-overlapping tiles and stitch the depth maps (models
    with fully connected layers, e.g. LSTM-DDFF, see only ``image_size_px`` at a time)."""
    batch, slices, channels, height, width = frames.shape
    rows, cols = height // tile_h, width // tile_w
    tiles = frames.reshape(batch, slices, channels, rows, tile_h, cols, tile_w)
    tiles = tiles.permute(0, 3, 5, 1, 2, 4, 6).reshape(batch * rows * cols, slices, channels,
                                                       tile_h, tile_w)
    repeat = rows * cols
    extra = () if f_number is None else (f_number.repeat_interleave(repeat, 0),)
    depth = run(tiles, focus_distance_m.repeat_interleave(repeat, 0),
                camera.repeat_interleave(repeat, 0), *extra)
    maps = depth.shape[1]  # depth, and confidence when model_predictor asks for it
    depth = depth.reshape(batch, rows, cols, maps, tile_h, tile_w).permute(0, 3, 1, 4, 2, 5)
    return depth.reshape(batch, maps, height, width)


@dataclass
class ModelUnderTest:
    """A model to evaluate and how to describe it in the outputs."""

    model: torch.nn.Module
    source: str
    num_frames: int | None = None  # from the training config, if known
    description: dict[str, Any] = field(default_factory=dict)


def load_model_under_test(checkpoint: str, device: str = "cpu") -> ModelUnderTest:
    """``classical`` -> the classical DFF baseline; a ``.ckpt`` from ``focaldepth train`` or a
    ``.pt`` exported model file -> that model (no Lightning needed for either); the name of a
    model shipped in the package (``sweepnet_default``, as ``focaldepth predict --model``
    accepts) -> its file."""
    if checkpoint == CLASSICAL:
        from focaldepth.classical import ClassicalDFF

        model = ClassicalDFF()
        return ModelUnderTest(model=model, source=CLASSICAL, description={
            "name": CLASSICAL, "kwargs": {"window": model.window, "smooth": model.smooth,
                                          "measure": model.measure},
            "info": model.info.to_dict()})
    from focaldepth.train.checkpoint import load_trained_model

    path = resolve_checkpoint(checkpoint)
    loaded = load_trained_model(path, map_location=device)
    config = loaded.config or {}
    num_frames = (config.get("data") or {}).get("num_frames")
    if num_frames is None:  # a physics hybrid (v4-v6) carries its vote's training config
        vote_config = ((loaded.extra or {}).get("vote_extra") or {}).get("config") or {}
        num_frames = (vote_config.get("data") or {}).get("num_frames")
    model_section = dict(config.get("model") or {})
    info = getattr(loaded.model, "info", None)
    return ModelUnderTest(model=loaded.model, source=str(checkpoint), num_frames=num_frames,
                          description={"name": model_section.pop("name", type(loaded.model).__name__),
                                       "kwargs": model_section,
                                       "info": info.to_dict() if info is not None else None,
                                       "global_step": loaded.extra.get("global_step"),
                                       **({"file": str(path)} if str(path) != checkpoint else {}),
                                       # shipped weights get replaced: say which bytes were scored
                                       "sha256": _sha256(path)})


def _sha256(path: Path) -> str:
    import hashlib

    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def resolve_checkpoint(checkpoint: str) -> Path:
    """A checkpoint argument -> its file: an existing path as given, else the model of that name
    shipped in the package (``focaldepth/weights/NAME.pt``), else the path as given (so the
    loader reports the missing file by the name the user typed)."""
    path = Path(checkpoint)
    if path.is_file():
        return path
    from focaldepth.predict import shipped_weights_path

    shipped = Path(str(shipped_weights_path(checkpoint)))
    return shipped if shipped.is_file() else path
