from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path, texture, write_png

from focaldepth.datasets import load_adapter_sequence, open_adapter, open_adapter_test_set
from focaldepth.errors import UserError


def test_calibrated_focus_orders_the_stack(tmp_path):
    scene = tmp_path / "mobile" / "keyboard"
    for k in range(3):
        write_png(scene / f"a{k:02d}.jpg", np.full((8, 10, 3), 40 * (k + 1), np.uint8))
    write_png(scene / "preview.jpg", texture(8, 10))  # not an aligned frame
    # first column = focus per frame, last row is not a frame (as DFV reads calibrated.txt)
    (scene / "calibrated.txt").write_text("30.0 1\n10.0 1\n20.0 1\n99.0 0\n")
    dataset = open_adapter(f"mobile_depth:{tmp_path / 'mobile'}")
    sample = dataset.sample(0)
    assert sample.focus_distance_m == pytest.approx([0.254, 0.508, 0.762])  # inches, sorted
    levels = sample.frames.reshape(3, -1).mean(1)
    assert np.allclose(levels, [80, 120, 40], atol=3)  # frames follow their focus
    assert not sample.camera_known and sample.depth_m is None
    with pytest.raises(UserError, match="no ground-truth depth"):
        open_adapter_test_set(f"mobile_depth:{tmp_path / 'mobile'}", num_frames=3, sample="ramp")


def test_focus_count_must_match(tmp_path):
    for k in range(2):
        write_png(tmp_path / f"a{k}.jpg", texture(8, 8, k))
    (tmp_path / "focus_dpth.txt").write_text("1.0\n2.0\n3.0\n")
    with pytest.raises(UserError, match="3 focus values for 2 frames"):
        open_adapter(f"mobile_depth:{tmp_path}").sample(0)


def test_shared_balls_load_for_predict():
    root = shared_path("mobile_depth_balls")
    sequence = load_adapter_sequence(f"mobile_depth:{root}")
    assert len(sequence) == 25 and sequence.size_hw == (720, 1280)
    assert sequence.focus_distance_m == [None] * 25 and not sequence.camera_known
