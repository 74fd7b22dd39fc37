from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import texture, write_pfm, write_png

from focaldepth.datasets import hci, open_adapter
from focaldepth.errors import UserError

CFG = """[intrinsics]
image_resolution_x_px = {w}
image_resolution_y_px = {h}
focal_length_mm = 100
sensor_size_mm = 35
fstop = 100

[extrinsics]
num_cams_x = 3
num_cams_y = 3
baseline_mm = 90
focus_distance_m = 6.0
center_cam_x_m = 0
center_cam_y_m = 0
center_cam_z_m = 0
center_cam_rx_rad = 0
center_cam_ry_rad = 0
center_cam_rz_rad = 0

[meta]
disp_min = -1.0
disp_max = 1.0
frustum_disp_min = -2.0
frustum_disp_max = 2.0
depth_map_scale = 100.0
scene = {name}
category = {category}
date = 2016
version = 1
authors = a, b
contact = c
"""


def write_scene(folder: Path, disparity_px: float = 1.0, size: int = 24, category: str = "training",
                gt: bool = True) -> np.ndarray:
    """A fronto-parallel textured plane at an integer disparity: view (r, c) sees the centre
    view's texture displaced by -(c - 1, r - 1) * disparity (positive disparity = near)."""
    base = texture(size, size, seed=3)
    for k in range(9):
        r, c = divmod(k, 3)
        shift = int(disparity_px)
        view = np.roll(base, (-(r - 1) * shift, -(c - 1) * shift), axis=(0, 1))
        write_png(folder / f"input_Cam{k:03d}.png", view)
    (folder / "parameters.cfg").write_text(CFG.format(w=size, h=size, name=folder.name,
                                                      category=category))
    if gt:
        disparity = np.full((size, size), disparity_px, np.float32)
        disparity[: size // 2] = 0.0  # top half at the focus plane: the file is not upside down
        write_pfm(folder / "gt_disp_lowres.pfm", disparity)
    return base


def test_disparity_to_depth_follows_parameters_cfg(tmp_path):
    write_scene(tmp_path / "boxes")
    params = hci.read_parameters(tmp_path / "boxes")
    f_px = 100 / 35 * 24
    assert hci.focal_px(params) == pytest.approx(f_px)
    assert hci.disparity_to_depth_m(np.array([0.0]), params)[0] == pytest.approx(6.0)  # focus plane
    depth = float(hci.disparity_to_depth_m(np.array([1.0]), params)[0])
    assert 1.0 == pytest.approx(0.09 * f_px * (1 / depth - 1 / 6.0), rel=1e-5)  # d = B f (1/Z - 1/F)


def test_refocused_stack_is_sharp_at_the_planes_disparity(tmp_path):
    base = write_scene(tmp_path / "training" / "boxes")
    write_scene(tmp_path / "test" / "bedroom", category="test", gt=False)
    dataset = open_adapter(f"hci:{tmp_path}")
    assert [e[0].name for e in dataset.entries] == ["boxes"]  # test scenes have no GT
    assert len(open_adapter(f"hci:{tmp_path}", split="any")) == 2
    item = dataset[0]
    assert item["frames"].shape == (10, 3, 24, 24)
    focus = item["focus_distance_m"].numpy()
    assert np.all(np.diff(focus) > 0)  # near (disp_max) to far (disp_min)
    # slice 0 is refocused at disparity 1 = the plane's: the centre view's texture, exactly
    sharp = (item["frames"][0].numpy().transpose(1, 2, 0) * 255)[2:-2, 2:-2]
    assert np.abs(sharp - base[2:-2, 2:-2]).max() < 0.6
    energy = [float(np.abs(np.diff(f[1].numpy(), axis=1)).mean()) for f in item["frames"]]
    assert int(np.argmax(energy)) == 0 and energy[-1] < 0.6 * energy[0]
    depth = item["depth_m"][0].numpy()
    assert np.allclose(depth[:12], 6.0) and np.allclose(depth[12:], focus[0], rtol=1e-5)
    cam = dataset.sample(0).camera
    assert cam.f_number == pytest.approx(100 / (3 * 90))  # the 3-view synthetic aperture


def test_bad_parameters_are_user_errors(tmp_path):
    write_scene(tmp_path)
    text = (tmp_path / "parameters.cfg").read_text().replace("baseline_mm = 90", "baseline_mm = x")
    (tmp_path / "parameters.cfg").write_text(text)
    with pytest.raises(UserError, match="bad parameters.cfg"):
        open_adapter(f"hci:{tmp_path}")
    with pytest.raises(UserError, match="no scene folder"):
        open_adapter(f"hci:{tmp_path / 'input_Cam000.png'}")
