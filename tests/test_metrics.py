"""Depth metrics: hand-computed values, masks, aggregation, DDFF bumpiness, temporal stability."""

import math

import numpy as np
import pytest
import skimage.filters as skf
import torch

from focaldepth import metrics as M


def _map(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)[None, None]


PRED = _map([[2.0, 1.0], [3.0, 8.0]])
GT = _map([[1.0, 1.0], [2.0, 4.0]])


def test_hand_computed_values():
    # errors 1, 0, 1, 4; ratios 2, 1, 1.5, 2
    result = M.depth_metrics(PRED, GT, torch.ones_like(GT, dtype=torch.bool))
    assert result["mse"] == pytest.approx((1 + 0 + 1 + 16) / 4)
    assert result["rmse"] == pytest.approx(math.sqrt(4.5))
    assert result["mae"] == pytest.approx(6 / 4)
    assert result["absrel"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert result["sqrel"] == pytest.approx((1 + 0 + 0.5 + 4) / 4)
    assert result["rmse_log"] == pytest.approx(
        math.sqrt((2 * math.log(2) ** 2 + math.log(1.5) ** 2) / 4)
    )
    assert result["delta1"] == pytest.approx(0.25)  # only ratio 1 < 1.25
    assert result["delta2"] == pytest.approx(0.5)  # 1 and 1.5 < 1.5625
    assert result["delta3"] == pytest.approx(0.5)  # 2 is not < 1.953
    assert result["num_images"] == 1


def test_individual_functions_match_depth_metrics():
    all_metrics = M.per_image_metrics(PRED, GT)
    assert float(M.mse(PRED, GT)) == pytest.approx(float(all_metrics["mse"]))
    assert float(M.rmse(PRED, GT)) == pytest.approx(float(all_metrics["rmse"]))
    assert float(M.absrel(PRED, GT)) == pytest.approx(float(all_metrics["absrel"]))
    assert float(M.delta(PRED, GT, threshold=1.25**3)) == pytest.approx(
        float(all_metrics["delta3"])
    )


def test_perfect_prediction():
    gt = torch.rand(2, 1, 16, 16, dtype=torch.float64) + 0.5
    result = M.depth_metrics(gt.clone(), gt)
    for name in ("mse", "rmse", "mae", "absrel", "sqrel", "rmse_log", "bumpiness"):
        assert result[name] == pytest.approx(0.0, abs=1e-12), name
    for name in ("delta1", "delta2", "delta3"):
        assert result[name] == 1.0


def test_mask_is_respected_and_zero_depth_is_never_valid():
    valid = torch.tensor([[True, True], [True, False]])[None, None]
    wild = PRED.clone()
    wild[..., 1, 1] = 1e6  # error hidden by the mask
    masked = M.depth_metrics(wild, GT, valid)
    subset = M.depth_metrics(
        PRED[..., :1, :].reshape(1, 1, 1, 2), GT[..., :1, :].reshape(1, 1, 1, 2)
    )
    assert masked["mse"] == pytest.approx((1 + 0 + 1) / 3)
    assert masked["absrel"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert subset["mse"] == pytest.approx(0.5)
    gt_hole = GT.clone()
    gt_hole[..., 1, 1] = 0.0  # "no measurement" even if valid says otherwise
    assert M.depth_metrics(wild, gt_hole)["mse"] == pytest.approx(2 / 3)


def test_batch_is_averaged_per_image_then_over_images():
    gt = torch.ones(3, 1, 4, 4, dtype=torch.float64)
    pred = gt.clone()
    pred[0] += 0.1  # rmse 0.1 on a full image
    pred[1, :, 0, 0] += 0.4  # rmse 0.4/4 = 0.1 on one valid pixel... see mask
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[1] = False
    valid[1, :, 0, :2] = True  # image 1: errors 0.4 and 0 -> rmse sqrt(0.08)
    valid[2] = False  # image 2: no valid pixel, left out
    result = M.depth_metrics(pred, gt, valid)
    assert result["num_images"] == 2
    assert result["rmse"] == pytest.approx((0.1 + math.sqrt(0.08)) / 2)
    assert result["rmse"] != pytest.approx(math.sqrt((0.01 + 0.08) / 2))
    assert math.isnan(float(M.rmse(pred, gt, valid)[2]))


def _ddff_reference_bumpiness(pred: np.ndarray, target: np.ndarray, clip: float = 0.05) -> float:
    """The DDFF 12-Scene evaluation formula (soyers/ddff-pytorch BaseDDFFEval) with a full
    mask, averaged over the interior (we leave out the 2-pixel border, see metrics.py)."""
    diff = pred - target
    dx, dy = skf.scharr_v(diff), skf.scharr_h(diff)
    norm = np.sqrt(
        skf.scharr_v(dx) ** 2
        + skf.scharr_h(dx) ** 2
        + skf.scharr_h(dy) ** 2
        + skf.scharr_v(dy) ** 2
    )
    return float(np.clip(norm, 0, clip)[2:-2, 2:-2].mean() * 100)


def test_bumpiness_matches_ddff_reference_and_ignores_planar_errors():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 2.0, (20, 24))
    pred = gt + 0.02 * rng.standard_normal(gt.shape)
    ours = float(M.bumpiness(_map(pred), _map(gt)))
    assert ours == pytest.approx(_ddff_reference_bumpiness(pred, gt), rel=1e-9)
    assert 0 < ours <= 100 * M.BUMPINESS_CLIP
    # A planar error (a tilted offset) has a zero Hessian: not bumpy at all.
    yy, xx = np.mgrid[0:20, 0:24]
    assert float(M.bumpiness(_map(gt + 0.01 * xx - 0.02 * yy + 0.3), _map(gt))) == pytest.approx(
        0, abs=1e-12
    )
    # Huge errors are clipped at 0.05 per pixel.
    assert float(
        M.bumpiness(_map(gt + 100 * rng.standard_normal(gt.shape)), _map(gt))
    ) == pytest.approx(5.0)


def test_bumpiness_only_counts_pixels_with_valid_neighbourhood():
    rng = np.random.default_rng(1)
    gt = _map(rng.uniform(1, 2, (16, 16)))
    pred = gt.clone()
    pred[..., :, :8] += 5 * torch.rand(16, 8, dtype=torch.float64)  # bumpy left half
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[..., :, :8] = False
    assert float(M.bumpiness(pred, gt, valid)) == pytest.approx(0.0, abs=1e-12)


def test_normalised_metrics():
    d_min, d_max = 0.5, 2.5
    gt = torch.linspace(d_min, d_max, 64, dtype=torch.float64).view(1, 1, 8, 8)
    pred = gt + 0.1 * (d_max - d_min)
    result = M.depth_metrics(pred, gt, normalised=(d_min, d_max))
    assert result["mae"] == pytest.approx(0.1)
    assert result["rmse"] == pytest.approx(0.1)
    assert all(math.isfinite(v) for v in result.values())  # gt = 0 at d_min stays finite
    perfect = M.depth_metrics(gt, gt, normalised=(d_min, d_max))
    assert perfect["delta1"] == 1.0 and perfect["mse"] == 0.0
    with pytest.raises(ValueError):
        M.depth_metrics(pred, gt, normalised=(2.0, 1.0))


def _scene(height=24, width=32):
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    return (1.0 + 0.02 * xx + 0.01 * yy + 0.1 * torch.sin(xx / 3))[None, None]


def test_temporal_stability_static_scene_flicker():
    gt = _scene()
    zero_flow = torch.zeros(1, 2, *gt.shape[-2:], dtype=torch.float64)
    flicker = M.temporal_stability(gt * 1.1, gt, gt, gt, zero_flow)
    assert flicker["temporal_err_rel"] == pytest.approx(0.1, rel=1e-9)
    assert flicker["temporal_change_pred_rel"] == pytest.approx(0.1, rel=1e-9)
    assert flicker["temporal_change_gt_rel"] == pytest.approx(0.0, abs=1e-12)
    assert flicker["temporal_coverage"] == 1.0
    # A constant scale error in both frames is stable: no temporal error.
    steady = M.temporal_stability(gt * 1.2, gt * 1.2, gt, gt, zero_flow)
    assert steady["temporal_err_m"] == pytest.approx(0.0, abs=1e-12)


def test_temporal_stability_follows_the_flow_and_excludes_out_of_frame():
    full = _scene(24, 40)
    gt_prev, gt_t = full[..., 4:36], full[..., 0:32]  # camera pans: content moves right by 4 px
    flow = torch.zeros(1, 2, 24, 32, dtype=torch.float64)
    flow[:, 0] = -4.0  # pixel x in frame t is at x - 4 in the previous frame
    exact = M.temporal_stability(gt_t, gt_prev, gt_t, gt_prev, flow)
    assert exact["temporal_err_m"] == pytest.approx(0.0, abs=1e-12)
    assert exact["temporal_coverage"] == pytest.approx(28 / 32)  # 4 columns come from outside
    # Ignoring the motion (zero flow) would see a large change where there is none.
    wrong = M.temporal_stability(
        gt_t, gt_prev, gt_t, gt_prev, torch.zeros_like(flow), gt_consistency_rel=1.0
    )
    assert wrong["temporal_change_gt_rel"] > 0.05


def test_temporal_stability_occlusion_checks():
    gt = _scene()
    gt_prev = gt.clone()
    gt_prev[..., 8:16, 8:16] = 0.3  # an object in the previous frame that has gone
    zero_flow = torch.zeros(1, 2, *gt.shape[-2:], dtype=torch.float64)
    result = M.temporal_stability(gt, gt_prev, gt, gt_prev, zero_flow)
    assert result["temporal_coverage"] == pytest.approx(1 - 64 / gt.numel())
    # Forward-backward check: inconsistent backward flow in a region marks it occluded.
    backward = torch.zeros_like(zero_flow)
    backward[..., 0:6, :] = 5.0
    fb = M.temporal_stability(gt, gt, gt, gt, zero_flow, flow_prev_to_t=backward)
    assert fb["temporal_coverage"] == pytest.approx(1 - 6 / 24)


def test_accumulator_means_over_images_and_merges():
    gt = torch.ones(2, 1, 4, 4, dtype=torch.float64)
    pred = gt + torch.tensor([0.1, 0.3], dtype=torch.float64).view(2, 1, 1, 1)
    first, second = M.MetricAccumulator(), M.MetricAccumulator()
    rows = first.update(pred, gt)
    second.update(gt * 1.5, gt)
    assert [round(r["mae"], 9) for r in rows] == [0.1, 0.3]
    first.merge(second)
    result = first.compute()
    assert result["num_images"] == 4
    assert result["mae"] == pytest.approx((0.1 + 0.3 + 0.5 + 0.5) / 4)
    first.update(pred, gt, normalised=(0.0, 2.0), prefix="norm_")
    assert first.compute()["norm_mae"] == pytest.approx((0.05 + 0.15) / 2)
    assert first.compute()["num_images"] == 4
    zero_flow = torch.zeros(2, 2, 4, 4, dtype=torch.float64)
    first.update_temporal(pred, gt, gt, gt, zero_flow)
    assert first.compute()["num_pairs"] == 2
    assert first.compute()["temporal_err_m"] == pytest.approx(0.2)


def test_shape_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        M.depth_metrics(torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4))
    with pytest.raises(ValueError, match="gt_m"):
        M.depth_metrics(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 5))


