"""Training configuration: flat YAML sections that map one-to-one to constructor arguments.

A config file has these top-level keys (all but ``model`` and ``data.train``/``data.val``
have defaults; the defaults are the seed's protocol: a 4-frame focal stack with increasing
focus distances, 256×256 random crops, MSE on valid-depth pixels, validation each epoch):

``model``      ``name`` + keyword arguments of ``focaldepth.models.create(name, **kwargs)``
``data``       :class:`DataConfig` -> ``FocusSweepDataModule(**data)``
``loss``       list of terms for ``focaldepth.losses.build_loss``
``optimizer``  :class:`OptimizerConfig` -> ``torch.optim.AdamW(**optimizer)``
``scheduler``  :class:`SchedulerConfig` (cosine, step or constant learning rate, per step)
``trainer``    :class:`TrainerConfig` -> ``lightning.Trainer(**trainer)``
``checkpoint`` :class:`CheckpointConfig` (how often ``last.ckpt`` is refreshed)
``seed``, ``name``, ``description``, ``torch_threads`` (``torch.set_num_threads`` per process:
1 lets two CPU runs share a 2-core machine without OpenMP threads waiting on each other)

``extends: OTHER.yaml`` (path relative to the file; or a list, merged left to right) merges
the file over others, so that an ablation states only what it changes and a budget fragment
(``_budget_cpu.yaml``) can be layered onto any experiment; the *resolved* config (no
``extends``) is what a run saves and what its checkpoints carry. Unknown keys and wrong types raise :class:`UserError`
naming the file and the key.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from focaldepth.errors import UserError

#: Keys of the ``trainer`` section that may change when a killed run is resumed (more steps,
#: other hardware); anything else must match the saved config.
RESUMABLE_CHANGES = frozenset({
    "trainer.max_steps", "trainer.devices", "trainer.accelerator", "trainer.strategy",
    "trainer.num_nodes", "trainer.enable_progress_bar", "data.num_workers", "torch_threads",
})


@dataclass
class ModelConfig:
    """``focaldepth.models.create(name, **kwargs)``; in YAML the kwargs sit beside ``name``."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Arguments of :class:`focaldepth.train.data.FocusSweepDataModule`."""

    train: str | list[str]  # folder(s) of generated sequences; several are concatenated
    val: str | list[str] | None = None  # None: hold out val_fraction of the training sequences
    val_fraction: float = 0.05
    train_split: str | None = None  # passed as ``split=`` to the dataset
    val_split: str | None = None
    num_frames: int = 4  # the seed: one focal stack of 4 frames
    sample: Literal["ramp", "window"] = "ramp"  # ramp = increasing focus, as in the seed
    crop_size: int | None = 256  # the seed: 256x256 random crops
    random_crop: bool = True
    val_crop_size: int | None = 256  # centre crops for validation (None = full frame)
    motion: Literal["all", "static", "dynamic"] = "all"  # filter the *training* sequences
    batch_size: int = 4
    num_workers: int = 0
    dataset: str = "focaldepth.data:FocusSweepDataset"  # any adapter with the same item dicts
    # The seed's mask: train (and validate) only on pixels whose depth lies in the range the
    # focal stack can resolve: its focus distances' inverse-depth span widened by this fraction
    # on each side (0.25 = the zoo models' output range). None: every pixel with ground truth.
    valid_range_margin: float | None = 0.25
    # Training batches with a random number of frames: each batch draws k in
    # [min_frames, num_frames] and every item keeps its reference frame plus k - 1 others
    # (models that take any number of slices learn not to depend on one). None: always num_frames.
    min_frames: int | None = None


@dataclass
class OptimizerConfig:
    """``torch.optim.AdamW(params, **optimizer)``."""

    lr: float = 3.0e-4
    weight_decay: float = 1.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class SchedulerConfig:
    """Learning-rate schedule, stepped every optimiser step. ``cosine`` decays from ``lr`` to
    ``min_lr`` over ``trainer.max_steps`` after a linear warm-up; ``step`` multiplies by
    ``gamma`` every ``step_size`` steps; ``constant`` keeps ``lr``."""

    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr: float = 0.0
    step_size: int = 1000
    gamma: float = 0.5


@dataclass
class TrainerConfig:
    """Keyword arguments of ``lightning.Trainer`` (the ones a user sets in this project).
    ``val_check_interval: null`` validates once per epoch (the seed's protocol)."""

    max_steps: int = 2000
    val_check_interval: int | float | None = None
    check_val_every_n_epoch: int = 1
    limit_val_batches: int | float = 1.0
    num_sanity_val_steps: int = 0
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    enable_progress_bar: bool = True
    deterministic: bool | str = False


