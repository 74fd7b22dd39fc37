"""Sequence format and I/O: round trips for every format, every bad input's clear error,
and nothing half-written after an error or a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from focaldepth.errors import UserError
from focaldepth.io import (
    atomic_dir,
    atomic_path,
    depth_to_png16,
    fill_invalid_depth,
    iter_frames,
    iter_video_frames,
    load_sequence,
    natural_key,
    read_depth,
    read_meta,
    validate_meta,
    write_depth,
    write_sequence,
    write_sequence_video,
    write_video,
)
from focaldepth.optics import Camera

FOCUS_M = [0.5, None, 1.0, 2.0, 4.0]


def smooth_frames(count: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Natural-looking frames — fine grey texture, slowly varying colour, like a photo — so
    H.264 (4:2:0 chroma) keeps them within a few levels."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        texture = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 1.5)
        colour = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 8.0)
        mixed = 0.6 * cv2.normalize(texture, None, 0, 1, cv2.NORM_MINMAX)[
            ..., None
        ] + 0.4 * cv2.normalize(colour, None, 0, 1, cv2.NORM_MINMAX)
        frames.append((20 + 215 * mixed).astype(np.uint8))
    return np.stack(frames)


def camera_for(width: int, f_number: float = 2.0) -> Camera:
    return Camera(50.0, f_number, 6.4, width)


def write_meta(path: Path, **overrides) -> Path:
    meta = {
        "focal_length_mm": 50,
        "f_number": 2,
        "sensor_width_mm": 6.4,
        "focus_distance_m": [1.0, 2.0],
    }
    meta.update(overrides)
    meta = {k: v for k, v in meta.items() if v is not ...}
    path.write_text(json.dumps(meta))
    return path


def frame_folder(tmp_path: Path, count: int = 2, ext: str = ".png", **meta) -> Path:
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, frame in enumerate(smooth_frames(count)):
        Image.fromarray(frame).save(
            folder / f"{i}{ext}", **({"quality": 95} if ext == ".jpg" else {})
        )
    write_meta(
        folder / "meta.json", **({"focus_distance_m": [1.0 + i for i in range(count)]} | meta)
    )
    return folder


def assert_user_error(excinfo: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    """One line, names the file, says the problem."""
    message = str(excinfo.value)
    assert "\n" not in message
    assert excinfo.value.path == str(path), message
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message


# --- folders -------------------------------------------------------------------------------


def test_folder_round_trip_is_exact(tmp_path):
    frames = smooth_frames(5)
    depth_m = np.linspace(0.5, 4.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    out = write_sequence(
        tmp_path / "seq",
        frames,
        FOCUS_M,
        camera_for(64),
        f_number=[2, 2, 2.8, 4, 4],
        timestamps_s=[0.0, 0.1, 0.25, 0.3, 0.5],
        depth_m=depth_m,
        source="test",
        extra_meta={"lens": "Helios 44", "nested": {"k": [1, 2]}},
    )
    seq = load_sequence(out)
    np.testing.assert_array_equal(seq.frames, frames)
    assert seq.focus_distance_m == FOCUS_M
    assert seq.timestamps_s == [0.0, 0.1, 0.25, 0.3, 0.5]
    assert seq.f_number == [2, 2, 2.8, 4, 4] and seq.camera_at(3).f_number == 4
    assert seq.camera == camera_for(64)
    assert seq.meta["lens"] == "Helios 44" and seq.meta["nested"] == {
        "k": [1, 2]
    }  # unknown keys kept
    assert seq.meta["source"] == "test"
    np.testing.assert_array_equal(seq.depth_m, depth_m)
    assert np.isnan(seq.focus_array_m()[1])
    stack, focus, camera = seq.to_tensors()
    assert (
        tuple(stack.shape) == (1, 5, 3, 48, 64)
        and 0 <= float(stack.min())
        and float(stack.max()) <= 1
    )
    assert tuple(focus.shape) == (1, 5) and tuple(camera.shape) == (1, 3)
    assert float(camera[0, 2]) == pytest.approx(6.4e-3 / 64)


def test_folder_frames_sort_naturally(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(12):  # 0.png … 11.png: lexical order would put 10 and 11 after 1
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(folder / f"{i}.png")
    write_meta(folder / "meta.json", focus_distance_m=[1.0 + i for i in range(12)])
    seq = load_sequence(folder)
    assert [int(f[0, 0, 0]) for f in seq.frames] == [i * 20 for i in range(12)]
    assert sorted(["img10.jpg", "img2.jpg", "img1.jpg"], key=natural_key) == [
        "img1.jpg",
        "img2.jpg",
        "img10.jpg",
    ]


@pytest.mark.parametrize("ext,tolerance", [(".png", 0), (".tif", 0), (".jpg", 4.0)])
def test_folder_image_formats(tmp_path, ext, tolerance):
    folder = frame_folder(tmp_path, 3, ext)
    seq = load_sequence(folder)
    assert np.abs(seq.frames.astype(float) - smooth_frames(3)).mean() <= tolerance
    (folder / "notes.txt").write_text("ignored")  # non-frame files are not frames
    (folder / ".0.tmp-abcd.png").write_bytes(b"half written")  # leftovers of a killed write
    assert len(load_sequence(folder)) == 3


def test_grey_and_16_bit_frames_become_rgb8(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    Image.fromarray(np.full((6, 7), 100, np.uint8)).save(folder / "0.png")
    Image.fromarray(np.full((6, 7), 200 * 256, np.uint16)).save(folder / "1.png")
    write_meta(folder / "meta.json")
    frames = load_sequence(folder).frames
    assert frames.shape == (2, 6, 7, 3) and frames.dtype == np.uint8
    assert frames[0, 0, 0].tolist() == [100] * 3 and frames[1, 0, 0].tolist() == [200] * 3


def test_diopters_and_explicit_meta_path(tmp_path):
    folder = frame_folder(tmp_path, 2)
    (folder / "meta.json").unlink()
    meta = write_meta(
        tmp_path / "elsewhere.json", focus_distance_m=..., focus_distance_diopters=[2.0, None]
    )
    seq = load_sequence(folder, meta)
    assert seq.focus_distance_m == [0.5, None]
    with pytest.raises(UserError, match="missing metadata"):  # an explicit path must exist
        load_sequence(folder, tmp_path / "nowhere.json")


def test_lazy_folder_streams_the_same_frames(tmp_path):
    folder = frame_folder(tmp_path, 4)
    lazy = load_sequence(folder, lazy=True)
    assert lazy.is_lazy and len(lazy) == 4 and lazy.size_hw == (48, 64)
    np.testing.assert_array_equal(np.stack(list(lazy.iter_frames())), load_sequence(folder).frames)
    np.testing.assert_array_equal(np.stack(list(iter_frames(folder))), smooth_frames(4))


# --- video ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov", ".avi"])
def test_video_round_trip(tmp_path, ext):
    frames = smooth_frames(5, 47, 63)  # odd: stored cropped to 46x62
    video = write_sequence_video(
        tmp_path / f"clip{ext}", frames, FOCUS_M, camera_for(63), fps=25, extra_meta={"phone": "x"}
    )
    seq = load_sequence(video)
    assert seq.frames.shape == (5, 46, 62, 3)
    error = np.abs(seq.frames.astype(float) - frames[:, :46, :62])
    assert error.mean() < 3.0, error.mean()
    assert seq.focus_distance_m == FOCUS_M  # exact: metadata travel in the sidecar
    assert seq.timestamps_s == [0.0, 0.04, 0.08, 0.12, 0.16]
    assert seq.meta["phone"] == "x"
    # cropping keeps the pixel pitch, so the physics of the stored frames is unchanged
    assert seq.camera.image_width_px == 62
    assert seq.camera.pixel_pitch_m == pytest.approx(camera_for(63).pixel_pitch_m, rel=1e-12)


def test_video_encoding_is_repeatable(tmp_path):
    # x264's macroblock-tree rate control made the same frames encode differently once torch
    # had run (the demo's accuracy changed from run to run); write_video turns it off.
    # Noise or sine test patterns did not show it; the demo's own procedural clip does.
    import torch

    from focaldepth.demo import DEMO_SCENE
    from focaldepth.generate.config import parse_config
    from focaldepth.scenes.pools import split_pools
    from focaldepth.scenes.sequence import generate_sequence

    config = parse_config(DEMO_SCENE)
    pools = split_pools(config.split_seed)[config.split]
    frames = generate_sequence(config.scene, pools, config.seed, 0).frames
    write_video(tmp_path / "a.mp4", frames, 10.0)
    for _ in range(5):
        torch.fft.rfft2(torch.randn(16, 256, 256))
    write_video(tmp_path / "b.mp4", frames, 10.0)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_video_variable_frame_times_and_lazy_loading(tmp_path):
    frames = smooth_frames(5)
    times = [0.0, 0.033, 0.07, 0.2, 0.21]
    video = write_sequence_video(
        tmp_path / "vfr.mp4", frames, FOCUS_M, camera_for(64), timestamps_s=times
    )
    container_times = [t for t, _ in iter_video_frames(video)]
    np.testing.assert_allclose(container_times, times, atol=1e-4)
    assert load_sequence(video).timestamps_s == times
    lazy = load_sequence(video, lazy=True)
    assert lazy.is_lazy and len(lazy) == 5 and lazy.size_hw == (48, 64)
    np.testing.assert_array_equal(np.stack(list(lazy.iter_frames())), load_sequence(video).frames)
    # without sidecar times, both loaders take the container's presentation times
    sidecar = tmp_path / "vfr.json"
    meta = json.loads(sidecar.read_text())
    del meta["timestamps_s"]
    sidecar.write_text(json.dumps(meta))
    np.testing.assert_allclose(load_sequence(video).timestamps_s, times, atol=1e-4)
    np.testing.assert_allclose(load_sequence(video, lazy=True).timestamps_s, times, atol=1e-4)


def test_iter_frames_streams_a_video_in_constant_memory(tmp_path):
    """Frames come out as they are decoded (a truncated tail fails only after the good
    frames were delivered) and the stream keeps no reference to frames already handed out."""
    frames = smooth_frames(60, 96, 128)
    video = tmp_path / "long.mp4"
    write_video(video, frames, 30)
    stream = iter_frames(video)
    first = next(stream)
    assert np.abs(first.astype(float) - frames[0]).mean() < 3.0
    handed_out = weakref.ref(first)
    del first
    for _ in range(5):
        next(stream)
    assert handed_out() is None, "iter_frames holds on to earlier frames"
    assert sum(1 for _ in stream) == 54

    data = video.read_bytes()
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    delivered = 0
    with pytest.raises(UserError) as excinfo:
        for _ in iter_frames(truncated):
            delivered += 1
    assert 10 < delivered < 60
    assert_user_error(excinfo, truncated, f"decoded {delivered} of 60 frames")


def test_sidecar_timestamps_must_match_the_video(tmp_path):
    video = write_sequence_video(
        tmp_path / "clip.mp4", smooth_frames(3), [1.0, 2.0, 3.0], camera_for(64), fps=10
    )
    sidecar = tmp_path / "clip.json"
    meta = json.loads(sidecar.read_text())
    meta["timestamps_s"] = [0.0, 0.5, 1.0]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(UserError) as excinfo:
        load_sequence(video)
    assert_user_error(excinfo, sidecar, "timestamps_s[1]", "does not match")


def test_truncated_and_corrupt_videos(tmp_path):
    video = write_sequence_video(
        tmp_path / "clip.mp4", smooth_frames(20), [1.0 + i for i in range(20)], camera_for(64)
    )
    data = video.read_bytes()
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "cut.json").write_bytes((tmp_path / "clip.json").read_bytes())
    with pytest.raises(UserError) as excinfo:
        load_sequence(truncated)
    assert_user_error(excinfo, truncated, "truncated")
    garbage = tmp_path / "garbage.mkv"
    garbage.write_bytes(os.urandom(5000))
    write_meta(tmp_path / "garbage.json")
    with pytest.raises(UserError) as excinfo:
        load_sequence(garbage)
    assert_user_error(excinfo, garbage, "corrupt")


def test_video_frame_count_must_match_focus_list(tmp_path):
    write_video(tmp_path / "clip.mkv", smooth_frames(3), 10)
    write_meta(tmp_path / "clip.json", focus_distance_m=[1.0, 2.0])
    with pytest.raises(UserError) as excinfo:
        load_sequence(tmp_path / "clip.mkv")
    assert_user_error(excinfo, tmp_path / "clip.json", "2 entries", "3 frames")
    with pytest.raises(UserError, match="2 entries"):
        load_sequence(tmp_path / "clip.mkv", lazy=True)


def test_missing_sidecar_names_the_expected_file(tmp_path):
    write_video(tmp_path / "clip.mp4", smooth_frames(2), 10)
    with pytest.raises(UserError) as excinfo:
        load_sequence(tmp_path / "clip.mp4")
    assert_user_error(excinfo, tmp_path / "clip.json", "missing metadata", "--meta")


# --- depth ---------------------------------------------------------------------------------


def test_depth_npy_npz_exr_round_trips_are_exact(tmp_path):
    depth_m = np.random.default_rng(1).uniform(0.3, 80.0, (2, 9, 11)).astype(np.float32)
    np.testing.assert_array_equal(read_depth(write_depth(tmp_path / "d.npy", depth_m)), depth_m)
    np.testing.assert_array_equal(read_depth(write_depth(tmp_path / "d.npz", depth_m)), depth_m)
    np.testing.assert_array_equal(
        read_depth(write_depth(tmp_path / "d.exr", depth_m[0])), depth_m[0]
    )
    assert read_depth(tmp_path / "d.npy").dtype == np.float32
    np.savez(tmp_path / "other.npz", whatever=depth_m[0].astype(np.float64))  # one array: any key
    np.testing.assert_array_equal(read_depth(tmp_path / "other.npz"), depth_m[0])


def test_depth_png16_millimetres_invalid_and_saturation(tmp_path):
    depth_m = np.array(
        [[1.2344, 0.0, np.nan, -1.0], [np.inf, 70.0, 65.535, 0.0001]], dtype=np.float32
    )
    path = write_depth(tmp_path / "d.png", depth_m)
    stored = np.asarray(Image.open(path))
    assert stored.dtype == np.uint16
    assert stored.tolist() == [[1234, 0, 0, 0], [0, 65535, 65535, 1]]  # mm, 0 = invalid, saturates
    back = read_depth(path)
    assert back[0, 0] == pytest.approx(1.234, abs=1e-6)
    assert np.isnan(back[0, 1:]).all() and np.isnan(back[1, 0])
    assert back[1, 1] == pytest.approx(65.535) and back[1, 3] == pytest.approx(0.001)
    smooth = np.random.default_rng(2).uniform(0.2, 60.0, (16, 16)).astype(np.float32)
    assert (
        np.abs(read_depth(write_depth(tmp_path / "s.png", smooth)) - smooth).max() <= 0.0005 + 1e-6
    )
    np.testing.assert_array_equal(depth_to_png16(np.array([[0.5]])), [[500]])


def test_fill_invalid_depth_takes_the_nearest_valid_value():
    depth_m = np.array([[1.0, np.nan, np.nan, 5.0], [1.0, 0.0, np.inf, 5.0]], dtype=np.float32)
    filled, mask = fill_invalid_depth(depth_m)
    np.testing.assert_array_equal(filled, [[1, 1, 5, 5], [1, 1, 5, 5]])
    assert mask.sum() == 4
    with pytest.raises(UserError, match="no valid"):
        fill_invalid_depth(np.zeros((3, 3)), "x.png")


@pytest.mark.parametrize(
    "name,content,fragment",
    [
        ("d8.png", "8bit", "16-bit"),
        ("rgb.png", "rgb", "16-bit"),
        ("int.npy", "int", "floating-point"),
        ("bad.npy", "garbage", "cannot read"),
        ("bad.exr", "garbage", "cannot read EXR"),
        ("bad.png", "garbage", "cannot read"),
        ("many.npz", "many", "'depth_m'"),
        ("d.bmp", "garbage", "unsupported depth format"),
        ("missing.npy", None, "not found"),
    ],
)
def test_bad_depth_files(tmp_path, name, content, fragment):
    path = tmp_path / name
    if content == "8bit":
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    elif content == "rgb":
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    elif content == "int":
        np.save(path, np.ones((4, 4), np.int32))
    elif content == "many":
        np.savez(path, a=np.ones((2, 2)), b=np.ones((2, 2)))
    elif content == "garbage":
        path.write_bytes(b"\x89PNG not really" + os.urandom(64))
    with pytest.raises(UserError) as excinfo:
        read_depth(path)
    assert_user_error(excinfo, path, fragment)


# --- metadata and folder errors ------------------------------------------------------------


META_ERRORS = [
    ("{not json", "malformed JSON at line 1 column 2"),
    (
        '{"focal_length_mm": -4, "f_number": 2, "sensor_width_mm": 6, "focus_distance_m": [1]}',
        "focal_length_mm must be positive",
    ),
    (
        '{"focal_length_mm": null, "f_number": "f/2", "sensor_width_mm": 6, "focus_distance_m": [1]}',
        "f_number must be a number",
    ),
    (
        '{"focal_length_mm": null, "aperture_diameter_mm": -1, "sensor_width_mm": 6,'
        ' "focus_distance_m": [1]}',
        "aperture_diameter_mm must be positive",
    ),
    (
        '{"focal_length_mm": 50, "f_number": 2, "sensor_width_mm": 6}',
        "focus_distance_m (or focus_distance_diopters)",
    ),
    ("[1, 2]", "expected a JSON object"),
    (
        '{"focal_length_mm": "50", "f_number": 2, "sensor_width_mm": 6, "focus_distance_m": [1]}',
        "focal_length_mm must be a number",
    ),
    (
        '{"focal_length_mm": 50, "f_number": 0, "sensor_width_mm": 6, "focus_distance_m": [1]}',
        "f_number must be positive",
    ),
    (
        '{"focal_length_mm": 50, "f_number": 2, "sensor_width_mm": 6, "focus_distance_m": [1, -2]}',
        "focus_distance_m[1] must be positive and finite",
    ),
    (
        '{"focal_length_mm": 50, "f_number": 2, "sensor_width_mm": 6, "focus_distance_m": [1, NaN]}',
        "focus_distance_m[1] must be positive and finite",
    ),
    (
        '{"focal_length_mm": 50, "f_number": 2, "sensor_width_mm": 6, "focus_distance_m": [Infinity]}',
        "focus_distance_m[0] must be positive and finite",
    ),
    (
        '{"focal_length_mm": 50, "f_number": 2, "sensor_width_mm": 6, "focus_distance_m": [1, 0.04]}',
        "focus_distance_m[1] is 0.04 m, not beyond the focal length (50 mm)",
    ),
    (
        '{"focal_length_mm": 50, "f_number": 2, "sensor_width_mm": 6, "focus_distance_diopters": [25]}',
        "focus_distance_diopters[0] is 0.04 m, not beyond the focal length",
    ),
    (
        (
            '{"focal_length_mm": 50, "f_number": 2, "sensor_width_mm": 6, "focus_distance_m": [1, 2],'
            ' "focus_distance_diopters": [1, 1]}'
        ),
        "focus_distance_m[1] = 2.0 disagrees",
    ),
    (
        '{"focal_length_mm": 50, "f_number": [2, 2, 2], "sensor_width_mm": 6, "focus_distance_m": [1, 2]}',
        "per-frame lists differ in length",
    ),
    (
        (
            '{"focal_length_mm": 50, "f_number": 2, "sensor_width_mm": 6, "focus_distance_m": [1, 2],'
            ' "timestamps_s": [0.1, 0.1]}'
        ),
        "timestamps_s must increase strictly",
    ),
    (
        '{"focal_length_mm": 50, "f_number": 2, "sensor_width_mm": 6, "focus_distance_m": 1}',
        "focus_distance_m must be a list",
    ),
    (
        '{"focal_length_mm": 50, "f_number": 2, "aperture_diameter_mm": 25, "sensor_width_mm": 6,'
        ' "focus_distance_m": [1, 2]}',
        "not both",
    ),
    (
        '{"focal_length_mm": 50, "aperture_diameter_mm": [25, 0], "sensor_width_mm": 6,'
        ' "focus_distance_m": [1, 2]}',
        "aperture_diameter_mm[1]",
    ),
]


@pytest.mark.parametrize("text,fragment", META_ERRORS)
def test_bad_metadata(tmp_path, text, fragment):
    path = tmp_path / "meta.json"
    path.write_text(text)
    with pytest.raises(UserError) as excinfo:
        read_meta(path)
    assert_user_error(excinfo, path, fragment)


def test_meta_keeps_unknown_keys_and_converts_diopters(tmp_path):
    path = write_meta(
        tmp_path / "m.json",
        focus_distance_m=...,
        focus_distance_diopters=[0.5, 4.0],
        source="phone",
        iso=100,
    )
    meta = read_meta(path)
    assert (
        meta.focus_distance_m == [2.0, 0.25]
        and meta.extra == {"iso": 100}
        and meta.source == "phone"
    )


def corrupt_frame(folder: Path) -> Path:
    (folder / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return folder / "1.png"


def truncated_jpeg(folder: Path) -> Path:
    data = (folder / "1.jpg").read_bytes()
    (folder / "1.jpg").write_bytes(data[: len(data) // 2])
    return folder / "1.jpg"


def mixed_sizes(folder: Path) -> Path:
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(folder / "1.png")
    return folder / "1.png"


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize(
    "ext,break_it,fragment",
    [
        (".png", corrupt_frame, "cannot read image"),
        (".jpg", truncated_jpeg, "truncated"),
        (".png", mixed_sizes, "frame size 10x10 differs from 64x48"),
    ],
)
def test_bad_frames(tmp_path, ext, break_it, fragment, lazy):
    folder = frame_folder(tmp_path, 2, ext)
    bad = break_it(folder)
    with pytest.raises(UserError) as excinfo:
        seq = load_sequence(folder, lazy=lazy)
        list(seq.iter_frames())  # lazy loading reports decoding errors while streaming
    assert_user_error(excinfo, bad, fragment)


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_meta(empty / "meta.json")
    with pytest.raises(UserError) as excinfo:
        load_sequence(empty)
    assert_user_error(excinfo, empty, "no frames in folder")

    gifs = tmp_path / "gifs"
    gifs.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(gifs / "0.gif")
    write_meta(gifs / "meta.json")
    with pytest.raises(UserError) as excinfo:
        load_sequence(gifs)
    assert_user_error(excinfo, gifs, "unsupported extension(s) .gif")

    folder = frame_folder(tmp_path, 3, focus_distance_m=[1.0, 2.0])
    with pytest.raises(UserError) as excinfo:
        load_sequence(folder)
    assert_user_error(
        excinfo, folder / "meta.json", "focus_distance_m has 2 entries", "has 3 frames"
    )

    (folder / "meta.json").unlink()  # a bare folder of photos loads, relative only
    assert not load_sequence(folder).camera_known

    for path, fragment in (
        (tmp_path / "clip.gif", "unsupported sequence type .gif"),
        (folder / "0.png", "a single image is not a sequence"),
        (tmp_path / "nope", "sequence not found"),
    ):
        if path.suffix == ".gif":
            path.write_bytes(b"GIF89a")
        with pytest.raises(UserError) as excinfo:
            load_sequence(path)
        assert_user_error(excinfo, path, fragment)


# --- atomic writes -------------------------------------------------------------------------


def test_atomic_path_leaves_old_file_on_error(tmp_path):
    final = tmp_path / "depth.npy"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        assert tmp.suffix == ".npy" and tmp.name.startswith(".") and tmp.parent == tmp_path
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed")
    assert final.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.npy"]


def test_failed_sequence_write_leaves_nothing_and_refuses_overwrite(tmp_path):
    out = tmp_path / "seq"
    with pytest.raises(ValueError, match="3 frames but 5 focus"):
        write_sequence(out, smooth_frames(3), FOCUS_M, camera_for(64))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(
        UserError, match="focus_distance_m\\[0\\] is 0.01 m"
    ):  # validated before writing
        write_sequence(out, smooth_frames(2), [0.01, 1.0], camera_for(64))
    assert list(tmp_path.iterdir()) == []

    write_sequence(out, smooth_frames(2), [1.0, 2.0], camera_for(64))
    with pytest.raises(UserError) as excinfo:
        write_sequence(out, smooth_frames(2, seed=5), [3.0, 4.0], camera_for(64))
    assert_user_error(excinfo, out, "not empty", "--overwrite")
    assert load_sequence(out).focus_distance_m == [1.0, 2.0]  # untouched
    write_sequence(out, smooth_frames(2, seed=5), [3.0, 4.0], camera_for(64), overwrite=True)
    assert load_sequence(out).focus_distance_m == [3.0, 4.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]  # no .old/.tmp leftovers


def test_atomic_dir_removes_its_temporary_on_error(tmp_path):
    with pytest.raises(KeyError), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.png").write_bytes(b"x")
        raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_leaves_no_complete_looking_output(tmp_path):
    """SIGKILL in the middle of write_sequence: the final folder never appears, and the
    temporary folder cannot be mistaken for a sequence."""
    script = textwrap.dedent(f"""
        import time, numpy as np
        from focaldepth.io import write_sequence
        from focaldepth.optics import Camera
        def frames():
            for i in range(100):
                yield np.full((16, 16, 3), i, np.uint8)
                if i == 2:
                    print("writing", flush=True)
                    time.sleep(60)
        write_sequence({str(tmp_path / "seq")!r}, frames(), [1.0] * 100, Camera(50, 2, 6, 16))
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "writing"
        time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    leftovers = list(tmp_path.iterdir())
    assert not (tmp_path / "seq").exists()
    assert len(leftovers) == 1 and ".tmp-" in leftovers[0].name
    assert not (leftovers[0] / "meta.json").exists()  # meta.json is written last


