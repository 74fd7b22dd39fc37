"""FocusSweepDataset: item layout, ramp/window sampling, crops, determinism, collation."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from focaldepth.data import FocusSweepDataset, increasing_runs
from focaldepth.errors import UserError
from focaldepth.generate import load_config, parse_config, run_generate
from focaldepth.generate.storage import MANIFEST_NAME
from focaldepth.optics import coc_px

TINY = Path(__file__).resolve().parents[1] / "configs" / "data" / "tiny.yaml"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    run_generate(TINY, out, progress=False)
    return out


def test_item_layout_and_values(root):
    dataset = FocusSweepDataset(root, num_frames=4)
    assert len(dataset) == 4
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["frames"].shape == (4, 3, 64, 64) and item["frames"].dtype == torch.float32
        assert 0.0 <= item["frames"].min() and item["frames"].max() <= 1.0
        assert item["focus_distance_m"].shape == (4,) and item["focus_distance_m"].dtype == torch.float32
        assert item["camera"].shape == (3,)
        assert item["depth_m"].shape == (1, 64, 64) and item["aif"].shape == (3, 64, 64)
        assert item["coc_px"].shape == (4, 1, 64, 64) and item["valid"].dtype == torch.bool
        assert item["flow"].shape == (2, 64, 64)
        record = dataset.records[index]
        assert int(item["sequence_index"]) == record["index"] and bool(item["is_dynamic"]) == record["is_dynamic"]
        # the camera is [focal length, f-number, pixel pitch of the stored image]
        cam = record["camera"]
        np.testing.assert_allclose(item["camera"].numpy(), [cam["focal_length_mm"] * 1e-3, cam["f_number"],
                                                            cam["pixel_pitch_m"]], rtol=1e-6)
        # each frame's CoC map belongs to that frame's focus distance and the depth map
        if not record["is_dynamic"]:
            expected = coc_px(item["depth_m"].double(), item["focus_distance_m"].double()[:, None, None, None],
                              *item["camera"].double())
            torch.testing.assert_close(item["coc_px"].double(), expected, rtol=1e-5, atol=1e-5)
        assert item["valid"].all()
        if not record["is_dynamic"]:
            assert not item["flow"].any()


def _positions(item: dict, frames: np.ndarray) -> list[int]:
    """Stored frame index of each item frame (frames differ by their noise, so exact
    equality identifies them)."""
    stored = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    positions = []
    for frame in item["frames"]:
        matches = [t for t in range(len(stored)) if torch.equal(stored[t], frame)]
        assert len(matches) == 1
        positions.append(matches[0])
    return positions


def test_ramp_sampling_takes_increasing_focus_from_one_ramp_and_the_last_frame_is_the_reference(root):
    dataset = FocusSweepDataset(root, num_frames=3, sample="ramp", seed=1)
    seen_ramps = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            record = dataset.records[index]
            with h5py.File(root / record["file"], "r") as file:
                stored = {name: file[name][()] for name in file}
            positions = _positions(item, stored["frames"])
            ramp = record["params"]["frames_per_ramp"]
            assert positions == sorted(positions) and len({p // ramp for p in positions}) == 1
            seen_ramps.add((index, positions[0] // ramp))
            reference = positions[-1]
            np.testing.assert_allclose(item["focus_distance_m"].numpy(), stored["focus_distance_m"][positions],
                                       rtol=1e-6)
            np.testing.assert_array_equal(item["depth_m"][0].numpy(), stored["depth_m"][reference])
            np.testing.assert_array_equal(item["coc_px"][:, 0].numpy(), stored["coc_px"][positions])
            np.testing.assert_array_equal((item["aif"] * 255).round().byte().permute(1, 2, 0).numpy(),
                                          stored["aif"][reference])
            if record["is_dynamic"]:
                np.testing.assert_array_equal(item["flow"].permute(1, 2, 0).numpy(),
                                              stored["flow"][reference].astype(np.float32))
    assert any(r > 0 for _, r in seen_ramps)  # later ramps of a video are used too


def test_window_sampling_takes_consecutive_frames(root):
    with pytest.warns(UserWarning, match="shorter than num_frames=6"):
        dataset = FocusSweepDataset(root, num_frames=6, sample="window", seed=3)
    dynamic = [i for i, r in enumerate(dataset.records) if r["is_dynamic"]]
    assert dynamic and len(dataset) == len(dynamic) and dataset.num_excluded == 4 - len(dynamic)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        item = dataset[dynamic[0]]
        with h5py.File(root / dataset.records[dynamic[0]]["file"], "r") as file:
            positions = _positions(item, file["frames"][()])
        assert positions == list(range(positions[0], positions[0] + 6))


def test_crops_keep_the_camera_and_cut_every_map_alike(root):
    full = FocusSweepDataset(root, num_frames=2, sample="window", random_crop=False, seed=0)
    centre = FocusSweepDataset(root, num_frames=2, sample="window", crop_size=32, random_crop=False, seed=0)
    a, b = full[1], centre[1]
    assert b["frames"].shape == (2, 3, 32, 32) and b["depth_m"].shape == (1, 32, 32)
    assert torch.equal(a["camera"], b["camera"])
    for key in ("frames", "depth_m", "aif", "coc_px", "flow", "valid"):
        assert torch.equal(a[key][..., 16:48, 16:48], b[key]), key
    random = FocusSweepDataset(root, num_frames=2, crop_size=24, seed=0)
    assert random[0]["frames"].shape == (2, 3, 24, 24)


def test_items_are_a_function_of_seed_epoch_and_index(root):
    first = FocusSweepDataset(root, num_frames=2, crop_size=32, seed=5)
    second = FocusSweepDataset(root, num_frames=2, crop_size=32, seed=5)
    assert all(torch.equal(first[3][k], second[3][k]) for k in first[3])
    draws = []
    for epoch in range(6):
        first.set_epoch(epoch)
        draws.append(first[3]["frames"])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_default_collate_batches_items(root):
    loader = DataLoader(FocusSweepDataset(root, num_frames=4, crop_size=32), batch_size=4)
    batch = next(iter(loader))
    assert batch["frames"].shape == (4, 4, 3, 32, 32)
    assert batch["camera"].shape == (4, 3) and batch["focus_distance_m"].shape == (4, 4)
    assert batch["is_dynamic"].dtype == torch.bool and batch["sequence_index"].tolist() == [0, 1, 2, 3]


def test_split_filter_and_errors(root, tmp_path):
    assert len(FocusSweepDataset(root, split="train")) == 4
    with pytest.raises(UserError, match="no generated sequences of split 'test'"):
        FocusSweepDataset(root, split="test")
    with pytest.raises(UserError, match="exceeds the 5 frames of a focus ramp"):
        FocusSweepDataset(root, num_frames=6, sample="ramp")
    with pytest.raises(UserError, match="no sequence has 99 frames"):
        FocusSweepDataset(root, num_frames=99, sample="window")
    with pytest.raises(UserError, match="crop_size=65"):
        FocusSweepDataset(root, crop_size=65)
    with pytest.raises(UserError, match="not found"):
        FocusSweepDataset(tmp_path / "missing")
    with pytest.raises(UserError, match="sample must be"):
        FocusSweepDataset(root, sample="random")


def test_a_test_split_dataset_and_a_missing_manifest(tmp_path):
    config = load_config(TINY)
    test_config = parse_config({**config.to_dict(), "split": "test"})
    run_generate(test_config, tmp_path, num=2, progress=False)
    (tmp_path / MANIFEST_NAME).unlink()  # e.g. shards still running: records come from the files
    dataset = FocusSweepDataset(tmp_path, split="test", num_frames=2)
    assert len(dataset) == 2 and dataset[1]["frames"].shape[0] == 2


def test_increasing_runs():
    assert increasing_runs(np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])) == [(0, 3), (3, 6)]
    assert increasing_runs(np.array([1.0, 1.0, 2.0])) == [(0, 1), (1, 3)]
