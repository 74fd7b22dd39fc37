"""focaldepth.generate.rgbd: focus sweeps from real RGB-D. The fixture tests write small
scenes in the sources' real on-disk formats (DFD pairs.csv + JPG + uint16 PNG, Middlebury
2014 PFM + calib.txt, Middlebury 2005/06 uint8 disparity PNGs, 7-Scenes colour JPG + uint16
depth + intrinsics) and never need ../shared; the last test uses ../shared when present."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from focaldepth import optics
from focaldepth.data import FocusSweepDataset
from focaldepth.errors import UserError
from focaldepth.generate import rgbd
from focaldepth.generate.storage import finished_sequences, read_record
from focaldepth.optics import Camera


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    noise = rng.uniform(0, 255, (height // 4, width // 4, 3)).astype(np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_NEAREST)


def write_pfm(path: Path, image_top_first: np.ndarray) -> None:
    height, width = image_top_first.shape
    with open(path, "wb") as handle:
        handle.write(f"Pf\n{width} {height}\n-1.0\n".encode())
        np.flipud(image_top_first).astype("<f4").tofile(handle)


def make_shared(root: Path, num_dfd: int = 12) -> Path:
    """A miniature shared/ folder in the real formats."""
    rng = np.random.default_rng(0)
    data = root / "data"
    dfd = data / "dfd_indoor_train"
    for sub in ("f2.8", "f8", "depth_mm"):
        (dfd / sub).mkdir(parents=True)
    rows = ["f2.8,f8,depth_mm"]
    for i in range(num_dfd):
        rgb = _texture(rng, 96, 144)
        depth_mm = np.full((96, 144), 1500 + 100 * i, np.uint16)
        depth_mm[:, 72:] = 3000
        depth_mm[:4, :4] = 0  # a hole
        name = f"scene{i:02d}"
        cv2.imwrite(str(dfd / "f8" / f"{name}.JPG"), rgb[..., ::-1])
        cv2.imwrite(str(dfd / "f2.8" / f"{name}.JPG"), rgb[..., ::-1])
        cv2.imwrite(str(dfd / "depth_mm" / f"{name}.png"), depth_mm)
        rows.append(f"{name}.JPG,{name}.JPG,{name}.png")
    (dfd / "pairs.csv").write_text("\n".join(rows) + "\n")
    for scene in ("Piano", "Vintage"):  # Vintage is a validation scene
        folder = data / "rgbd" / "middlebury2014" / scene
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "im0.png"), _texture(rng, 100, 140))
        disparity = np.tile(np.linspace(10, 50, 140, dtype=np.float32), (100, 1))
        disparity[40:60, 60:80] = np.inf  # unknown
        write_pfm(folder / "disp0GT.pfm", disparity)
        (folder / "calib.txt").write_text("cam0=[700 0 70; 0 700 50; 0 0 1]\ncam1=[700 0 80; 0 700 50; 0 0 1]\n"
                                          "doffs=30\nbaseline=180\nwidth=140\nheight=100\n")
    for scene in ("Aloe", "Baby1"):
        folder = data / "rgbd" / "middlebury2005_2006" / scene
        folder.mkdir(parents=True)
        for view in (1, 5):
            cv2.imwrite(str(folder / f"view{view}.png"), _texture(rng, 90, 120))
            disparity = np.tile(np.linspace(20, 120, 120).astype(np.uint8), (90, 1))
            disparity[:, :10] = 0  # unknown
            cv2.imwrite(str(folder / f"disp{view}.png"), disparity)
    kitchen = data / "rgbd" / "7scenes_redkitchen"
    kitchen.mkdir(parents=True)
    (kitchen / "camera-intrinsics.txt").write_text("585 0 320\n0 585 240\n0 0 1\n")
    for frame in (0, 850):
        cv2.imwrite(str(kitchen / f"frame-{frame:06d}.color.jpg"), _texture(rng, 480, 640))
        depth = np.full((480, 640), 2000, np.uint16)
        depth[200:280, 280:360] = 1000
        depth[:20] = 65535  # invalid
        cv2.imwrite(str(kitchen / f"frame-{frame:06d}.depth.png"), depth)
    return root


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return make_shared(tmp_path_factory.mktemp("shared"))


def small_config(shared: Path, **changes) -> rgbd.RgbdConfig:
    base = rgbd.RgbdConfig(seed=3, num_sequences=6, shared=str(shared), resolution=(48, 48), frames=(4, 6),
                           num_layers=8)
    return dataclasses.replace(base, **changes)


# --- readers --------------------------------------------------------------------------------


def test_read_pfm_returns_top_row_first(tmp_path):
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_pfm(tmp_path / "a.pfm", image)
    np.testing.assert_array_equal(rgbd.read_pfm(tmp_path / "a.pfm"), image)
    (tmp_path / "b.pfm").write_bytes(b"P6\n1 1\n255\n\x00\x00\x00")
    with pytest.raises(UserError, match="not a PFM"):
        rgbd.read_pfm(tmp_path / "b.pfm")


def test_middlebury2014_metric_depth_and_unknown(shared):
    image = rgbd.load_middlebury2014(shared / "data" / "rgbd" / "middlebury2014" / "Piano")
    # Z = baseline * f / (d + doffs) / 1000 = 180 * 700 / (10 + 30) / 1000 at the left edge
    assert image.depth_m[0, 0] == pytest.approx(180 * 700 / 40 / 1000, rel=1e-5)
    assert image.depth_m[0, -1] == pytest.approx(180 * 700 / 80 / 1000, rel=1e-5)
    assert np.isnan(image.depth_m[40:60, 60:80]).all()
    assert np.isfinite(image.depth_m).sum() == 100 * 140 - 400


def test_middlebury0506_relative_layout(shared):
    image = rgbd.load_middlebury0506(shared / "data" / "rgbd" / "middlebury2005_2006" / "Aloe", 1)
    assert image.depth_m is None and np.isnan(image.disparity_px[:, :10]).all()
    assert image.disparity_px[0, -1] == 120


def test_register_depth_to_colour_geometry():
    depth = np.full((61, 81), np.nan, np.float32)
    depth[30, 40 + 20] = 2.0  # 20 px right of the centre of the depth camera, 2 m away
    moved = rgbd.register_depth_to_colour(depth, 585.0, 525.0, (0.0, 0.0, 0.0))
    row, col = np.argwhere(np.isfinite(moved))[0]
    assert (row, col) == (30, 40 + round(20 * 525 / 585))
    shifted = rgbd.register_depth_to_colour(depth, 585.0, 525.0, (-0.1, 0.0, 0.0))
    col_shifted = np.argwhere(np.isfinite(shifted))[0][1]
    assert col_shifted == 40 + round((20 * 2.0 / 585 - 0.1) * 525 / 2.0)  # x' = x + t_x, u = f x' / z
    # nearest surface wins where two points land on one pixel
    two = np.full((5, 5), np.nan, np.float32)
    two[2, 2], two[2, 3] = 1.0, 3.0
    merged = rgbd.register_depth_to_colour(two, 100.0, 1.0)
    assert np.nanmin(merged) == pytest.approx(1.0) and np.isfinite(merged).sum() == 1


def test_sevenscenes_registered_depth_misses_the_border(shared):
    image = rgbd.load_sevenscenes_frame(shared / "data" / "rgbd" / "7scenes_redkitchen", 0, (0.0, 0.0, 0.0))
    # the depth camera (585 px) sees a narrower field than the colour camera (525 px)
    assert np.isnan(image.depth_m[240, :20]).all() and np.isnan(image.depth_m[240, -20:]).all()
    assert image.depth_m[240, 320] == pytest.approx(1.0)
    assert image.depth_m[240, 100] == pytest.approx(2.0)


# --- splits ---------------------------------------------------------------------------------


def test_split_by_scene(shared):
    names = {split: {source: rgbd.scene_names(source, split, str(shared)) for source in rgbd.SOURCES}
             for split in rgbd.DATASET_SPLITS}
    assert names["test"]["dfd"] == ("0", "6")  # the DFD test table's scenes (every 6th)
    assert names["val"]["dfd"] == ("3", "9")  # tools/validation_sets dfd:6:3
    assert set(names["train"]["dfd"]) == {"1", "2", "4", "5", "7", "8", "10", "11"}
    assert names["train"]["middlebury2014"] == ("Piano",) and names["val"]["middlebury2014"] == ("Vintage",)
    assert names["train"]["middlebury2005_2006"] == ("Aloe/1", "Aloe/5")
    assert names["val"]["middlebury2005_2006"] == ("Baby1/1", "Baby1/5")
    assert names["train"]["sevenscenes"] == ("0",) and names["val"]["sevenscenes"] == ("850",)
    assert names["train"]["motorcycle"] == () and names["val"]["motorcycle"] == ()
    assert names["test"]["motorcycle"] == ("Motorcycle",)
    for source in rgbd.SOURCES:
        assert not set(names["train"][source]) & set(names["val"][source])
        assert not set(names["train"][source]) & set(names["test"][source])


def test_config_refuses_motorcycle_outside_test_and_unknown_keys(tmp_path):
    with pytest.raises(UserError, match="Motorcycle is a test scene"):
        rgbd.parse_rgbd_config({"sources": {"motorcycle": 1.0}})
    with pytest.raises(UserError, match="unknown key 'protocols.covr'"):
        rgbd.parse_rgbd_config({"protocols": {"covr": 1.0}})
    path = tmp_path / "c.yaml"
    path.write_text(Path(rgbd.__file__).parents[3].joinpath("configs/data/rgbd_train.yaml").read_text())
    config = rgbd.load_rgbd_config(path)
    assert config.split == "train" and config.sources.motorcycle == 0.0


# --- sweeps ---------------------------------------------------------------------------------


def test_sweep_protocols_relative_to_the_scene():
    camera = Camera(50.0, 2.0, 36.0, 128)
    near, far = 1.0, 4.0
    rng = np.random.default_rng(0)
    for _ in range(50):
        s_near, s_far = rgbd.sweep_for_protocol(rng, "cover", near, far, camera)
        assert abs(1 / s_near - 1 / near) <= 0.05 * 0.75 + 1e-9 and abs(1 / s_far - 1 / far) <= 0.05 * 0.75 + 1e-9
        s_near, s_far = rgbd.sweep_for_protocol(rng, "inner", near, far, camera)
        assert near < s_near < s_far < far
        s_near, s_far = rgbd.sweep_for_protocol(rng, "before_far", near, far, camera)
        assert 1 / s_far - 1 / far >= 0.3 * 0.75 - 1e-9  # ends at least 30 % of the span before the far part
        s_near, s_far = rgbd.sweep_for_protocol(rng, "before_near", near, far, camera)
        assert 1 / near - 1 / s_near >= 0.3 * 0.75 - 1e-9
        s_near, s_far = rgbd.sweep_for_protocol(rng, "wide", near, far, camera)
        assert s_near < near and far < s_far <= 2 * far


def test_scale_gives_the_blur_target():
    config = rgbd.RgbdConfig(resolution=(64, 64))
    rng = np.random.default_rng(1)
    for _ in range(20):
        camera, scale, target = rgbd.sample_camera_and_scale(rng, config, 1.0, 3.0, metric=False)
        blur = camera.coc_px_per_dpt * (1 / (scale * 1.0) - 1 / (scale * 3.0))
        assert blur == pytest.approx(target, rel=1e-6)
        assert scale * 1.0 >= 10 * camera.focal_length_m - 1e-12


# --- end to end -----------------------------------------------------------------------------


def test_generated_dataset_reads_with_the_training_loader(shared, tmp_path):
    config = small_config(shared, num_sequences=10)
    summary = rgbd.run_rgbd(config, tmp_path / "a", progress=False)
    assert summary.generated == 10 and summary.manifest_sequences == 10
    files = finished_sequences(tmp_path / "a")
    sources = set()
    for path in files.values():
        record = read_record(path)
        sources.add(record["params"]["source"])
        assert record["generator_version"] == rgbd.RGBD_GENERATOR_VERSION
        assert 4 <= record["num_frames"] <= 6 and record["params"]["frames_per_ramp"] == record["num_frames"]
    assert len(sources) >= 3
    dataset = FocusSweepDataset(tmp_path / "a", num_frames=4, crop_size=32)
    saw_invalid = False
    for item in (dataset[i] for i in range(len(dataset))):
        assert item["frames"].shape == (4, 3, 32, 32)
        valid = item["valid"][0].numpy()
        depth = item["depth_m"][0].numpy()
        assert np.isfinite(depth[valid]).all() and np.isnan(depth[~valid]).all()
        assert np.isnan(item["coc_px"][:, 0].numpy()[:, ~valid]).all()
        saw_invalid |= not valid.all()
    assert saw_invalid  # Middlebury inf, 7-Scenes border or DFD holes reached the mask


def test_stored_coc_and_the_sharpest_frame_follow_the_thin_lens(shared, tmp_path):
    import h5py

    config = small_config(shared, num_sequences=4, frames=(6, 6), resolution=(64, 64), flip=False,
                          sources=rgbd.SourceWeights(dfd=1.0, middlebury2014=0, middlebury2005_2006=0, sevenscenes=0),
                          protocols=rgbd.ProtocolWeights(cover=0, inner=0, before_far=0, before_near=0, wide=1.0),
                          noise=dataclasses.replace(rgbd.RgbdConfig().noise, shot=(0.0, 0.0), read_std=(0.0, 0.0)))
    rgbd.run_rgbd(config, tmp_path / "p", progress=False)
    for path in finished_sequences(tmp_path / "p").values():
        with h5py.File(path, "r") as file:
            depth, coc, focus = file["depth_m"][()], file["coc_px"][()], file["focus_distance_m"][()]
            frames = file["frames"][()].astype(np.float32)
            f, n, p = (float(file.attrs[k]) for k in ("focal_length_m", "f_number", "pixel_pitch_m"))
        expected = optics.coc_px(depth.astype(np.float64), focus[:, None, None], f, n, p)
        np.testing.assert_allclose(coc, expected, rtol=1e-5, equal_nan=True)
        assert np.all(np.diff(focus) > 0)  # near -> far
        # On the most common plane, the frame focused nearest to it (in dioptres) is the
        # sharpest and frames that blur it by more than 2 px are visibly softer.
        plane = np.nanmedian(depth[0])
        region = np.abs(depth[0] - plane) < 1e-3
        region = cv2.erode(region.astype(np.uint8), np.ones((9, 9))) > 0
        if region.sum() < 100 or coc[:, region].max() < 3:
            continue
        grey = frames.mean(axis=-1)
        energy = [np.abs(cv2.Laplacian(g, cv2.CV_32F))[region].mean() for g in grey]
        nearest = int(np.argmin(np.abs(1 / focus - 1 / plane)))
        assert energy[nearest] >= max(energy) - 1e-3  # (blur under a pixel leaves frames equal)
        blurred = [s for s in range(len(focus)) if np.median(coc[s][region]) > 2.0]
        assert blurred and all(energy[s] < 0.9 * energy[nearest] for s in blurred)


def test_deterministic_sharded_and_resumable(shared, tmp_path):
    config = small_config(shared)
    rgbd.run_rgbd(config, tmp_path / "whole", progress=False)
    rgbd.run_rgbd(config, tmp_path / "shards", shard="0/2", progress=False)
    rgbd.run_rgbd(config, tmp_path / "shards", shard="1/2", progress=False)
    whole, shards = finished_sequences(tmp_path / "whole"), finished_sequences(tmp_path / "shards")
    assert sorted(whole) == sorted(shards) == list(range(6))
    for index in whole:
        assert whole[index].read_bytes() == shards[index].read_bytes()
    before = whole[2].read_bytes()
    whole[2].unlink()
    summary = rgbd.run_rgbd(config, tmp_path / "whole", progress=False)
    assert summary.generated == 1 and summary.skipped == 5
    assert whole[2].read_bytes() == before
    with pytest.raises(UserError, match="different config"):
        rgbd.run_rgbd(dataclasses.replace(config, seed=4), tmp_path / "whole", progress=False)


def test_real_shared_sources_when_present(tmp_path):
    from focaldepth.io.rgbd import default_shared_root

    root = default_shared_root()
    if not (root / "data" / "dfd_indoor_train" / "pairs.csv").is_file() or not (root / "data" / "rgbd").is_dir():
        pytest.skip(f"../shared with dfd_indoor_train and rgbd/ not found at {root}")
    for source in ("dfd", "middlebury2014", "middlebury2005_2006", "sevenscenes"):
        weights = {s: float(s == source) for s in rgbd.SOURCES}
        config = rgbd.RgbdConfig(seed=0, shared=str(root), resolution=(64, 64), frames=(3, 3), num_layers=8,
                                 sources=rgbd.SourceWeights(**weights))
        data = rgbd.generate_rgbd_sequence(config, 0)
        assert data.params["source"] == source
        valid = np.isfinite(data.depth_m[0])
        assert valid.mean() >= 0.5 and data.frames.shape == (3, 64, 64, 3)
        assert 0.01 < np.nanmedian(data.depth_m[0]) < 20.0
    assert len(rgbd.scene_names("dfd", "test", str(root))) == 14
    assert len(rgbd.scene_names("dfd", "val", str(root))) == 13
    assert len(rgbd.scene_names("dfd", "train", str(root))) == 54


def test_focaldepth_generate_runs_an_rgbd_config(shared, tmp_path):
    import yaml

    from focaldepth.generate import load_config, run_generate

    config = dataclasses.replace(small_config(shared), num_sequences=2)
    path = tmp_path / "rgbd.yaml"
    path.write_text(rgbd.dump_rgbd_config(config))
    assert yaml.safe_load(path.read_text())["generator"] == "rgbd"
    summary = run_generate(path, tmp_path / "out", progress=False)  # what `focaldepth generate` calls
    assert summary.generated == 2 and summary.manifest_sequences == 2
    assert read_record(tmp_path / "out" / "seq_000001.h5")["generator_version"] == rgbd.RGBD_GENERATOR_VERSION
    with pytest.raises(UserError, match="RGB-D sweep config"):
        load_config(path)
