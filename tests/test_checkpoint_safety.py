"""Opening a checkpoint never runs code: a crafted ``.ckpt`` whose pickle calls ``os.system``
is refused with one line by ``evaluate --checkpoint``, the loader and training resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from focaldepth.errors import UserError


class _WritesAFile:
    """Unpickling this calls ``os.system`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A file that looks like a focaldepth training checkpoint, plus a payload."""
    torch.save({"focaldepth": {"model_name": "poolnet_test", "model_kwargs": {}},
                "state_dict": {}, "global_step": 4, "payload": _WritesAFile(marker)}, path)
    return path


def test_the_payload_would_run_under_a_plain_pickle_load(tmp_path):
    """The crafted file really is dangerous (so the tests below can fail)."""
    marker = tmp_path / "marker"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_loader_refuses_a_crafted_checkpoint_with_one_line(tmp_path):
    from focaldepth.train.checkpoint import load_trained_model

    marker = tmp_path / "marker"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UserError) as caught:
        load_trained_model(evil)
    message = str(caught.value)
    assert not marker.exists()
    assert "\n" not in message and str(evil) in message
    assert "refusing to load" in message and "system" in message


def test_evaluate_checkpoint_refuses_a_crafted_checkpoint(tmp_path, capsys):
    from focaldepth.cli import main

    marker = tmp_path / "marker"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(SystemExit) as caught:
        main(["evaluate", "--checkpoint", str(evil), "--data", str(tmp_path / "data"),
              "--out", str(tmp_path / "out")])
    assert caught.value.code == 2
    assert not marker.exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing to load" in err and str(evil) in err
    assert not (tmp_path / "out").exists()


def test_resume_refuses_a_crafted_last_checkpoint(tmp_path):
    from focaldepth.train.config import config_from_dict, dump_yaml
    from focaldepth.train.run import CHECKPOINT_DIR, CONFIG_NAME, train

    config = config_from_dict({
        "model": {"name": "poolnet_test"},
        "data": {"train": str(tmp_path / "data"), "val": str(tmp_path / "data")},
        "trainer": {"max_steps": 8, "accelerator": "cpu", "devices": 1}})
    run = tmp_path / "run"
    (run / CHECKPOINT_DIR).mkdir(parents=True)
    (run / CONFIG_NAME).write_text(dump_yaml(config))
    marker = tmp_path / "marker"
    crafted_checkpoint(run / CHECKPOINT_DIR / "last.ckpt", marker)
    with pytest.raises(UserError, match="refusing to load") as caught:
        train(config, run, resume=True)
    assert not marker.exists() and "\n" not in str(caught.value)


def test_a_truncated_checkpoint_is_one_line_too(tmp_path):
    from focaldepth.train.checkpoint import load_trained_model

    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError, match="cannot read checkpoint") as caught:
        load_trained_model(broken)
    assert "\n" not in str(caught.value)
