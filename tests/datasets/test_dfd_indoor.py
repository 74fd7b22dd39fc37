from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path, texture, write_png

from focaldepth.datasets import open_adapter
from focaldepth.errors import UserError


def test_shared_layout_round_trip_and_project_split(dfd_shared):
    test = open_adapter(f"dfd_indoor:{dfd_shared}")
    assert [e["name"][-9:] for e in test.entries] == ["00.000000", "00.000000"]
    assert len(test) == 2  # pairs 0 and 6 (i % 6 == 0)
    assert len(open_adapter(f"dfd_indoor:{dfd_shared}", split="val")) == 1  # pair 3
    assert len(open_adapter(f"dfd_indoor:{dfd_shared}", split="train")) == 4
    item = test[1]  # pair 6: 1.6 m everywhere
    assert item["frames"].shape == (1, 3, 12, 16)
    assert np.array_equal((item["frames"][0].numpy() * 255).round().astype(np.uint8),
                          texture(12, 16, seed=6).transpose(2, 0, 1))
    depth, valid = item["depth_m"][0].numpy(), item["valid"][0].numpy()
    assert not valid[0, 0] and not valid[0, 1]  # no measurement; beyond 10 m
    assert np.allclose(depth[valid], 1.6)
    assert item["focus_distance_m"].tolist() == pytest.approx([1.7])
    assert item["camera"].tolist() == pytest.approx([0.035, 2.8, 23.6e-3 / 16])


def test_pair_gives_f8_then_f2_8(dfd_shared):
    item = open_adapter(f"dfd_indoor_pair:{dfd_shared}")[0]
    assert item["frames"].shape[0] == 2
    assert item["f_number"].tolist() == pytest.approx([8.0, 2.8])
    assert float(item["camera"][1]) == pytest.approx(2.8)  # the reference (last) frame's
    # the f/8 frame blurs 2.8/8 as much as the f/2.8 frame at every depth
    coc = item["coc_px"][:, 0, 5, 5]
    assert float(coc[0] / coc[1]) == pytest.approx(2.8 / 8.0, rel=1e-6)
    assert np.array_equal((item["frames"][0].numpy() * 255).round().astype(np.uint8),
                          texture(12, 16, seed=100).transpose(2, 0, 1))


def test_release_layout(tmp_path):
    for split, count in (("train", 2), ("test", 1)):
        for k in range(count):
            write_png(tmp_path / "dfd_dataset_indoor_N2_8" / "rgb" / split / f"{k}.png", texture(8, 8, k))
            write_png(tmp_path / "dfd_dataset_indoor_N2_8" / "depth" / split / f"{k}.png",
                      np.full((8, 8), 2000, np.uint16))
    assert len(open_adapter(f"dfd_indoor:{tmp_path}")) == 1
    assert len(open_adapter(f"dfd_indoor:{tmp_path}", split="train")) == 2
    with pytest.raises(UserError, match="f/8 photos"):
        open_adapter(f"dfd_indoor_pair:{tmp_path}")
    with pytest.raises(UserError, match="expected pairs.csv"):
        open_adapter(f"dfd_indoor:{tmp_path / 'dfd_dataset_indoor_N2_8'}")


def test_shared_dfd_indoor_test_scenes():
    root = shared_path("dfd_indoor_train")
    dataset = open_adapter(f"dfd_indoor:{root}")
    assert len(dataset) == 14  # pairs[0::6] of 81
    item = dataset[0]
    assert item["frames"].shape == (1, 3, 432, 645)
    depth = item["depth_m"][0][item["valid"][0]]
    assert 0.3 < float(depth.min()) and float(depth.max()) <= 10.0
