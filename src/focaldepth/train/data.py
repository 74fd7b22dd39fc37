"""The Lightning data module: training and validation sets of focus-sweep sequences.

It builds one dataset per folder with the adapter class named in the config (by default
:class:`focaldepth.data.FocusSweepDataset`; any class taking the same keyword arguments and
returning the same item dicts works), concatenates several folders, optionally keeps only
static or only dynamic training sequences, holds out a validation share of the training
sequences when no validation folder is given, and leaves sharding to Lightning (under DDP
each process gets a ``DistributedSampler`` automatically)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, default_collate

from focaldepth.errors import UserError

#: Multiplier of the sequence-index hash that decides which sequences are held out for
#: validation (Knuth's multiplicative hash: stable whatever the number of sequences).
_HASH_MULTIPLIER = 2654435761


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


def _leaves(dataset: Dataset) -> list[Dataset]:
    """The underlying datasets of a Subset/ConcatDataset tree."""
    if isinstance(dataset, Subset):
        return _leaves(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        return [leaf for part in dataset.datasets for leaf in _leaves(part)]
    return [dataset]


def _records(dataset: Dataset) -> list[dict] | None:
    records = getattr(dataset, "records", None)
    return records if isinstance(records, list) and len(records) == len(dataset) else None


def item_sequence_index(dataset: Dataset, index: int) -> int:
    """Sequence index of item ``index`` (from the adapter's records when it has them, which
    avoids reading the item)."""
    records = _records(dataset)
    if records is not None and "index" in records[index]:
        return int(records[index]["index"])
    return int(dataset[index]["sequence_index"])


def item_is_dynamic(dataset: Dataset, index: int) -> bool:
    """Whether item ``index`` comes from a dynamic sequence (records first, as above)."""
    records = _records(dataset)
    if records is not None and "is_dynamic" in records[index]:
        return bool(records[index]["is_dynamic"])
    return bool(dataset[index]["is_dynamic"])


def filter_motion(dataset: Dataset, motion: str) -> Dataset:
    """Keep all items, or only those of static / dynamic sequences (for the ablation
    "static-only vs static+dynamic training data")."""
    if motion == "all":
        return dataset
    want_dynamic = motion == "dynamic"
    keep = [i for i in range(len(dataset)) if item_is_dynamic(dataset, i) == want_dynamic]
    return Subset(dataset, keep)


def is_held_out(sequence_index: int, fraction: float) -> bool:
    """Whether a sequence belongs to the validation share: a hash of its index, so the split
    does not move when more sequences are generated."""
    return (sequence_index * _HASH_MULTIPLIER) % 2**32 < fraction * 2**32


def split_held_out(dataset: Dataset, fraction: float, held_out: bool) -> Subset:
    """The items of ``dataset`` whose sequence is (``held_out=True``) or is not held out."""
    keep = [i for i in range(len(dataset))
            if is_held_out(item_sequence_index(dataset, i), fraction) == held_out]
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
        raise UserError(f"no items in {folders!r}", config_path)
    return dataset


#: Item keys with one entry per frame (first dimension S), subsampled by RandomFrameCount.
PER_FRAME_KEYS = ("frames", "focus_distance_m", "coc_px")


class RandomFrameCount:
    """Collate items into a batch of a random number of frames ``k`` in ``[min_frames, S]``:
    every item keeps its reference (last) frame, whose ground truth it carries, and ``k - 1``
    of its other frames chosen at random, in capture order. One ``k`` per batch, so the batch
    stays one tensor. Items are a function of the loader's draw order and ``seed``."""

    def __init__(self, min_frames: int, seed: int = 0) -> None:
        self.min_frames = min_frames
        self.rng = np.random.default_rng([seed, 7])

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        num_frames = int(items[0]["frames"].shape[0])
        count = int(self.rng.integers(min(self.min_frames, num_frames), num_frames + 1))
        subsets = []
        for item in items:
            others = np.sort(self.rng.choice(num_frames - 1, size=count - 1, replace=False))
            keep = torch.from_numpy(np.append(others, num_frames - 1))
            subsets.append({key: (value[keep] if key in PER_FRAME_KEYS else value)
                            for key, value in item.items()})
        return default_collate(subsets)


