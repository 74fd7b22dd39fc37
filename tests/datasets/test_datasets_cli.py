"""NAME:PATH through the commands: evaluate and predict read the adapters; bad specs and bad
files end in one line and status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_ddff12 import write_ddff

from focaldepth.datasets import is_adapter_spec, list_adapters, parse_spec
from focaldepth.errors import UserError


def run_cli(*args: str) -> int:
    from focaldepth.cli import main

    try:
        main(list(args))
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def test_spec_parsing(tmp_path):
    assert parse_spec("ddff12:/data/trainval.h5#3") == ("ddff12", "/data/trainval.h5", 3)
    assert parse_spec("hci:scenes/a#b") == ("hci", "scenes/a#b", None)
    assert is_adapter_spec("fod500:x") and not is_adapter_spec("data/cpu_test")
    assert not is_adapter_spec("unknown:x")
    existing = tmp_path / "ddff12:real_folder"
    existing.mkdir()
    assert not is_adapter_spec(existing)  # a real path of that name stays a path
    assert len(list_adapters()) == 9
    with pytest.raises(UserError, match="no path after"):
        parse_spec("ddff12:")


def test_evaluate_reads_an_adapter(tmp_path):
    path = tmp_path / "trainval.h5"
    write_ddff(path, height=24, width=32)
    out = tmp_path / "eval"
    assert run_cli("evaluate", "--checkpoint", "classical", "--data", f"ddff12:{path}",
                   "--out", str(out), "--num-frames", "5", "--quiet", "--sheet", "1") == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["num_items"] == 2 and summary["protocol"]["num_frames"] == 5
    assert summary["all"]["counts"]["num_images"] == 2
    assert np.isfinite(summary["all"]["metres"]["absrel"])


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--checkpoint", "classical", "--data", "ddff12:{tmp}/none.h5"], "none.h5: ddff12: data not found"),
    (["evaluate", "--checkpoint", "classical", "--data", "fod500:{tmp}", "--num-frames", "9"], "fod500: no test stacks"),
    (["evaluate", "--checkpoint", "classical", "--data", "mobile_depth:{tmp}/scene"], "no ground-truth depth"),
    (["predict", "ddff12:{tmp}/t.h5#7"], "item 7 does not exist"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, args, message):
    write_ddff(tmp_path / "t.h5")
    (tmp_path / "scene").mkdir()
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "scene" / "0.jpg")
    full = [a.format(tmp=tmp_path) for a in args] + ["--out", str(tmp_path / "out")]
    assert run_cli(*full) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("focaldepth: error:")


def test_num_frames_beyond_the_stack_is_refused(tmp_path, capsys):
    write_ddff(tmp_path / "t.h5")
    assert run_cli("evaluate", "--checkpoint", "classical", "--data", f"ddff12:{tmp_path}/t.h5",
                   "--num-frames", "11", "--out", str(tmp_path / "o")) == 2
    assert "exceeds the 10 frames" in capsys.readouterr().err


def test_predict_reads_an_adapter_item(tmp_path):
    path = tmp_path / "trainval.h5"
    write_ddff(path, height=48, width=64)
    out = tmp_path / "pred"
    assert run_cli("predict", f"ddff12:{path}#1", "--out", str(out), "--method", "classical",
                   "--no-video") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_frames"] == 10 and summary["metric"]
    assert len(list((out / "depth").glob("*.npy"))) == 10
