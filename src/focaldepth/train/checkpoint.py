"""Load a trained model from a Lightning checkpoint (``.ckpt``) or an exported model file
(``.pt``, written by :func:`focaldepth.models.save`) without needing Lightning at all.

Evaluation and prediction accept either: the ``.ckpt`` carries the full resolved training
config (model name and arguments) and the weights under ``state_dict["model.*"]``; the
``.pt`` is the model zoo's own format. Loading is strict: a checkpoint whose weights do not
match the architecture its config names fails loudly instead of loading partially."""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from focaldepth import models
from focaldepth.errors import UserError

#: Same key as :data:`focaldepth.train.module.CHECKPOINT_KEY` (kept here to avoid importing
#: Lightning when only loading).
CHECKPOINT_KEY = "focaldepth"
MODEL_PREFIX = "model."


@dataclass
class LoadedModel:
    """A model ready for inference plus where it came from."""

    model: torch.nn.Module
    source: str
    config: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_lightning_checkpoint(path: str | Path,
                              map_location: str | torch.device = "cpu") -> Any:
    """The raw contents of a Lightning ``.ckpt``, read with ``torch.load(weights_only=True)``.

    Loading a checkpoint must never run code: a pickle can name any callable (``os.system``)
    and ``weights_only=False`` would call it. The checkpoints ``focaldepth train`` writes hold
    only tensors and plain containers (model, AdamW and LambdaLR state, loop and callback state,
    the config as a dict), which the weights-only unpickler accepts as they are, so no extra
    type is allow-listed. Anything else is refused with a one-line :class:`UserError`."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is a paragraph; keep the one fact that matters: what it refused
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f"it references {refused.group(1)}" if refused else "it holds objects"
        raise UserError(f"refusing to load checkpoint: {what}, which checkpoints written by "
                        "focaldepth never contain (loading it could run code)", path) from None
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's problem here
        first = str(error).splitlines()[0] if str(error) else ""
        raise UserError(f"cannot read checkpoint ({type(error).__name__}: {first})", path) from None


def model_from_lightning_checkpoint(path: str | Path,
                                    map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model of a ``focaldepth train`` checkpoint from its embedded config."""
    path = Path(path)
    checkpoint = read_lightning_checkpoint(path, map_location)
    meta = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "model_name" not in meta:
        raise UserError("not a focaldepth training checkpoint (no embedded config)", path)
    try:
        model = models.create(meta["model_name"], **meta.get("model_kwargs", {}))
    except (UserError, TypeError, ValueError) as error:
        raise UserError(f"cannot rebuild model {meta['model_name']!r}: {error}", path) from None
    state = {key[len(MODEL_PREFIX):]: value for key, value in checkpoint["state_dict"].items()
             if key.startswith(MODEL_PREFIX)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0] if str(error) else "mismatch"
        raise UserError(f"weights do not match model {meta['model_name']!r}: {first}", path) from None
    extra = {"global_step": checkpoint.get("global_step"), "epoch": checkpoint.get("epoch")}
    return LoadedModel(model=model.eval(), source=str(path), config=meta.get("config"), extra=extra)


def load_trained_model(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """A ``.ckpt`` from training or a ``.pt`` exported model file -> model in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise UserError("checkpoint not found", path)
    if path.suffix == ".ckpt":
        return model_from_lightning_checkpoint(path, map_location)
    model = models.load(path, map_location=map_location)
    extra = dict(models.read_checkpoint(path).get("extra") or {})
    return LoadedModel(model=model, source=str(path), config=extra.get("config"), extra=extra)
