"""The shipped physics hybrids (v4-v9): they load, carry a model card, fall back to their vote
without a lens, and answer beyond the sweep on a plane the vote cannot reach."""
import math

import pytest
import torch

from focaldepth import models
from focaldepth.models import read_checkpoint
from focaldepth.predict import load_model, shipped_weights_path
from focaldepth.render import render_focal_stack


@pytest.mark.parametrize("name", ["sweepnet_default_v4", "sweepnet_default_v5", "sweepnet_default_v6",
                                  "sweepnet_default_v7", "sweepnet_default_v8", "sweepnet_default_v9"])
def test_shipped_hybrid_has_a_card_and_a_vote(name):
    extra = read_checkpoint(str(shipped_weights_path(name)))["extra"]
    card = extra["model_card"]
    assert card["name"] == name and card["training_data"] and card["cpu_hours"] and card["licence_of_data"]
    model = load_model(name)
    assert type(model).__name__ == "SweepNetPhysics"
    assert type(model.without_physics()).__name__ == "SweepNet"


def test_v5_vote_differs_from_v4_and_fusion_is_the_same():
    v4, v5 = load_model("sweepnet_default_v4"), load_model("sweepnet_default_v5")
    v4_state, v5_state = v4.state_dict(), v5.state_dict()
    assert v4_state.keys() == v5_state.keys()
    assert all(torch.equal(v4_state[k], v5_state[k]) for k in v4_state if k.startswith("fusion."))
    assert any(not torch.equal(v4_state[k], v5_state[k]) for k in v4_state if k.startswith("net."))


@pytest.mark.parametrize("name", ["sweepnet_default_v5", "sweepnet_default_v6", "sweepnet_default_v7",
                                  "sweepnet_default_v9"])
def test_hybrid_answers_beyond_the_farthest_focus(name):
    torch.manual_seed(0)
    texture = torch.rand(1, 3, 96, 96)
    texture = torch.nn.functional.avg_pool2d(texture, 3, 1, 1)
    depth_m = torch.full((1, 1, 96, 96), 3.0)  # plane at 3 m, sweep ends at 1.5 m
    focus = torch.tensor([[0.6, 0.8, 1.0, 1.25, 1.5]])
    camera = torch.tensor([[0.035, 2.0, 2.0e-5]])
    frames = render_focal_stack(texture, depth_m, focus, camera)
    model = load_model(name)
    with torch.inference_mode():
        hybrid = model(frames, focus, camera)["depth_m"].median()
        vote = model.without_physics()(frames, focus, camera)["depth_m"].median()
    assert vote <= 1.5 + 1e-3  # a vote over focus distances stays inside the sweep
    assert hybrid > 1.7  # the plane sweep reads the blur beyond it


def test_real_vote_is_v5s_run_at_its_end_and_carries_a_card():
    checkpoint = read_checkpoint(str(shipped_weights_path("sweepnet_real_vote")))
    card = checkpoint["extra"]["model_card"]
    assert checkpoint["extra"]["global_step"] == 3000 and card["cpu_hours"] and card["licence_of_data"]
    vote, v5 = load_model("sweepnet_real_vote"), load_model("sweepnet_default_v5").without_physics()
    assert type(vote).__name__ == "SweepNet"
    assert any(not torch.equal(a, b) for a, b in zip(vote.state_dict().values(), v5.state_dict().values()))


def test_v6_is_the_real_vote_inside_the_analytic_fusion():
    """v6 = sweepnet_real_vote's weights, unchanged, in hybrid.fuse (no learned head)."""
    v6, vote = load_model("sweepnet_default_v6"), load_model("sweepnet_real_vote")
    assert v6.fusion is None and v6.physics_power == 2.0 and not v6.smooth
    assert all(torch.equal(a, b) for a, b in zip(v6.without_physics().state_dict().values(),
                                                 vote.state_dict().values()))


