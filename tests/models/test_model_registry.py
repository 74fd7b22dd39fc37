"""The registry: names, helpful errors, recorded constructor arguments."""

from __future__ import annotations

import pytest
import torch

from focaldepth import models
from focaldepth.errors import UserError
from focaldepth.models import registry
from focaldepth.models.base import DepthModel, ModelInfo

ZOO = ["d3net", "ddffnet", "defocusnet", "lstm_ddff", "poolnet", "recurrent_ae"]


class Constant(DepthModel):
    """A model predicting one constant depth (for registry tests)."""

    info = ModelInfo(consumes="stack_any", uses_focus_distance=False, uses_camera=False, paper="-")

    def __init__(self, depth_m: float = 1.0):
        super().__init__()
        self.depth_m = torch.nn.Parameter(torch.tensor(depth_m))

    def forward(self, frames, focus_distance_m, camera):
        return {"depth_m": self.depth_m.expand(frames.shape[0], 1, *frames.shape[-2:])}


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry that the test may add to."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_zoo_and_test_variants_are_registered():
    full = models.list_models(test_variants=False)
    tests = models.list_models(test_variants=True)
    assert set(ZOO) <= set(full)
    assert {f"{name}_test" for name in full} == set(tests)
    assert models.list_models() == sorted(full + tests)


def test_unknown_name_lists_every_valid_name():
    with pytest.raises(UserError) as error:
        models.create("ddfnet")
    message = str(error.value)
    assert "did you mean 'ddffnet'" in message
    for name in models.list_models():
        assert name in message


def test_unknown_argument_lists_accepted_ones():
    with pytest.raises(
        UserError,
        match=r"model 'poolnet_test': .*'colour'.*accepted arguments: "
        r"enc_channels, dec_channels, final_channels, focus_channel",
    ):
        models.create("poolnet_test", colour="red")


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("lstm_ddff_test", {"variant": "gru"}, "variant must be one of 'fc', 'stacking'"),
        ("ddffnet_test", {"skip": "cc9"}, "skip must be one of"),
        ("ddffnet_test", {"num_frames": 0}, "num_frames must be a positive integer"),
        ("poolnet_test", {"depth_range_m": (2.0, 1.0)}, "0 < near < far"),
        ("d3net_test", {"dropout_p": 1.5}, "dropout_p must be in"),
        ("lstm_ddff_test", {"image_size_px": (48, 48)}, "multiples of 32"),
    ],
)
def test_bad_argument_values_are_user_errors(name, kwargs, match):
    with pytest.raises(UserError, match=match):
        models.create(name, **kwargs)


def test_create_records_the_complete_arguments():
    model = models.create("ddffnet_test", num_frames=3)
    assert model.arch_name == "ddffnet_test"
    assert model.arch_kwargs["num_frames"] == 3
    assert model.arch_kwargs["widths"] == (4, 8, 8, 16, 16)  # the registry default
    assert model.arch_kwargs["skip"] == "cc3"  # the constructor default, filled in


def test_register_function_constructors_with_defaults(scratch_registry):
    @models.register_model("constant_test", depth_m=2.5)
    def constant(**kwargs) -> Constant:
        """A constant depth map."""
        return Constant(**kwargs)

    model = models.create("constant_test")
    assert model.arch_kwargs == {"depth_m": 2.5}
    assert models.get_spec("constant_test").summary == "A constant depth map."
    frames = torch.rand(1, 2, 3, 4, 4)
    assert torch.all(model(frames, torch.ones(1, 2), torch.ones(1, 3))["depth_m"] == 2.5)


def test_register_rejects_a_taken_name_and_bad_names(scratch_registry):
    with pytest.raises(ValueError, match="already registered"):
        models.register_model("ddffnet")(Constant)
    models.register_model("constant")(Constant)
    models.register_model("constant")(Constant)  # same constructor again (reload): fine
    with pytest.raises(ValueError, match="lower-case"):
        models.register_model("My-Net")


def test_constructors_must_return_depth_models(scratch_registry):
    models.register_model("not_a_model")(lambda: torch.nn.Identity())
    with pytest.raises(TypeError, match="not a DepthModel"):
        models.create("not_a_model")


def test_parameter_count_on_meta_device_matches_a_real_build():
    real = models.create("poolnet_test")
    assert models.parameter_count("poolnet_test") == sum(p.numel() for p in real.parameters())
