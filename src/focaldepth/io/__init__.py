"""Sequence, depth and image I/O — the project's public on-disk interface.

* sequences: :func:`load_sequence`, :func:`iter_frames`, :func:`write_sequence`,
  :func:`write_sequence_video`, :class:`FocusSequence` (format in :mod:`focaldepth.io.sequence`)
* metadata: :func:`read_meta`, :class:`SequenceMeta` (keys in :mod:`focaldepth.io.meta`)
* depth: :func:`read_depth`, :func:`write_depth` (.npy metres canonical, 16-bit PNG
  millimetres with 0 = invalid, .npz, .exr; see :mod:`focaldepth.io.depth`)
* images and video: :func:`read_image`, :func:`write_image`, :func:`write_video`
* atomic writes: :func:`atomic_path`, :func:`atomic_dir`, :func:`atomic_write_json`, ...
"""

from focaldepth.io.atomic import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from focaldepth.io.depth import (
    PNG_DEPTH_MAX_M,
    depth_to_png16,
    fill_invalid_depth,
    png16_to_depth,
    read_depth,
    valid_depth_mask,
    write_depth,
)
from focaldepth.io.frames import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    iter_video_frames,
    natural_key,
    read_image,
    write_image,
    write_video,
)
from focaldepth.io.meta import SequenceMeta, make_meta, read_meta, validate_meta
from focaldepth.io.sequence import (
    FocusSequence,
    iter_frames,
    load_sequence,
    write_sequence,
    write_sequence_video,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "PNG_DEPTH_MAX_M",
    "VIDEO_EXTENSIONS",
    "FocusSequence",
    "SequenceMeta",
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "depth_to_png16",
    "fill_invalid_depth",
    "iter_frames",
    "iter_video_frames",
    "load_sequence",
    "make_meta",
    "natural_key",
    "png16_to_depth",
    "read_depth",
    "read_image",
    "read_meta",
    "valid_depth_mask",
    "validate_meta",
    "write_depth",
    "write_image",
    "write_sequence",
    "write_sequence_video",
    "write_video",
]
