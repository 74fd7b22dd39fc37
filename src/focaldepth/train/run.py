"""``focaldepth train``: one training run in one run folder.

Run folder layout (everything written atomically)::

    RUN/config.yaml                 the resolved config (no ``extends``; every default filled in)
    RUN/checkpoints/last.ckpt|.pt   Lightning checkpoint to resume from + exported model file
    RUN/checkpoints/best.ckpt|.pt   lowest validation loss so far
    RUN/logs/tensorboard/           TensorBoard events (train and val loss curves, lr, metrics)
    RUN/logs/csv/version_K/         CSV logs, one version per (re)start of the run
    RUN/loss_curves.png             train and val loss against step (all restarts merged)
    RUN/summary.json                final step, best val loss, wall time

Distributed training uses Lightning's strategies unchanged: ``--devices 4 --strategy ddp`` on
one machine, ``--num-nodes N`` under SLURM/torchrun. Only the global-rank-0 process writes
the folder's files; the other processes just train.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import _get_rank
from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from focaldepth import models
from focaldepth.errors import UserError
from focaldepth.io.atomic import atomic_path, atomic_write_text
from focaldepth.train.checkpoint import read_lightning_checkpoint
from focaldepth.train.config import (
    RESUMABLE_CHANGES,
    TrainConfig,
    config_from_dict,
    differences,
    dump_yaml,
)
from focaldepth.train.data import FocusSweepDataModule, import_object
from focaldepth.train.video import training_module_class

CONFIG_NAME = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
LAST = "last"
BEST = "best"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint writer, but through a temporary file and a rename, so a
    run killed while saving still has an intact ``last.ckpt`` to resume from."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote filesystems: no rename; use Lightning's writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class ExportingModelCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that also exports the bare model with :func:`focaldepth.models.save`
    beside each ``.ckpt`` it writes (same name, ``.pt``), and removes it with the ``.ckpt``.
    The ``.pt`` loads without Lightning (``focaldepth evaluate``/``predict``)."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            module = trainer.lightning_module
            export_path = Path(filepath).with_suffix(".pt")
            extra = {"config": module.hparams["config"], "global_step": trainer.global_step,
                     "epoch": trainer.current_epoch, "lightning_checkpoint": Path(filepath).name}
            models.save(module.model, export_path, **extra)  # itself atomic

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning only writes last.ckpt at the end if it never wrote one; a run that stops at
        # max_steps between two saves must still leave its final weights in last.ckpt/.pt.
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        else:
            super().on_train_end(trainer, pl_module)

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._remove_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            Path(filepath).with_suffix(".pt").unlink(missing_ok=True)


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    run_dir: str
    global_step: int
    max_steps: int
    best_val_loss: float | None
    last_checkpoint: str | None
    best_checkpoint: str | None
    wall_time_s: float  # training time over all attempts, up to the last checkpoint each
    attempt_time_s: float  # this invocation, start-up included
    resumed_from_step: int | None
    world_size: int = 1  # processes that trained (DDP)
    steps_per_epoch: int = 0  # batches per epoch in each process

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_primary_process() -> bool:
    """True in the process that owns the run folder: the only process without distributed
    rank variables, or the one with global rank 0 (DDP children launched by Lightning, torchrun
    and SLURM all set them before ``train`` runs)."""
    rank = _get_rank()
    return rank is None or rank == 0


def check_run_folder(config: TrainConfig, run_dir: Path, resume: bool,
                     config_path: str | None) -> Path | None:
    """Check the run folder against ``resume`` (nothing is written). Returns the checkpoint to
    resume from (or None). Raises :class:`UserError` when a fresh run would overwrite an old
    one, or a resumed run's config differs from the saved one beyond the keys that may change
    on resume (more steps, other hardware)."""
    saved_config = run_dir / CONFIG_NAME
    last = run_dir / CHECKPOINT_DIR / f"{LAST}.ckpt"
    if not is_primary_process():
        # DDP workers start after rank 0 prepared the folder; they only need the checkpoint.
        return last if resume and last.exists() else None
    if not resume and (saved_config.exists() or last.exists()):
        raise UserError("this run folder already holds a run: pass --resume to continue it, or "
                        "choose another --out", run_dir)
    if resume and saved_config.exists():
        import yaml

        # Parsed, so keys added to the config format since the run started take their defaults.
        saved = config_from_dict(yaml.safe_load(saved_config.read_text()), saved_config).to_dict()
        changed = [key for key in differences(saved, config.to_dict())
                   if key not in RESUMABLE_CHANGES]
        if changed:
            raise UserError(f"--resume with a config that differs from the saved one in "
                            f"{', '.join(changed)} (only {', '.join(sorted(RESUMABLE_CHANGES))} "
                            f"may change)", config_path or saved_config)
    return last if resume and last.exists() else None


def build_trainer(config: TrainConfig, run_dir: Path) -> tuple[L.Trainer, ModelCheckpoint, Timer]:
    """A Lightning Trainer with the project's checkpoints, loggers and atomic checkpoint IO,
    and a Timer whose training time is saved in (and restored from) the checkpoints."""
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    best = ExportingModelCheckpoint(
        dirpath=checkpoint_dir, filename=BEST, monitor=config.checkpoint.monitor, mode="min",
        save_top_k=1, save_last=False, enable_version_counter=False, auto_insert_metric_name=False)
    last = ExportingModelCheckpoint(
        dirpath=checkpoint_dir, filename="step{step}", monitor=None, save_top_k=0, save_last=True,
        every_n_train_steps=config.checkpoint.every_n_steps, enable_version_counter=False)
    last.CHECKPOINT_NAME_LAST = LAST
    loggers = [TensorBoardLogger(save_dir=run_dir, name="logs", version="tensorboard",
                                 default_hp_metric=False),
               CSVLogger(save_dir=run_dir / "logs", name="csv")]
    timer = Timer(duration=None, verbose=False)
    t = config.trainer
    # An integer val_check_interval counts steps across epochs only without per-epoch checks.
    check_every = None if isinstance(t.val_check_interval, int) else t.check_val_every_n_epoch
    trainer = L.Trainer(
        default_root_dir=run_dir, max_steps=t.max_steps, max_epochs=-1,
        val_check_interval=t.val_check_interval, check_val_every_n_epoch=check_every,
        limit_val_batches=t.limit_val_batches, num_sanity_val_steps=t.num_sanity_val_steps,
        precision=t.precision, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=t.strategy, log_every_n_steps=t.log_every_n_steps,
        gradient_clip_val=t.gradient_clip_val, accumulate_grad_batches=t.accumulate_grad_batches,
        enable_progress_bar=t.enable_progress_bar, deterministic=t.deterministic,
        callbacks=[best, last, timer], logger=loggers, plugins=[AtomicCheckpointIO()],
        enable_model_summary=True)
    return trainer, best, timer


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
          config_path: str | None = None) -> TrainResult:
    """Train ``config`` into ``run_dir`` (see the module docstring for what gets written).

    ``resume=True`` continues from ``run_dir/checkpoints/last.ckpt`` when it exists (model,
    optimiser, scheduler, step counter and loop state) and starts afresh otherwise, so a job
    script can always pass it."""
    run_dir = Path(run_dir)
    start = time.perf_counter()
    ckpt_path = check_run_folder(config, run_dir, resume, config_path)
    resumed_from = None
    if ckpt_path is not None:
        # weights-only read first: a crafted last.ckpt is refused before Lightning opens it
        resumed_from = int(read_lightning_checkpoint(ckpt_path).get("global_step", 0))
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    L.seed_everything(config.seed, workers=True, verbose=False)
    # Build (and so validate) model, loss and data before anything is written to the folder.
    # Clip data (consecutive frames, per-frame ground truth) trains with the video module.
    module_class = training_module_class(import_object(config.data.dataset, config_path))
    module = module_class(config.to_dict(), config_path)
    if config.init_from is not None and ckpt_path is None:
        warm_start(module.model, config.init_from, config.init_missing_ok, config_path)
    data = FocusSweepDataModule(**asdict(config.data), seed=config.seed, config_path=config_path)
    data.setup("fit")
    if is_primary_process():
        atomic_write_text(run_dir / CONFIG_NAME, dump_yaml(config))
    trainer, best, timer = build_trainer(config, run_dir)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    result = TrainResult(
        run_dir=str(run_dir), global_step=int(trainer.global_step), max_steps=config.trainer.max_steps,
        best_val_loss=None if best.best_model_score is None else float(best.best_model_score),
        last_checkpoint=_existing(run_dir / CHECKPOINT_DIR / f"{LAST}.ckpt"),
        best_checkpoint=_existing(run_dir / CHECKPOINT_DIR / f"{BEST}.ckpt"),
        wall_time_s=float(timer.time_elapsed("train")),
        attempt_time_s=time.perf_counter() - start, resumed_from_step=resumed_from,
        world_size=int(trainer.world_size), steps_per_epoch=int(trainer.num_training_batches))
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.finalize("success")
        atomic_write_text(run_dir / "summary.json", json.dumps(result.to_dict(), indent=2) + "\n")
        plot_loss_curves(run_dir)
    return result


def warm_start(model: torch.nn.Module, model_file: str, missing_ok: list[str],
               config_path: str | None = None) -> list[str]:
    """Initialise ``model`` from the weights of a saved model file. Every tensor must fit;
    tensors the file lacks (left at their fresh initialisation) or the model lacks (not used)
    are allowed only under the ``missing_ok`` prefixes, so nothing is dropped silently.
    Returns the names left at their fresh initialisation."""
    from focaldepth.models.checkpoint import read_checkpoint

    state = read_checkpoint(model_file)["state_dict"]
    own = model.state_dict()
    def allowed(name: str) -> bool:
        return any(name.startswith(prefix) for prefix in missing_ok)

    unexpected = sorted(name for name in set(state) - set(own) if not allowed(name))
    missing = sorted(set(own) - set(state))
    not_allowed = [name for name in missing if not allowed(name)]
    shapes = [name for name in state if name in own and state[name].shape != own[name].shape]
    for problem, names in (("has tensors the model lacks", unexpected), ("lacks tensors", not_allowed),
                           ("has tensors of other shapes", shapes)):
        if names:
            raise UserError(f"init_from {model_file}: the file {problem}: {', '.join(names[:5])}"
                            + (" (list them in init_missing_ok)" if problem == "lacks tensors" else ""),
                            config_path)
    model.load_state_dict({name: tensor for name, tensor in state.items() if name in own}, strict=False)
    return missing


def _existing(path: Path) -> str | None:
    return str(path) if path.exists() else None


def read_logged_metrics(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged scalar of a run as ``{name: [(step, value), ...]}``, merging the CSV logs of
    all (re)starts: rows an interrupted attempt logged after its last checkpoint are replaced
    by the rows of the attempt that resumed from that checkpoint."""
    versions = sorted((Path(run_dir) / "logs" / "csv").glob("version_*/metrics.csv"),
                      key=lambda p: int(p.parent.name.split("_")[-1]))
    merged: dict[str, list[tuple[int, float]]] = {}
    for path in versions:
        with path.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("step", "") != ""]
        if not rows:
            continue
        first_step = min(int(float(row["step"])) for row in rows)
        merged = {name: [(s, v) for s, v in series if s < first_step]
                  for name, series in merged.items()}
        for row in rows:
            step = int(float(row["step"]))
            for name, value in row.items():
                if name in ("step", "epoch") or value in ("", None):
                    continue
                merged.setdefault(name, []).append((step, float(value)))
    return merged


def plot_loss_curves(run_dir: str | Path) -> Path | None:
    """Write ``loss_curves.png``: training loss per logged step and validation loss per
    validation, on a log scale. Returns None when nothing was logged yet."""
    metrics = read_logged_metrics(run_dir)
    curves = {name: metrics[name] for name in ("train/loss", "val/loss") if metrics.get(name)}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    for name, series in curves.items():
        steps, values = zip(*series)
        axis.plot(steps, values, marker="o" if name.startswith("val") else None,
                  markersize=3, label=name)
    if all(v > 0 for series in curves.values() for _, v in series):
        axis.set_yscale("log")
    axis.set_xlabel("optimiser step")
    axis.set_ylabel("loss")
    axis.set_title(Path(run_dir).name)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path = Path(run_dir) / "loss_curves.png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config saved in a run folder."""
    import yaml

    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"no {CONFIG_NAME} (not a focaldepth run folder?)", run_dir)
    return config_from_dict(yaml.safe_load(path.read_text()), path)
