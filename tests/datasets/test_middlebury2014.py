from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path, texture, write_pfm, write_png

from focaldepth.datasets import open_adapter
from focaldepth.errors import UserError


def write_scene(folder: Path, height: int = 40, width: int = 96) -> np.ndarray:
    write_png(folder / "im0.png", texture(height, width, seed=1))
    disparity = np.full((height, width), 360.0, np.float32)  # 0.5 m
    disparity[:, width // 2:] = 20.0  # right half farther
    disparity[0, :4] = np.inf  # unknown
    write_pfm(folder / "disp0GT.pfm", disparity)
    mask = np.full((height, width), 255, np.uint8)
    mask[-1, -4:] = 128  # occluded
    write_png(folder / "mask0nocc.png", mask)
    (folder / "calib.txt").write_text(
        "cam0=[1000 0 24; 0 1000 20; 0 0 1]\ncam1=[1000 0 30; 0 1000 20; 0 0 1]\n"
        "doffs=40\nbaseline=200\nwidth=96\nheight=40\nndisp=400\n")
    return disparity


def test_round_trip_masks_and_rendered_sweep(tmp_path):
    write_scene(tmp_path / "Piano")
    write_scene(tmp_path / "Recycle")
    dataset = open_adapter(f"middlebury2014:{tmp_path}")
    assert len(dataset) == 2
    assert [p.name for p in open_adapter(f"middlebury2014:{tmp_path}", split="val").entries] == ["Recycle"]
    item = dataset[0]
    depth, valid = item["depth_m"][0].numpy(), item["valid"][0].numpy()
    assert depth[5, 5] == pytest.approx(200 * 1000 / (360 + 40) / 1000)  # 0.5 m
    assert depth[5, 80] == pytest.approx(200 * 1000 / (20 + 40) / 1000)  # 3.33 m
    assert not valid[0, :4].any() and not valid[-1, -4:].any() and valid.sum() == 40 * 96 - 8
    focus = item["focus_distance_m"].numpy()
    assert item["frames"].shape == (5, 3, 40, 96)
    assert focus[0] == pytest.approx(0.5, rel=0.01) and focus[-1] == pytest.approx(10 / 3, rel=0.01)
    # the near half is sharpest in the near-focused frame, the far half in the far-focused one
    energy = np.abs(np.diff(item["frames"][:, 1].numpy(), axis=2))
    near, far = energy[:, 6:-6, 8:38].mean((1, 2)), energy[:, 6:-6, 58:-8].mean((1, 2))
    assert near[0] > near[-1] and far[-1] > far[0]


def test_incomplete_scene_is_named(tmp_path):
    write_png(tmp_path / "Pipes" / "im0.png", texture(8, 8))
    with pytest.raises(UserError, match="scene lacks disp0GT.pfm, calib.txt"):
        open_adapter(f"middlebury2014:{tmp_path}")


def test_shared_artl_scene():
    scene = shared_path("rgbd", "middlebury2014", "ArtL")
    item = open_adapter(f"middlebury2014:{scene}", num_frames=3)[0]
    assert item["frames"].shape[:2] == (3, 3)
    depth = item["depth_m"][0][item["valid"][0]]
    assert 0.5 < float(depth.min()) < float(depth.max()) < 12.0
