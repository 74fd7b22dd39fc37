"""Checkpoints carry their configuration and conventions; anything that does not match fails
loudly with a UserError naming the file."""

from __future__ import annotations

import inspect

import pytest
import torch

import focaldepth
from focaldepth import models
from focaldepth.errors import UserError
from focaldepth.models.ddff import DDFFNet


def saved(tmp_path, name="ddffnet_test", **kwargs):
    model = models.create(name, **kwargs).eval()
    return model, models.save(model, tmp_path / "model.pt")


def rewrite(path, change):
    """Load the raw checkpoint dict, let ``change`` edit it, write it back."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_checkpoint_records_how_to_rebuild_and_use_the_model(tmp_path):
    model, path = saved(tmp_path, "poolnet_test", focus_channel=False)
    payload = models.read_checkpoint(path)
    assert payload["arch"] == "poolnet_test"
    # Complete constructor arguments, not just the ones the user typed.
    assert set(payload["kwargs"]) == set(inspect.signature(type(model)).parameters)
    assert payload["kwargs"]["focus_channel"] is False
    assert (
        payload["info"] == model.info.to_dict() and payload["info"]["uses_focus_distance"] is False
    )
    conventions = payload["conventions"]
    for key in (
        "frames",
        "focus_distance_m",
        "camera",
        "depth_m",
        "depth_mapping",
        "in_channels",
        "focus_channel",
    ):
        assert key in conventions
    assert conventions["depth_mapping"]["margin"] == 0.25
    assert payload["focaldepth_version"] == focaldepth.__version__
    assert not models.load(path).info.uses_focus_distance


def test_unit_constructor_arguments_survive_the_round_trip(tmp_path):
    _, path = saved(tmp_path, "d3net_test", depth_range_m=(0.5, 4.0), mc_dropout=True)
    loaded = models.load(path)
    assert loaded.depth_range_m == (0.5, 4.0) and loaded.mc_dropout


@pytest.mark.parametrize(
    "tamper, expected",
    [
        (lambda p: p["state_dict"].pop("scoring.weight"), "missing scoring.weight"),
        (
            lambda p: p["state_dict"].__setitem__("extra_layer.weight", torch.zeros(3)),
            "unexpected extra_layer.weight",
        ),
        (
            lambda p: p["state_dict"].__setitem__("scoring.weight", torch.zeros(1, 5, 1, 1)),
            "shape mismatch scoring.weight (1, 5, 1, 1) vs model (1, 4, 1, 1)",
        ),
        (lambda p: p["kwargs"].__setitem__("num_frames", 5), "shape mismatch scoring.weight"),
        (lambda p: p.__setitem__("arch", "ddffnett"), "unknown model 'ddffnett'"),
        (lambda p: p["kwargs"].__setitem__("colour", "red"), "accepted arguments"),
        (
            lambda p: p["conventions"].__setitem__("depth_mapping", {"range": "fixed"}),
            "conventions differ",
        ),
        (lambda p: p.pop("state_dict"), "missing state_dict"),
        (lambda p: p.__setitem__("format", "something.else"), "not a focaldepth model checkpoint"),
    ],
)
def test_mismatched_checkpoint_fails_loudly(tmp_path, tamper, expected):
    _, path = saved(tmp_path)
    rewrite(path, tamper)
    with pytest.raises(UserError) as error:
        models.load(path)
    assert expected in str(error.value)
    assert str(path) in str(error.value)


def test_unknown_architecture_lists_valid_names(tmp_path):
    _, path = saved(tmp_path)
    rewrite(path, lambda p: p.__setitem__("arch", "vgg_unet"))
    with pytest.raises(UserError, match="valid names: .*ddffnet.*poolnet"):
        models.load(path)


def test_files_that_are_not_checkpoints(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint file"):
        models.load(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(UserError, match="not a readable focaldepth checkpoint") as error:
        models.load(garbage)
    assert str(garbage) in str(error.value)
    bare = tmp_path / "bare_state_dict.pt"
    torch.save(models.create("ddffnet_test").state_dict(), bare)
    with pytest.raises(UserError, match="not a focaldepth model checkpoint"):
        models.load(bare)


def test_loading_never_runs_code(tmp_path):
    """A pickled object that is not plain data is refused by weights_only loading."""
    path = tmp_path / "evil.pt"
    torch.save({"format": "focaldepth.model.v1", "payload": UserError("object")}, path)
    with pytest.raises(UserError, match="Unsupported global"):
        models.load(path)


def test_save_refuses_what_it_could_not_rebuild_or_reload(tmp_path):
    with pytest.raises(UserError, match="not built by focaldepth.models.create"):
        models.save(DDFFNet(widths=(4, 8, 8, 16, 16)), tmp_path / "direct.pt")
    model = models.create("ddffnet_test")
    with pytest.raises(UserError, match="not plain data"):
        models.save(model, tmp_path / "x.pt", optimiser=object())
    with pytest.raises(UserError, match="directory does not exist"):
        models.save(model, tmp_path / "missing_dir" / "x.pt")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_save_is_atomic_and_overwrites(tmp_path):
    model, path = saved(tmp_path)
    models.save(model, path, epoch=2)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary left
    assert models.read_checkpoint(path)["extra"] == {"epoch": 2}


def test_load_to_a_device(tmp_path):
    _, path = saved(tmp_path)
    loaded = models.load(path, map_location="cpu")
    assert all(p.device.type == "cpu" for p in loaded.parameters())