class FocusSweepDataModule(L.LightningDataModule):
    """Training set (random crops, fresh windows every epoch) and validation set (centre
    crops, fixed windows) of focal stacks. The constructor arguments are the ``data`` section
    of a training config (plus ``seed``)."""

    def __init__(self, train: str | list[str], val: str | list[str] | None = None,
                 val_fraction: float = 0.05, train_split: str | None = None,
                 val_split: str | None = None, num_frames: int = 4, sample: str = "ramp",
                 crop_size: int | None = 256, random_crop: bool = True,
                 val_crop_size: int | None = 256, motion: str = "all", batch_size: int = 4,
                 num_workers: int = 0, dataset: str = "focaldepth.data:FocusSweepDataset",
                 valid_range_margin: float | None = 0.25, min_frames: int | None = None,
                 seed: int = 0, config_path: str | None = None) -> None:
        super().__init__()
        self.train_folders, self.val_folders, self.val_fraction = train, val, val_fraction
        self.train_split, self.val_split = train_split, val_split
        self.num_frames, self.sample = num_frames, sample
        self.crop_size, self.random_crop, self.val_crop_size = crop_size, random_crop, val_crop_size
        self.motion, self.batch_size, self.num_workers = motion, batch_size, num_workers
        self.dataset_spec, self.seed, self.config_path = dataset, seed, config_path
        self.valid_range_margin = valid_range_margin
        self.min_frames = min_frames
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _dataset(self, folders: str | list[str], split: str | None, crop_size: int | None,
                 random_crop: bool) -> Dataset:
        dataset_class = import_object(self.dataset_spec, self.config_path)
        # Validation windows are fixed (seed 0, like evaluate), so runs that differ only in
        # their seed choose their best checkpoint on the same validation items.
        return build_dataset(dataset_class, folders, config_path=self.config_path,
                             num_frames=self.num_frames, crop_size=crop_size, split=split,
                             sample=self.sample, random_crop=random_crop,
                             seed=self.seed if random_crop else 0)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train = self._dataset(self.train_folders, self.train_split, self.crop_size,
                              self.random_crop)
        if self.val_folders is None:
            # Validation = held-out sequences of the training folder(s), centre-cropped.
            val = self._dataset(self.train_folders, self.train_split, self.val_crop_size,
                                random_crop=False)
            train = split_held_out(train, self.val_fraction, held_out=False)
            self.val_set = split_held_out(val, self.val_fraction, held_out=True)
        else:
            self.val_set = self._dataset(self.val_folders, self.val_split, self.val_crop_size,
                                         random_crop=False)
        self.train_set = filter_motion(train, self.motion)
        for name, dataset in (("training", self.train_set), ("validation", self.val_set)):
            if len(dataset) == 0:
                raise UserError(f"no {name} items (folders {self.train_folders!r}, motion "
                                f"{self.motion!r}, val_fraction {self.val_fraction})",
                                self.config_path)

    def set_epoch(self, epoch: int) -> None:
        """Fresh random windows and crops for epoch ``epoch`` (adapters with ``set_epoch``)."""
        if self.train_set is None:
            return
        for leaf in _leaves(self.train_set):
            set_epoch = getattr(leaf, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        collate = None
        if shuffle and self.min_frames is not None and self.min_frames < self.num_frames:
            collate = RandomFrameCount(self.min_frames, self.seed)
        # Workers are not persistent: each epoch's workers get the dataset after set_epoch.
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers,
                          drop_last=shuffle and len(dataset) >= self.batch_size,
                          generator=generator, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup('fit') first"
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup('fit') first"
        return self._loader(self.val_set, shuffle=False)
