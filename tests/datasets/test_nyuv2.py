from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from focaldepth.datasets import nyuv2, open_adapter
from focaldepth.errors import UserError

MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 1 00:00:00 2012 HDF5 schema 1.00 ."


def write_labeled_mat(path: Path, images_hwc: np.ndarray, depths_hw: np.ndarray) -> Path:
    """A v7.3 .mat as MATLAB writes it: HDF5 behind a 512-byte header, arrays seen from HDF5
    in reversed (column-major) order: images (N, 3, W, H), depths (N, W, H)."""
    with h5py.File(path, "w", userblock_size=512) as file:
        file["images"] = images_hwc.transpose(0, 3, 2, 1)
        file["depths"] = depths_hw.transpose(0, 2, 1).astype(np.float32)
    with open(path, "r+b") as handle:
        handle.write(MATLAB_HEADER.ljust(128, b" "))
    return path


def step_edge_scene(height: int, width: int, depth_m: float, count: int = 3):
    images = np.zeros((count, height, width, 3), np.uint8)
    images[:, :, width // 2:] = 200
    images[:, 2, 5, 0] = 17  # orientation marker (row 2, column 5)
    depths = np.full((count, height, width), depth_m, np.float32)
    depths[:, 0, 0] = 0.0  # missing
    return images, depths


def edge_sigma_px(row: np.ndarray) -> float:
    """Standard deviation of a blurred step's derivative: the Gaussian PSF's sigma."""
    gradient = np.clip(np.diff(row.astype(np.float64)), 0, None)
    x = np.arange(len(gradient))
    mean = (gradient * x).sum() / gradient.sum()
    return float(np.sqrt((gradient * (x - mean) ** 2).sum() / gradient.sum()))


def test_d3net_orientation_split_and_blur(tmp_path):
    images, depths = step_edge_scene(48, 96, depth_m=1.0)
    path = write_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", images, depths)
    savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[1], [2]]), "testNdxs": np.array([[3]])})
    dataset = open_adapter(f"nyuv2_d3net:{path}")
    assert dataset.entries == [2] and len(open_adapter(f"nyuv2_d3net:{path}", split="train")) == 2
    item = dataset[0]
    assert item["frames"].shape == (1, 3, 48, 96)
    assert round(float(item["aif"][0, 2, 5]) * 255) == 17  # rows and columns not swapped
    assert not bool(item["valid"][0, 0, 0]) and float(item["depth_m"][0, 5, 5]) == 1.0
    cam = dataset.sample(0).camera
    assert item["camera"].tolist() == pytest.approx([0.015, 2.8, 5.6e-6])
    # D3Net's PSF: a Gaussian of sigma = 0.3 x the thin-lens blur diameter (here ~7.2 px)
    expected = 0.3 * cam.coc_px(1.0, 2.0)
    row = item["frames"][0, 1, 24].numpy() * 255
    assert edge_sigma_px(row[20:76]) == pytest.approx(expected, rel=0.12)


def test_dered_five_slices_at_320x240(tmp_path):
    images, depths = step_edge_scene(48, 64, depth_m=4.0, count=1)
    path = write_labeled_mat(tmp_path / "labeled.mat", images, depths)
    dataset = open_adapter(f"nyuv2_dered:{path}", split="all")
    item = dataset[0]
    assert item["frames"].shape == (5, 3, 240, 320)
    assert item["focus_distance_m"].tolist() == pytest.approx([1, 1.5, 2.5, 4, 6])
    rows = item["frames"][:, 1, 120].numpy() * 255
    sigmas = [edge_sigma_px(r[100:220]) for r in rows]
    # the slice focused at the scene's 4 m is the sharpest; sigma = CoC / 2 elsewhere
    assert int(np.argmin(sigmas)) == 3
    cam = dataset.sample(0).camera
    assert sigmas[0] == pytest.approx(0.5 * cam.coc_px(4.0, 1.0), rel=0.15)


def test_errors_name_the_problem(tmp_path):
    images, depths = step_edge_scene(8, 8, 1.0, count=2)
    path = write_labeled_mat(tmp_path / "labeled.mat", images, depths)
    with pytest.raises(UserError, match="splits.mat"):
        open_adapter(f"nyuv2_d3net:{path}")
    with h5py.File(tmp_path / "other.mat", "w") as file:
        file["rgb"] = np.zeros((1, 3, 4, 4), np.uint8)
    with pytest.raises(UserError, match="no 'images'"):
        open_adapter(f"nyuv2_dered:{tmp_path / 'other.mat'}", split="all")
    savemat(tmp_path / "v5.mat", {"images": np.zeros((2, 2))})
    with pytest.raises(UserError, match="not a MATLAB v7.3"):
        open_adapter(f"nyuv2_d3net:{tmp_path / 'v5.mat'}", split="all")
    assert nyuv2.NYUv2DEReD.render_f_number(nyuv2.NYUv2DEReD.__new__(nyuv2.NYUv2DEReD)) == 4.0
