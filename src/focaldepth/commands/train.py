"""`focaldepth train`: train a model from a config (see ``configs/train/``) on Lightning.

    focaldepth train --config configs/train/poolnet_cpu.yaml [--out runs/poolnet_cpu]
        [--resume] [--max-steps N] [--devices N --accelerator cpu|gpu --strategy ddp
        --num-nodes N --precision bf16-mixed] [--batch-size B] [--set KEY.SUB=VALUE ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from focaldepth.errors import UserError

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Training config YAML (configs/train/*.yaml). May be omitted with "
    "--resume: the run folder's saved config is used.")]
OutOption = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Run folder (default: runs/<config name>).")]
ResumeOption = Annotated[bool, typer.Option(
    "--resume", help="Continue from OUT/checkpoints/last.ckpt (starts afresh if there is none).")]
MaxStepsOption = Annotated[int | None, typer.Option("--max-steps", help="trainer.max_steps")]
DevicesOption = Annotated[str | None, typer.Option(
    "--devices", help="trainer.devices: a count, 'auto' or a list like [0,1]")]
AcceleratorOption = Annotated[str | None, typer.Option(
    "--accelerator", help="trainer.accelerator: cpu, gpu, auto")]
StrategyOption = Annotated[str | None, typer.Option(
    "--strategy", help="trainer.strategy: auto, ddp, ddp_spawn, ...")]
NodesOption = Annotated[int | None, typer.Option("--num-nodes", help="trainer.num_nodes")]
PrecisionOption = Annotated[str | None, typer.Option(
    "--precision", help="trainer.precision: 32-true, bf16-mixed, 16-mixed")]
BatchOption = Annotated[int | None, typer.Option("--batch-size", help="data.batch_size")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any config key, e.g. --set optimizer.lr=1e-4 (the value is YAML).")]


def flag_overrides(max_steps: int | None = None, devices: str | None = None,
                   accelerator: str | None = None, strategy: str | None = None,
                   num_nodes: int | None = None, precision: str | None = None,
                   batch_size: int | None = None, sets: list[str] | None = None) -> list[str]:
    """Turn the convenience flags into ``--set`` overrides (applied before validation)."""
    out = []
    for key, value in (("trainer.max_steps", max_steps), ("trainer.devices", devices),
                       ("trainer.accelerator", accelerator), ("trainer.strategy", strategy),
                       ("trainer.num_nodes", num_nodes), ("trainer.precision", precision),
                       ("data.batch_size", batch_size)):
        if value is not None:
            out.append(f"{key}={value}")
    return out + list(sets or [])


def register(app: typer.Typer) -> None:
    """Add ``focaldepth train``."""

    @app.command("train")
    def train_command(config: ConfigOption = None, out: OutOption = None,
                      resume: ResumeOption = False, max_steps: MaxStepsOption = None,
                      devices: DevicesOption = None, accelerator: AcceleratorOption = None,
                      strategy: StrategyOption = None, num_nodes: NodesOption = None,
                      precision: PrecisionOption = None, batch_size: BatchOption = None,
                      sets: SetOption = None) -> None:
        """Train a depth model (Lightning: checkpoints, resume, TensorBoard + CSV logs, DDP)."""
        from focaldepth.train.config import apply_overrides, config_from_dict, read_config_mapping

        overrides = flag_overrides(max_steps, devices, accelerator, strategy, num_nodes,
                                   precision, batch_size, sets)
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
                  f"{result.max_steps} ({result.wall_time_s:.1f} s of training); best val loss {best}")
            print(f"run folder: {run_dir}  (checkpoints/last.ckpt, checkpoints/best.pt, "
                  f"logs/, loss_curves.png)")
