"""Sidecars (Android Camera2, iOS AVFoundation) and their import into a frame folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from focaldepth.capture.focus_curve import fit_focus_curve
from focaldepth.capture.importer import capture_meta, import_capture, sweep_order
from focaldepth.capture.sidecar import (
    ANDROID_FORMAT,
    CaptureFrame,
    CaptureLog,
    read_capture_log,
    write_capture_log,
)
from focaldepth.errors import UserError
from focaldepth.io import load_sequence, write_image


def android_log(calibration: str = "CALIBRATED", n: int = 5) -> CaptureLog:
    frames = [CaptureFrame(f"IMG_{i:03d}.jpg", 81_234_567_890_123 + i * 33_366_667, 4.0 - 0.75 * i,
                           6.81, 1.85, i == 2, (0, 378, 4032, 2268)) for i in range(n)]
    return CaptureLog("android", frames, calibration, device="Pixel 7", minimum_focus_distance_dpt=10.0,
                      sensor_size_mm=(5.64, 4.23), pixel_array_px=(4032, 3024), timestamp_source="REALTIME")


def ios_log(n: int = 4) -> CaptureLog:
    frames = [CaptureFrame(f"f{i}.png", round((1234.5 + i / 30) * 1e9), 0.2 * i, f_number=1.6)
              for i in range(n)]
    return CaptureLog("ios", frames, "UNCALIBRATED", device="iPhone 13", focal_length_mm=5.1, sensor_width_mm=5.76)


@pytest.mark.parametrize("make", [android_log, ios_log])
@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_sidecar_round_trip(tmp_path, make, suffix):
    log = make()
    path = write_capture_log(tmp_path / f"capture{suffix}", log)
    again = read_capture_log(path)
    assert again == log
    assert again.path == path


def test_android_calibration_given_as_camera2_integer(tmp_path):
    raw = {"format": ANDROID_FORMAT, "characteristics": {"LENS_INFO_FOCUS_DISTANCE_CALIBRATION": 1},
           "frames": [{"file": "a.jpg", "SENSOR_TIMESTAMP": 10, "LENS_FOCUS_DISTANCE": 0.0}]}
    (tmp_path / "c.json").write_text(json.dumps(raw))
    log = read_capture_log(tmp_path / "c.json")
    assert log.focus_calibration == "APPROXIMATE" and log.focus_is_metric


@pytest.mark.parametrize("change, message", [
    (lambda r: r["frames"][1].update(SENSOR_TIMESTAMP=5), "increase strictly"),
    (lambda r: r["frames"][0].update(LENS_FOCUS_DISTANCE=-1), "LENS_FOCUS_DISTANCE"),
    (lambda r: r["frames"][0].pop("SENSOR_TIMESTAMP"), "lacks SENSOR_TIMESTAMP"),
    (lambda r: r["characteristics"].update(LENS_INFO_FOCUS_DISTANCE_CALIBRATION="GOOD"), "CALIBRATED"),
    (lambda r: r["frames"][0].update(LENS_FOCUS_DISTANCE=12.0), "exceeds"),
    (lambda r: r.update(format="something/1"), "format must be"),
])
def test_bad_android_sidecar_is_one_line_user_error(tmp_path, change, message):
    raw = json.loads(json.dumps({"format": ANDROID_FORMAT,
                                 "characteristics": {"LENS_INFO_MINIMUM_FOCUS_DISTANCE": 10.0},
                                 "frames": [{"file": "a.jpg", "SENSOR_TIMESTAMP": 10, "LENS_FOCUS_DISTANCE": 1.0},
                                            {"file": "b.jpg", "SENSOR_TIMESTAMP": 20, "LENS_FOCUS_DISTANCE": 2.0}]}))
    change(raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match=message) as error:
        read_capture_log(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_ios_lens_position_above_one_is_refused(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('# format: "focaldepth-capture-ios/1"\nfile,timestamp_s,lensPosition\na.png,1.0,1.5\n')
    with pytest.raises(UserError, match="0..1"):
        read_capture_log(path)


def test_calibrated_android_becomes_metric_meta():
    log = android_log("CALIBRATED")
    meta, notes = capture_meta(log)
    assert meta["focus_distance_m"] == pytest.approx([1 / d for d in (4.0, 3.25, 2.5, 1.75, 1.0)])
    # a 16:9 crop keeps the sensor's full width (4032 of 4032 px)
    assert meta["sensor_width_mm"] == pytest.approx(5.64)
    assert meta["focal_length_mm"] == 6.81 and meta["f_number"] == 1.85
    assert meta["timestamps_s"][1] == pytest.approx(0.033366667)
    assert meta["sweep_order"] == "near_to_far" and meta["lens_moving_frames"] == [2]
    assert any("MOVING" in note for note in notes)


def test_infinity_focus_is_clamped_not_lost():
    log = android_log("CALIBRATED")
    log.frames[-1].focus_raw = 0.0
    meta, notes = capture_meta(log)
    assert meta["focus_distance_m"][-1] == pytest.approx(100.0)
    assert any("100 m" in note for note in notes)


def test_uncalibrated_focus_is_unknown_and_keeps_its_order():
    log = android_log("UNCALIBRATED")
    meta, _ = capture_meta(log)
    assert meta["focus_distance_m"] == [None] * 5 and meta["focus_raw"][0] == 4.0
    assert sweep_order(log) == "near_to_far"  # Android: larger value = nearer
    ios = ios_log()
    assert sweep_order(ios) == "near_to_far"  # lensPosition rises from near to far
    assert capture_meta(ios)[0]["focus_distance_m"] == [None] * 4


def test_focus_curve_makes_ios_metric():
    positions = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    curve = fit_focus_curve(positions, 1 / (8.0 - 7.5 * positions))  # dioptres affine in position
    meta, _ = capture_meta(ios_log(), curve)
    assert meta["focus_distance_m"][1] == pytest.approx(1 / (8.0 - 7.5 * 0.2))
    assert meta["focus_calibration"] == "focus curve"


def test_import_writes_a_frame_folder_predict_reads(tmp_path):
    log = android_log("CALIBRATED", n=3)
    rng = np.random.default_rng(0)
    for frame in log.frames:
        write_image(tmp_path / "raw" / frame.file, rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    sidecar = write_capture_log(tmp_path / "raw" / "capture.json", log)
    report = import_capture(read_capture_log(sidecar), tmp_path / "folder")
    assert report.metric_focus and report.num_frames == 3
    sequence = load_sequence(tmp_path / "folder")
    assert len(sequence) == 3 and sequence.focus_distance_m == pytest.approx([0.25, 1 / 3.25, 0.4])
    assert sequence.camera_at(0).focal_length_mm == 6.81


def test_import_refuses_a_missing_frame_before_writing(tmp_path):
    sidecar = write_capture_log(tmp_path / "capture.json", android_log())
    with pytest.raises(UserError, match="missing"):
        import_capture(read_capture_log(sidecar), tmp_path / "folder")
    assert not (tmp_path / "folder").exists()
