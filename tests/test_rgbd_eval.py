"""Real-RGB-D evaluation (focaldepth.experiments.rgbd_eval): the DFD indoor loader, the sweep protocols,
the final-frame shortcut through StreamingPredictor, and a tiny end-to-end run on one real
scene (tests on ../shared skip when it is absent)."""

import csv
import json
import math
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from focaldepth import models
from focaldepth.errors import UserError
from focaldepth.experiments.rgbd_eval import (
    COVER_PERCENTILES,
    DFD_PRESETS,
    INNER_PERCENTILES,
    PROTOCOLS,
    WIDE_MARGIN,
    dfd_data_root,
    final_depth_m,
    load_dfd_scene,
    load_methods,
    main,
    outside_sweep,
    render_sweeps,
    run_dfd,
    scene_scale,
    select_pairs,
    sweep_range_m,
)
from focaldepth.io.rgbd import read_dfd_depth_m
from focaldepth.optics import Camera, dioptric_ramp
from focaldepth.predict import StreamingPredictor, load_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DFD_ROOT = SHARED / "data" / "dfd_indoor_train"
needs_dfd = pytest.mark.skipif(not (DFD_ROOT / "pairs.csv").is_file(),
                               reason=f"DFD indoor data not found at {DFD_ROOT} (../shared is absent)")


def stamp(path: Path) -> datetime:
    return datetime.fromisoformat(path.stem)


# --- loader --------------------------------------------------------------------------------


