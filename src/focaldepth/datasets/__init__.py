"""Adapters for the field's published depth-from-focus / defocus datasets.

``focaldepth evaluate --data NAME:PATH`` and ``focaldepth predict NAME:PATH[#ITEM]`` read
them; ``NAME`` is one of :data:`ADAPTERS` (``focaldepth.datasets.list_adapters()``). Each
adapter checks the on-disk layout when it is opened, reads one stack only when asked, and
yields the item dicts of :class:`focaldepth.data.FocusSweepDataset` (frames (S, 3, H, W) in
[0, 1] near to far, focus_distance_m (S,), camera (3,), depth_m / valid (1, H, W), ...).
The protocols (splits, masks, depth caps, cameras) are documented in ``docs/datasets.md``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from focaldepth.errors import UserError

#: NAME -> (module, class) of every adapter.
ADAPTERS: dict[str, tuple[str, str]] = {
    "ddff12": ("focaldepth.datasets.ddff12", "DDFF12"),
    "fod500": ("focaldepth.datasets.fod500", "FoD500"),
    "dfd_indoor": ("focaldepth.datasets.dfd_indoor", "DFDIndoor"),
    "dfd_indoor_pair": ("focaldepth.datasets.dfd_indoor", "DFDIndoorPair"),
    "mobile_depth": ("focaldepth.datasets.mobile_depth", "MobileDepth"),
    "nyuv2_d3net": ("focaldepth.datasets.nyuv2", "NYUv2D3Net"),
    "nyuv2_dered": ("focaldepth.datasets.nyuv2", "NYUv2DEReD"),
    "hci": ("focaldepth.datasets.hci", "HCILightField"),
    "middlebury2014": ("focaldepth.datasets.middlebury2014", "Middlebury2014"),
}
#: ``predict NAME:PATH#3`` picks item 3 (default: item 0).
ITEM_SEPARATOR = "#"


def list_adapters() -> list[str]:
    return sorted(ADAPTERS)


def is_adapter_spec(value: object) -> bool:
    """True for ``NAME:PATH`` with a known ``NAME`` (and not an existing file of that name)."""
    text = str(value)
    name, sep, _ = text.partition(":")
    return bool(sep) and name in ADAPTERS and not Path(text).exists()


def parse_spec(value: object) -> tuple[str, str, int | None]:
    """``NAME:PATH[#ITEM]`` -> (name, path, item or None)."""
    text = str(value)
    name, sep, rest = text.partition(":")
    if not sep or name not in ADAPTERS:
        raise UserError(f"not a dataset spec NAME:PATH (known names: {', '.join(list_adapters())})",
                        text)
    path, hash_sep, item = rest.rpartition(ITEM_SEPARATOR)
    if not hash_sep or not item.isdigit():
        path, item = rest, ""
    if not path:
        raise UserError(f"{name}: no path after '{name}:'", text)
    return name, path, int(item) if item else None


def adapter_class(name: str) -> type:
    module, cls = ADAPTERS[name]
    return getattr(importlib.import_module(module), cls)


def open_adapter(value: object, *, num_frames: int | None = None, split: str | None = None,
                 crop_size: int | None = None) -> Any:
    """The dataset of a ``NAME:PATH`` spec (``split`` None = the protocol's test split)."""
    name, path, _ = parse_spec(value)
    kwargs: dict[str, Any] = {"num_frames": num_frames, "crop_size": crop_size}
    if split is not None:
        kwargs["split"] = split
    return adapter_class(name)(path, **kwargs)


def open_adapter_test_set(value: object, *, num_frames: int, sample: str,
                          split: str | None = None, crop_size: int | None = None) -> Any:
    """What :func:`focaldepth.evaluate.open_test_set` returns for a ``NAME:PATH`` spec: the
    accuracy set (``sample="ramp"``: one stack per item, ``num_frames`` of its frames evenly
    spaced) or, for ``sample="windows"``, an empty set (every adapter's stacks are static)."""
    from focaldepth.datasets.base import NoItems

    dataset = open_adapter(value, num_frames=num_frames, split=split, crop_size=crop_size)
    if not dataset.has_ground_truth:
        raise UserError(f"{dataset.name} has no ground-truth depth, so it cannot be evaluated; "
                        f"run `focaldepth predict {value}` and look at the result", dataset.root)
    return NoItems() if sample == "windows" else dataset


def load_adapter_sequence(value: object) -> Any:
    """The :class:`~focaldepth.io.sequence.FocusSequence` of item ``#ITEM`` (default 0) of a
    ``NAME:PATH[#ITEM]`` spec, for ``focaldepth predict``."""
    from focaldepth.datasets.base import sample_to_sequence

    name, path, item = parse_spec(value)
    dataset = adapter_class(name)(path)
    return sample_to_sequence(dataset.sample(item or 0), str(value))
