"""Frames on disk: single images, image folders (natural order) and video through PyAV.

Frames are always uint8 RGB arrays of shape (H, W, 3) — the stored pixel grid, no EXIF
rotation applied, because ``sensor_width_mm`` describes the width of the stored image.
Decoding problems become :class:`UserError` naming the file.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from focaldepth.errors import UserError
from focaldepth.io.atomic import TMP_MARKER, atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi")
# Pillow raises these for missing, truncated or garbled image files.
_IMAGE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: 2.jpg < 10.jpg."""
    return tuple(
        (0, int(part), part) if part.isdigit() else (1, 0, part.lower())
        for part in re.split(r"(\d+)", name)
        if part
    )


# --- single images -------------------------------------------------------------------------


def _to_rgb8(image: Image.Image, path: Path) -> np.ndarray:
    """Any common 8/16-bit grey or colour mode → uint8 (H, W, 3)."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        grey16 = np.asarray(image).astype(np.int64)
        if grey16.min() < 0 or grey16.max() > 65535:
            raise UserError(f"unsupported {mode} pixel values outside 0..65535", path)
        grey8 = (grey16 >> 8).astype(np.uint8)  # 16-bit grey: keep the top 8 bits
        return np.repeat(grey8[..., None], 3, axis=2)
    if mode == "F":
        raise UserError(
            "floating-point images are not frames (expected 8- or 16-bit grey/RGB)", path
        )
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy (torch warns otherwise)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one image file as uint8 RGB (H, W, 3); a corrupt or truncated file is a UserError."""
    src = Path(path)
    if not src.is_file():
        raise UserError("image file not found", src)
    try:
        with Image.open(src) as image:
            image.load()  # decode now: truncated data raises here, not later
            return _to_rgb8(image, src)
    except UserError:
        raise
    except _IMAGE_ERRORS as error:
        raise UserError(f"cannot read image (corrupt or truncated?): {error}", src) from None


