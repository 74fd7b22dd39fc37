"""`focaldepth train`: train a model from a config (see ``configs/train/``) on Lightning."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from focaldepth.errors import UserError


def _overrides(max_steps: Optional[int], devices: Optional[str], accelerator: Optional[str],
               strategy: Optional[str], num_nodes: Optional[int], precision: Optional[str],
               batch_size: Optional[int], sets: list[str]) -> list[str]:
    """Turn the convenience flags into ``--set`` overrides (applied before validation)."""
    out = []
    for key, value in (("trainer.max_steps", max_steps), ("trainer.devices", devices),
                       ("trainer.accelerator", accelerator), ("trainer.strategy", strategy),
                       ("trainer.num_nodes", num_nodes), ("trainer.precision", precision),
                       ("data.batch_size", batch_size)):
        if value is not None:
            out.append(f"{key}={value}")
    return out + list(sets)


def register(app: typer.Typer) -> None:
    """Add ``focaldepth train``."""

    @app.command("train")
    def train_command(
        config: Optional[Path] = typer.Option(
            None, "--config", "-c", help="Training config YAML (configs/train/*.yaml). May be "
            "omitted with --resume: the run folder's saved config is used."),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Run folder [default: runs/<config name>]."),
        resume: bool = typer.Option(
            False, "--resume", help="Continue from OUT/checkpoints/last.ckpt (starts afresh if "
            "there is none yet)."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="trainer.max_steps"),
        devices: Optional[str] = typer.Option(
            None, "--devices", help="trainer.devices: a count, 'auto' or a list like [0,1]"),
        accelerator: Optional[str] = typer.Option(None, "--accelerator",
                                                  help="trainer.accelerator: cpu, gpu, auto"),
        strategy: Optional[str] = typer.Option(None, "--strategy",
                                               help="trainer.strategy: auto, ddp, ddp_spawn..."),
        num_nodes: Optional[int] = typer.Option(None, "--num-nodes", help="trainer.num_nodes"),
        precision: Optional[str] = typer.Option(None, "--precision",
                                                help="trainer.precision: 32-true, bf16-mixed..."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="data.batch_size"),
        sets: list[str] = typer.Option(
            [], "--set", help="Override any config key, e.g. --set optimizer.lr=1e-4 (YAML value)."),
    ) -> None:
        """Train a depth model (Lightning: checkpoints, resume, TensorBoard + CSV logs, DDP)."""
        from focaldepth.train.config import apply_overrides, config_from_dict, read_config_mapping

        overrides = _overrides(max_steps, devices, accelerator, strategy, num_nodes, precision,
                               batch_size, sets)
        if config is None:
            if not (resume and out is not None):
                raise UserError("--config is required (or --resume --out RUN to continue a run "
                                "with its saved config)")
            config = out / "config.yaml"
            if not config.is_file():
                raise UserError("no saved config.yaml to resume from; pass --config", out)
        raw = apply_overrides(read_config_mapping(config), overrides)
        train_config = config_from_dict(raw, config)
        run_dir = out if out is not None else Path("runs") / (train_config.name or config.stem)

        from focaldepth.train.run import is_primary_process, train

        result = train(train_config, run_dir, resume=resume, config_path=str(config))
        if is_primary_process():
            best = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4g}"
            print(f"trained {train_config.model.name} to step {result.global_step}/"
                  f"{result.max_steps} in {result.wall_time_s:.1f} s; best val loss {best}")
            print(f"run folder: {run_dir}  (checkpoints/last.ckpt, checkpoints/best.pt, "
                  f"logs/, loss_curves.png)")