# --- confidence quality (sparsification) --------------------------------------------------


def _noisy_prediction(seed: int = 0, size: int = 40):
    g = torch.Generator().manual_seed(seed)
    gt = 1.0 + 3.0 * torch.rand(2, 1, size, size, generator=g, dtype=torch.float64)
    rel_error = 0.5 * torch.rand(2, 1, size, size, generator=g, dtype=torch.float64)
    pred = gt * (1.0 + rel_error)
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[:, :, :3] = False
    return pred, gt, valid, rel_error, g


def test_perfectly_informative_confidence_gives_zero_ause():
    pred, gt, valid, rel_error, _ = _noisy_prediction()
    report = M.confidence_report(pred, gt, valid, -rel_error)
    assert report["ause_absrel"] == pytest.approx(0.0, abs=1e-12)
    # RMSE's oracle ranks by absolute, not relative, error: ranking by it zeroes ause_rmse
    assert report["ause_rmse"] > 0.01
    by_abs = M.confidence_report(pred, gt, valid, -(pred - gt).abs())
    assert by_abs["ause_rmse"] == pytest.approx(0.0, abs=1e-12)
    assert report["sparsification_absrel"] == pytest.approx(report["oracle_absrel"])
    assert report["absrel_top50"] == pytest.approx(report["absrel_oracle_top50"])
    # the curve falls monotonically from the all-pixel AbsRel (mean of U(0, 0.5) = 0.25)
    curve = np.array(report["sparsification_absrel"])
    assert np.all(np.diff(curve) < 0) and curve[0] == pytest.approx(0.25, abs=0.02)
    assert report["absrel_all"] == pytest.approx(float(M.absrel(pred, gt, valid).mean()))
    assert report["aurg_absrel"] > 0.05 and report["num_images"] == 2


