"""Mobile Depth (Suwajanakorn, Hernandez, Seitz: "Depth from Focus with Your Mobile Phone",
CVPR 2015): hand-held phone focal stacks (balls, bottles, fruits, keyboard, metals, plants,
telephone, window, ...), no ground-truth depth.

Layouts read (``PATH`` is one scene folder or a folder of scene folders):

* DFV's preparation (``preprocess_mobileDepth``): ``<scene>/a*.jpg`` (the authors' aligned
  stack) + ``focus_dpth.txt`` (one calibrated focus distance per frame);
* the authors' download: the aligned frames beside ``calibrated.txt`` (its first column, last
  row dropped, is the per-frame calibrated focus, as DFV reads it);
* ``../shared/data/mobile_depth_balls``: ``0.jpg`` ... ``24.jpg`` (natural order), hand-held and
  unaligned, no calibration: focus unknown.

The calibration recovers the focus distances up to the paper's unknown scale (DEReD reads the
values as inches, / 39.37; DFV uses them as relative distances and reverses ``metals``, whose
estimate runs the other way): the adapter gives them in metres as DEReD does, with the
camera marked unknown, so depth from them is relative. Frames are sorted near to far by the
calibrated focus when it is present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from focaldepth.datasets.base import AdapterDataset, Sample
from focaldepth.errors import UserError

INCH_M = 0.0254
FOCUS_FILES = ("focus_dpth.txt", "calibrated.txt")


def _frame_files(folder: Path) -> list[Path]:
    from focaldepth.io.frames import list_frame_files

    files = list_frame_files(folder)
    aligned = [p for p in files if p.name.startswith("a") and p.suffix.lower() == ".jpg"]
    return aligned or files


def read_calibrated_focus(folder: Path, num_frames: int) -> tuple[list[float] | None, str | None]:
    """Per-frame calibrated focus (m, DEReD's inch reading) and the file it came from."""
    for name in FOCUS_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            table = np.atleast_2d(np.loadtxt(path, ndmin=2))
        except ValueError as error:
            raise UserError(f"mobile_depth: cannot read the focus table ({error})", path) from None
        values = table[:, 0]
        if name == "calibrated.txt":
            values = values[:-1]  # the last row is not a frame (DFV drops it)
        if len(values) != num_frames:
            raise UserError(f"mobile_depth: {len(values)} focus values for {num_frames} frames", path)
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise UserError("mobile_depth: focus values must be positive and finite", path)
        return [float(v) * INCH_M for v in values], name
    return None, None


def _is_scene(folder: Path) -> bool:
    from focaldepth.io.frames import IMAGE_EXTENSIONS

    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())


class MobileDepth(AdapterDataset):
    """``mobile_depth:FOLDER``: one item per scene; no ground truth (predict only)."""

    name = "mobile_depth"
    has_ground_truth = False

    def __init__(self, root: str | Path, *, split: str = "all", num_frames: int | None = None,
                 crop_size: int | None = None) -> None:
        super().__init__(root, num_frames=num_frames, crop_size=crop_size)
        if not self.root.is_dir():
            raise UserError("mobile_depth: expected a scene folder or a folder of scene folders",
                            self.root)
        if split != "all":
            raise UserError(f"mobile_depth: the dataset has no splits (use all), got {split!r}",
                            self.root)
        scenes = [self.root] if _is_scene(self.root) else sorted(
            p for p in self.root.iterdir() if p.is_dir() and _is_scene(p))
        self.entries = scenes
        self._check_not_empty("scene folders with frames")

    def read(self, folder: Path) -> Sample:
        from focaldepth.io.frames import check_same_size, read_image
        from focaldepth.io.meta import relative_camera

        files = _frame_files(folder)
        images = [read_image(path) for path in files]
        for path, image in zip(files, images):
            check_same_size(path, image.shape[:2], images[0].shape[:2], files[0])
        frames = np.stack(images)
        focus, source = read_calibrated_focus(folder, len(frames))
        notes = [f"{folder.name}: no ground-truth depth; camera unknown: depth is RELATIVE"]
        if focus is None:
            notes.append(f"{folder.name}: no calibrated focus (focus_dpth.txt / calibrated.txt): "
                         "focus distances unknown, frames in name order")
            focus_list: list[float | None] = [None] * len(frames)
        else:
            order = np.argsort(focus, kind="stable")  # near to far
            frames = frames[order]
            focus_list = [focus[i] for i in order]
            notes.append(f"{folder.name}: calibrated focus from {source} (read as inches, "
                         "scale not metric)")
        return Sample(name=folder.name, frames=frames, focus_distance_m=focus_list,
                      camera=relative_camera(frames.shape[2]), depth_m=None,
                      camera_known=False, notes=notes)
