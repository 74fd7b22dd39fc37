from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import texture, write_png

from focaldepth.datasets import open_adapter
from focaldepth.errors import UserError

OpenEXR = pytest.importorskip("OpenEXR", reason="OpenEXR not installed: FoD500 depth is EXR")


def write_exr_rgb_half(path: Path, depth_m: np.ndarray) -> None:
    """Depth as DefocusNet's Blender writes it: half-float R, G, B channels."""
    half = np.ascontiguousarray(depth_m.astype(np.float16))
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"R": half, "G": half, "B": half}) as exr:
        exr.write(str(path))


def write_stack(folder: Path, index: int, frames: int = 5, size: int = 8) -> np.ndarray:
    for k in range(frames):
        write_png(folder / f"{index:06d}_{k:02d}All.tif", texture(size, size, seed=10 * index + k))
    depth = np.linspace(0.2, 3.5, size * size, dtype=np.float32).reshape(size, size)
    write_exr_rgb_half(folder / f"{index:06d}Dpt.exr", depth)
    return depth


def test_round_trip_and_published_split(tmp_path):
    write_stack(tmp_path, 399)
    depth = write_stack(tmp_path, 400)
    write_stack(tmp_path, 401, frames=6)  # with the all-in-focus frame
    test = open_adapter(f"fod500:{tmp_path}")
    assert len(test) == 2  # 400, 401: the test split starts at 400
    assert len(open_adapter(f"fod500:{tmp_path}", split="train")) == 1
    item = test[0]
    assert item["frames"].shape == (5, 3, 8, 8)
    assert np.array_equal((item["frames"][2].numpy() * 255).round().astype(np.uint8),
                          texture(8, 8, seed=4002).transpose(2, 0, 1))
    assert item["focus_distance_m"].tolist() == pytest.approx([0.1, 0.15, 0.3, 0.7, 1.5])
    got = item["depth_m"][0].numpy()
    assert np.allclose(got, depth, rtol=1e-3)  # half float
    valid = item["valid"][0].numpy()
    assert np.array_equal(valid, got <= 3.0)  # DefocusNet's depth_max
    cam = test.sample(0).camera
    assert (cam.focal_length_mm, cam.f_number) == (2.9, 1.0)
    assert cam.pixel_pitch_m == pytest.approx(3.1e-3 / 256)
    assert "aif" not in item and test[1]["aif"].shape == (3, 8, 8)


def test_missing_depth_is_named(tmp_path):
    write_png(tmp_path / "000450_00All.tif", texture(8, 8))
    with pytest.raises(UserError, match="stack 450 has frames but no"):
        open_adapter(f"fod500:{tmp_path}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no test stacks"):
        open_adapter(f"fod500:{tmp_path / 'empty'}")
