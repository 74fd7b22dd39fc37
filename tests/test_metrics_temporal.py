"""Video metrics: TAE (Video Depth Anything) zero for perfect depth and equal to a hand
computation, its alignment, occlusion handling; the per-pixel frame-to-frame error; flicker on
static scenes; and `focaldepth evaluate` reporting them on a tiny generated dataset."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from focaldepth import metrics as M

H, W = 12, 16


def _moving_square(frames=4, shift_px=2, wall_m=3.0, square_m=1.0, approach_m=0.05):
    """A square sliding right over a static wall and coming closer by ``approach_m`` per frame
    (real motion in depth), with the exact backward flow of every frame (frame 0: zeros)."""
    depths, flows = [], []
    for t in range(frames):
        depth = torch.full((1, 1, H, W), wall_m, dtype=torch.float64)
        left = 2 + shift_px * t
        depth[..., 3:9, left:left + 5] = square_m - approach_m * t
        flow = torch.zeros(1, 2, H, W, dtype=torch.float64)
        if t > 0:
            flow[:, 0, 3:9, left:left + 5] = -shift_px
        depths.append(depth)
        flows.append(flow)
    return depths, flows


def test_tae_is_zero_for_perfect_depth_of_a_moving_scene():
    depths, flows = _moving_square()
    for align in (True, False):
        tae = M.temporal_alignment_error([d.clone() for d in depths], depths, flows, align=align)
        assert tae == pytest.approx(0.0, abs=1e-9)


def test_tae_matches_a_hand_computation():
    # Two frames of a static 1 x 2 image: ground truth (2, 4) m; the prediction of frame 1
    # reads 2.2 m on the first pixel.
    gt = torch.tensor([[[[2.0, 4.0]]]], dtype=torch.float64)
    preds = [gt.clone(), torch.tensor([[[[2.2, 4.0]]]], dtype=torch.float64)]
    flows = [torch.zeros(1, 2, 1, 2, dtype=torch.float64)] * 2
    # forward: mean(|2.2 - 2| / 2.2, 0); backward: mean(|2 - 2.2| / 2, 0); TAE: their mean
    expected = 0.5 * (0.5 * 0.2 / 2.2 + 0.5 * 0.2 / 2.0)
    assert M.temporal_alignment_error(preds, [gt, gt], flows, align=False) == pytest.approx(expected)
    forward, backward = M.per_image_tae_pair(preds[0], preds[1], gt, gt, flows[1])
    assert float(forward) == pytest.approx(0.1 / 2.2) and float(backward) == pytest.approx(0.05)


def test_tae_alignment_is_per_video_in_disparity():
    depths, flows = _moving_square()
    # affine in disparity over the whole video: 1/p = 0.5/g + 0.1 -- aligned away exactly
    affine = [1.0 / (0.5 / d + 0.1) for d in depths]
    assert M.temporal_alignment_error(affine, depths, flows) == pytest.approx(0.0, abs=1e-9)
    # ... but the metric TAE sees the wrong change of depth of the approaching square
    assert M.temporal_alignment_error(affine, depths, flows, align=False) > 1e-3
    # a scale that changes from frame to frame is not one per video: alignment cannot hide it
    drifting = [d * (1 + 0.05 * t) for t, d in enumerate(depths)]
    assert M.temporal_alignment_error(drifting, depths, flows) > 0.01


def test_tae_leaves_out_disoccluded_pixels():
    depths, flows = _moving_square(frames=2, approach_m=0.0)
    wrong = depths[1].clone()
    disoccluded = torch.zeros_like(wrong, dtype=torch.bool)
    disoccluded[..., 3:9, 2:4] = True  # wall uncovered by the square's 2 px step
    wrong[disoccluded] = 7.0
    assert M.temporal_alignment_error([depths[0], wrong], depths, flows, align=False) == 0.0
    wrong[..., 0, 0] = 7.0  # a visible pixel: counted
    assert M.temporal_alignment_error([depths[0], wrong], depths, flows, align=False) > 0


def test_frame_to_frame_error_per_pixel_and_along_the_flow():
    gt = torch.tensor([[[[2.0, 4.0]]]], dtype=torch.float64)
    zero = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    pred_t = torch.tensor([[[[2.1, 4.0]]]], dtype=torch.float64)
    rows = M.temporal_stability(pred_t, gt, gt, gt, zero)
    assert rows["temporal_err_rel_pixel"] == pytest.approx(0.5 * 0.1 / 2.0)
    assert rows["temporal_err_rel"] == pytest.approx(0.5 * 0.1 / 2.0)  # static: the same
    # On a moving scene the exact prediction has no error along the flow, while without
    # warping a prediction that lags one frame behind is wrong at the moving edges only.
    depths, flows = _moving_square(frames=2, approach_m=0.0)
    exact = M.temporal_stability(depths[1], depths[0], depths[1], depths[0], flows[1])
    assert exact["temporal_err_rel"] == 0.0 and exact["temporal_err_rel_pixel"] == 0.0
    lagging = M.temporal_stability(depths[0], depths[0], depths[1], depths[0], flows[1])
    # the square's 2 leading and 2 trailing columns of 6 rows change by 2 m in the truth
    assert lagging["temporal_err_rel_pixel"] == pytest.approx((12 * 2 / 1 + 12 * 2 / 3) / (H * W))
    assert lagging["temporal_err_rel"] > 0.1


def test_flicker_is_the_mean_relative_change():
    gt = torch.full((1, 1, 4, 4), 2.0)
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[..., 0, :] = False
    pred = gt.clone()
    pred[..., 1:, :2] *= 1.03
    assert float(M.per_image_flicker(pred, gt, gt, valid)) == pytest.approx(0.5 * 0.03)
    assert float(M.per_image_flicker(gt, gt, gt)) == 0.0


@pytest.fixture(scope="module")
def tiny_repeated_sweeps(tmp_path_factory) -> Path:
    """configs/data/tiny.yaml with two sweeps on static scenes too (4 sequences of 64x64)."""
    from focaldepth.generate.runner import run_generate

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "configs" / "data" / "tiny.yaml").read_text())
    config["scene"]["focus"]["num_ramps_static"] = 2
    folder = tmp_path_factory.mktemp("video")
    (folder / "tiny_sweeps.yaml").write_text(yaml.safe_dump(config))
    out = folder / "data"
    run_generate(folder / "tiny_sweeps.yaml", out, progress=False)
    return out


def _run_cli(*args: str) -> int:
    from focaldepth.cli import main

    try:
        main(list(args))
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def _phase_predictor(amplitude: float):
    """Ground truth times 1 + amplitude * (sweep phase of the window's last frame): flicker
    from frame to frame, none between sweeps at the same phase."""

    def predict(batch):
        phase = int(batch["frame_index"].reshape(-1)[0]) % 5 if "frame_index" in batch else 0
        gt = torch.nan_to_num(batch["depth_m"].float(), nan=1.0)
        return gt.clamp_min(0.1) * (1 + amplitude * phase)

    return predict


def test_evaluate_reports_tae_frame_error_and_flicker(tiny_repeated_sweeps, tmp_path):
    from focaldepth.evaluate import ConsecutiveWindows, evaluate_dataset, open_test_set

    accuracy = open_test_set(tiny_repeated_sweeps, num_frames=4, sample="ramp")
    windows = ConsecutiveWindows(open_test_set(tiny_repeated_sweeps, num_frames=4,
                                               sample="windows").base, motion="all")
    records = windows.base.records
    assert any(not r["is_dynamic"] for r in records) and any(r["is_dynamic"] for r in records)

    oracle = evaluate_dataset(_phase_predictor(0.0), accuracy, windows, progress=False)
    for name in ("tae", "tae_metric", "temporal_err_rel", "temporal_err_rel_pixel",
                 "flicker_frame_rel", "flicker_sweep_rel"):
        assert oracle.overall[name] == pytest.approx(0.0, abs=1e-6), name
    static = [r for r in records if not r["is_dynamic"]]
    assert oracle.by_motion["static"]["num_static_pairs"] == sum(r["num_frames"] - 4 for r in static)
    # windows ending at frames 3, 4 match those ending one 5-frame sweep later (8, 9)
    assert oracle.by_motion["static"]["num_sweep_pairs"] == 2 * len(static)
    assert oracle.overall["num_tae_videos"] == len(records)

    phased = evaluate_dataset(_phase_predictor(0.02), accuracy, windows, progress=False)
    static_metrics = phased.by_motion["static"]
    assert static_metrics["flicker_sweep_rel"] == pytest.approx(0.0, abs=1e-6)
    assert 0.015 < static_metrics["flicker_frame_rel"] < 0.08
    assert phased.by_motion["dynamic"]["temporal_err_rel_pixel"] > 0.01
    assert phased.overall["tae"] > 0.005

    # the command writes them to metrics.json and metrics.md
    out = tmp_path / "classical"
    assert _run_cli("evaluate", "--checkpoint", "classical", "--data", str(tiny_repeated_sweeps),
                    "--out", str(out)) == 0
    summary = json.loads((out / "metrics.json").read_text())
    temporal = summary["all"]["temporal"]
    for name in ("tae", "tae_metric", "temporal_err_rel_pixel", "flicker_frame_rel",
                 "flicker_sweep_rel"):
        assert math.isfinite(temporal[name]), name
    assert summary["by_motion"]["static"]["video_counts"]["num_sweep_pairs"] == 2 * len(static)
    markdown = (out / "metrics.md").read_text()
    assert "TAE (aligned)" in markdown and "Flicker on static scenes" in markdown


def test_a_depth_cap_keeps_an_ill_conditioned_alignment_from_exploding_tae():
    # A sweep that ends before the wall: the prediction puts the 10 m wall at about 2 m, a
    # little differently in each frame; fitting disparity over the video then gives a
    # negative shift, the wall's aligned disparity drops towards 0 (clamped: 1000 m) and TAE
    # explodes. Clipping the aligned depth at the largest true depth (VDA's dataset cap) bounds it.
    depths, flows = _moving_square(wall_m=10.0)
    preds = []
    for t, depth in enumerate(depths):
        pred = torch.where(depth > 5.0, torch.full_like(depth, 2.0 + 0.3 * (t % 2)), depth)
        preds.append(pred)
    uncapped = M.temporal_alignment_error(preds, depths, flows)
    capped = M.temporal_alignment_error(preds, depths, flows, max_depth_m=10.0)
    assert uncapped > 5 * capped and capped < 0.2
