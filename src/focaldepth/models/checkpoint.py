"""Model checkpoints that rebuild themselves.

A checkpoint is a ``torch.save`` dict holding everything needed to rebuild and use the model:
the registry name and the complete constructor arguments, the :class:`ModelInfo`, the input
conventions (layout and units of frames, focus distances, camera tensor, how the output becomes
metres), the focaldepth and torch versions, free-form ``extra`` metadata and the state dict.
:func:`load` rebuilds the model through the registry and loads the weights strictly: a missing,
unexpected or mis-shaped tensor, or conventions that differ from the current code's, raise a
:class:`UserError` naming the file -- nothing is silently dropped or reinterpreted.

Checkpoints are read with ``torch.load(weights_only=True)``: loading one never runs code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import focaldepth
from focaldepth.errors import UserError
from focaldepth.models.base import DepthModel
from focaldepth.models.registry import create

FORMAT = "focaldepth.model.v1"
_REQUIRED_KEYS = ("format", "arch", "kwargs", "info", "conventions", "state_dict")
_SAFE_SCALARS = (str, int, float, bool, type(None))


def input_conventions(model: DepthModel) -> dict:
    """The conventions every model shares, plus the model's own (``model.conventions()``)."""
    conventions = {
        "frames": "(B, S, C, H, W) float in [0, 1], RGB, frames in capture order, the last "
        "frame is the reference view",
        "focus_distance_m": "(B, S) focus distance of each frame in metres",
        "camera": "(B, 3) = [focal_length_m, f_number, pixel_pitch_m] "
        "(focaldepth.models.base.camera_tensor)",
        "depth_m": "(B, 1, H, W) metres",
    }
    own = getattr(model, "conventions", None)
    if callable(own):
        conventions.update(own())
    return conventions


def _check_plain(value: Any, where: str) -> None:
    """Only plain data may go into a checkpoint, so that it loads with weights_only=True."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise UserError(f"checkpoint {where}: keys must be str or int, got {key!r}")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not (type(value) in _SAFE_SCALARS or isinstance(value, torch.Tensor)):
        # Exact types: subclasses (numpy floats, TorchVersion...) would need unpickling code.
        raise UserError(
            f"checkpoint {where}: {type(value).__name__} is not plain data "
            f"(use str, int, float, bool, None, tensors, lists and dicts)"
        )


def save(model: DepthModel, path: str | os.PathLike, **extra: Any) -> Path:
    """Write ``model`` to ``path`` (atomically: a temporary file renamed into place).
    ``extra`` holds plain metadata (training config, epoch, metrics...). The model must have
    been built by :func:`focaldepth.models.create`, which records how to rebuild it."""
    path = Path(path)
    arch = getattr(model, "arch_name", None)
    if arch is None:
        raise UserError(
            "cannot save a model that was not built by focaldepth.models.create "
            "(the checkpoint could not say how to rebuild it)",
            path,
        )
    _check_plain(model.arch_kwargs, "kwargs")
    _check_plain(extra, "extra")
    payload = {
        "format": FORMAT,
        "arch": arch,
        "kwargs": dict(model.arch_kwargs),
        "info": model.info.to_dict(),
        "conventions": input_conventions(model),
        "focaldepth_version": focaldepth.__version__,
        "torch_version": str(torch.__version__),
        "extra": extra,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if not path.parent.is_dir():
        raise UserError("directory does not exist", path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint's dict, validated (UserError naming the file if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise UserError("no such checkpoint file", path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 -- torch raises many types for a bad file
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # weights_only failures put the useful line ("Unsupported global ...") mid-message.
        useful = [line for line in lines if "Unsupported global" in line]
        reason = (useful or lines or [type(error).__name__])[0]
        raise UserError(f"not a readable focaldepth checkpoint ({reason})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise UserError(
            f"not a focaldepth model checkpoint (format {found!r}, expected {FORMAT!r})", path
        )
    missing = [key for key in _REQUIRED_KEYS if key not in payload]
    if missing:
        raise UserError(f"checkpoint is missing {', '.join(missing)}", path)
    return payload


def _describe_mismatch(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], limit: int = 5
) -> str:
    """One line naming the missing, unexpected and mis-shaped tensors (first few of each)."""

    def listed(names: list[str]) -> str:
        more = f" and {len(names) - limit} more" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k} {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(found)
        if found[k].shape != expected[k].shape
    )
    parts = []
    if missing:
        parts.append(f"missing {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {listed(unexpected)}")
    if shapes:
        parts.append(f"shape mismatch {listed(shapes)}")
    return "; ".join(parts)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> DepthModel:
    """Rebuild the model saved at ``path`` (architecture and arguments from the checkpoint),
    load its weights strictly and return it on ``map_location`` in eval mode."""
    path = Path(path)
    payload = read_checkpoint(path, map_location)
    try:
        model = create(payload["arch"], **payload["kwargs"])
    except UserError as error:
        raise UserError(f"cannot rebuild the checkpoint's model: {error}", path) from None
    state = payload["state_dict"]
    mismatch = _describe_mismatch(model.state_dict(), state)
    if mismatch:
        raise UserError(f"weights do not match architecture {payload['arch']!r}: {mismatch}", path)
    model.load_state_dict(state, strict=True)
    conventions = input_conventions(model)
    if payload["conventions"] != conventions:
        changed = sorted(
            k
            for k in set(conventions) | set(payload["conventions"])
            if conventions.get(k) != payload["conventions"].get(k)
        )
        raise UserError(
            f"the checkpoint's input/output conventions differ from this focaldepth "
            f"version's for {', '.join(changed)} (saved with focaldepth "
            f"{payload.get('focaldepth_version')}); refusing to reinterpret them",
            path,
        )
    return model.to(map_location).eval()
