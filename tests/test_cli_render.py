"""`focaldepth render` (CLI and function), the depth/sweep pictures of focaldepth.viz, and
the interim demo."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from focaldepth.cli import main
from focaldepth.commands.render import render_sweep_from_rgbd
from focaldepth.io import load_sequence, read_depth, write_depth
from focaldepth.optics import Camera, dioptric_ramp
from focaldepth.viz import (
    colorbar_image,
    colorize_depth,
    contact_sheet,
    depth_display_range,
    side_by_side,
    write_contact_sheet,
)

HEIGHT, WIDTH = 48, 64
NEAR_M, FAR_M = 1.0, 3.0
# 50 mm f/2 with 139 um pixels: 9 px of blur per dioptre, so the two planes (2/3 dpt
# apart) blur each other by 6 px — clearly measurable on a 64 px wide image.
CAMERA = {"focal_length_mm": 50.0, "f_number": 2.0, "sensor_width_mm": 8.9}


def sharpness(image: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey image: high for texture in focus."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def linear_mean(image_srgb8: np.ndarray) -> float:
    """Mean of the image in linear light (the sRGB transfer curve undone)."""
    c = image_srgb8.astype(np.float64) / 255.0
    return float(np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).mean())


@pytest.fixture
def rgbd(tmp_path: Path) -> dict[str, Path]:
    """Two fronto-parallel textured planes: left half at 1 m, right half at 3 m."""
    rng = np.random.default_rng(0)
    texture = (rng.random((HEIGHT, WIDTH, 3)) * 200 + 28).astype(np.uint8)
    Image.fromarray(texture).save(tmp_path / "rgb.png")
    depth_m = np.full((HEIGHT, WIDTH), FAR_M, np.float32)
    depth_m[:, : WIDTH // 2] = NEAR_M
    write_depth(tmp_path / "depth.png", depth_m)
    (tmp_path / "meta.json").write_text(json.dumps({**CAMERA, "lens": "test lens"}))
    return {
        "rgb": tmp_path / "rgb.png",
        "depth": tmp_path / "depth.png",
        "meta": tmp_path / "meta.json",
        "out": tmp_path / "out",
        "dir": tmp_path,
    }


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run `focaldepth ...` in-process through the real entry point (error handling included)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def render_args(rgbd: dict[str, Path], *extra: object) -> list[object]:
    return [
        "render",
        rgbd["rgb"],
        rgbd["depth"],
        "--meta",
        rgbd["meta"],
        "--out",
        rgbd["out"],
        *extra,
    ]


def test_render_sweep_focuses_each_plane_in_turn(rgbd, capsys):
    code, out, err = run_cli(render_args(rgbd, "--frames", 5), capsys)
    assert code == 0, err
    assert "wrote 5 frames" in out
    seq = load_sequence(rgbd["out"])
    np.testing.assert_allclose(seq.focus_distance_m, dioptric_ramp(NEAR_M, FAR_M, 5), rtol=1e-12)
    assert seq.camera == Camera(50.0, 2.0, 8.9, WIDTH)
    assert seq.meta["lens"] == "test lens" and seq.meta["render"]["psf"] == "disk"
    np.testing.assert_allclose(seq.depth_m, read_depth(rgbd["depth"]))  # ground truth saved

    original = np.asarray(Image.open(rgbd["rgb"]))
    margin = 8  # > the 6 px CoC: stay clear of the depth edge
    left, right = (
        np.s_[margin:-margin, margin : WIDTH // 2 - margin],
        np.s_[margin:-margin, WIDTH // 2 + margin : -margin],
    )
    near_frame, far_frame = seq.frames[0], seq.frames[-1]
    # focused at 1 m: the near plane is untouched, the far one blurred (and vice versa)
    assert np.abs(near_frame[left].astype(int) - original[left]).max() <= 1
    assert np.abs(far_frame[right].astype(int) - original[right]).max() <= 1
    assert sharpness(near_frame[right]) < 0.35 * sharpness(original[right])
    assert sharpness(far_frame[left]) < 0.35 * sharpness(original[left])
    # in between, blur of the far plane grows monotonically as focus moves away from it
    far_sharpness = [sharpness(frame[right]) for frame in seq.frames]
    assert all(a < b for a, b in itertools.pairwise(far_sharpness)), far_sharpness
    # energy is conserved: blur moves light around, it does not add or remove it. Blur
    # happens in linear light, so that is where the mean is kept (an sRGB mean is not).
    for frame in seq.frames:
        for region in (left, right):
            assert linear_mean(frame[region]) == pytest.approx(
                linear_mean(original[region]), rel=0.02
            )
    assert abs(seq.frames[0][right].mean() - original[right].mean()) > 5  # sRGB means do shift


def test_focus_list_from_meta_video_and_overwrite(rgbd, capsys):
    meta = {**CAMERA, "focus_distance_diopters": [1.0, 0.5]}
    rgbd["meta"].write_text(json.dumps(meta))
    code, _, err = run_cli(render_args(rgbd, "--video", "--psf", "gaussian", "--layers", 8), capsys)
    assert code == 0, err
    seq = load_sequence(rgbd["out"])
    assert seq.focus_distance_m == [1.0, 2.0]
    assert seq.meta["render"]["psf"] == "gaussian" and seq.meta["render"]["num_layers"] == 8
    video = load_sequence(rgbd["out"] / "sweep.mp4")
    assert video.focus_distance_m == [1.0, 2.0] and video.timestamps_s == [0.0, 0.1]
    # pixel noise is the worst case for H.264 4:2:0: compare what survives, the local means
    smooth = [
        cv2.GaussianBlur(f.astype(np.float32), (0, 0), 2.0) for f in (*video.frames, *seq.frames)
    ]
    assert np.abs(np.stack(smooth[:2]) - np.stack(smooth[2:])).mean() < 3.0

    code, _, err = run_cli(render_args(rgbd), capsys)  # the folder is now non-empty
    assert code == 2 and "not empty" in err
    before = sorted(p.name for p in rgbd["out"].iterdir())
    rgbd["meta"].write_text(json.dumps({**CAMERA, "focus_distance_m": [2.5]}))
    code, _, err = run_cli(render_args(rgbd, "--overwrite"), capsys)
    assert code == 0, err
    assert load_sequence(rgbd["out"]).focus_distance_m == [2.5]
    assert (
        "sweep.mp4" in before and not (rgbd["out"] / "sweep.mp4").exists()
    )  # replaced, not merged
    assert sorted(p.name for p in rgbd["dir"].iterdir()) == [
        "depth.png",
        "meta.json",
        "out",
        "rgb.png",
    ]


def test_function_fills_depth_holes_with_the_nearest_valid_depth(rgbd):
    depth_m = read_depth(rgbd["depth"])
    depth_m[:, 28:36] = np.nan  # a hole across the edge
    depth_m[0, 0] = -1.0
    write_depth(rgbd["dir"] / "holes.npy", depth_m)
    out = render_sweep_from_rgbd(
        rgbd["rgb"],
        rgbd["dir"] / "holes.npy",
        rgbd["meta"],
        rgbd["out"],
        focus_near_m=1.2,
        focus_far_m=2.5,
        num_frames=3,
    )
    seq = load_sequence(out)
    np.testing.assert_allclose(seq.focus_distance_m, dioptric_ramp(1.2, 2.5, 3), rtol=1e-12)
    assert np.isfinite(seq.depth_m).all()
    np.testing.assert_array_equal(seq.depth_m[:, 28:32], NEAR_M)  # nearest valid on the left
    np.testing.assert_array_equal(seq.depth_m[:, 32:36], FAR_M)
    assert seq.depth_m[0, 0] == NEAR_M
    assert seq.meta["render"]["depth_filled_fraction"] == pytest.approx(
        (8 * HEIGHT + 1) / (HEIGHT * WIDTH), abs=1e-6
    )


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")


BAD_INPUTS = [
    # (what to break, extra CLI args, file the message must name, message fragment)
    ("meta_missing", [], "meta", "metadata file not found"),
    ("meta_malformed", [], "meta", "malformed JSON"),
    ("meta_null_focus", [], "meta", "focus_distance_m[1] is null"),
    ("meta_focus_and_flags", ["--frames", 4], "meta", "drop --focus-near/--focus-far/--frames"),
    ("meta_missing_key", [], "meta", "missing key(s): sensor_width_mm"),
    ("meta_timestamps", ["--frames", 3], "meta", "timestamps_s lists 2 values but the sweep has 3"),
    ("depth_size", [], "depth", "depth is 32x48 but the RGB image rgb.png is 64x48"),
    ("depth_8bit", [], "depth", "16-bit"),
    ("depth_bmp", [], "depth", "unsupported depth format .bmp"),
    ("rgb_corrupt", [], "rgb", "cannot read image"),
    ("near_after_far", ["--focus-near", 3.0, "--focus-far", 2.0], None, "near < far"),
    (
        "near_inside_lens",
        ["--focus-near", 0.01],
        None,
        "--focus-near 0.01 m must be finite and beyond",
    ),
    ("out_not_empty", [], "out", "output folder is not empty"),
]


@pytest.mark.parametrize("case,extra,named,fragment", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_naming_the_file(
    rgbd, capsys, case, extra, named, fragment
):
    if case == "meta_missing":
        rgbd["meta"].unlink()
    elif case == "meta_malformed":
        rgbd["meta"].write_text('{"focal_length_mm": 50,')
    elif case == "meta_null_focus":
        rgbd["meta"].write_text(json.dumps({**CAMERA, "focus_distance_m": [1.0, None]}))
    elif case == "meta_focus_and_flags":
        rgbd["meta"].write_text(json.dumps({**CAMERA, "focus_distance_m": [1.0, 2.0]}))
    elif case == "meta_missing_key":
        rgbd["meta"].write_text(json.dumps({"focal_length_mm": 50, "f_number": 2}))
    elif case == "meta_timestamps":
        rgbd["meta"].write_text(json.dumps({**CAMERA, "timestamps_s": [0.0, 0.1]}))
    elif case == "depth_size":
        write_depth(rgbd["depth"], np.ones((HEIGHT, 32), np.float32))
    elif case == "depth_8bit":
        Image.fromarray(np.ones((HEIGHT, WIDTH), np.uint8)).save(rgbd["depth"])
    elif case == "depth_bmp":
        rgbd["depth"] = rgbd["dir"] / "depth.bmp"
        rgbd["depth"].write_bytes(b"BM")
    elif case == "rgb_corrupt":
        _corrupt(rgbd["rgb"])
    elif case == "out_not_empty":
        rgbd["out"].mkdir()
        (rgbd["out"] / "keep.txt").write_text("precious")
    code, _, err = run_cli(render_args(rgbd, *extra), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("focaldepth: error: ")
    if named is not None:
        assert f"{rgbd[named]}: " in lines[0], lines[0]
    assert fragment in lines[0], lines[0]
    if case == "out_not_empty":
        assert [p.name for p in rgbd["out"].iterdir()] == ["keep.txt"]
        assert (rgbd["out"] / "keep.txt").read_text() == "precious"
    else:
        assert not rgbd["out"].exists()  # nothing half-written
    assert not [p for p in rgbd["dir"].iterdir() if ".tmp-" in p.name]


def test_installed_command_exits_2_with_a_single_stderr_line(rgbd):
    """The real process: exit status 2, one line on stderr, no traceback."""
    rgbd["meta"].write_text("{oops")
    result = subprocess.run(
        [sys.executable, "-m", "focaldepth.cli", *map(str, render_args(rgbd))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(
        f"focaldepth: error: {rgbd['meta']}: malformed JSON at line 1 column 2"
    )
    assert not rgbd["out"].exists()


# --- viz -----------------------------------------------------------------------------------


def test_colorize_depth_uses_one_fixed_range_for_a_clip():
    import matplotlib

    clip = np.stack([np.full((4, 5), 2.0), np.linspace(1.0, 4.0, 20).reshape(4, 5)]).astype(
        np.float32
    )
    clip[1, 2, 2] = np.nan
    near_m, far_m = depth_display_range(clip, percentiles=(0, 100))
    assert (near_m, far_m) == pytest.approx((1.0, 4.0))
    colours = colorize_depth(clip, near_m, far_m, cmap="turbo")
    assert colours.shape == (2, 4, 5, 3) and colours.dtype == np.uint8
    # the same depth gets the same colour in every frame (no per-frame normalisation)
    assert (colours[0] == colours[0, 0, 0]).all()
    same_depth = np.isclose(clip[1], 2.0)
    assert same_depth.sum() == 0 or (colours[1][same_depth] == colours[0, 0, 0]).all()
    turbo = matplotlib.colormaps["turbo"]
    end = np.round(np.array(turbo(1.0)[:3]) * 255)
    start = np.round(np.array(turbo(0.0)[:3]) * 255)
    np.testing.assert_allclose(colours[1, -1, -1], start, atol=1)  # far end
    np.testing.assert_allclose(
        colorize_depth(np.array([[0.5]]), near_m, far_m)[0, 0], end, atol=1
    )  # clipped
    # inverse depth is linear: 1/2 m sits at (1/2 - 1/4) / (1 - 1/4) = 1/3 of the map
    np.testing.assert_allclose(
        colours[0, 0, 0], np.round(np.array(turbo(85 / 255)[:3]) * 255), atol=1
    )
    assert colours[1, 2, 2].tolist() == [0, 0, 0]  # invalid is black


def test_colorbar_contact_sheet_and_side_by_side(tmp_path):
    bar = colorbar_image(1.0, 4.0, 200)
    assert bar.shape == (200, 90, 3) and bar.dtype == np.uint8
    assert len(np.unique(bar.reshape(-1, 3), axis=0)) > 50  # a gradient and labels, not a blank
    tiles = [np.full((30, 40, 3), 40 * i, np.uint8) for i in range(5)]
    sheet = contact_sheet(tiles, [f"t{i}" for i in range(5)], columns=3, gap_px=4)
    caption_px = 14 + 8
    assert sheet.shape == (2 * (30 + caption_px) + 3 * 4, 3 * 40 + 4 * 4, 3)
    assert (sheet[4 + caption_px + 10, 4 + 40 + 4 + 10] == 40).all()  # tile 1, row 0, column 1
    row = side_by_side([tiles[1], np.zeros((15, 10, 3), np.uint8)], gap_px=2)
    assert row.shape == (30, 40 + 2 + 20, 3)
    path = write_contact_sheet(tmp_path / "sheet.png", tiles)
    assert np.asarray(Image.open(path)).shape[2] == 3


# --- demo ----------------------------------------------------------------------------------


def test_motorcycle_depth_is_metric_and_complete():
    from focaldepth.io.rgbd import motorcycle_rgbd

    image, depth_m, filled = motorcycle_rgbd()
    assert image.shape == (500, 741, 3) and depth_m.shape == (500, 741)
    assert np.isfinite(depth_m).all()
    # Middlebury Motorcycle: the bike stands ~2-3 m from the camera, the back wall ~5 m
    assert 2.0 < depth_m.min() < 2.3 and 4.8 < depth_m.max() < 5.2
    assert 0.03 < filled.mean() < 0.15


def test_demo_writes_sequence_video_and_contact_sheet(tmp_path):
    from focaldepth.demo import main as demo_main

    assert (
        demo_main(["--render-only", "--out", str(tmp_path / "demo"), "--frames", "2", "--layers", "4", "--quiet"])
        == 0
    )
    folder = load_sequence(tmp_path / "demo" / "sweep")
    video = load_sequence(tmp_path / "demo" / "sweep.mp4")
    assert len(folder) == len(video) == 2
    assert folder.focus_distance_m == video.focus_distance_m
    assert folder.focus_distance_m[0] == pytest.approx(float(folder.depth_m.min()), rel=1e-6)
    assert (tmp_path / "demo" / "contact_sheet.png").stat().st_size > 10_000
    # run twice: replaces its own earlier output
    assert (
        demo_main(["--render-only", "--out", str(tmp_path / "demo"), "--frames", "3", "--layers", "4", "--quiet"])
        == 0
    )
    assert len(load_sequence(tmp_path / "demo" / "sweep")) == 3


def test_demo_render_flags_need_render_only(tmp_path, capsys):
    from focaldepth.demo import main as demo_main

    with pytest.raises(SystemExit) as exit_info:
        demo_main(["--out", str(tmp_path / "demo"), "--frames", "2"])
    assert exit_info.value.code == 2
    assert "--render-only" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_full_render_only_demo_runs(tmp_path):
    from focaldepth.demo import render_motorcycle_sweep

    paths = render_motorcycle_sweep(tmp_path / "demo", quiet=True)
    assert len(load_sequence(paths["sequence"])) == 8


def test_make_demo_job_scores_the_default_model_above_classical(tmp_path, capsys):
    """What `make demo` runs (python -m focaldepth.demo --out DIR): the generated clip goes
    through predict with both methods; on held-out textures the default model is the more
    accurate one (measured 0.24 vs 0.46 AbsRel)."""
    from focaldepth.demo import main as demo_main

    assert demo_main(["--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = tmp_path / "demo"
    assert load_sequence(out / "clip.mp4").focus_distance_m  # clip.json sidecar validates
    assert np.load(out / "clip_depth_gt.npy").shape[0] == len(load_sequence(out / "clip.mp4"))
    for folder in ("prediction", "prediction_classical"):
        assert (out / folder / "depth.mp4").stat().st_size > 0
    report = capsys.readouterr().out
    absrel = {line.split()[0]: float(line.split()[2]) for line in report.splitlines()
              if line.strip().startswith(("default model", "classical baseline"))}
    assert set(absrel) == {"default", "classical"}
    assert absrel["default"] < absrel["classical"]