def test_depth_png_millimetres_become_metres_and_zero_is_invalid(tmp_path):
    millimetres = np.array([[0, 1, 1700], [65535, 2500, 0]], dtype=np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(millimetres).save(path)
    depth_m, valid = read_dfd_depth_m(path)
    assert depth_m.dtype == np.float32
    np.testing.assert_array_equal(valid, millimetres > 0)
    np.testing.assert_allclose(depth_m, millimetres / 1000.0, rtol=1e-6)
    assert (depth_m[~valid] == 0).all()  # 0, not NaN: percentiles of the map stay finite


@needs_dfd
def test_loader_pairs_each_f8_photo_with_its_own_depth_map():
    pairs = select_pairs(DFD_ROOT)
    assert len(pairs) == 81
    for pair in pairs:
        assert pair.sharp_path.is_file() and pair.depth_path.is_file()
        # Photo and depth of one scene were taken ~0.1 s apart; scenes are >= 10 s apart.
        gap_s = abs((stamp(pair.sharp_path) - stamp(pair.depth_path)).total_seconds())
        assert gap_s < 0.5, pair.name
    stamps = [stamp(p.sharp_path) for p in pairs]
    assert stamps == sorted(stamps)
    assert [p.name for p in select_pairs(DFD_ROOT, 40)] == [pairs[0].name, pairs[40].name, pairs[80].name]


@needs_dfd
def test_loaded_scene_is_metric_and_registered_to_the_photo():
    pair = select_pairs(DFD_ROOT)[0]
    raw_m, raw_valid = read_dfd_depth_m(pair.depth_path)
    scene = load_dfd_scene(pair)
    assert scene.rgb.shape == (432, 645, 3) and scene.rgb.dtype == np.uint8
    assert scene.depth_m.shape == (432, 645) and np.isfinite(scene.depth_m).all()
    np.testing.assert_array_equal(scene.valid, raw_valid)
    # An indoor room seen by an Xtion: metres, not millimetres. The 5x5 median that removes
    # speckles moves few pixels by more than 2 % (edges, the speckles themselves).
    assert 0.3 < np.median(scene.depth_m) < 8.0
    relative_change = np.abs(scene.depth_m - raw_m)[raw_valid] / raw_m[raw_valid]
    assert np.mean(relative_change < 0.02) > 0.95
    small = load_dfd_scene(pair, width_px=160)
    assert small.rgb.shape == (107, 160, 3) and small.depth_m.shape == (107, 160)
    assert np.median(small.depth_m) == pytest.approx(np.median(scene.depth_m), rel=0.05)
    with pytest.raises(UserError, match="width"):
        load_dfd_scene(pair, width_px=1000)


def test_missing_shared_folder_is_a_one_line_user_error(tmp_path, capsys):
    with pytest.raises(UserError) as error:
        dfd_data_root(tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "data" / "dfd_indoor_train") in message
    with pytest.raises(SystemExit) as exit_info:
        main(["--source", "dfd", "--shared", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.count("\n") == 0 and "dfd_indoor_train" in stderr
    assert not (tmp_path / "out").exists()


# --- sweep protocols ----------------------------------------------------------------------


def room_depth_m(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A room-like depth map: a slanted floor/wall ramp 1-4 m plus a few boxes nearer."""
    rng = np.random.default_rng(seed)
    depth = np.tile(np.linspace(1.0, 4.0, 200, dtype=np.float32), (120, 1))
    for _ in range(4):
        y, x = rng.integers(0, 100), rng.integers(0, 180)
        depth[y:y + 20, x:x + 20] = rng.uniform(0.8, 1.5)
    return depth, np.ones(depth.shape, bool)


def test_cover_sweep_leaves_only_the_percentile_tails_outside():
    depth, valid = room_depth_m()
    near, far = sweep_range_m(depth, valid, "cover")
    outside = outside_sweep(depth, near, far)
    tails = (100 - COVER_PERCENTILES[1] + COVER_PERCENTILES[0]) / 100
    assert outside.mean() <= tails + 1e-3
    assert (depth[~outside] >= near).all() and (depth[~outside] <= far).all()


def test_inner_sweep_leaves_scene_on_both_sides_outside_the_swept_range():
    depth, valid = room_depth_m()
    near, far = sweep_range_m(depth, valid, "inner")
    outside = outside_sweep(depth, near, far)
    expected = (100 - INNER_PERCENTILES[1] + INNER_PERCENTILES[0]) / 100
    assert outside.mean() == pytest.approx(expected, abs=0.01)
    assert (depth < near).mean() > 0.14 and (depth > far).mean() > 0.14
    # Beyond the percentile tails: cover leaves ~8x fewer pixels outside than inner.
    assert outside_sweep(depth, *sweep_range_m(depth, valid, "cover")).mean() < outside.mean() / 5


def test_wide_sweep_extends_a_quarter_of_the_dioptric_span_on_both_sides():
    depth = np.tile(np.linspace(1.5, 4.0, 200, dtype=np.float32), (120, 1))  # far < 5x near
    valid = np.ones(depth.shape, bool)
    near, far = sweep_range_m(depth, valid, "cover")
    wide_near, wide_far = sweep_range_m(depth, valid, "wide")
    span_dpt = 1 / near - 1 / far
    assert 1 / wide_near - 1 / near == pytest.approx(WIDE_MARGIN * span_dpt, rel=1e-6)
    assert 1 / far - 1 / wide_far == pytest.approx(WIDE_MARGIN * span_dpt, rel=1e-6)
    assert not outside_sweep(depth, wide_near, wide_far).any()
    # A deep scene (far > 5x near): the far end stops at twice the far depth, not infinity.
    deep = np.tile(np.linspace(0.5, 10.0, 400, dtype=np.float32), (10, 1))
    _, deep_far = sweep_range_m(deep, np.ones(deep.shape, bool), "wide")
    _, cover_far = sweep_range_m(deep, np.ones(deep.shape, bool), "cover")
    assert deep_far == pytest.approx(2 * cover_far, rel=1e-6)
    with pytest.raises(UserError, match="protocol"):
        sweep_range_m(depth, valid, "sideways")


def test_dslr_preset_keeps_real_distances_phone_preset_scales_to_close_up():
    depth, valid = room_depth_m()
    dslr, phone = DFD_PRESETS
    assert scene_scale(dslr, depth, valid) == 1.0
    scale = scene_scale(phone, depth, valid)
    assert np.percentile(depth * scale, 2) == pytest.approx(0.15, rel=1e-5)


# --- prediction ---------------------------------------------------------------------------


def textured_scene(width_px: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rgb = cv2.resize(skdata.astronaut(), (width_px, width_px * 2 // 3), interpolation=cv2.INTER_AREA)
    depth = np.tile(np.linspace(1.0, 3.0, width_px, dtype=np.float32), (rgb.shape[0], 1))
    return rgb, depth


@pytest.mark.parametrize("method", ["classical", "sweepnet_test"])
def test_final_depth_equals_pushing_every_frame(method):
    rgb, depth = textured_scene()
    camera = Camera(35.0, 2.8, 23.6, rgb.shape[1])
    focus_m = [float(f) for f in dioptric_ramp(1.0, 3.0, 5)]
    (frames,) = render_sweeps(rgb, depth, camera, [focus_m], seed=1)
    model = load_model("classical") if method == "classical" else models.create(method).eval()
    height, width = rgb.shape[:2]

    def predictor():
        return StreamingPredictor(model, camera, focus_m, height, width, align=False, max_pixels=height * width)

    every = predictor()
    for frame, focus in zip(frames, focus_m):
        expected = every.push(frame, focus).depth_m
    np.testing.assert_array_equal(final_depth_m(predictor(), frames, focus_m), expected)


def test_render_sweeps_splits_one_render_into_the_requested_sweeps():
    rgb, depth = textured_scene()
    camera = Camera(35.0, 2.8, 23.6, rgb.shape[1])
    focus_a = [float(f) for f in dioptric_ramp(1.0, 3.0, 3)]
    focus_b = [float(f) for f in dioptric_ramp(1.0, 3.0, 5)]
    sweep_a, sweep_b = render_sweeps(rgb, depth, camera, [focus_a, focus_b], seed=0)
    assert sweep_a.shape == (3, *rgb.shape) and sweep_b.shape == (5, *rgb.shape)
    # Same focus distance (the near end) in both sweeps: the same picture up to the noise.
    difference = np.abs(sweep_a[0].astype(float) - sweep_b[0].astype(float)).mean()
    assert difference < 4.0
    # The near-focused frame is sharp at the near (left) edge and blurred at the far one.
    def sharpness(image):
        return cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    third = rgb.shape[1] // 3
    assert sharpness(sweep_b[0][:, :third]) > sharpness(sweep_b[0][:, -third:])
    assert sharpness(sweep_b[-1][:, -third:]) > sharpness(sweep_b[0][:, -third:])


def test_methods_accept_a_model_file_path_and_reject_unknown_names(tmp_path):
    path = models.save(models.create("sweepnet_test"), tmp_path / "candidate.pt")
    loaded = load_methods([str(path), "classical"])
    assert list(loaded) == [str(path), "classical"]
    with pytest.raises(UserError):
        load_methods(["no_such_model"])


# --- end to end ---------------------------------------------------------------------------


@needs_dfd
def test_tiny_run_on_one_downscaled_scene_writes_finite_metrics(tmp_path):
    out = tmp_path / "rgbd_dfd"
    run_dfd(out, ["classical"], shared=SHARED, every=81, width_px=128, frame_counts=(4,), progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_scene.csv", "table.md"]
    with (out / "per_scene.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(DFD_PRESETS) * len(PROTOCOLS)
    for row in rows:
        for column in ("absrel", "rmse", "delta1", "absrel_inside"):
            assert math.isfinite(float(row[column])), (row["preset"], row["protocol"], column)
        assert 0 < float(row["absrel"]) < 1 and 0 <= float(row["delta1"]) <= 1
        assert (row["absrel_outside"] == "") == (row["protocol"] == "wide")
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["settings"]["num_scenes"] == 1 and summary["settings"]["width_px"] == 128
    assert len(summary["configs"]) == len(DFD_PRESETS) * len(PROTOCOLS)
    table = (out / "table.md").read_text()
    assert sum(line.startswith(("| dslr |", "| phone |")) for line in table.splitlines()) == 6


def test_motorcycle_is_scored_on_measured_disparities_not_on_filled_holes():
    from focaldepth.experiments.rgbd_eval import motorcycle
    from focaldepth.io.rgbd import motorcycle_rgbd

    _, _, filled = motorcycle_rgbd()
    rgb, depth_m, valid = motorcycle(width_px=741)
    assert rgb.shape[:2] == valid.shape == depth_m.shape
    # Middlebury marks a few per cent of pixels unknown: those are filled and must not count.
    assert np.array_equal(valid, ~filled) and 0.85 < valid.mean() < 0.99
