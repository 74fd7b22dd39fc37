"""Training on PyTorch Lightning: configs (:mod:`.config`), the data module (:mod:`.data`),
the LightningModule (:mod:`.module`), a run (:mod:`.run`) and checkpoint loading without
Lightning (:mod:`.checkpoint`).

Only the light parts are imported eagerly; ``train``, ``DepthTrainingModule`` and
``FocusSweepDataModule`` import Lightning on first use."""

from __future__ import annotations

from typing import Any

from focaldepth.train.checkpoint import LoadedModel, load_trained_model
from focaldepth.train.config import TrainConfig, config_from_dict, load_config

_LAZY = {
    "train": "focaldepth.train.run",
    "TrainResult": "focaldepth.train.run",
    "read_logged_metrics": "focaldepth.train.run",
    "DepthTrainingModule": "focaldepth.train.module",
    "FocusSweepDataModule": "focaldepth.train.data",
}

__all__ = ["DepthTrainingModule", "FocusSweepDataModule", "LoadedModel", "TrainConfig",
           "TrainResult", "config_from_dict", "load_config", "load_trained_model",
           "read_logged_metrics", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'focaldepth.train' has no attribute {name!r}")
