"""The ``focaldepth generate`` config file: schema, strict YAML parsing, validation.

A config is YAML with these top-level keys (all optional except where a default makes no
sense; see ``configs/data/*.yaml`` for complete, commented examples)::

    seed: 0                 # dataset seed: sequence i uses SeedSequence([seed, i])
    num_sequences: 1000     # default for --num
    split: train            # texture/shape pool: train or test (focaldepth.scenes.pools)
    split_seed: 0           # seed of the train/test pool split; equal for train and test sets
    scene: {...}            # the scene distribution, focaldepth.scenes.config.SceneConfig

Parsing is strict: an unknown key anywhere (a typo), a wrong type or an impossible value
raises one :class:`~focaldepth.errors.UserError` line that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from focaldepth.errors import UserError
from focaldepth.scenes.config import SceneConfig, to_plain
from focaldepth.scenes.pools import SPLITS

# Bump when the same config and seed would produce different files (scene sampling,
# rasterisation, noise, storage layout). Stored in every file and in the manifest.
GENERATOR_VERSION = "procedural-3"


@dataclass(frozen=True)
class GenerateConfig:
    seed: int = 0
    num_sequences: int = 1000
    split: str = "train"
    split_seed: int = 0
    scene: SceneConfig = field(default_factory=SceneConfig)

    def check(self, path: object | None = None) -> None:
        if self.split not in SPLITS:
            raise UserError(f"split: must be one of {list(SPLITS)}, got {self.split!r}", path)
        if self.num_sequences < 1:
            raise UserError(f"num_sequences: must be >= 1, got {self.num_sequences}", path)
        if self.seed < 0 or self.split_seed < 0:
            raise UserError("seed and split_seed must be non-negative integers", path)
        self.scene.check(path)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def fingerprint(self) -> str:
        """A hash of everything that determines the generated files (not num_sequences:
        growing a dataset with a larger --num keeps the sequences already made)."""
        content = self.to_dict()
        content.pop("num_sequences")
        content["generator_version"] = GENERATOR_VERSION
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, path: object) -> Any:
    """``value`` converted to the annotated type ``tp`` or a UserError naming ``key``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping of settings, got {value!r}", path)
        return _build(tp, value, key, path)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key}: expected a list, got {value!r}", path)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", path) for i, v in enumerate(value))
        if len(value) != len(args):
            raise UserError(f"{key}: expected a list of {len(args)} values, got {list(value)}", path)
        return tuple(_convert(v, a, f"{key}[{i}]", path) for i, (v, a) in enumerate(zip(value, args)))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config type {tp}")  # not used by the schema
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key}: expected true or false, got {value!r}", path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key}: expected an integer, got {value!r}", path)
        return value
    if tp is float:
        if isinstance(value, str):
            # PyYAML reads "1e-4" (no dot) as a string; accept any spelling float() accepts.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key}: expected a number, got {value!r}", path)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{key}: expected a string, got {value!r}", path)
        return value
    raise TypeError(f"unsupported config type {_type_name(tp)} for {key}")


def _build(cls: type, mapping: dict, prefix: str, path: object) -> Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for key in mapping:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise UserError(f"unknown key {where!r} (allowed here: {', '.join(known)})", path)
    kwargs = {name: _convert(value, hints[name], f"{prefix}.{name}" if prefix else name, path)
              for name, value in mapping.items()}
    return cls(**kwargs)


def parse_config(mapping: Any, path: object | None = None) -> GenerateConfig:
    """A validated :class:`GenerateConfig` from a parsed YAML mapping."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise UserError("a generate config must be a YAML mapping of settings", path)
    if mapping.get("generator") == "rgbd":
        raise UserError("an RGB-D sweep config (generator: rgbd): load it with "
                        "focaldepth.generate.rgbd.load_rgbd_config", path)
    config = _build(GenerateConfig, mapping, "", path)
    config.check(path)
    return config


def read_yaml_file(path: str | Path) -> Any:
    """The parsed YAML of a config file (one-line UserError naming the file on any problem)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("config file not found", path) from None
    except OSError as error:
        raise UserError(f"cannot read config: {error.strerror}", path) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"invalid YAML{where}: {getattr(error, 'problem', error)}", path) from None


def load_config(path: str | Path) -> GenerateConfig:
    """Read, parse and validate a generate config file (one-line UserError on any problem)."""
    return parse_config(read_yaml_file(path), path)


def dump_config(config: GenerateConfig) -> str:
    """The config as YAML (every key, defaults filled in), in schema order."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
