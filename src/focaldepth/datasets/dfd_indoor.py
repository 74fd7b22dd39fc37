"""DFD indoor (Carvalho, Le Saux, Trouvé-Peloux, Almansa, Champagnat: "Deep Depth from
Defocus: how can defocus blur improve 3D estimation using dense neural networks?", 3DRW ECCV
Workshop 2018): a Nikon D200 + AF Nikkor 35 mm f/2D shooting each indoor scene at f/2.8
(defocused) and f/8 (nearly sharp), focus fixed at about 1.7 m, depth from an ASUS Xtion
registered to the DSLR view (uint16 millimetres, 0 = none).

Two layouts are read:

* the authors' release (``dfd_indoor/``): ``dfd_dataset_indoor_N2_8/{rgb,depth}/{train,test}``
  and ``dfd_dataset_indoor_N8/...``, 110 train and 29 test scenes, image and depth matched by
  sorted name order; ``split`` is the release's train / test;
* ``../shared/data/dfd_indoor_train`` (the release's 81 train scenes at 645 x 432):
  ``pairs.csv`` (columns f2.8, f8, depth_mm) + ``f2.8/``, ``f8/``, ``depth_mm/``; ``split``
  is the project's fixed split of pairs.csv order (i % 6 == 0 test, == 3 val, else train;
  :func:`focaldepth.generate.rgbd.dfd_split`).

``dfd_indoor`` yields the single f/2.8 photo (D3Net's input); ``dfd_indoor_pair`` yields
[f/8, f/2.8] with a per-frame ``f_number`` (two-aperture depth from defocus). Valid pixels:
measured depth, at most 10 m (D3Net's max_depth). The focus distance is the authors'
parameter file's 1.7 m: approximate (the f/2.8 : f/8 sharpness ratio peaks at 1.6-1.75 m).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from focaldepth.datasets.base import AdapterDataset, Sample
from focaldepth.errors import UserError
from focaldepth.optics import Camera

FOCAL_LENGTH_MM = 35.0
SENSOR_WIDTH_MM = 23.6
F_NUMBER_WIDE, F_NUMBER_SHARP = 2.8, 8.0
FOCUS_DISTANCE_M = 1.7
MAX_DEPTH_M = 10.0
RELEASE_WIDE, RELEASE_SHARP = "dfd_dataset_indoor_N2_8", "dfd_dataset_indoor_N8"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def camera(image_width_px: int, f_number: float = F_NUMBER_WIDE) -> Camera:
    """The D200 + 35 mm rig imaged onto ``image_width_px`` pixels (the full 23.6 mm sensor)."""
    return Camera(FOCAL_LENGTH_MM, f_number, SENSOR_WIDTH_MM, int(image_width_px))


def _images(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        raise UserError("dfd_indoor: folder missing from the DFD layout", folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)


def _shared_layout(root: Path, split: str) -> list[dict[str, Any]]:
    from focaldepth.generate.rgbd import dfd_split
    from focaldepth.io.rgbd import list_pairs

    # An empty table is not an error here: the adapter reports "no <split> scenes found".
    pairs = list_pairs(root, error_prefix="dfd_indoor: ", allow_empty=True)
    return [{"name": pair.name, "wide": pair.wide_path, "sharp": pair.sharp_path,
             "depth": pair.depth_path}
            for index, pair in enumerate(pairs) if split == "all" or dfd_split(index) == split]


def _release_layout(root: Path, split: str) -> list[dict[str, Any]]:
    if split not in ("train", "test"):
        raise UserError(f"dfd_indoor: the authors' release has splits train and test, got {split!r}",
                        root)
    wide = _images(root / RELEASE_WIDE / "rgb" / split, IMAGE_SUFFIXES)
    depth = _images(root / RELEASE_WIDE / "depth" / split, (".png",))
    sharp_dir = root / RELEASE_SHARP / "rgb" / split
    sharp = _images(sharp_dir, IMAGE_SUFFIXES) if sharp_dir.is_dir() else [None] * len(wide)
    if not (len(wide) == len(depth) == len(sharp)):
        raise UserError(f"dfd_indoor: {len(wide)} f/2.8 images, {len(sharp)} f/8 images and "
                        f"{len(depth)} depth maps in the {split} split: they pair by sorted order "
                        "and must be as many", root / RELEASE_WIDE)
    return [{"name": w.stem, "wide": w, "sharp": s, "depth": d}
            for w, s, d in zip(wide, sharp, depth)]


class DFDIndoor(AdapterDataset):
    """``dfd_indoor:FOLDER``: the f/2.8 photo, its depth, focus 1.7 m (default split: test)."""

    name = "dfd_indoor"
    stack_size = 1
    #: "wide" (f/2.8 only) or "pair" (f/8 then f/2.8)
    frames_mode = "wide"

    def __init__(self, root: str | Path, *, split: str = "test", num_frames: int | None = None,
                 crop_size: int | None = None) -> None:
        super().__init__(root, num_frames=num_frames, crop_size=crop_size)
        if split not in ("train", "val", "test", "all"):
            raise UserError(f"{self.name}: split must be train, val, test or all, got {split!r}",
                            self.root)
        self.split = split
        if (self.root / "pairs.csv").is_file():
            self.layout = "shared"
            self.entries = _shared_layout(self.root, split)
        elif (self.root / RELEASE_WIDE).is_dir():
            self.layout = "release"
            self.entries = _release_layout(self.root, split)
        else:
            raise UserError(f"{self.name}: expected pairs.csv (shared/data/dfd_indoor_train) or "
                            f"{RELEASE_WIDE}/ (the authors' dfd_indoor release)", self.root)
        if self.frames_mode == "pair" and any(e["sharp"] is None for e in self.entries):
            raise UserError(f"{self.name}: the f/8 photos ({RELEASE_SHARP}/) are missing", self.root)
        self._check_not_empty(f"{split} scenes")

    def read(self, entry: dict[str, Any]) -> Sample:
        from focaldepth.io.depth import read_depth
        from focaldepth.io.frames import read_image

        wide = read_image(entry["wide"])
        depth = read_depth(entry["depth"])  # uint16 mm, 0 -> NaN
        if depth.ndim != 2 or depth.shape != wide.shape[:2]:
            raise UserError(f"{self.name}: depth {depth.shape} and f/2.8 image {wide.shape[:2]} "
                            "sizes differ", entry["depth"])
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(depth) & (depth > 0) & (depth <= MAX_DEPTH_M)
        frames, f_numbers, aif = wide[None], [F_NUMBER_WIDE], None
        if entry.get("sharp") is not None:
            sharp = read_image(entry["sharp"])
            if sharp.shape != wide.shape:
                raise UserError(f"{self.name}: f/8 {sharp.shape[:2]} and f/2.8 {wide.shape[:2]} "
                                "sizes differ", entry["sharp"])
            aif = sharp
            if self.frames_mode == "pair":
                frames, f_numbers = np.stack([sharp, wide]), [F_NUMBER_SHARP, F_NUMBER_WIDE]
        return Sample(name=entry["name"], frames=frames,
                      focus_distance_m=[FOCUS_DISTANCE_M] * len(frames),
                      camera=camera(wide.shape[1], f_numbers[0]), depth_m=depth, valid=valid,
                      aif=aif, f_number=f_numbers)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "split": self.split, "layout": self.layout,
                "focus_distance_m": FOCUS_DISTANCE_M, "max_depth_m": MAX_DEPTH_M}


class DFDIndoorPair(DFDIndoor):
    """``dfd_indoor_pair:FOLDER``: [f/8, f/2.8] of each scene, same focus, per-frame f-number."""

    name = "dfd_indoor_pair"
    stack_size = 2
    frames_mode = "pair"
