"""Streams for synchronisation: timestamps and frame files of one recording.

A stream is either a capture sidecar (Android/iOS, :mod:`focaldepth.capture.sidecar`) or a
stream table: CSV with columns ``file`` and ``timestamp_s`` (or ``timestamp_ns``), one row
per frame, files relative to the table's folder (what an RGB-D recorder writes with a little
glue). Frames read for a motion signal are colour/grey images, or depth maps (16-bit PNG in
millimetres, .npy metres) compared in log-depth.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from focaldepth.capture.sidecar import ANDROID_FORMAT, IOS_FORMAT, read_capture_log
from focaldepth.errors import UserError

MOTION_WIDTH_PX = 160  # frames are shrunk to this width for the motion signal (speed)


@dataclass
class Stream:
    times_s: np.ndarray
    files: list[Path]
    path: Path


def _is_sidecar(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8")[:4096]
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read stream: {error}", path) from None
    return ANDROID_FORMAT in head or IOS_FORMAT in head


def read_stream(path: str | os.PathLike[str]) -> Stream:
    src = Path(path)
    if not src.is_file():
        raise UserError("stream file not found", src)
    if _is_sidecar(src):
        log = read_capture_log(src)
        return Stream(np.array([f.timestamp_ns for f in log.frames], np.float64) * 1e-9,
                      [src.parent / f.file for f in log.frames], src)
    if src.suffix.lower() != ".csv":
        raise UserError("a stream is a capture sidecar or a CSV table with file,timestamp_s", src)
    with src.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
    if not rows or "file" not in rows[0] or not ({"timestamp_s", "timestamp_ns"} & set(rows[0])):
        raise UserError("expected CSV columns file and timestamp_s (or timestamp_ns)", src)
    try:
        if "timestamp_ns" in rows[0]:
            times = np.array([int(row["timestamp_ns"]) for row in rows], np.float64) * 1e-9
        else:
            times = np.array([float(row["timestamp_s"]) for row in rows], np.float64)
    except (TypeError, ValueError):
        raise UserError("a timestamp is not a number", src) from None
    if not np.isfinite(times).all() or (np.diff(times) <= 0).any():
        raise UserError("timestamps must be finite and increase strictly", src)
    return Stream(times, [src.parent / row["file"] for row in rows], src)


def read_motion_frame(path: Path) -> tuple[np.ndarray, bool]:
    """A frame shrunk for the motion signal, and whether it is a depth map."""
    import cv2

    from focaldepth.io.depth import read_depth

    if not path.is_file():
        raise UserError("frame listed in the stream is missing", path)
    suffix = path.suffix.lower()
    raw = None if suffix in (".npy", ".npz", ".exr") else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if suffix in (".npy", ".npz", ".exr") or (raw is not None and raw.dtype == np.uint16 and raw.ndim == 2):
        frame, is_depth = read_depth(path).astype(np.float32), True
        frame = np.where(np.isfinite(frame) & (frame > 0), frame, 0).astype(np.float32)
    elif raw is None:
        raise UserError("cannot read frame", path)
    else:
        frame = raw.astype(np.float32) if raw.ndim == 2 else raw[..., :3].mean(axis=2).astype(np.float32)
        is_depth = False
    scale = MOTION_WIDTH_PX / frame.shape[1]
    if scale < 1:
        size = (MOTION_WIDTH_PX, max(1, round(frame.shape[0] * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_NEAREST if is_depth else cv2.INTER_AREA)
    return frame, is_depth


def stream_motion(stream: Stream) -> tuple[np.ndarray, np.ndarray]:
    """The stream's motion signal (:func:`focaldepth.capture.sync.motion_signal`)."""
    from focaldepth.capture.sync import motion_signal

    frames, kinds = zip(*(read_motion_frame(path) for path in stream.files))
    return motion_signal(list(frames), stream.times_s, log_scale=bool(kinds[0]))
