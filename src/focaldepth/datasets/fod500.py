"""FoD500 (Maximov, Galim, Leal-Taixé: "Focus on Defocus: Bridging the Synthetic to Real
Domain Gap for Depth Estimation", CVPR 2020): 500 Blender focal stacks of 5 frames,
256 x 256, the set DefocusNet trains on and DFV (Yang et al., CVPR 2022) tests on.

On disk (DefocusNet's ``data/fs_6/``, one flat folder): ``NNNNNN...All.tif`` frames (the
six-digit prefix is the stack index; a stack's frames in sorted name order, near to far) and
``NNNNNN...Dpt.exr`` (depth in metres in the R channel, half float). Stacks of 6 frames carry
an extra all-in-focus frame (focus 'at infinity', 100000 m in DFV's loader): it becomes the
item's ``aif`` and is not part of the stack.

Protocol (DefocusNet README; DFV's FoD500Loader): stacks 0-399 train, 400-499 test; focus
distances 0.1, 0.15, 0.3, 0.7, 1.5 m; depth_max = 3 m (valid: 0 < depth <= 3 m); camera
f = 2.9 mm, f/1, sensor 3.1 mm imaged by 256 px (12.1 um pixels; DEReD's configuration for
this data uses 12 um).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from focaldepth.datasets.base import AdapterDataset, Sample
from focaldepth.errors import UserError
from focaldepth.optics import Camera

FOCUS_DISTANCES_M = (0.1, 0.15, 0.3, 0.7, 1.5)
DEPTH_MAX_M = 3.0
FOCAL_LENGTH_MM = 2.9
F_NUMBER = 1.0
SENSOR_WIDTH_MM = 3.1
TRAIN_STACKS = 400  # the first 80 %
SPLITS = ("train", "test", "all")
FRAME_SUFFIX, DEPTH_SUFFIX = "All.tif", "Dpt.exr"


def camera(image_width_px: int = 256) -> Camera:
    return Camera(FOCAL_LENGTH_MM, F_NUMBER, SENSOR_WIDTH_MM * image_width_px / 256.0,
                  int(image_width_px))


def split_of(index: int) -> str:
    return "train" if index < TRAIN_STACKS else "test"


def list_stacks(folder: Path) -> dict[int, dict[str, Any]]:
    """``{index: {"frames": [paths], "depth": path}}`` from the flat DefocusNet folder."""
    stacks: dict[int, dict[str, Any]] = defaultdict(lambda: {"frames": [], "depth": None})
    for path in sorted(folder.iterdir()):
        name = path.name
        if not name.endswith((FRAME_SUFFIX, DEPTH_SUFFIX)):
            continue
        if not name[:6].isdigit():
            raise UserError("fod500: file name does not start with a six-digit stack index", path)
        entry = stacks[int(name[:6])]
        if name.endswith(FRAME_SUFFIX):
            entry["frames"].append(path)
        elif entry["depth"] is not None:
            raise UserError(f"fod500: stack {int(name[:6])} has two depth files", path)
        else:
            entry["depth"] = path
    return dict(stacks)


class FoD500(AdapterDataset):
    """``fod500:FOLDER`` (DefocusNet's ``fs_6``): the test stacks 400-499 by default."""

    name = "fod500"
    stack_size = len(FOCUS_DISTANCES_M)

    def __init__(self, root: str | Path, *, split: str = "test", num_frames: int | None = None,
                 crop_size: int | None = None) -> None:
        super().__init__(root, num_frames=num_frames, crop_size=crop_size)
        if split not in SPLITS:
            raise UserError(f"fod500: split must be one of {list(SPLITS)}, got {split!r}", self.root)
        if not self.root.is_dir():
            raise UserError("fod500: expected DefocusNet's data folder (fs_6) of *All.tif and "
                            "*Dpt.exr files", self.root)
        self.split = split
        for index, entry in sorted(list_stacks(self.root).items()):
            if split != "all" and split_of(index) != split:
                continue
            if entry["depth"] is None:
                raise UserError(f"fod500: stack {index} has frames but no *{DEPTH_SUFFIX}",
                                entry["frames"][0])
            if len(entry["frames"]) not in (5, 6):
                raise UserError(f"fod500: stack {index} has {len(entry['frames'])} *{FRAME_SUFFIX} "
                                "frames, expected 5 (or 6 with the all-in-focus frame)",
                                entry["depth"])
            self.entries.append((index, entry))
        self._check_not_empty(f"{split} stacks (*{FRAME_SUFFIX} + *{DEPTH_SUFFIX})")

    def read(self, entry: tuple[int, dict[str, Any]]) -> Sample:
        from focaldepth.io.depth import read_depth
        from focaldepth.io.frames import read_image

        index, files = entry
        images = [read_image(path) for path in files["frames"]]
        if len({image.shape for image in images}) != 1:
            raise UserError(f"fod500: the frames of stack {index} differ in size", files["frames"][0])
        depth = read_depth(files["depth"])
        if depth.shape != images[0].shape[:2]:
            raise UserError(f"fod500: depth {depth.shape} and frames {images[0].shape[:2]} differ",
                            files["depth"])
        stack = np.stack(images[:len(FOCUS_DISTANCES_M)])
        aif = images[len(FOCUS_DISTANCES_M)] if len(images) > len(FOCUS_DISTANCES_M) else None
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(depth) & (depth > 0) & (depth <= DEPTH_MAX_M)
        return Sample(name=f"{index:06d}", frames=stack, focus_distance_m=list(FOCUS_DISTANCES_M),
                      camera=camera(stack.shape[2]), depth_m=depth, valid=valid, aif=aif)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "split": self.split, "depth_max_m": DEPTH_MAX_M}