@dataclass
class CheckpointConfig:
    """``last.ckpt`` is refreshed every ``every_n_steps`` optimiser steps and at each
    validation (so a killed run loses at most that many steps); ``best.ckpt`` keeps the
    lowest ``monitor``."""

    every_n_steps: int = 100
    monitor: str = "val/loss"


@dataclass
class TrainConfig:
    """A whole training run."""

    model: ModelConfig
    data: DataConfig
    loss: list[dict[str, Any]] = field(
        default_factory=lambda: [{"name": "masked_mse", "weight": 1.0}])
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    seed: int = 0
    name: str | None = None
    description: str = ""
    torch_threads: int | None = None  # torch.set_num_threads per process (None: torch default)
    # Warm start: a model file (focaldepth.models.save / an exported checkpoints/*.pt) whose
    # weights initialise a fresh run (ignored on --resume). Loading is strict except for the
    # parameter-name prefixes listed in init_missing_ok: tensors under them may be missing from
    # the file (a new head, freshly initialised) or from the model (a head dropped).
    init_from: str | None = None
    init_missing_ok: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data, in the same flat form as the YAML files."""
        out = dataclasses.asdict(self)
        model = out.pop("model")
        out = {"model": {"name": model["name"], **model["kwargs"]}, **out}
        return out


# --------------------------------------------------------------------------------------------
# parsing


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether a YAML value fits a (simple) dataclass annotation."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def _build_section(cls: type, values: Any, section: str, path: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UserError(f"config section '{section}' must be a mapping, got {type(values).__name__}",
                        path)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"unknown key '{section}.{unknown[0]}' (valid keys: "
                        f"{', '.join(sorted(fields))})", path)
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in values:
            raise UserError(f"missing required key '{section}.{name}'", path)
        if name in values and not _type_ok(values[name], hints[name]):
            raise UserError(f"'{section}.{name}' must be {_describe(hints[name])}, "
                            f"got {values[name]!r}", path)
    return cls(**values)


def _float_from_string(text: str, key: str, path: str) -> float:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; accept it as the number people meant."""
    try:
        return float(text)
    except ValueError:
        raise UserError(f"'{key}' must be a number, got {text!r}", path) from None


def _coerce_floats(section: dict, cls: type, key: str, path: str) -> dict:
    """Turn ``'1e-3'`` strings into floats wherever the field is (or may be) a float."""
    hints = typing.get_type_hints(cls)
    out = dict(section)
    for name, value in section.items():
        annotation = hints.get(name)
        if not isinstance(value, str) or annotation is None:
            continue
        args = typing.get_args(annotation) if typing.get_origin(annotation) in (
            Union, types.UnionType) else (annotation,)
        if float in args and str not in args:
            out[name] = _float_from_string(value, f"{key}.{name}", path)
        elif typing.get_origin(annotation) is list and float in typing.get_args(annotation):
            out[name] = [_float_from_string(v, f"{key}.{name}", path) if isinstance(v, str) else v
                         for v in value]
    return out


