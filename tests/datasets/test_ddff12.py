from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from focaldepth.datasets import ddff12, open_adapter
from focaldepth.errors import UserError


def write_ddff(path: Path, count: int = 2, height: int = 12, width: int = 16,
               disp_shape_extra: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    stacks = rng.integers(0, 256, (count, 10, height, width, 3), dtype=np.uint8)
    disparity = np.full((count, *disp_shape_extra, height, width), ddff12.BASELINE_FOCAL_M_PX / 2.0,
                        np.float32)  # 2 m
    disparity[:, ..., 0, 0] = 0.0  # no ground truth
    with h5py.File(path, "w") as file:
        file["stack_val"] = stacks
        file["disp_val"] = disparity
        file["stack_train"] = stacks
        file["disp_train"] = disparity
        file["stack_test"] = stacks
    return stacks, disparity


def test_constants_follow_the_ddff_toolbox():
    assert ddff12.BASELINE_FOCAL_M_PX == pytest.approx(0.141244, rel=1e-4)
    focus = ddff12.focus_distances_m()
    assert focus[0] == pytest.approx(0.5) and focus[-1] == pytest.approx(7.0)
    # evenly spaced in dioptres, near to far: the refocus disparities are a linspace
    assert np.allclose(np.diff(1.0 / focus), np.diff(1.0 / focus)[0])
    disparities = ddff12.BASELINE_FOCAL_M_PX / focus
    assert disparities[0] == pytest.approx(0.2825, abs=1e-4)
    assert disparities[-1] == pytest.approx(0.0202, abs=1e-4)


def test_equivalent_lens_blurs_like_the_nine_view_synthetic_aperture():
    camera = ddff12.camera(552)
    # CoC per dioptre f_px * A with A = 9 baselines: 521.4 px * 9 * 0.2709 mm
    expected = ddff12.SUBAPERTURE_FOCAL_PX * 9 * ddff12.BASELINE_M
    assert camera.focal_length_m / camera.pixel_pitch_m == pytest.approx(521.4052)
    assert camera.coc_px_per_dpt == pytest.approx(expected, rel=1e-6)


def test_round_trip_of_an_hdf5_fixture(tmp_path):
    path = tmp_path / "ddff-dataset-trainval.h5"
    stacks, _ = write_ddff(path)
    dataset = open_adapter(f"ddff12:{path}")
    assert len(dataset) == 2 and dataset.split == "val"
    item = dataset[1]
    assert item["frames"].shape == (10, 3, 12, 16)
    assert np.array_equal((item["frames"].numpy() * 255).round().astype(np.uint8),
                          stacks[1].transpose(0, 3, 1, 2))
    depth, valid = item["depth_m"][0].numpy(), item["valid"][0].numpy()
    assert not valid[0, 0] and valid.sum() == 12 * 16 - 1
    assert np.allclose(depth[valid], 2.0, rtol=1e-6)
    assert np.allclose(item["focus_distance_m"].numpy(), ddff12.focus_distances_m(), rtol=1e-6)
    assert item["camera"].shape == (3,) and not bool(item["is_dynamic"])
    # a frame's CoC at 2 m focused at 0.5 m: f_px A |1/2 - 1/0.5| (F/(F - f) ~ 1.02)
    assert float(item["coc_px"][0, 0, 5, 5]) == pytest.approx(
        dataset.sample(0).camera.coc_px(2.0, 0.5), rel=1e-5)


def test_sub_stacks_keep_the_ends_and_the_order(tmp_path):
    path = tmp_path / "d.h5"
    write_ddff(path, disp_shape_extra=(1,))  # (N, 1, H, W) disparity is read too
    item = open_adapter(f"ddff12:{path}", num_frames=5, split="train", crop_size=8)[0]
    focus = item["focus_distance_m"].numpy()
    assert item["frames"].shape == (5, 3, 8, 8)
    assert focus[0] == pytest.approx(0.5) and focus[-1] == pytest.approx(7.0)
    assert np.all(np.diff(focus) > 0)


@pytest.mark.parametrize("spec, message", [
    ("ddff12:{tmp}/missing.h5", "data not found"),
    ("ddff12:{tmp}/notes.h5", "not a readable HDF5"),
])
def test_unreadable_files_are_user_errors(tmp_path, spec, message):
    (tmp_path / "notes.h5").write_text("not hdf5")
    with pytest.raises(UserError, match=message):
        open_adapter(spec.format(tmp=tmp_path))


def test_wrong_layout_is_named(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as file:
        file["stack_val"] = np.zeros((1, 5, 4, 4, 3), np.uint8)
        file["disp_val"] = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(UserError, match=r"stack_val has shape \(1, 5, 4, 4, 3\)"):
        open_adapter(f"ddff12:{path}")
    with pytest.raises(UserError, match="no dataset 'stack_train'"):
        open_adapter(f"ddff12:{path}", split="train")
    with pytest.raises(UserError, match="no public ground truth"):
        open_adapter(f"ddff12:{path}", split="test")