def test_temporal_v6_observes_with_v6_and_keeps_the_shipped_cell():
    temporal, v6, shipped = (load_model(n) for n in ("sweepnet_temporal_v6", "sweepnet_default_v6",
                                                      "sweepnet_temporal"))
    assert type(temporal.observer).__name__ == "SweepNetPhysics"
    assert all(torch.equal(a, b) for a, b in zip(temporal.observer.state_dict().values(), v6.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(temporal.cell.state_dict().values(), shipped.cell.state_dict().values()))
    card = read_checkpoint(str(shipped_weights_path("sweepnet_temporal_v6")))["extra"]["model_card"]
    assert card["licence_of_data"] and card["cpu_hours"] and card["validation"]


def test_v7_is_v6_with_the_plane_sweep_at_half_resolution():
    v7, v6, default = (load_model(n) for n in ("sweepnet_default_v7", "sweepnet_default_v6", "sweepnet_default"))
    assert v7.physics_scale == 0.5 and v6.physics_scale == 1.0
    assert all(torch.equal(a, b) for a, b in zip(v7.state_dict().values(), v6.state_dict().values()))
    assert default.physics_scale == 0.5
    temporal = load_model("sweepnet_temporal_v7")
    assert temporal.observer.physics_scale == 0.5
    assert all(torch.equal(a, b) for a, b in zip(temporal.state_dict().values(),
                                                 load_model("sweepnet_temporal_v6").state_dict().values()))
    card = read_checkpoint(str(shipped_weights_path("sweepnet_temporal_v7")))["extra"]["model_card"]
    assert card["name"] == "sweepnet_temporal_v7" and card["licence_of_data"] and card["cpu_hours"]


def test_v8_is_v7_with_the_agreement_confidence_and_is_the_default():
    """Same weights and depth as v7; only the output confidence differs (x agreement)."""
    v7, v8, default = (load_model(n).eval() for n in ("sweepnet_default_v7", "sweepnet_default_v8",
                                                       "sweepnet_default"))
    assert v8.confidence_agreement and not v7.confidence_agreement
    for model in (v8, default):
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), v7.state_dict().values()))
    assert default.confidence_agreement
    torch.manual_seed(0)
    frames = torch.rand(1, 5, 3, 48, 64)
    focus = torch.tensor([[0.5, 0.7, 1.0, 1.5, 2.5]])
    camera = torch.tensor([[0.026, 1.8, 5.6e-6]])
    for old_name, new_name in (("sweepnet_default_v7", "sweepnet_default_v8"),
                               ("sweepnet_temporal_v7", "sweepnet_temporal_v8")):
        old, new = load_model(old_name).eval(), load_model(new_name).eval()
        with torch.no_grad():
            a, b = old(frames, focus, camera), new(frames, focus, camera)
        assert torch.equal(a["depth_m"], b["depth_m"]), new_name
        assert (b["confidence"] <= a["confidence"] + 1e-6).all()
        assert not torch.allclose(a["confidence"], b["confidence"])
    card = read_checkpoint(str(shipped_weights_path("sweepnet_temporal_v8")))["extra"]["model_card"]
    assert card["name"] == "sweepnet_temporal_v8" and card["licence_of_data"] and card["cpu_hours"]
    assert card["observer"]["name"] == "sweepnet_default_v8"


def test_agreement_is_one_where_the_parts_agree_and_falls_by_e_per_sweep_step():
    from focaldepth.models.hybrid import agreement

    focus_dpt = torch.tensor([[2.0, 1.5, 1.0, 0.5]])  # step 0.5 dioptres
    vote = torch.full((1, 1, 1, 3), 1.0)
    physics = torch.tensor([[[[1.0, 1.5, 0.0]]]])
    expected = torch.tensor([1.0, math.exp(-1.0), math.exp(-2.0)])
    assert torch.allclose(agreement(vote, physics, focus_dpt).flatten(), expected)


def test_v9_is_v8_with_a_new_vote_and_its_temporal_model_carries_it():
    v8, v9 = (read_checkpoint(str(shipped_weights_path(n))) for n in ("sweepnet_default_v8", "sweepnet_default_v9"))
    assert v8["kwargs"] == v9["kwargs"]
    assert v8["state_dict"].keys() == v9["state_dict"].keys()
    assert any(not torch.equal(v8["state_dict"][k], v9["state_dict"][k]) for k in v8["state_dict"])
    t9 = read_checkpoint(str(shipped_weights_path("sweepnet_temporal_v9")))
    t8 = read_checkpoint(str(shipped_weights_path("sweepnet_temporal_v8")))
    for key, value in v9["state_dict"].items():  # the temporal model's observer is v9
        assert torch.equal(t9["state_dict"]["observer." + key], value)
    assert all(torch.equal(t9["state_dict"][k], t8["state_dict"][k]) for k in t8["state_dict"] if k.startswith("cell."))
    card = t9["extra"]["model_card"]
    assert card["name"] == "sweepnet_temporal_v9" and card["cpu_hours"] and "cpu_train_v4" in card["training_data"]
