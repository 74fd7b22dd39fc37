"""Every registered model (its tiny *_test variant) against the common interface: shapes,
finite positive depth, a gradient for every parameter, identical outputs after save -> load,
and the CoC decoder extension."""

from __future__ import annotations

import pytest
import torch

from focaldepth import models
from focaldepth.models.base import ModelInfo, run_model, takes_frame_f_number

TEST_VARIANTS = models.list_models(test_variants=True)
#: Encoder-decoder models that take coc_decoder=True (DefocusNet predicts CoC natively).
COC_DECODER_MODELS = [
    "ddffnet_test",
    "lstm_ddff_test",
    "recurrent_ae_test",
    "poolnet_test",
    "d3net_test",
]


def call(model, frames, focus_distance_m, camera):
    """The common interface; models that read a per-frame f-number get the camera's for
    every frame (the zoo's inputs are single-aperture stacks)."""
    f_number = camera[:, 1:2].expand(focus_distance_m.shape) if takes_frame_f_number(model) else None
    return run_model(model, frames, focus_distance_m, camera, f_number=f_number)


def output_loss(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """A scalar touching every output, so every parameter that contributes gets a gradient."""
    return sum(value.float().mean() for value in out.values())


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_info_is_declared(name):
    model = models.create(name)
    assert isinstance(model.info, ModelInfo)
    assert model.info.consumes in ("stack_fixed", "stack_any", "stream", "single")
    assert model.info.paper


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_forward_shape_and_finite(name, make_inputs, slices_for):
    model = models.create(name).eval()
    slices = slices_for(model)
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=slices)
    with torch.no_grad():
        out = call(model, frames, focus_distance_m, camera)
    depth = out["depth_m"]
    assert depth.shape == (2, 1, 32, 32)
    assert torch.isfinite(depth).all() and (depth > 0).all()
    if "coc_px" in out:
        assert out["coc_px"].shape[0] == 2 and out["coc_px"].shape[2:] == (1, 32, 32)
        assert (out["coc_px"] >= 0).all()
    if "depth_m_per_frame" in out:
        assert out["depth_m_per_frame"].shape == (2, slices, 1, 32, 32)


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_every_parameter_gets_a_finite_gradient(name, make_inputs, slices_for):
    model = models.create(name).train()
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=slices_for(model))
    output_loss(call(model, frames, focus_distance_m, camera)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    nonfinite = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not nonfinite, f"non-finite gradient for {nonfinite[:5]}"


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_save_load_gives_identical_outputs(name, tmp_path, make_inputs, slices_for):
    model = models.create(name)
    # One training step's worth of BatchNorm statistics, so buffers differ from their init.
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=slices_for(model), seed=1)
    call(model.train(), frames, focus_distance_m, camera)
    model.eval()
    path = models.save(model, tmp_path / f"{name}.pt", epoch=7, note="round trip")
    loaded = models.load(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.arch_name == name and loaded.arch_kwargs == model.arch_kwargs
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=slices_for(model), seed=2)
    with torch.no_grad():
        expected = call(model, frames, focus_distance_m, camera)
        actual = call(loaded, frames, focus_distance_m, camera)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert models.read_checkpoint(path)["extra"] == {"epoch": 7, "note": "round trip"}


@pytest.mark.parametrize("name", COC_DECODER_MODELS)
def test_coc_decoder_is_a_second_head_on_the_shared_encoder(name, make_inputs, slices_for):
    model = models.create(name, coc_decoder=True).train()
    slices = slices_for(model)
    frames, focus_distance_m, camera = make_inputs(batch=2, slices=slices)
    out = call(model, frames, focus_distance_m, camera)
    coc_px = out["coc_px"]
    # One CoC map per frame seen: every slice, or the single frame a "single" model uses.
    frames_seen = 1 if model.info.consumes == "single" else slices
    assert coc_px.shape == (2, frames_seen, 1, 32, 32)
    assert (coc_px >= 0).all() and torch.isfinite(coc_px).all()
    coc_px.mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for n, g in grads.items() if n.startswith("coc_")), (
        "CoC head unreached"
    )
    assert all(grads[n] is None for n in grads if n.startswith("decoder.")), (
        "the depth decoder must not feed the CoC output"
    )
    assert any(
        g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("encoder")
    ), "the CoC loss must train the shared encoder"
