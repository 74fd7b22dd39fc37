"""`focaldepth capture ...` through the real entry point: end to end and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from focaldepth.capture.sidecar import write_capture_log
from focaldepth.cli import main
from focaldepth.io import read_depth, read_meta, write_depth, write_image

from test_capture_sidecar import android_log, ios_log  # noqa: E402 - sibling test module


def run_cli(args, capsys):
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_frames(folder, log):
    rng = np.random.default_rng(0)
    for frame in log.frames:
        write_image(folder / frame.file, rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))


def test_import_ios_with_a_focus_curve_gives_metric_focus(tmp_path, capsys):
    log = ios_log()
    write_frames(tmp_path, log)
    sidecar = write_capture_log(tmp_path / "capture.csv", log)
    (tmp_path / "shots.csv").write_text("distance_m,focus_raw\n0.2,0.0\n0.4,0.4\n1.0,0.8\n2.0,1.0\n")
    code, out, _ = run_cli(["capture", "focus-curve", tmp_path / "shots.csv", "--out", tmp_path / "curve.json"], capsys)
    assert code == 0 and "residual RMS" in out
    code, out, err = run_cli(["capture", "import-ios", sidecar, "--out", tmp_path / "folder",
                              "--focus-curve", tmp_path / "curve.json"], capsys)
    assert code == 0, err
    meta = read_meta(tmp_path / "folder" / "meta.json")
    assert all(f is not None for f in meta.focus_distance_m) and meta.camera_known
    assert meta.focus_distance_m[0] < meta.focus_distance_m[-1]  # lensPosition 0 = nearest


def test_make_rig_and_register(tmp_path, capsys):
    depth = np.full((48, 64), 2.0, np.float32)
    depth[10:30, 20:40] = 1.0
    write_depth(tmp_path / "d.png", depth)
    rig = tmp_path / "rig.json"
    code, _, err = run_cli(["capture", "make-rig", "--out", rig, "--colour-focal-px", 52.5, "--depth-focal-px", 58.5,
                            "--size", "64x48", "--t-m", "-0.022,0,0"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["capture", "register", rig, tmp_path / "d.png", "--out", tmp_path / "r.npy"], capsys)
    assert code == 0 and "registered 1 depth map" in out, err
    registered = read_depth(tmp_path / "r.npy")
    assert registered.shape == (48, 64) and np.nanmin(registered) == pytest.approx(1.0)


def test_sync_command_with_a_given_offset(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("file,timestamp_s\n" + "".join(f"a{i}.png,{10 + i / 30:.6f}\n" for i in range(30)))
    (tmp_path / "b.csv").write_text("file,timestamp_ns\n" + "".join(f"b{i}.png,{int((5 + i / 30) * 1e9)}\n" for i in range(30)))
    code, out, err = run_cli(["capture", "sync", tmp_path / "a.csv", tmp_path / "b.csv", "--method", "given",
                              "--offset-s", 5.0, "--out", tmp_path / "pairs.csv"], capsys)
    assert code == 0 and "30 of 30" in out, err
    lines = (tmp_path / "pairs.csv").read_text().splitlines()
    assert lines[0] == "# offset_s: 5.0" and lines[4].startswith("1,1,a1.png,b1.png")


@pytest.mark.parametrize("case", ["missing", "wrong_platform", "bad_json", "bad_pattern", "bad_shots", "no_events"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    sidecar = write_capture_log(tmp_path / "capture.json", android_log())
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "shots.csv").write_text("distance_m,focus_raw\n1.0,0.5\n")
    (tmp_path / "s.csv").write_text("file,timestamp_s\na.png,1.0\nb.png,2.0\n")
    args = {
        "missing": ["capture", "import-android", tmp_path / "nope.json", "--out", tmp_path / "o"],
        "wrong_platform": ["capture", "import-ios", sidecar, "--out", tmp_path / "o"],
        "bad_json": ["capture", "import-android", tmp_path / "bad.json", "--out", tmp_path / "o"],
        "bad_pattern": ["capture", "calibrate", "--colour", tmp_path, "--depth", tmp_path, "--pattern", "9by6",
                        "--out", tmp_path / "rig.json"],
        "bad_shots": ["capture", "focus-curve", tmp_path / "shots.csv", "--out", tmp_path / "c.json"],
        "no_events": ["capture", "sync", tmp_path / "s.csv", tmp_path / "s.csv", "--method", "events",
                      "--out", tmp_path / "p.csv"],
    }[case]
    code, out, err = run_cli(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("focaldepth: error:"), err
    assert not (tmp_path / "o").exists()
    json.dumps(lines)  # printable
