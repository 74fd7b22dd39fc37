"""Writers of tiny dataset fixtures in each dataset's real on-disk format."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path inside ../shared/data, or a clean skip when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_pfm(path: Path, data: np.ndarray, scale: float = -1.0) -> Path:
    """PFM as Middlebury and HCI store it: rows bottom-up, little-endian (negative scale)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = data.shape
    with open(path, "wb") as handle:
        handle.write(f"Pf\n{width} {height}\n{scale}\n".encode())
        handle.write(np.flipud(data).astype("<f4").tobytes())
    return path


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A random uint8 RGB texture (sharp: every pixel differs from its neighbours)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_dfd_shared(root: Path, rows: int = 7, size_hw: tuple[int, int] = (12, 16)) -> Path:
    """The shared/data/dfd_indoor_train layout: pairs.csv + f2.8/ f8/ depth_mm/."""
    names = []
    for index in range(rows):
        stem = f"2018-04-26T16:{index:02d}:00.000000"
        write_png(root / "f2.8" / f"{stem}.png", texture(*size_hw, seed=index))
        write_png(root / "f8" / f"{stem}.png", texture(*size_hw, seed=100 + index))
        depth_mm = np.full(size_hw, 1000 + 100 * index, np.uint16)
        depth_mm[0, 0] = 0  # no measurement
        depth_mm[0, 1] = 12000  # beyond D3Net's 10 m
        write_png(root / "depth_mm" / f"{stem}.png", depth_mm)
        names.append((f"{stem}.png", f"{stem}.png", f"{stem}.png"))
    with open(root / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["f2.8", "f8", "depth_mm"])
        writer.writerows(names)
    return root


@pytest.fixture
def dfd_shared(tmp_path: Path) -> Path:
    return write_dfd_shared(tmp_path / "dfd_indoor_train")
