"""Focus sequences: frames plus per-frame focus metadata — the project's public on-disk format.

A sequence is EITHER a folder of images (png/jpg/tif, natural name order: 2.png before
10.png) with ``meta.json`` beside them (a folder without one loads with an unknown camera and
unknown focus, i.e. relative depth only, and says so in ``FocusSequence.notes``; optionally ``depth.npy``, ground-truth depth in
metres, (H, W) or (S, H, W)), OR a video (mp4/mov/mkv/avi, decoded with PyAV) with a
sidecar ``NAME.json`` (or an explicit metadata path). The metadata keys are described in
:mod:`focaldepth.io.meta`.

``load_sequence`` validates everything before returning; ``lazy=True`` keeps long videos
on disk and streams frames in constant memory through ``FocusSequence.iter_frames``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from focaldepth.errors import UserError
from focaldepth.io.atomic import atomic_dir, atomic_write_json
from focaldepth.io.depth import read_depth, write_depth
from focaldepth.io.frames import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    check_same_size,
    image_size_hw,
    iter_folder_frames,
    iter_video_frames,
    list_frame_files,
    probe_video,
    write_image,
    write_video,
)
from focaldepth.io.meta import SequenceMeta, make_meta, read_meta
from focaldepth.optics import Camera

if TYPE_CHECKING:
    import torch

META_NAME = "meta.json"
DEPTH_NAME = "depth.npy"


@dataclass
class FocusSequence:
    """A focus sequence in memory (or, when ``frames`` is None, streamed from ``source_path``).

    ``camera`` carries frame 0's f-number; ``f_number`` lists every frame's (they differ
    only when the metadata gives a per-frame list; use :meth:`camera_at`). ``meta`` is the
    metadata as written in the file, unknown keys included.
    """

    frames: np.ndarray | None
    focus_distance_m: list[float | None]
    camera: Camera
    f_number: list[float]
    timestamps_s: list[float] | None
    meta: dict[str, Any]
    size_hw: tuple[int, int]
    source_path: Path | None = None
    depth_m: np.ndarray | None = None
    frame_files: list[Path] | None = field(default=None, repr=False)
    # False when the metadata gives no lens (``camera`` is then a stand-in): relative depth only
    camera_known: bool = True
    # One-line warnings about how the sequence was read (e.g. no meta.json at all)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.focus_distance_m)

    @property
    def is_lazy(self) -> bool:
        return self.frames is None

    def camera_at(self, index: int) -> Camera:
        """The camera of frame ``index`` (its own f-number)."""
        return replace(self.camera, f_number=self.f_number[index])

    def focus_array_m(self) -> np.ndarray:
        """Focus distances as float64 (S,), NaN where unknown."""
        return np.array(
            [math.nan if f is None else f for f in self.focus_distance_m], dtype=np.float64
        )

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Every frame as uint8 (H, W, 3), in order; streams from disk when lazy."""
        if self.frames is not None:
            yield from self.frames
            return
        if self.source_path is None:
            raise ValueError("FocusSequence has neither frames nor a source to stream from")
        if self.frame_files is not None:
            stream = iter_folder_frames(self.frame_files)
        else:
            stream = (image for _, image in iter_video_frames(self.source_path))
        count = 0
        for image in stream:
            if count >= len(self):
                raise UserError(
                    f"has more frames than the {len(self)} focus entries", self.source_path
                )
            check_same_size(self.source_path, image.shape[:2], self.size_hw, self.source_path)
            count += 1
            yield image
        if count != len(self):
            raise UserError(
                f"decoded {count} frames but the metadata lists {len(self)}", self.source_path
            )

    def load(self) -> FocusSequence:
        """This sequence with every frame decoded into memory."""
        if self.frames is not None:
            return self
        return replace(
            self, frames=_stack(self.iter_frames(), len(self), self.size_hw, self.source_path)
        )

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The project's tensor layout: stack (1, S, 3, H, W) float32 in [0, 1], focus
        (1, S) metres (NaN = unknown), camera (1, 3) = [focal_length_m, f_number, pixel_pitch_m]
        (frame 0's f-number)."""
        import torch

        frames = self.load().frames
        assert frames is not None
        stack = (
            torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        )
        focus = torch.from_numpy(self.focus_array_m()).float()[None]
        camera = torch.tensor(
            [[self.camera.focal_length_m, self.camera.f_number, self.camera.pixel_pitch_m]],
            dtype=torch.float32,
        )
        return stack[None], focus, camera


# --- loading -------------------------------------------------------------------------------


def load_sequence(
    path: str | os.PathLike[str],
    meta_path: str | os.PathLike[str] | None = None,
    *,
    lazy: bool = False,
) -> FocusSequence:
    """Load and validate a sequence folder or video (see the module docstring).

    ``meta_path`` overrides ``meta.json`` / the ``NAME.json`` sidecar. With ``lazy=True``
    frames are not decoded (sizes come from headers, a video's frame count from its
    packets); corrupt data then surfaces as a UserError while iterating.
    """
    src = Path(path)
    if not src.exists():
        raise UserError("sequence not found (expected a folder of frames or a video file)", src)
    if src.is_dir():
        return _load_folder(src, Path(meta_path) if meta_path else src / META_NAME, lazy=lazy,
                            meta_optional=meta_path is None)
    suffix = src.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return _load_video(
            src, Path(meta_path) if meta_path else src.with_suffix(".json"), lazy=lazy
        )
    if suffix in IMAGE_EXTENSIONS:
        raise UserError(
            "a single image is not a sequence: pass the folder that holds the frames", src
        )
    raise UserError(
        f"unsupported sequence type {suffix or '(no extension)'}: expected a folder of "
        f"{'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} images or a "
        f"{'/'.join(e[1:] for e in VIDEO_EXTENSIONS)} video",
        src,
    )


def _read_sidecar(meta_file: Path, what: str) -> SequenceMeta:
    if not meta_file.is_file():
        raise UserError(
            f"missing metadata: no {meta_file.name} beside the {what} (write one, or pass --meta)",
            meta_file,
        )
    return read_meta(meta_file)


NO_META_NOTE = (
    "no meta.json beside the frames: camera and focus distances unknown, depth is RELATIVE; "
    "frames taken in natural name order as one sweep (its direction estimated from focus "
    "breathing, else near to far; --far-to-near / --near-to-far to set it)"
)


def _load_folder(
    folder: Path, meta_file: Path, *, lazy: bool, meta_optional: bool = False
) -> FocusSequence:
    files = list_frame_files(folder)
    notes: list[str] = []
    if meta_optional and not meta_file.exists():
        # A bare folder of photos (a phone focal stack): nothing known but the frame order.
        meta = SequenceMeta(None, None, None, focus_distance_m=[None] * len(files))
        notes.append(NO_META_NOTE)
    else:
        meta = _read_sidecar(meta_file, "frames")
    meta.check_num_frames(len(files), folder)  # before decoding anything: fail fast
    if lazy:
        size_hw = image_size_hw(files[0])
        for path in files[1:]:
            check_same_size(path, image_size_hw(path), size_hw, files[0])
        frames = None
    else:
        frames = _stack(iter_folder_frames(files), len(files), None, folder)
        size_hw = frames.shape[1:3]
    depth_m = _read_ground_truth(folder / DEPTH_NAME, len(files), size_hw)
    sequence = _make_sequence(meta, frames, size_hw, None, folder, depth_m, files if lazy else None)
    sequence.notes.extend(notes)
    return sequence


def _load_video(video: Path, meta_file: Path, *, lazy: bool) -> FocusSequence:
    meta = _read_sidecar(meta_file, "video")
    if lazy:
        times_s, size_hw = probe_video(video)
        meta.check_num_frames(len(times_s), video)
        _check_timestamps(meta, times_s, video)
        return _make_sequence(meta, None, size_hw, times_s, video, None, None)
    expected = meta.num_frames
    frames: np.ndarray | None = None
    times: list[float] = []
    for time_s, image in iter_video_frames(video):
        if frames is None:
            # preallocate: one copy of the clip in memory, not two
            frames = np.empty((expected or 1, *image.shape), dtype=np.uint8)
        if len(times) >= len(frames):  # more frames than the metadata lists: reported below
            frames = np.concatenate([frames, np.empty_like(frames)])
        frames[len(times)] = image
        times.append(time_s)
    assert frames is not None  # iter_video_frames raises on an empty video
    frames = frames[: len(times)]
    meta.check_num_frames(len(times), video)
    _check_timestamps(meta, times, video)
    return _make_sequence(meta, frames, frames.shape[1:3], times, video, None, None)


def _check_timestamps(meta: SequenceMeta, container_times_s: list[float], video: Path) -> None:
    """Sidecar timestamps must name the same frames as the container's (within half a frame)."""
    if meta.timestamps_s is None or len(container_times_s) < 1:
        return
    intervals = np.diff(container_times_s)
    tolerance_s = 0.5 * float(np.median(intervals)) if len(intervals) else 0.5
    for i, (ours, theirs) in enumerate(zip(meta.timestamps_s, container_times_s)):
        if abs(ours - theirs) > tolerance_s:
            raise UserError(
                f"timestamps_s[{i}] = {ours} s does not match the video's frame time "
                f"{theirs:.6f} s",
                meta.path,
            )


def _make_sequence(
    meta: SequenceMeta,
    frames: np.ndarray | None,
    size_hw: tuple[int, int],
    container_times_s: list[float] | None,
    source: Path,
    depth_m: np.ndarray | None,
    frame_files: list[Path] | None,
) -> FocusSequence:
    num_frames = len(frames) if frames is not None else meta.num_frames
    if num_frames is None:  # lazy and no per-frame list at all cannot happen: focus is required
        raise UserError("metadata lists no frames", meta.path)
    assert meta.focus_distance_m is not None
    camera = meta.camera(size_hw[1])
    raw = meta.to_json_dict()
    return FocusSequence(
        frames=frames,
        focus_distance_m=list(meta.focus_distance_m),
        camera=camera,
        f_number=meta.f_numbers(num_frames),
        timestamps_s=meta.timestamps_s if meta.timestamps_s is not None else container_times_s,
        meta=raw,
        size_hw=(int(size_hw[0]), int(size_hw[1])),
        source_path=source,
        depth_m=depth_m,
        frame_files=frame_files,
        camera_known=meta.camera_known,
    )


def _read_ground_truth(path: Path, num_frames: int, size_hw: tuple[int, int]) -> np.ndarray | None:
    if not path.is_file():
        return None
    depth = read_depth(path)
    if depth.shape[-2:] != tuple(size_hw) or (depth.ndim == 3 and depth.shape[0] != num_frames):
        raise UserError(
            f"depth has shape {depth.shape}; expected (H, W) = {tuple(size_hw)} or "
            f"({num_frames}, H, W) to match the frames",
            path,
        )
    return depth


def _stack(
    frames: Iterable[np.ndarray], count: int, size_hw: tuple[int, int] | None, where: object
) -> np.ndarray:
    """Stack ``count`` frames into one preallocated (S, H, W, 3) array."""
    out: np.ndarray | None = None
    index = 0
    for index, image in enumerate(frames):
        if out is None:
            out = np.empty((count, *image.shape), dtype=np.uint8)
        if index >= count:
            raise UserError(f"has more than the {count} frames expected", where)
        out[index] = image
    if out is None or index + 1 != count:
        raise UserError(f"has {0 if out is None else index + 1} frames, expected {count}", where)
    return out


def iter_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Stream the frames of a sequence folder or video in constant memory (no metadata
    needed): uint8 (H, W, 3) each, in order."""
    src = Path(path)
    if src.is_dir():
        yield from iter_folder_frames(list_frame_files(src))
    elif src.suffix.lower() in VIDEO_EXTENSIONS:
        for _, image in iter_video_frames(src):
            yield image
    elif not src.exists():
        raise UserError("sequence not found", src)
    else:
        raise UserError(f"unsupported sequence type {src.suffix or '(no extension)'}", src)


# --- writing -------------------------------------------------------------------------------


def write_sequence(
    folder: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    focus_distance_m: Sequence[float | None],
    camera: Camera,
    *,
    f_number: float | Sequence[float] | None = None,
    timestamps_s: Sequence[float] | None = None,
    depth_m: np.ndarray | None = None,
    source: str | None = None,
    extra_meta: dict[str, Any] | None = None,
    video_name: str | None = None,
    video_fps: float = 10.0,
    overwrite: bool = False,
) -> Path:
    """Write a sequence folder atomically: ``000000.png``… + ``meta.json`` (+ ``depth.npy``).

    ``frames`` is uint8 (S, H, W, 3) or an iterable of (H, W, 3) (written as it comes);
    ``camera.image_width_px`` must equal the frame width. ``video_name`` (e.g.
    ``"sweep.mp4"``) also stores the frames as a video with its own sidecar inside the
    folder. The folder appears only when complete; a non-empty existing folder is refused
    unless ``overwrite``.
    """
    meta = make_meta(
        camera,
        focus_distance_m,
        f_number=f_number,
        timestamps_s=timestamps_s,
        source=source,
        extra=extra_meta,
    )
    num_frames = len(meta.focus_distance_m or [])
    out = Path(folder)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        digits = max(6, len(str(num_frames - 1)))
        count = 0
        for index, frame in enumerate(frames):
            image = np.asarray(frame)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"write_sequence: frame {index} must be uint8 (H, W, 3), got "
                    f"{image.dtype} {image.shape}"
                )
            if image.shape[1] != camera.image_width_px:
                raise ValueError(
                    f"write_sequence: frames are {image.shape[1]} px wide but the camera's "
                    f"image_width_px is {camera.image_width_px}"
                )
            write_image(tmp / f"{index:0{digits}d}.png", image)
            count += 1
        if count != num_frames:
            raise ValueError(f"write_sequence: {count} frames but {num_frames} focus distances")
        if depth_m is not None:
            write_depth(tmp / DEPTH_NAME, np.asarray(depth_m, dtype=np.float32))
        if video_name is not None:
            write_sequence_video(
                tmp / video_name,
                iter_folder_frames(list_frame_files(tmp)),
                meta.focus_distance_m or [],
                camera,
                fps=video_fps,
                f_number=f_number,
                timestamps_s=timestamps_s,
                source=source,
                extra_meta=extra_meta,
            )
        atomic_write_json(tmp / META_NAME, meta.to_json_dict())
        _load_folder(tmp, tmp / META_NAME, lazy=True)  # never publish what we could not read back
    return out


def write_sequence_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    focus_distance_m: Sequence[float | None],
    camera: Camera,
    *,
    fps: float = 10.0,
    f_number: float | Sequence[float] | None = None,
    timestamps_s: Sequence[float] | None = None,
    source: str | None = None,
    extra_meta: dict[str, Any] | None = None,
    crf: int = 18,
) -> Path:
    """Write a sequence as an H.264 video plus its sidecar ``NAME.json``.

    Odd frame sizes are cropped to even; the sidecar's ``sensor_width_mm`` is scaled with
    the stored width so the pixel pitch stays true. ``timestamps_s`` defaults to i / fps
    and is written exactly. The sidecar is written after the video, so an interrupted run
    leaves no video that loads as complete.
    """
    make_meta(
        camera, focus_distance_m, f_number=f_number, timestamps_s=timestamps_s
    )  # validate first
    out = Path(path)
    num_frames = len(focus_distance_m)
    written = 0

    def counted(stream: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal written
        for image in stream:
            written += 1
            if written > num_frames:
                raise ValueError(
                    f"write_sequence_video: more frames than the {num_frames} focus distances"
                )
            yield image

    # Constant rate unless told otherwise: the container's own 1/fps grid, exact for any fps.
    _, stored_w = write_video(out, counted(frames), fps, timestamps_s=timestamps_s, crf=crf)
    if written != num_frames:
        out.unlink(missing_ok=True)
        raise ValueError(f"write_sequence_video: {written} frames but {num_frames} focus distances")
    times = (
        list(timestamps_s)
        if timestamps_s is not None
        else [float(i / Fraction(fps).limit_denominator(1001)) for i in range(num_frames)]
    )
    stored_camera = Camera(
        camera.focal_length_mm,
        camera.f_number,
        camera.sensor_width_mm * stored_w / camera.image_width_px,
        stored_w,
    )
    meta = make_meta(
        stored_camera,
        focus_distance_m,
        f_number=f_number,
        timestamps_s=times,
        source=source,
        extra=extra_meta,
    )
    atomic_write_json(out.with_suffix(".json"), meta.to_json_dict())
    return out