def _check_loss_terms(terms: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(terms, list) or not terms:
        raise UserError("'loss' must be a non-empty list of terms like {name: masked_mse, "
                        "weight: 1.0}", path)
    for i, term in enumerate(terms):
        if not isinstance(term, dict) or not isinstance(term.get("name"), str):
            raise UserError(f"loss[{i}] must be a mapping with a 'name', got {term!r}", path)
        weight = term.get("weight", 1.0)
        if isinstance(weight, str):
            weight = _float_from_string(weight, f"loss[{i}].weight", path)
            term["weight"] = weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise UserError(f"loss[{i}].weight must be a number, got {weight!r}", path)
    return terms


_SECTIONS: dict[str, type] = {
    "data": DataConfig, "optimizer": OptimizerConfig, "scheduler": SchedulerConfig,
    "trainer": TrainerConfig, "checkpoint": CheckpointConfig,
}
_TOP_LEVEL = {"model", "loss", "seed", "name", "description", "torch_threads", "init_from", "init_missing_ok",
              *_SECTIONS}


def config_from_dict(raw: dict[str, Any], path: str | Path = "<config>") -> TrainConfig:
    """Validate a resolved (``extends`` already merged) mapping into a :class:`TrainConfig`."""
    path = str(path)
    if not isinstance(raw, dict):
        raise UserError("a training config must be a YAML mapping", path)
    raw = copy.deepcopy(raw)
    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise UserError(f"unknown key '{unknown[0]}' (valid top-level keys: "
                        f"{', '.join(sorted(_TOP_LEVEL))})", path)
    model = raw.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise UserError("'model' must be a mapping with a 'name' (see `focaldepth models`)", path)
    model_config = ModelConfig(name=model.pop("name"), kwargs=model)
    if "data" not in raw:
        raise UserError("missing required section 'data' (with at least a 'train' folder)", path)
    sections = {key: _build_section(cls, _coerce_floats(raw.get(key) or {}, cls, key, path),
                                    key, path)
                for key, cls in _SECTIONS.items() if key in raw}
    kwargs: dict[str, Any] = {"model": model_config, **sections}
    if "loss" in raw:
        kwargs["loss"] = _check_loss_terms(raw["loss"], path)
    for key, kind in (("seed", int), ("name", (str, type(None))), ("description", str),
                      ("torch_threads", (int, type(None))), ("init_from", (str, type(None))),
                      ("init_missing_ok", list)):
        if key in raw:
            if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
                raise UserError(f"'{key}' has the wrong type: {raw[key]!r}", path)
            kwargs[key] = raw[key]
    if not all(isinstance(prefix, str) for prefix in kwargs.get("init_missing_ok", [])):
        raise UserError("'init_missing_ok' must be a list of parameter-name prefixes", path)
    config = TrainConfig(**kwargs)
    _check_values(config, path)
    return config


def _check_values(config: TrainConfig, path: str) -> None:
    """Range checks that types alone do not catch."""
    checks = [
        (config.data.num_frames >= 1, "data.num_frames must be >= 1"),
        (config.data.batch_size >= 1, "data.batch_size must be >= 1"),
        (0 < config.data.val_fraction < 1, "data.val_fraction must be in (0, 1)"),
        (config.data.valid_range_margin is None or config.data.valid_range_margin >= 0,
         "data.valid_range_margin must be >= 0 (or null)"),
        (config.data.num_workers >= 0, "data.num_workers must be >= 0"),
        (config.data.min_frames is None or 1 <= config.data.min_frames <= config.data.num_frames,
         "data.min_frames must be in [1, data.num_frames] (or null)"),
        (config.data.crop_size is None or config.data.crop_size >= 8, "data.crop_size must be >= 8"),
        (config.optimizer.lr > 0, "optimizer.lr must be positive"),
        (config.trainer.max_steps >= 1, "trainer.max_steps must be >= 1"),
        (config.scheduler.warmup_steps >= 0, "scheduler.warmup_steps must be >= 0"),
        (config.scheduler.step_size >= 1, "scheduler.step_size must be >= 1"),
        (config.checkpoint.every_n_steps >= 1, "checkpoint.every_n_steps must be >= 1"),
        (config.torch_threads is None or config.torch_threads >= 1, "torch_threads must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message, path)


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config_mapping(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config and merge it over the file it ``extends`` (recursively)."""
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", path)
    if path.resolve() in _seen:
        raise UserError("'extends' forms a cycle", path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserError(f"not valid YAML ({str(error).splitlines()[0]})", path) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError("a training config must be a YAML mapping", path)
    parents = raw.pop("extends", None)
    if parents is None:
        return raw
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise UserError("'extends' must be a path (or a list of paths) to other configs", path)
    merged: dict[str, Any] = {}
    for parent in parents:  # later parents override earlier ones; this file overrides all
        merged = _deep_merge(merged, read_config_mapping(path.parent / parent,
                                                         _seen + (path.resolve(),)))
    return _deep_merge(merged, raw)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"trainer.max_steps=10"`` -> (["trainer", "max_steps"], 10); the value is YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects KEY.SUB=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise UserError(f"--set {key}: value {value!r} is not valid YAML") from None
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a config mapping (validation happens afterwards)."""
    out = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {text!r}: '{key}' is not a section")
        node[keys[-1]] = value
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read, merge (``extends``), override (``--set``) and validate a training config."""
    raw = apply_overrides(read_config_mapping(path), overrides or [])
    return config_from_dict(raw, path)


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "model":
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    a, b = flatten(saved), flatten(new)
    return sorted(key for key in set(a) | set(b) if a.get(key) != b.get(key))


def dump_yaml(config: TrainConfig | dict[str, Any]) -> str:
    """The resolved config as YAML text (keys in declaration order)."""
    data = config.to_dict() if isinstance(config, TrainConfig) else config
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
