"""Readers of the real RGB-D data the project uses (no downloads: the data are local).

* DFD indoor (Carvalho et al., 3DRW ECCV Workshops 2018) in ``../shared/data/dfd_indoor_train``:
  ``pairs.csv`` (columns f2.8, f8, depth_mm) naming an f/2.8 photo, an f/8 photo (nearly all in
  focus) and a registered Xtion depth PNG (uint16 mm, 0 = none) per scene.
* Middlebury 2014 *Motorcycle*, shipped with scikit-image (``skimage.data.stereo_motorcycle``).

Used by the RGB-D training-data generator (:mod:`focaldepth.generate.rgbd`), the demo and the
experiments (:mod:`focaldepth.experiments`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from focaldepth.errors import UserError
from focaldepth.io.depth import fill_invalid_depth, read_depth, valid_depth_mask

# The Xtion's isolated near-range speckles are removed with a median of this size.
DEPTH_MEDIAN_KSIZE = 5

# Calibration of Middlebury 2014 Motorcycle at the quarter resolution scikit-image ships.
MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_BASELINE_M = 0.193001
MOTORCYCLE_DOFFS_PX = 31.086


def default_shared_root() -> Path:
    """``shared/`` beside the project root (``<root>/src/focaldepth/io/rgbd.py``)."""
    return Path(__file__).resolve().parents[3].parent / "shared"


# --- DFD indoor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DfdPair:
    """The three files of one scene (paths)."""

    name: str
    wide_path: Path  # f/2.8
    sharp_path: Path  # f/8
    depth_path: Path  # uint16 millimetres


def list_pairs(root: str | Path, *, error_prefix: str = "", allow_empty: bool = False) -> list[DfdPair]:
    """The scenes listed in ``root/pairs.csv`` (columns f2.8, f8, depth_mm), in file order.

    ``error_prefix`` starts every error message (a dataset adapter names itself, e.g.
    ``"dfd_indoor: "``); ``allow_empty`` returns ``[]`` for a table without rows (an adapter
    reports an empty split itself)."""
    root = Path(root)
    table = root / "pairs.csv"
    if not table.is_file():
        raise UserError(f"{error_prefix}pairs.csv not found (expected the DFD indoor data folder)", table)
    with table.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"f2.8", "f8", "depth_mm"} - set(reader.fieldnames or ())
        if missing:
            raise UserError(f"{error_prefix}pairs.csv lacks the column(s) {sorted(missing)}", table)
        rows = list(reader)
    if not rows and not allow_empty:
        raise UserError(f"{error_prefix}pairs.csv lists no scene", table)
    return [DfdPair(name=Path(row["f8"]).stem, wide_path=root / "f2.8" / row["f2.8"],
                    sharp_path=root / "f8" / row["f8"], depth_path=root / "depth_mm" / row["depth_mm"])
            for row in rows]


PAIRS_COLUMNS = ("f2.8", "f8", "depth_mm")


def write_pairs(root: str | Path, rows: list[dict[str, str]]) -> Path:
    """Write ``root/pairs.csv`` (the table :func:`list_pairs` reads; one dict per scene with
    the file names of :data:`PAIRS_COLUMNS`) atomically: a temporary file renamed into place."""
    import os

    table = Path(root) / "pairs.csv"
    temporary = table.with_name(".pairs.csv.tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(PAIRS_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, table)
    return table


def read_dfd_depth_m(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A DFD depth PNG (uint16 millimetres, 0 = no measurement) as float32 metres with 0 where
    invalid, and the mask of valid pixels."""
    depth_m = read_depth(path)  # 0 mm -> NaN
    if depth_m.ndim != 2:
        raise UserError(f"expected one (H, W) depth map, got shape {depth_m.shape}", path)
    valid = valid_depth_mask(depth_m)
    return np.where(valid, depth_m, 0.0).astype(np.float32), valid


def clean_depth_m(depth_m: np.ndarray, where: object = None) -> np.ndarray:
    """Fill invalid pixels (nearest valid) and remove isolated speckles (5x5 median): the
    filled Xtion maps carry a few near-range outliers that would render as huge disks."""
    filled, _ = fill_invalid_depth(depth_m, where)
    return cv2.medianBlur(filled.astype(np.float32), DEPTH_MEDIAN_KSIZE)


# --- Middlebury Motorcycle (scikit-image) ----------------------------------------------------


def motorcycle_rgbd() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Motorcycle left image (uint8 (H, W, 3)), its metric depth (float32 (H, W), holes
    filled) and the mask of filled pixels. The data ship with scikit-image (no download).

        depth_m = focal_px * baseline_m / (disparity_px + doffs_px)
                = 994.978 * 0.193001 / (disparity + 31.086)        (about 2.1 m to 5.0 m)

    Pixels without disparity (inf: occluded in the other view) are filled with the nearest
    valid depth; ``filled`` marks them (in-painted holes, not valid pixels)."""
    from skimage import data

    left_rgb8, _, disparity_px = data.stereo_motorcycle()
    with np.errstate(divide="ignore", invalid="ignore"):
        depth_m = (
            MOTORCYCLE_FOCAL_PX
            * MOTORCYCLE_BASELINE_M
            / (disparity_px.astype(np.float64) + MOTORCYCLE_DOFFS_PX)
        )
    depth_m[~np.isfinite(disparity_px)] = np.nan  # inf disparity = unknown, not zero distance
    filled_depth_m, filled = fill_invalid_depth(
        depth_m.astype(np.float32), "skimage stereo_motorcycle"
    )
    return np.ascontiguousarray(left_rgb8), filled_depth_m, filled
