"""On-disk format of a generated dataset (``focaldepth generate --out DIR``).

Layout of ``DIR``::

    config.yaml        the full config the data was made with (every default filled in)
    manifest.jsonl     one JSON object per sequence, sorted by index (see below)
    seq_000000.h5      one HDF5 file per sequence
    seq_000001.h5
    ...

Sequence file ``seq_NNNNNN.h5`` (h5py; S frames of H x W; every per-frame dataset is
chunked one frame per chunk and gzip-compressed (shuffle filter for floats), so reading
any frame or any subset of frames touches only those frames):

=================== ================= ========================================================
dataset             dtype, shape      meaning
=================== ================= ========================================================
``frames``          uint8 (S,H,W,3)   rendered focus-sweep frames, RGB, with sensor noise
``aif``             uint8 (S,H,W,3)   all-in-focus image of each frame (the renderer's input)
``depth_m``         float32 (S,H,W)   metric depth (z, metres) of each frame's pixel centres
``coc_px``          float32 (S,H,W)   CoC diameter in pixels of each frame: exactly
                                      ``optics.coc_px(depth_m, focus_distance_m[s], f, N, p)``
``flow``            float16 (S,H,W,2) dynamic sequences only: backward optical flow in pixels,
                                      channels (dx, dy): pixel (x, y) of frame s was at
                                      (x + dx, y + dy) in frame s - 1; ``flow[0]`` is zero
``focus_distance_m`` float64 (S,)     focus distance of each frame, metres
=================== ================= ========================================================

Root attributes (always in this order): ``format`` ("focaldepth-sweep"),
``format_version`` (1), ``generator_version``, ``index``, ``seed`` (dataset seed; the
sequence's random streams come from ``SeedSequence([seed, index])``), ``split``
("train"/"test"), ``is_dynamic``, ``num_frames``, ``height``, ``width``,
``focal_length_m``, ``f_number``, ``pixel_pitch_m`` (of the stored resolution),
``focal_length_mm``, ``sensor_width_mm``, ``image_width_px``, ``frames_per_ramp``,
``num_ramps``, ``near_m``, ``far_m`` (the scene's depth range = the sweep's range) and
``record_json`` (the manifest record, so the manifest can be rebuilt from the files).

Pixel convention: pixel (row i, column j) is centred at (x = j, y = i); the principal
point is the image centre; pixels are square with the stored pixel pitch.

Manifest record (one line of ``manifest.jsonl``): ``index``, ``file``, ``seed``,
``split``, ``split_seed``, ``generator_version``, ``is_dynamic``, ``num_frames``,
``height``, ``width``, ``camera`` (``focal_length_mm``, ``f_number``,
``sensor_width_mm``, ``image_width_px``, ``pixel_pitch_m``), ``params`` (motion kind,
depth range, CoC target and achieved maximum, noise levels, ramps, and per surface its
texture generator, shape, depth, slant, size and speeds).

Files are byte-identical for the same config and seed (no time stamps, fixed attribute
order, deterministic compression) and appear atomically: written under a hidden
temporary name (``.seq_NNNNNN.tmp-XXXXXXXX.h5``) and renamed when complete.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from focaldepth.generate.config import GENERATOR_VERSION
from focaldepth.io.atomic import TMP_MARKER, atomic_path, atomic_write_text
from focaldepth.scenes.sequence import SequenceData

FORMAT_NAME = "focaldepth-sweep"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.jsonl"
CONFIG_NAME = "config.yaml"
SEQUENCE_PATTERN = re.compile(r"^seq_(\d{6,})\.h5$")
GZIP_LEVEL = 4


def sequence_filename(index: int) -> str:
    return f"seq_{index:06d}.h5"


def sequence_index(path: Path) -> int | None:
    """The index of a sequence file name, or None for any other file."""
    match = SEQUENCE_PATTERN.match(path.name)
    return int(match.group(1)) if match else None


def temporary_files(out_dir: Path, index: int) -> list[Path]:
    """Leftover temporary files of sequence ``index`` (from a killed run)."""
    stem = Path(sequence_filename(index)).stem
    return sorted(out_dir.glob(f".{stem}{TMP_MARKER}*"))


def make_record(data: SequenceData, index: int, seed: int, split: str, split_seed: int) -> dict[str, Any]:
    """The manifest record of a sequence (JSON-ready, fixed key order)."""
    camera = data.camera
    frames, height, width = data.frames.shape[:3]
    return {
        "index": index,
        "file": sequence_filename(index),
        "seed": seed,
        "split": split,
        "split_seed": split_seed,
        "generator_version": GENERATOR_VERSION,
        "is_dynamic": data.is_dynamic,
        "num_frames": int(frames),
        "height": int(height),
        "width": int(width),
        "camera": {"focal_length_mm": camera.focal_length_mm, "f_number": camera.f_number,
                   "sensor_width_mm": camera.sensor_width_mm, "image_width_px": camera.image_width_px,
                   "pixel_pitch_m": camera.pixel_pitch_m},
        "params": data.params,
    }


def _per_frame(file: h5py.File, name: str, array: np.ndarray, *, shuffle: bool) -> None:
    chunks = (1,) + array.shape[1:]
    file.create_dataset(name, data=array, chunks=chunks, compression="gzip", compression_opts=GZIP_LEVEL,
                        shuffle=shuffle, track_times=False)


def write_sequence(path: str | Path, data: SequenceData, record: dict[str, Any], *,
                   generator_version: str = GENERATOR_VERSION) -> Path:
    """Write one sequence file atomically (see the module docstring for the layout).
    ``generator_version``: of the generator that made ``data`` (other sources, such as
    :mod:`focaldepth.generate.rgbd`, write the same format with their own version)."""
    camera = data.camera
    attributes: list[tuple[str, Any]] = [
        ("format", FORMAT_NAME), ("format_version", FORMAT_VERSION), ("generator_version", generator_version),
        ("index", record["index"]), ("seed", record["seed"]), ("split", record["split"]),
        ("is_dynamic", data.is_dynamic), ("num_frames", record["num_frames"]),
        ("height", record["height"]), ("width", record["width"]),
        ("focal_length_m", camera.focal_length_m), ("f_number", camera.f_number),
        ("pixel_pitch_m", camera.pixel_pitch_m), ("focal_length_mm", camera.focal_length_mm),
        ("sensor_width_mm", camera.sensor_width_mm), ("image_width_px", camera.image_width_px),
        ("frames_per_ramp", data.params["frames_per_ramp"]), ("num_ramps", data.params["num_ramps"]),
        ("near_m", data.scene.depth_range.near_m), ("far_m", data.scene.depth_range.far_m),
        ("record_json", json.dumps(record, allow_nan=False)),
    ]
    # track_order: attributes and datasets listed in creation order (the order above);
    # track_times=False on every dataset: no time stamps, so files are byte-identical.
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver="earliest", track_order=True) as file:
        for name, value in attributes:
            file.attrs[name] = value
        _per_frame(file, "frames", data.frames, shuffle=False)
        _per_frame(file, "aif", data.aif, shuffle=False)
        _per_frame(file, "depth_m", data.depth_m.astype(np.float32), shuffle=True)
        _per_frame(file, "coc_px", data.coc_px.astype(np.float32), shuffle=True)
        if data.flow is not None:
            _per_frame(file, "flow", data.flow.astype(np.float16), shuffle=True)
        file.create_dataset("focus_distance_m", data=data.focus_distance_m.astype(np.float64),
                            track_times=False)
    return Path(path)


def read_record(path: str | Path) -> dict[str, Any]:
    """The manifest record stored in a sequence file."""
    with h5py.File(path, "r") as file:
        return json.loads(file.attrs["record_json"])


def finished_sequences(out_dir: Path) -> dict[int, Path]:
    """``{index: path}`` of every complete sequence file in ``out_dir``."""
    found = {}
    for path in out_dir.glob("seq_*.h5"):
        index = sequence_index(path)
        if index is not None:
            found[index] = path
    return dict(sorted(found.items()))


def write_manifest(out_dir: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write ``manifest.jsonl`` (sorted by index) atomically."""
    lines = [json.dumps(r, allow_nan=False) for r in sorted(records, key=lambda r: r["index"])]
    return atomic_write_text(out_dir / MANIFEST_NAME, "".join(line + "\n" for line in lines))


def rebuild_manifest(out_dir: Path) -> tuple[Path, int]:
    """Rebuild the manifest from the sequence files present (any shard's); returns its path
    and the number of sequences in it."""
    records = [read_record(path) for path in finished_sequences(out_dir).values()]
    return write_manifest(out_dir, records), len(records)