def test_random_confidence_gives_a_flat_curve_and_constant_confidence_an_exact_one():
    pred, gt, valid, _, g = _noisy_prediction(size=120)
    report = M.confidence_report(pred, gt, valid, torch.rand(pred.shape, generator=g))
    curve = np.array(report["sparsification_absrel"])
    assert np.abs(curve - report["absrel_all"]).max() < 0.03  # flat up to sampling noise
    assert report["ause_absrel"] > 0.05 and abs(report["aurg_absrel"]) < 0.01
    flat = M.confidence_report(pred, gt, valid, torch.ones_like(pred))  # all tied
    assert flat["sparsification_absrel"] == pytest.approx([flat["absrel_all"]] * 20)
    assert flat["absrel_top50"] == pytest.approx(flat["absrel_all"])


def test_anti_correlated_confidence_gives_a_rising_curve():
    pred, gt, valid, rel_error, _ = _noisy_prediction()
    report = M.confidence_report(pred, gt, valid, rel_error)
    curve = np.array(report["sparsification_absrel"])
    assert np.all(np.diff(curve) > 0)
    assert report["absrel_top50"] > report["absrel_all"] > report["absrel_oracle_top50"]
    assert report["aurg_absrel"] < 0


def test_sparsification_hand_computed_and_masked():
    # four valid pixels with AbsRel 0, 0.5, 1, 1; a fifth is invalid (gt 0) and ignored
    pred = _map([[1.0, 3.0, 2.0, 4.0, 9.0]])
    gt = _map([[1.0, 2.0, 1.0, 2.0, 0.0]])
    confidence = _map([[0.9, 0.8, 0.1, 0.5, 1.0]])
    rows = M.per_image_sparsification(pred, gt, None, confidence, steps=4)
    # remove 0, 1, 2, 3 pixels of lowest confidence: keep {0,.5,1,1}, {0,.5,1}, {0,.5}, {0}
    assert rows["sparsification_absrel"][0].tolist() == pytest.approx([0.625, 0.5, 0.25, 0.0])
    assert rows["oracle_absrel"][0].tolist() == pytest.approx([0.625, 0.5, 0.25, 0.0])
    assert float(rows["ause_absrel"][0]) == pytest.approx(0.0)
    assert float(rows["absrel_top50"][0]) == pytest.approx(0.25)
    numpy_report = M.confidence_report(pred[0, 0].numpy(), gt[0, 0].numpy(), None,
                                       confidence[0, 0].numpy(), steps=4)
    assert numpy_report["absrel_all"] == pytest.approx(0.625)
    empty = M.confidence_report(pred, gt, torch.zeros_like(gt, dtype=torch.bool), confidence)
    assert empty["num_images"] == 0 and "ause_absrel" not in empty
    with pytest.raises(ValueError, match="confidence"):
        M.per_image_sparsification(pred, gt, None, confidence[..., :2])


def test_confidence_accumulator_is_the_mean_over_images():
    pred, gt, valid, _, g = _noisy_prediction()
    confidence = torch.rand(pred.shape, generator=g, dtype=torch.float64)
    first, second = M.ConfidenceAccumulator(), M.ConfidenceAccumulator()
    first.update(pred[:1], gt[:1], valid[:1], confidence[:1])
    second.update(pred[1:], gt[1:], valid[1:], confidence[1:])
    first.merge(second)
    merged, together = first.compute(), M.confidence_report(pred, gt, valid, confidence)
    singles = [M.confidence_report(pred[i:i + 1], gt[i:i + 1], valid[i:i + 1],
                                   confidence[i:i + 1]) for i in range(2)]
    for name in M.CONFIDENCE_SCALARS:
        assert merged[name] == pytest.approx(together[name])
        assert together[name] == pytest.approx(0.5 * (singles[0][name] + singles[1][name]))
