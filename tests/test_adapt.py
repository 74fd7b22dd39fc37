"""`focaldepth adapt` (focaldepth.adapt + commands/adapt.py): windows like predict, the written
model file loads in predict, bad input is one line and exit 2 with nothing written."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from focaldepth.adapt import adapt_recording, pseudo_focus_m, sequence_windows
from focaldepth.errors import UserError
from focaldepth.io import load_sequence, write_sequence
from focaldepth.models import create, read_checkpoint, save
from focaldepth.optics import Camera, repeated_ramps
from focaldepth.predict import load_model, predict_sequence
from focaldepth.render import render_focal_stack

CAMERA = Camera(focal_length_mm=25.0, f_number=2.0, sensor_width_mm=1.44, image_width_px=48)


def frames_for(focus_m, height=32, width=48):
    generator = torch.Generator().manual_seed(0)
    image = torch.nn.functional.interpolate(torch.rand(1, 3, height // 4, width // 4, generator=generator),
                                            size=(height, width), mode="bilinear")
    depth = torch.full((1, 1, height, width), 1.6)
    depth[..., : width // 2] = 0.7
    camera = torch.tensor([[CAMERA.focal_length_m, CAMERA.f_number, CAMERA.pixel_pitch_m]])
    stack = render_focal_stack(image, depth, torch.tensor([list(focus_m)]), camera)
    return (stack[0].permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()


@pytest.fixture()
def sweep(tmp_path):
    focus = list(repeated_ramps(0.6, 2.0, 4, 2))
    folder = tmp_path / "sweep"
    write_sequence(folder, frames_for(focus), focus, CAMERA)
    return folder


@pytest.fixture()
def tiny_model(tmp_path):
    path = tmp_path / "tiny.pt"
    save(create("sweepnet_test"), path)
    return path


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "focaldepth.cli", "adapt", *map(str, args)],
                          capture_output=True, text=True)


def test_windows_are_predicts_ramps_at_the_working_resolution(tmp_path):
    focus = list(repeated_ramps(0.6, 2.0, 4, 2))
    camera = Camera(25.0, 2.0, 1.44, 96)
    write_sequence(tmp_path / "big", frames_for(focus, 64, 96), focus, camera)
    windows = sequence_windows(load_sequence(tmp_path / "big", lazy=True), max_pixels=48 * 32)
    assert windows.metric and windows.window_frames == 4 and len(windows.stacks) == 2
    stack = windows.stacks[0]
    assert stack.frames.shape == (1, 4, 3, 32, 48) and windows.working_size_hw == (32, 48)
    assert stack.camera[0, 2] == pytest.approx(camera.pixel_pitch_m * 2)  # pitch follows the resize
    assert stack.focus_distance_m[0].tolist() == pytest.approx(list(repeated_ramps(0.6, 2.0, 4, 1)))


def test_pseudo_focus_matches_predicts_relative_schedule():
    from focaldepth.predict import RELATIVE_FAR_M, RELATIVE_NEAR_M

    near_first = pseudo_focus_m(5, False)
    assert near_first[0] == pytest.approx(RELATIVE_NEAR_M) and near_first[-1] == pytest.approx(RELATIVE_FAR_M)
    assert pseudo_focus_m(5, True) == pytest.approx(near_first[::-1])


def test_adapt_writes_a_model_that_predict_loads(sweep, tiny_model, tmp_path):
    out = tmp_path / "adapted.pt"
    card = adapt_recording(sweep, out, model=str(tiny_model), steps=3, lr=1e-3)
    extra = read_checkpoint(out)["extra"]
    assert extra["model_card"]["adapted_on"] == str(sweep) and extra["model_card"]["steps"] == 3
    assert extra["model_card"]["cpu_seconds"]["adaptation"] > 0 and card["windows"] == 2
    assert len(extra["adaptation_log"]["total"]) == 3
    before, after = load_model(str(tiny_model)).state_dict(), load_model(str(out)).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    summary = predict_sequence(sweep, tmp_path / "pred", model=str(out), video=False, progress=False)
    assert summary["num_frames"] == 8
    assert np.isfinite(np.load(tmp_path / "pred" / "depth" / "000007.npy")).all()


def test_relative_mode_fits_a_blur_scale(tmp_path, tiny_model):
    from focaldepth.io.frames import write_image

    folder = tmp_path / "bare"  # frames only: no meta.json, lens and focus unknown
    folder.mkdir()
    for i, frame in enumerate(frames_for(list(repeated_ramps(0.6, 2.0, 4, 1)))):
        write_image(folder / f"{i}.png", frame)
    card = adapt_recording(folder, tmp_path / "rel.pt", model=str(tiny_model), steps=2, lr=1e-3)
    assert card["focus"].startswith("relative") and card["blur_scale"]["fitted_scale"] > 0


def test_cli_adapts_and_reports(sweep, tiny_model, tmp_path):
    out = tmp_path / "cli.pt"
    run = run_cli(sweep, "--model", tiny_model, "--out", out, "--steps", 2, "--threads", 1)
    assert run.returncode == 0, run.stderr
    assert out.is_file() and "reconstruction loss" in run.stdout


@pytest.mark.parametrize("case, message", [
    ("missing_input", "not found"),
    ("bad_meta", "meta.json"),
    ("bad_suffix", ".pt"),
    ("no_folder", "does not exist"),
    ("temporal_model", "stateful"),
    ("classical", "no weights"),
])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(case, message, sweep, tiny_model, tmp_path, capsys):
    """In-process through focaldepth.cli.main (the subprocess test below covers the real entry)."""
    from focaldepth.cli import main

    out, model, source = tmp_path / "o.pt", str(tiny_model), sweep
    if case == "missing_input":
        source = tmp_path / "nowhere"
    elif case == "bad_meta":
        (sweep / "meta.json").write_text("{not json")
    elif case == "bad_suffix":
        out = tmp_path / "o.ckpt"
    elif case == "no_folder":
        out = tmp_path / "missing" / "o.pt"
    elif case == "temporal_model":
        model = "sweepnet_temporal"
    elif case == "classical":
        model = "classical"
    with pytest.raises(SystemExit) as exit_info:
        main(["adapt", str(source), "--model", model, "--out", str(out), "--steps", "1"])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2, stderr
    assert message.lower() in stderr.lower(), stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.rglob("*.tmp"))


def test_cli_entry_point_error_is_one_line(sweep, tmp_path):
    run = run_cli(sweep, "--model", "classical", "--out", tmp_path / "o.pt")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.pt").exists()


def test_existing_output_is_kept_unless_overwrite(sweep, tiny_model, tmp_path):
    out = tmp_path / "keep.pt"
    out.write_bytes(b"a previous file")
    with pytest.raises(UserError, match="overwrite"):
        adapt_recording(sweep, out, model=str(tiny_model), steps=1)
    assert out.read_bytes() == b"a previous file"