def test_aperture_diameter_gives_the_f_number(tmp_path):
    """A = f / N: a 50 mm lens with a 25 mm aperture is f/2, per frame for a list."""
    path = tmp_path / "meta.json"
    path.write_text('{"focal_length_mm": 50, "aperture_diameter_mm": [25, 12.5], "sensor_width_mm": 6,'
                    ' "focus_distance_m": [1, 2]}')
    meta = read_meta(path)
    assert meta.f_number == [2.0, 4.0] and "aperture_diameter_mm" not in meta.extra
    assert meta.camera(600, frame_index=1).f_number == 4.0
    assert meta.to_json_dict()["f_number"] == [2.0, 4.0]


# --- unknown camera (phone stacks) -----------------------------------------------------------


@pytest.mark.parametrize("unknown", [
    {"focal_length_mm": None},
    {"f_number": None},
    {"sensor_width_mm": ...},  # missing
    {"focal_length_mm": ..., "f_number": ..., "sensor_width_mm": ...},
    {"focal_length_mm": None, "f_number": ..., "aperture_diameter_mm": 2.0},
])
def test_unknown_camera_loads_with_a_stand_in_camera(tmp_path, unknown):
    from focaldepth.io.meta import RELATIVE_SWEEP_BLUR_FRACTION

    meta = read_meta(write_meta(tmp_path / "m.json", **unknown))
    assert not meta.camera_known
    camera = meta.camera(640)
    # the stand-in blurs a 1-dioptre sweep by a fixed fraction of the image width
    assert camera.coc_px_per_dpt == pytest.approx(RELATIVE_SWEEP_BLUR_FRACTION * 640)
    assert meta.focus_distance_m == [1.0, 2.0]
    written = json.loads(json.dumps(meta.to_json_dict()))  # unknown is written back as null
    assert None in (written["focal_length_mm"], written["f_number"], written["sensor_width_mm"])
    assert not validate_meta(written).camera_known


