"""Loss terms: zero at the truth, positive otherwise, gradients, invariances, config errors,
and the self-supervised defocus reconstruction loss on a rendered stack."""

import pytest
import torch

from focaldepth.errors import UserError
from focaldepth.losses import build_loss, list_losses
from focaldepth.optics import coc_px


def _depth_batch(batch=2, height=16, width=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    depth = 0.5 + 2.0 * torch.rand(batch, 1, height, width, generator=g, dtype=torch.float64)
    valid = torch.ones_like(depth, dtype=torch.bool)
    valid[..., :3, :] = False
    return {"depth_m": depth, "valid": valid}


SUPERVISED = [
    {"name": "mse"},
    {"name": "l1"},
    {"name": "masked_mse"},
    {"name": "masked_l1"},
    {"name": "silog", "lambda": 0.5},
    {"name": "gradient", "domain": "log"},
    {"name": "gradient", "domain": "inverse", "scales": 3},
    {"name": "gradient", "domain": "depth"},
]


@pytest.mark.parametrize("config", SUPERVISED, ids=lambda c: f"{c['name']}-{c.get('domain', '')}")
def test_supervised_terms_zero_at_truth_positive_otherwise_with_gradient(config):
    batch = _depth_batch()
    loss = build_loss([config])
    total, parts = loss({"depth_m": batch["depth_m"].clone()}, batch)
    assert float(total) == pytest.approx(0.0, abs=1e-12)
    noise = 0.1 * torch.randn(
        batch["depth_m"].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    pred = (batch["depth_m"] * (1 + noise)).requires_grad_(True)
    total, parts = loss({"depth_m": pred}, batch)
    assert float(total.detach()) > 1e-4
    total.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert set(parts) == {config["name"]}


def test_weights_sum_and_parts_are_unweighted():
    batch = _depth_batch()
    pred = batch["depth_m"] + 0.2
    loss = build_loss(
        [
            {"name": "mse", "weight": 2.0},
            {"name": "l1", "weight": 0.5},
            {"name": "l1", "weight": 1.0},
        ]
    )
    total, parts = loss({"depth_m": pred}, batch)
    assert float(parts["mse"]) == pytest.approx(0.04)
    assert float(parts["l1"]) == pytest.approx(0.2) and float(parts["l1_2"]) == pytest.approx(0.2)
    assert float(total) == pytest.approx(2 * 0.04 + 0.5 * 0.2 + 0.2)


def test_masked_terms_ignore_invalid_pixels():
    batch = _depth_batch()
    pred = batch["depth_m"].clone()
    pred[~batch["valid"]] += 5.0
    for name in ("masked_mse", "masked_l1", "silog", "gradient"):
        assert float(build_loss(name)({"depth_m": pred}, batch)[0]) == pytest.approx(
            0.0, abs=1e-12
        ), name
    assert float(build_loss("mse")({"depth_m": pred}, batch)[0]) > 1.0
    with pytest.raises(UserError, match="valid"):
        build_loss("masked_mse")({"depth_m": pred}, {"depth_m": batch["depth_m"]})


def test_silog_scale_invariance_depends_on_lambda():
    batch = _depth_batch()
    scaled = {"depth_m": batch["depth_m"] * 1.7}
    assert float(build_loss({"name": "silog", "lambda": 1.0})(scaled, batch)[0]) == pytest.approx(
        0.0, abs=1e-12
    )
    # Eigen's lambda = 0.5 keeps half the penalty on a global scale error: (1 - 0.5) ln(1.7)^2.
    half = float(build_loss({"name": "silog", "lambda": 0.5})(scaled, batch)[0])
    assert half == pytest.approx(0.5 * torch.log(torch.tensor(1.7)).item() ** 2, rel=1e-6)


def test_gradient_loss_invariant_to_offset_in_its_domain():
    batch = _depth_batch()
    depth = batch["depth_m"]
    log_offset = {"depth_m": depth * 1.3}  # constant offset of log depth
    inverse_offset = {"depth_m": 1.0 / (1.0 / depth + 0.2)}  # constant offset of inverse depth
    depth_offset = {"depth_m": depth + 0.25}
    log_loss = build_loss({"name": "gradient", "domain": "log"})
    inverse_loss = build_loss({"name": "gradient", "domain": "inverse"})
    depth_loss = build_loss({"name": "gradient", "domain": "depth"})
    assert float(log_loss(log_offset, batch)[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(inverse_loss(inverse_offset, batch)[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(depth_loss(depth_offset, batch)[0]) == pytest.approx(0.0, abs=1e-12)
    # ... but not to an offset in another domain.
    assert float(log_loss(inverse_offset, batch)[0]) > 1e-3
    assert float(inverse_loss(log_offset, batch)[0]) > 1e-3


def test_coc_supervision_and_missing_decoder_error():
    batch = _depth_batch()
    focus = torch.tensor([[0.6, 1.0, 2.0]], dtype=torch.float64).repeat(2, 1)
    target = coc_px(batch["depth_m"][:, None], focus.view(2, 3, 1, 1, 1), 0.025, 2.0, 1e-5)
    batch["coc_px"] = target
    loss = build_loss([{"name": "masked_mse"}, {"name": "coc", "weight": 0.1}])
    total, parts = loss({"depth_m": batch["depth_m"], "coc_px": target.clone()}, batch)
    assert float(total) == pytest.approx(0.0, abs=1e-12)
    pred = (target + 1.5).requires_grad_(True)
    _, parts = loss({"depth_m": batch["depth_m"], "coc_px": pred}, batch)
    assert float(parts["coc"]) == pytest.approx(1.5)
    with pytest.raises(UserError, match="CoC decoder"):
        loss({"depth_m": batch["depth_m"]}, batch)
    assert loss.needs >= {"coc_px", "valid", "depth_m"}


def test_config_errors_are_user_errors_naming_the_source():
    with pytest.raises(UserError, match="unknown loss 'huber'.*known: "):
        build_loss([{"name": "huber"}], source="configs/x.yaml")
    with pytest.raises(UserError, match="configs/x.yaml.*unknown option"):
        build_loss([{"name": "mse", "domain": "log"}], source="configs/x.yaml")
    with pytest.raises(UserError, match="weight"):
        build_loss([{"name": "mse", "weight": -1}])
    with pytest.raises(UserError, match="domain"):
        build_loss([{"name": "gradient", "domain": "disparity"}])
    with pytest.raises(UserError):
        build_loss([])
    assert {"mse", "masked_mse", "silog", "gradient", "coc", "defocus"} <= set(list_losses())


def _rendered_batch():
    """A textured slanted plane rendered with the differentiable renderer."""
    render_focal_stack = pytest.importorskip("focaldepth.render").render_focal_stack
    g = torch.Generator().manual_seed(3)
    height = width = 40
    aif = torch.nn.functional.avg_pool2d(torch.rand(1, 3, height, width, generator=g), 3, 1, 1)
    xx = torch.linspace(0, 1, width).view(1, 1, 1, width).expand(1, 1, height, width)
    depth = 1.0 / (2.0 - 1.2 * xx)  # 0.5 m to 1.25 m
    focus = torch.tensor([[0.5, 0.7, 1.0, 1.4]])
    camera = torch.tensor([[0.025, 2.8, 2e-5]])
    frames = render_focal_stack(aif, depth, focus, camera, num_layers=16)
    return {
        "frames": frames,
        "focus_distance_m": focus,
        "camera": camera,
        "depth_m": depth,
        "aif": aif,
        "valid": torch.ones_like(depth, dtype=torch.bool),
    }


def test_defocus_reconstruction_is_zero_at_true_depth_and_grows_with_error():
    batch = _rendered_batch()
    loss = build_loss({"name": "defocus", "num_layers": 16, "aif": "batch"})
    at_truth = float(loss({"depth_m": batch["depth_m"]}, batch)[0])
    assert at_truth < 1e-5
    for wrong in (
        batch["depth_m"] * 0.8,
        batch["depth_m"] * 1.25,
        torch.full_like(batch["depth_m"], 0.8),
    ):
        assert float(loss({"depth_m": wrong}, batch)[0]) > 100 * max(at_truth, 1e-5)
    # Self-supervised: no depth ground truth is read, and depth and aif both get gradients.
    unlabeled = {k: v for k, v in batch.items() if k not in ("depth_m", "valid", "aif")}
    depth = (batch["depth_m"] * 1.1).requires_grad_(True)
    aif = batch["aif"].clone().requires_grad_(True)
    total, _ = build_loss({"name": "defocus", "num_layers": 16})(
        {"depth_m": depth, "aif": aif}, unlabeled
    )
    total.backward()
    assert depth.grad.abs().sum() > 0 and aif.grad.abs().sum() > 0
    # Without any all-in-focus image the term cannot run: a clear error.
    with pytest.raises(UserError, match="aif"):
        loss({"depth_m": depth}, unlabeled)


def test_sweep_l1_is_camera_scale_free_and_zero_at_truth():
    from focaldepth.losses import build_loss

    loss = build_loss([{"name": "sweep_l1"}])
    gt = torch.full((1, 1, 4, 4), 1.0)
    valid = torch.ones_like(gt, dtype=torch.bool)
    near_sweep = {"depth_m": gt, "valid": valid, "focus_distance_m": torch.tensor([[0.5, 2.0]])}
    assert loss({"depth_m": gt}, near_sweep)[0].item() == 0.0
    # an error of 0.5 dpt over a 1.5 dpt sweep = 1/3; the same relative error on a sweep
    # ten times wider in dioptres (a close-up phone) gives the same loss
    pred = torch.full_like(gt, 1.0 / 1.5)
    assert loss({"depth_m": pred}, near_sweep)[0].item() == pytest.approx(1 / 3, rel=1e-5)
    close = {"depth_m": gt / 10, "valid": valid, "focus_distance_m": torch.tensor([[0.05, 0.2]])}
    assert loss({"depth_m": pred / 10}, close)[0].item() == pytest.approx(1 / 3, rel=1e-4)
