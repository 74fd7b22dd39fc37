"""The LightningModule: owns the model, the loss, the optimiser and what gets logged.

The model itself knows nothing of optimisers, logging or devices (DEVELOPERS.md); it is
called only through the common interface ``model(frames, focus_distance_m, camera)``, so this
module never branches on which architecture it trains."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from focaldepth import models
from focaldepth.errors import UserError
from focaldepth.losses import build_loss
from focaldepth.metrics import depth_metrics
from focaldepth.models.base import run_model
from focaldepth.train.config import SchedulerConfig, TrainConfig, config_from_dict
from focaldepth.train.masks import mask_to_focus_range

#: Validation metrics logged besides the loss (names as returned by ``depth_metrics``).
LOGGED_VAL_METRICS = ("rmse", "absrel", "delta1")

#: Key under which checkpoints carry the resolved config (read by :func:`load_checkpoint_model`).
CHECKPOINT_KEY = "focaldepth"


def create_model(config: TrainConfig, config_path: str | None = None) -> torch.nn.Module:
    """Build the configured model, turning bad names or arguments into a :class:`UserError`."""
    try:
        return models.create(config.model.name, **config.model.kwargs)
    except UserError as error:
        raise UserError(f"model: {error}", config_path) from None
    except (TypeError, ValueError, KeyError) as error:
        raise UserError(f"model {config.model.name!r}: {error}", config_path) from None


def lr_lambda(schedule: SchedulerConfig, max_steps: int, base_lr: float):
    """Multiplier of the base learning rate at optimiser step ``step`` (a pure function of the
    step, so a resumed run continues the schedule exactly)."""
    min_ratio = min(1.0, schedule.min_lr / base_lr)

    def factor(step: int) -> float:
        if schedule.warmup_steps and step < schedule.warmup_steps:
            return (step + 1) / schedule.warmup_steps
        if schedule.name == "constant":
            return 1.0
        if schedule.name == "step":
            return schedule.gamma ** ((step - schedule.warmup_steps) // schedule.step_size)
        span = max(1, max_steps - schedule.warmup_steps)
        progress = min(1.0, (step - schedule.warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (
            1 + math.cos(math.pi * progress))

    return factor


class DepthTrainingModule(L.LightningModule):
    """Train any :class:`focaldepth.models.base.DepthModel` with a configured loss.

    ``config`` is the resolved config as a plain dict (``TrainConfig.to_dict()``): it is saved
    as the module's hyper-parameters, so every Lightning checkpoint carries it in full."""

    def __init__(self, config: dict[str, Any], config_path: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config = config_from_dict(config, config_path or "<checkpoint>")
        self.model = create_model(self.config, config_path)
        try:
            self.loss = build_loss(self.config.loss, source=config_path)
        except (TypeError, ValueError, KeyError) as error:
            raise UserError(f"loss: {error}", config_path) from None

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # run_model adds the per-frame f-number (batch["f_number"]) for models that read it.
        return run_model(self.model, batch["frames"], batch["focus_distance_m"], batch["camera"],
                         f_number=batch.get("f_number"))

    def _batch_size(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["frames"].shape[0])

    def _masked(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return mask_to_focus_range(batch, self.config.data.valid_range_margin)

    def on_train_epoch_start(self) -> None:
        # Fresh random windows and crops each epoch (a dataset item is a function of
        # (seed, epoch, index)); the loader's workers are created after this hook.
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        batch = self._masked(batch)
        outputs = self(batch)
        total, parts = self.loss(outputs, batch)
        return self._log_training(total, parts, self._batch_size(batch))

    def _log_training(self, total: torch.Tensor, parts: dict[str, torch.Tensor], size: int) -> torch.Tensor:
        if not torch.isfinite(total):
            # Fail loudly: a NaN would otherwise silently poison the weights (and last.ckpt).
            raise FloatingPointError(f"non-finite training loss {total.item()} at step "
                                     f"{self.global_step}; resume from last.ckpt with a lower lr")
        self.log("train/loss", total, prog_bar=True, batch_size=size)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=size)
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=size)
        return total

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        batch = self._masked(batch)
        outputs = self(batch)
        total, parts = self.loss(outputs, batch)
        self._log_validation(total, parts, outputs, batch, self._batch_size(batch))

    def _log_validation(self, total: torch.Tensor, parts: dict[str, torch.Tensor], outputs: dict,
                        target: dict, size: int) -> None:
        self.log("val/loss", total, prog_bar=True, sync_dist=True, batch_size=size)
        for name, value in parts.items():
            self.log(f"val/{name}", value, sync_dist=True, batch_size=size)
        metrics = depth_metrics(outputs["depth_m"].detach().float(), target["depth_m"].float(),
                                target["valid"])
        for name in LOGGED_VAL_METRICS:
            if name in metrics:
                value = torch.as_tensor(metrics[name], dtype=torch.float32, device=self.device)
                self.log(f"val/{name}", value, sync_dist=True, batch_size=size)

    def configure_optimizers(self):
        opt = self.config.optimizer
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=opt.lr,
                                      weight_decay=opt.weight_decay, betas=tuple(opt.betas))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(self.config.scheduler, self.config.trainer.max_steps, opt.lr))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "config": self.hparams["config"],
            # The registry's complete constructor arguments (defaults filled in), so the model
            # rebuilds even if a default changes later.
            "model_name": getattr(self.model, "arch_name", self.config.model.name),
            "model_kwargs": dict(getattr(self.model, "arch_kwargs", self.config.model.kwargs)),
            "model_info": self.model.info.to_dict() if hasattr(self.model, "info") else None,
        }
