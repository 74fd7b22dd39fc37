"""The Lightning data module: training and validation sets of focus-sweep sequences.

It builds one dataset per folder with the adapter class named in the config (by default
:class:`focaldepth.data.FocusSweepDataset`; any class taking the same keyword arguments and
returning the same item dicts works), concatenates several folders, optionally keeps only
static or only dynamic training sequences, and leaves sharding to Lightning (under DDP each
process gets a ``DistributedSampler`` automatically)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from focaldepth.errors import UserError


def import_object(spec: str, where: str | None = None) -> Any:
    """``"package.module:Name"`` -> the object (for dataset adapters named in configs)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"expected 'package.module:Name', got {spec!r}", where)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"cannot import {module_name!r} ({error})", where) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UserError(f"{module_name!r} has no {attr!r}", where) from None


def _as_list(folders: str | Sequence[str]) -> list[str]:
    return [folders] if isinstance(folders, str) else list(folders)


def _is_dynamic(dataset: Dataset, index: int) -> bool:
    """Whether item ``index`` comes from a dynamic sequence. Uses a cheap per-item lookup when
    the adapter offers one (``item_is_dynamic(index)``), otherwise reads the item."""
    lookup = getattr(dataset, "item_is_dynamic", None)
    if callable(lookup):
        return bool(lookup(index))
    return bool(dataset[index]["is_dynamic"])


def filter_motion(dataset: Dataset, motion: str) -> Dataset:
    """Keep all items, or only those of static / dynamic sequences (for the ablation
    "static-only vs static+dynamic training data")."""
    if motion == "all":
        return dataset
    want_dynamic = motion == "dynamic"
    keep = [i for i in range(len(dataset)) if _is_dynamic(dataset, i) == want_dynamic]
    return Subset(dataset, keep)


def build_dataset(dataset_class: Any, folders: str | Sequence[str], *, config_path: str | None,
                  **kwargs: Any) -> Dataset:
    """One dataset per folder (concatenated). Missing folders and empty sets are user errors."""
    accepted = inspect.signature(dataset_class).parameters
    has_var_kwargs = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    # Only pass ``split`` when set, so adapters without splits keep working.
    kwargs = {k: v for k, v in kwargs.items() if not (k == "split" and v is None)}
    if not has_var_kwargs:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise UserError(f"dataset {dataset_class.__name__} does not take {unknown}",
                            config_path)
    parts = []
    for folder in _as_list(folders):
        if not Path(folder).is_dir():
            raise UserError(f"data folder {folder!r} does not exist (make one with "
                            "`focaldepth generate --config configs/data/... --out DIR`)",
                            config_path)
        parts.append(dataset_class(folder, **kwargs))
    dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    if len(dataset) == 0:
        raise UserError(f"no training items in {folders!r} (num_frames too large, or wrong "
                        "split?)", config_path)
    return dataset


class FocusSweepDataModule(L.LightningDataModule):
    """Training set (random crops) and validation set (fixed centre crops) of focal stacks.
    The constructor arguments are exactly the ``data`` section of a training config."""

    def __init__(self, train: str | list[str], val: str | list[str], train_split: str | None = None,
                 val_split: str | None = None, num_frames: int = 4, sample: str = "ramp",
                 crop_size: int | None = 256, random_crop: bool = True,
                 val_crop_size: int | None = 256, motion: str = "all", batch_size: int = 4,
                 num_workers: int = 0, dataset: str = "focaldepth.data:FocusSweepDataset",
                 seed: int = 0, config_path: str | None = None) -> None:
        super().__init__()
        self.train_folders, self.val_folders = train, val
        self.train_split, self.val_split = train_split, val_split
        self.num_frames, self.sample = num_frames, sample
        self.crop_size, self.random_crop, self.val_crop_size = crop_size, random_crop, val_crop_size
        self.motion, self.batch_size, self.num_workers = motion, batch_size, num_workers
        self.dataset_spec, self.seed, self.config_path = dataset, seed, config_path
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _dataset(self, folders: str | list[str], split: str | None, crop_size: int | None,
                 random_crop: bool) -> Dataset:
        dataset_class = import_object(self.dataset_spec, self.config_path)
        return build_dataset(dataset_class, folders, config_path=self.config_path,
                             num_frames=self.num_frames, crop_size=crop_size, split=split,
                             sample=self.sample, random_crop=random_crop, seed=self.seed)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            train = self._dataset(self.train_folders, self.train_split, self.crop_size,
                                  self.random_crop)
            self.train_set = filter_motion(train, self.motion)
            if len(self.train_set) == 0:
                raise UserError(f"no {self.motion} training sequences in {self.train_folders!r}",
                                self.config_path)
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self._dataset(self.val_folders, self.val_split, self.val_crop_size,
                                         random_crop=False)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, drop_last=shuffle and
                          len(dataset) >= self.batch_size,
                          persistent_workers=self.num_workers > 0, generator=generator)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup('fit') first"
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup('fit') first"
        return self._loader(self.val_set, shuffle=False)