def image_size_hw(path: Path) -> tuple[int, int]:
    """(H, W) of an image from its header only (cheap; full decoding is left for later)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except _IMAGE_ERRORS as error:
        raise UserError(f"cannot read image (corrupt or truncated?): {error}", path) from None
    return height, width


def write_image(
    path: str | os.PathLike[str], image_rgb8: np.ndarray, *, compress_level: int = 3
) -> Path:
    """Write a uint8 (H, W, 3) or (H, W) image atomically (format from the extension)."""
    out = Path(path)
    array = np.asarray(image_rgb8)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(
            f"write_image: expected uint8 (H, W[, 3]), got {array.dtype} {array.shape}"
        )
    with atomic_path(out) as tmp:
        options = (
            {"compress_level": compress_level} if out.suffix.lower() == ".png" else {"quality": 95}
        )
        Image.fromarray(array).save(
            tmp, format=Image.registered_extensions()[out.suffix.lower()], **options
        )
    return out


# --- image folders -------------------------------------------------------------------------


def list_frame_files(folder: Path) -> list[Path]:
    """Image files of a sequence folder in natural name order; hidden and temporary files
    (left by an interrupted atomic write) are skipped. An empty result is a UserError."""
    if not folder.is_dir():
        raise UserError("not a folder", folder)
    frames, other = [], []
    for entry in folder.iterdir():
        if entry.name.startswith(".") or TMP_MARKER in entry.name or not entry.is_file():
            continue
        if entry.suffix.lower() in IMAGE_EXTENSIONS:
            frames.append(entry)
        elif (
            entry.suffix.lower()
            not in (".json", ".npy", ".npz", ".exr", ".txt", ".md") + VIDEO_EXTENSIONS
        ):
            other.append(entry)
    if not frames:
        hint = ""
        if other:
            kinds = sorted({p.suffix.lower() or "(none)" for p in other})
            hint = f"; found {len(other)} file(s) with unsupported extension(s) {', '.join(kinds)}"
        raise UserError(
            f"no frames in folder (expected {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} "
            f"images){hint}",
            folder,
        )
    return sorted(frames, key=lambda p: natural_key(p.name))


def check_same_size(
    path: Path, size_hw: tuple[int, int], first_size_hw: tuple[int, int], first: Path
) -> None:
    if size_hw != first_size_hw:
        raise UserError(
            f"frame size {size_hw[1]}x{size_hw[0]} differs from {first_size_hw[1]}x"
            f"{first_size_hw[0]} of the first frame ({first.name}); all frames must match",
            path,
        )


def iter_folder_frames(files: Sequence[Path]) -> Iterator[np.ndarray]:
    """Decode frame files one at a time (constant memory), checking they share one size."""
    first_size: tuple[int, int] | None = None
    for path in files:
        frame = read_image(path)
        if first_size is None:
            first_size = frame.shape[:2]
        check_same_size(path, frame.shape[:2], first_size, files[0])
        yield frame


# --- video ---------------------------------------------------------------------------------


def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.error.FFmpegError, OSError, ValueError)


def iter_video_frames(path: str | os.PathLike[str]) -> Iterator[tuple[float, np.ndarray]]:
    """Decode a video one frame at a time: yields (timestamp_s, uint8 (H, W, 3)).

    Timestamps come from the container (presentation time). Containers without usable
    timestamps (AVI stores decode order, so times can go backwards) fall back to
    index / frame rate. A decoding error or fewer frames than the container declares
    (truncated file) is a UserError.
    """
    import av

    src = Path(path)
    if not src.is_file():
        raise UserError("video file not found", src)
    errors = _av_errors()
    try:
        container = av.open(str(src))
    except errors as error:
        raise UserError(f"cannot open video (corrupt or truncated?): {error}", src) from None
    with container:
        if not container.streams.video:
            raise UserError("file has no video stream", src)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        declared = stream.frames
        # AVI (and some other containers) carry decode-order stamps: never trust them.
        trust_times = src.suffix.lower() != ".avi"
        count = 0
        last_time = -math.inf
        first_size: tuple[int, int] | None = None
        try:
            for frame in container.decode(stream):
                time_s = frame.time
                if not trust_times or time_s is None or time_s <= last_time:
                    if rate is None:
                        raise UserError("video frames have no usable timestamps or frame rate", src)
                    trust_times = False
                    time_s = float(count / Fraction(rate))
                last_time = time_s
                image = frame.to_ndarray(format="rgb24")
                if first_size is None:
                    first_size = image.shape[:2]
                elif image.shape[:2] != first_size:
                    raise UserError(
                        f"frame {count} is {image.shape[1]}x{image.shape[0]} but earlier "
                        f"frames are {first_size[1]}x{first_size[0]}",
                        src,
                    )
                count += 1
                yield float(time_s), image
        except errors as error:
            raise UserError(
                f"video is corrupt or truncated after {count} frame(s): {error}", src
            ) from None
        if declared and count < declared:
            raise UserError(f"video is truncated: decoded {count} of {declared} frames", src)
        if count == 0:
            raise UserError("video has no frames", src)


def probe_video(path: str | os.PathLike[str]) -> tuple[list[float], tuple[int, int]]:
    """Frame times (s, display order) and (H, W) from the container without decoding pixels.

    Times are the packets' presentation stamps, sorted (packets come in decode order);
    AVI or packets without stamps fall back to index / frame rate, as in
    :func:`iter_video_frames`. Truncation inside a packet is only found by decoding.
    """
    import av

    src = Path(path)
    if not src.is_file():
        raise UserError("video file not found", src)
    errors = _av_errors()
    try:
        with av.open(str(src)) as container:
            if not container.streams.video:
                raise UserError("file has no video stream", src)
            stream = container.streams.video[0]
            size_hw = (stream.codec_context.height, stream.codec_context.width)
            rate = stream.average_rate or stream.guessed_rate
            stamps = [packet.pts for packet in container.demux(stream) if packet.size > 0]
            time_base = stream.time_base
    except UserError:
        raise
    except errors as error:
        raise UserError(f"cannot read video (corrupt or truncated?): {error}", src) from None
    if not stamps:
        raise UserError("video has no frames", src)
    usable = src.suffix.lower() != ".avi" and time_base is not None and None not in stamps
    if usable:
        times_s = [float(pts * time_base) for pts in sorted(stamps)]
        usable = all(b > a for a, b in itertools.pairwise(times_s))
    if not usable:
        if rate is None:
            raise UserError("video frames have no usable timestamps or frame rate", src)
        times_s = [float(i / Fraction(rate)) for i in range(len(stamps))]
    return times_s, size_hw


def even_crop(image: np.ndarray) -> np.ndarray:
    """Drop the last row/column if needed: yuv420p needs even dimensions. Cropping keeps the
    pixel pitch (padding would invent pixels), so the metadata stays physically right."""
    height, width = image.shape[:2]
    return image[: height - height % 2, : width - width % 2]


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float = 10.0,
    *,
    timestamps_s: Sequence[float] | None = None,
    crf: int = 18,
    preset: str = "medium",
) -> tuple[int, int]:
    """Encode uint8 RGB frames as H.264/yuv420p (mp4/mov/mkv/avi by extension), atomically.

    ``preset``: x264's speed preset (``medium`` for data; a preview can afford ``superfast``,
    about 40 % of the CPU time for about 25 % more bytes at the same CRF).

    ``frames`` may be an array (S, H, W, 3) or any iterable (streamed, constant memory).
    Odd sizes are cropped to even (see :func:`even_crop`). ``timestamps_s`` sets each
    frame's presentation time (variable frame rate; AVI only stores a constant rate, so
    there they must be on the 1/fps grid). Returns the stored (H, W).
    """
    import av

    out = Path(path)
    if out.suffix.lower() not in VIDEO_EXTENSIONS:
        raise UserError(
            f"unsupported video extension {out.suffix or '(none)'}; use one of "
            f"{', '.join(VIDEO_EXTENSIONS)}",
            out,
        )
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"write_video: fps must be positive, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    is_avi = out.suffix.lower() == ".avi"
    time_base = Fraction(1, 1) / rate if (is_avi or timestamps_s is None) else Fraction(1, 90000)
    stored_hw: tuple[int, int] | None = None
    with atomic_path(out) as tmp:
        options = {"movflags": "+faststart"} if out.suffix.lower() in (".mp4", ".mov") else {}
        with av.open(str(tmp), mode="w", options=options) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = time_base
            # AVI cannot reorder frames: no B-frames, so stored times equal display times.
            # mbtree=0: with x264's macroblock-tree rate control the bitstream (and the decoded
            # pixels) changed from run to run of the same process-state-dependent input, so
            # `make demo` printed different accuracies; without it the encode is bit-for-bit
            # repeatable, at ~14 % more bytes for the same CRF (measured on the demo clip).
            stream.options = {
                "crf": str(int(crf)),
                "preset": preset,
                "x264-params": "mbtree=0",
                **({"bf": "0"} if is_avi else {}),
            }
            last_pts = -1
            for index, frame in enumerate(frames):
                image = even_crop(_check_frame(frame, index))
                if stored_hw is None:
                    stored_hw = image.shape[:2]
                    stream.height, stream.width = stored_hw
                elif image.shape[:2] != stored_hw:
                    raise ValueError(
                        f"write_video: frame {index} has size {image.shape[:2]}, "
                        f"expected {stored_hw}"
                    )
                video_frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(image), format="rgb24"
                )
                pts = index if timestamps_s is None else _pts(timestamps_s, index, time_base, out)
                if pts <= last_pts:
                    raise UserError(
                        f"timestamps_s[{index}] does not increase at time base {time_base}", out
                    )
                video_frame.pts, video_frame.time_base, last_pts = pts, time_base, pts
                container.mux(stream.encode(video_frame))
            if stored_hw is None:
                raise ValueError("write_video: no frames given")
            container.mux(stream.encode(None))
    assert stored_hw is not None
    return stored_hw


def _check_frame(frame: np.ndarray, index: int) -> np.ndarray:
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"write_video: frame {index} must be uint8 (H, W, 3), got {array.dtype} {array.shape}"
        )
    return array


def _pts(timestamps_s: Sequence[float], index: int, time_base: Fraction, out: Path) -> int:
    if index >= len(timestamps_s):
        raise ValueError(f"write_video: more frames than timestamps ({len(timestamps_s)})")
    ticks = float(timestamps_s[index]) / float(time_base)
    pts = round(ticks)
    if abs(ticks - pts) > 1e-3:
        raise UserError(
            f"timestamps_s[{index}] = {timestamps_s[index]} is not on this container's "
            f"time grid ({time_base} s); use .mp4/.mkv for variable frame timing",
            out,
        )
    return pts
