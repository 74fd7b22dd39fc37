"""`focaldepth generate`: determinism, resuming, sharding, config errors, the file format,
and the physical consistency of every ground-truth channel of generated data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from focaldepth.errors import UserError
from focaldepth.generate import load_config, parse_config, parse_shard, run_generate, shard_indices
from focaldepth.generate.runner import Shard, is_rgbd_config
from focaldepth.generate.storage import MANIFEST_NAME, sequence_filename
from focaldepth.optics import coc_px

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "data" / "tiny.yaml"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    run_generate(TINY, out, progress=False)
    return out


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _read(path: Path) -> dict:
    with h5py.File(path, "r") as file:
        data = {name: file[name][()] for name in file}
        data["attrs"] = dict(file.attrs)
    return data


# --- determinism, resuming, sharding ---------------------------------------------------------


def test_same_config_gives_byte_identical_files_for_any_worker_count(tiny_dir, tmp_path):
    again = tmp_path / "again"
    summary = run_generate(TINY, again, workers=2, progress=False)
    assert summary.generated == 4 and summary.skipped == 0
    first, second = _files(tiny_dir), _files(again)
    assert sorted(first) == ["config.yaml", MANIFEST_NAME] + [sequence_filename(i) for i in range(4)]
    assert first == second


def test_a_different_seed_gives_different_data(tiny_dir, tmp_path):
    config = load_config(TINY)
    other = parse_config({**config.to_dict(), "seed": config.seed + 1})
    run_generate(other, tmp_path / "other", num=1, progress=False)
    assert (tmp_path / "other" / sequence_filename(0)).read_bytes() != (tiny_dir / sequence_filename(0)).read_bytes()


def test_resume_after_an_interrupted_run(tiny_dir, tmp_path):
    out = tmp_path / "resume"
    out.mkdir()
    for name, content in _files(tiny_dir).items():
        (out / name).write_bytes(content)
    # A killed run: one sequence never finished (only its temporary file exists) and the
    # manifest is stale.
    (out / sequence_filename(2)).unlink()
    leftover = out / ".seq_000002.tmp-deadbeef.h5"
    leftover.write_bytes(b"half a file")
    (out / MANIFEST_NAME).write_text("")
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("seq_*.h5")}

    summary = run_generate(TINY, out, progress=False)

    assert summary.generated == 1 and summary.skipped == 3
    assert not leftover.exists()
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("seq_*.h5") if p.name in before} == before
    assert _files(out) == _files(tiny_dir)  # the regenerated file and the manifest are identical


def test_resume_refuses_a_directory_made_with_another_config(tiny_dir, tmp_path):
    out = tmp_path / "mixed"
    run_generate(TINY, out, num=1, progress=False)
    config = load_config(TINY)
    other = parse_config({**config.to_dict(), "seed": 99})
    with pytest.raises(UserError, match="different config"):
        run_generate(other, out, num=1, progress=False)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_cover_every_index_exactly_once(count):
    indices = [k for i in range(count) for k in shard_indices(23, Shard(i, count))]
    assert sorted(indices) == list(range(23))


def test_sharded_runs_into_one_directory_equal_a_single_run(tiny_dir, tmp_path):
    out = tmp_path / "sharded"
    first = run_generate(TINY, out, shard="0/2", progress=False)
    second = run_generate(TINY, out, shard="1/2", progress=False)
    assert (first.generated, second.generated) == (2, 2)
    assert _files(out) == _files(tiny_dir)


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/3", "0/0", "1/2/3"])
def test_bad_shard_is_a_user_error(text):
    with pytest.raises(UserError, match="shard"):
        parse_shard(text)


# --- config errors -------------------------------------------------------------------------


BAD_CONFIGS = {
    "unknown key": ("scene:\n  objects:\n    cuont: [2, 3]\n", "unknown key 'scene.objects.cuont'"),
    "unknown top-level key": ("sead: 3\n", "unknown key 'sead'"),
    "zero objects": ("scene:\n  objects:\n    count: [0, 3]\n", "objects.count: a scene needs at least one"),
    "inverted depth range": ("scene:\n  depth:\n    range_m: [5.0, 0.5]\n", "depth.range_m: range is inverted"),
    "negative focal length": ("scene:\n  camera:\n    focal_length_mm: [-4, 50]\n",
                              "camera.focal_length_mm: values must be positive"),
    "impossible f-number": ("scene:\n  camera:\n    f_number: [0.2, 2.0]\n", "camera.f_number: low end 0.2 is below"),
    "unfocusable depth range": ("scene:\n  camera:\n    focal_length_mm: [50, 85]\n  depth:\n    range_m: [0.05, 0.3]\n",
                                "not beyond the closest focus"),
    "wrong type": ("scene:\n  resolution: big\n", "scene.resolution: expected a list"),
    "bad yaml": ("scene: [\n", "invalid YAML"),
    "unknown split": ("split: validation\n", "split: must be one of"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_configs_are_rejected_with_one_clear_line(name, tmp_path):
    text, expected = BAD_CONFIGS[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        load_config(path)
    message = str(error.value)
    assert expected in message and str(path) in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_cli_reports_a_bad_config_on_one_line_with_status_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("scene:\n  depth:\n    range_m: [5.0, 0.5]\n")
    result = subprocess.run([sys.executable, "-m", "focaldepth.cli", "generate", "--config", str(path),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "range is inverted" in lines[0] and str(path) in lines[0]
    assert not (tmp_path / "out").exists()


def _needs_blender(path) -> bool:
    import importlib.util

    import yaml

    backend = ((yaml.safe_load(path.read_text()).get("scene") or {}).get("render") or {}).get("backend")
    return backend == "blender" and importlib.util.find_spec("bpy") is None


def test_shipped_configs_are_valid_and_pools_match():
    # Blender-backend configs are validated only where the optional bpy extra is installed.
    # RGB-D sweep configs (generator: rgbd) have their own schema: tests/test_rgbd_generate.py.
    paths = [p for p in (ROOT / "configs" / "data").glob("*.yaml")
             if not _needs_blender(p) and not is_rgbd_config(p)]
    configs = {p.stem: load_config(p) for p in paths}
    assert {"seed_train", "small_large_train", "test", "tiny"} <= set(configs)
    assert configs["test"].split == "test" and configs["seed_train"].split == "train"
    assert configs["small_large_train"].scene.objects.pool == "small_large"
    assert len({c.split_seed for c in configs.values()}) == 1  # same split => disjoint pools
    for config in (configs["seed_train"], configs["test"]):
        assert config.scene.resolution == (256, 256) and 0 < config.scene.motion.dynamic_fraction < 1
        assert (config.scene.focus.frames_per_ramp, config.scene.focus.num_ramps) == (5, 5)


# --- file format and manifest --------------------------------------------------------------


def test_file_layout_and_manifest(tiny_dir):
    config = load_config(TINY)
    height, width = config.scene.resolution
    records = [json.loads(line) for line in (tiny_dir / MANIFEST_NAME).read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2, 3]
    assert {r["is_dynamic"] for r in records} == {True, False}  # the tiny config has both kinds
    for record in records:
        path = tiny_dir / record["file"]
        with h5py.File(path, "r") as file:
            num_frames = record["num_frames"]
            assert file["frames"].dtype == np.uint8 and file["frames"].shape == (num_frames, height, width, 3)
            assert file["aif"].dtype == np.uint8 and file["aif"].shape == (num_frames, height, width, 3)
            assert file["depth_m"].dtype == np.float32 and file["depth_m"].shape == (num_frames, height, width)
            assert file["coc_px"].dtype == np.float32
            assert file["focus_distance_m"].dtype == np.float64 and file["focus_distance_m"].shape == (num_frames,)
            assert file["frames"].chunks == (1, height, width, 3) and file["frames"].compression == "gzip"
            assert ("flow" in file) == record["is_dynamic"]
            if record["is_dynamic"]:
                assert file["flow"].dtype == np.float16 and file["flow"].shape == (num_frames, height, width, 2)
                assert not file["flow"][0].any()
            assert list(file.attrs)[:3] == ["format", "format_version", "generator_version"]
            assert json.loads(file.attrs["record_json"]) == record
            assert file.attrs["pixel_pitch_m"] == pytest.approx(file.attrs["sensor_width_mm"] * 1e-3 / width)
            focus = file["focus_distance_m"][()]
        ramp = record["params"]["frames_per_ramp"]
        expected_frames = ramp * (config.scene.focus.num_ramps if record["is_dynamic"]
                                  else config.scene.focus.num_ramps_static)
        assert num_frames == expected_frames
        ramps = focus.reshape(-1, ramp)
        assert np.all(np.diff(ramps, axis=1) > 0) and np.allclose(ramps, ramps[0])  # repeated near -> far
        np.testing.assert_allclose(1 / ramps[0], np.linspace(1 / focus[0], 1 / focus[ramp - 1], ramp))
        assert (record["params"]["near_m"], record["params"]["far_m"]) == pytest.approx((focus[0], focus[ramp - 1]),
                                                                                       rel=1e-5)


def test_contact_sheet_is_written(tiny_dir, tmp_path):
    from PIL import Image

    from focaldepth.generate.contact_sheet import write_contact_sheet

    sheet = write_contact_sheet(tiny_dir, tmp_path / "sheet.png", num_sequences=3)
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.size[0] > 600 and image.size[1] > 300
        assert np.asarray(image.convert("L")).std() > 10  # not blank


# --- ground-truth consistency ----------------------------------------------------------------


def test_coc_ground_truth_is_the_thin_lens_formula_on_the_depth_map(tiny_dir):
    for path in sorted(tiny_dir.glob("seq_*.h5")):
        data = _read(path)
        a = data["attrs"]
        expected = coc_px(data["depth_m"].astype(np.float64), data["focus_distance_m"][:, None, None],
                          a["focal_length_m"], a["f_number"], a["pixel_pitch_m"])
        np.testing.assert_allclose(data["coc_px"], expected, rtol=1e-6)
        # ... and blur is visible but not absurd (the depth-range policy)
        assert 1.0 < data["coc_px"].max() < 60.0
        assert np.all(data["depth_m"] >= 0.9 * data["focus_distance_m"].min())


def _unoccluded(depth_t: torch.Tensor, depth_prev_warped: torch.Tensor) -> torch.Tensor:
    """Pixels whose warped previous depth agrees with the current depth (same surface),
    away from depth edges (where bilinear sampling mixes surfaces)."""
    same_surface = (depth_prev_warped - depth_t).abs() < 0.03 * depth_t
    log_depth = depth_t.log()[None, None]
    edges = kornia.filters.spatial_gradient(log_depth).abs().amax(dim=(1, 2))[0] > 0.02
    near_edge = F.max_pool2d(edges[None, None].float(), 5, stride=1, padding=2)[0, 0] > 0
    return same_surface & ~near_edge


def test_warping_the_previous_frame_by_the_flow_reproduces_the_frame(tiny_dir):
    checked = 0
    for path in sorted(tiny_dir.glob("seq_*.h5")):
        data = _read(path)
        if not data["attrs"]["is_dynamic"]:
            continue
        aif = torch.from_numpy(data["aif"]).permute(0, 3, 1, 2).float() / 255
        depth = torch.from_numpy(data["depth_m"])[:, None]
        flow = torch.from_numpy(data["flow"].astype(np.float32)).permute(0, 3, 1, 2)
        assert flow.abs().max() > 0.5  # the scene does move
        height, width = depth.shape[-2:]
        base = kornia.utils.create_meshgrid(height, width, normalized_coordinates=False)  # (1, H, W, 2): x, y
        for t in range(1, aif.shape[0]):
            target = base + flow[t].permute(1, 2, 0)[None]
            grid = kornia.geometry.conversions.normalize_pixel_coordinates(target, height, width)
            warped = F.grid_sample(aif[t - 1:t], grid, align_corners=True)[0]
            warped_depth = F.grid_sample(depth[t - 1:t], grid, align_corners=True, mode="nearest")[0, 0]
            inside = (target[0, ..., 0] >= 0) & (target[0, ..., 0] <= width - 1) & \
                     (target[0, ..., 1] >= 0) & (target[0, ..., 1] <= height - 1)
            mask = _unoccluded(depth[t, 0], warped_depth) & inside
            assert mask.float().mean() > 0.5
            error = (warped - aif[t]).abs().amax(0)[mask]
            assert error.mean() < 0.02 and torch.quantile(error, 0.95) < 0.08, (path.name, t)
            # A wrong flow (e.g. zero) does not pass the same check: the test can fail.
            still = F.grid_sample(aif[t - 1:t], kornia.geometry.conversions.normalize_pixel_coordinates(
                base, height, width), align_corners=True)[0]
            moving = flow[t].norm(dim=0) > 1.0
            if (mask & moving).sum() > 50:
                assert (still - aif[t]).abs().amax(0)[mask & moving].mean() > error.mean()
            checked += 1
    assert checked >= 1