def test_known_camera_is_still_known(tmp_path):
    meta = read_meta(write_meta(tmp_path / "m.json"))
    assert meta.camera_known and meta.camera(100).focal_length_mm == 50


def test_folder_without_meta_is_a_relative_stack_with_a_warning(tmp_path):
    folder = frame_folder(tmp_path, 3)
    (folder / "meta.json").unlink()
    for lazy in (False, True):
        seq = load_sequence(folder, lazy=lazy)
        assert len(seq) == 3 and seq.focus_distance_m == [None, None, None]
        assert not seq.camera_known
        assert len(seq.notes) == 1 and "no meta.json" in seq.notes[0] and "\n" not in seq.notes[0]
    np.testing.assert_array_equal(load_sequence(folder).frames, smooth_frames(3))


def test_null_camera_folder_keeps_its_focus_list(tmp_path):
    folder = frame_folder(tmp_path, 2, focal_length_mm=None)
    seq = load_sequence(folder)
    assert not seq.camera_known and seq.focus_distance_m == [1.0, 2.0] and seq.notes == []


def test_write_pairs_round_trips_through_list_pairs(tmp_path):
    from focaldepth.io.rgbd import list_pairs, write_pairs

    rows = [{"f2.8": f"w{k}.png", "f8": f"s{k}.png", "depth_mm": f"d{k}.png"} for k in range(3)]
    assert write_pairs(tmp_path, rows) == tmp_path / "pairs.csv"
    pairs = list_pairs(tmp_path)
    assert [p.name for p in pairs] == ["s0", "s1", "s2"]
    assert pairs[1].wide_path == tmp_path / "f2.8" / "w1.png" and not (tmp_path / ".pairs.csv.tmp").exists()
