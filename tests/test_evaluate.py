"""Evaluation harness and results tables: oracle sanity checks, normalisation, temporal
stability along flow, output files, model loading, tables from results files."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import Dataset

from focaldepth import models
from focaldepth.errors import UserError
from focaldepth.evaluate import (
    ErrorByDepth,
    _tiled,
    build_summary,
    evaluate_dataset,
    model_predictor,
    write_outputs,
)

CAMERA = torch.tensor([0.025, 2.0, 1.0e-5])


class ListDataset(Dataset):
    """Items given as a list (the same dicts as focaldepth.data.FocusSweepDataset)."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def slanted_depth(height: int, width: int, near_m: float, far_m: float, shift_px: int = 0):
    """A depth ramp along x (a slanted plane), moved ``shift_px`` to the right."""
    x = torch.arange(width, dtype=torch.float32) - shift_px
    row = near_m + (far_m - near_m) * (x % width) / (width - 1)
    return row.expand(1, height, width).clone()


def make_item(sequence: int, depth: torch.Tensor, *, frames: int = 4, dynamic: bool = False,
              frame_index: int = 0, flow_x_px: float = 0.0, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    height, width = depth.shape[-2:]
    valid = torch.ones(1, height, width, dtype=torch.bool)
    valid[:, :1] = False  # one invalid row: excluded from every metric
    flow = torch.zeros(2, height, width)
    flow[0] = flow_x_px
    return {"frames": torch.rand(frames, 3, height, width, generator=g),
            "focus_distance_m": torch.linspace(0.5, 2.0, frames), "camera": CAMERA.clone(),
            "depth_m": depth, "valid": valid, "flow": flow, "sequence_index": sequence,
            "is_dynamic": dynamic, "frame_index": frame_index}


def accuracy_set() -> ListDataset:
    """Three sequences, two items each, different depth ranges (0.5-1.5, 1-3, 2-6 m)."""
    items = []
    for sequence, (near, far) in enumerate([(0.5, 1.5), (1.0, 3.0), (2.0, 6.0)]):
        for k in range(2):
            items.append(make_item(sequence, slanted_depth(16, 24, near, far, shift_px=k),
                                   dynamic=sequence == 2, frame_index=k, seed=10 * sequence + k))
    return ListDataset(items)


def moving_set(frames_in_sequence: int = 5) -> ListDataset:
    """A dynamic sequence: a slanted plane moving 1 px right per frame, so the ground-truth
    flow from frame t to t-1 is (-1, 0) and warping depth t-1 by it reproduces depth t."""
    items = [make_item(7, slanted_depth(16, 24, 1.0, 2.0, shift_px=t), dynamic=True,
                       frame_index=t, flow_x_px=-1.0, seed=t) for t in range(frames_in_sequence)]
    return ListDataset(items)


def run_cli(*args: str) -> int:
    """Run the focaldepth CLI in-process and return its exit status."""
    from focaldepth.cli import main

    try:
        main(list(args))
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def oracle(batch):
    return batch["depth_m"].float().clone()


# --------------------------------------------------------------------------------------------
# metrics through the harness


def test_oracle_gives_zero_error_and_perfect_accuracy(tmp_path):
    result = evaluate_dataset(oracle, accuracy_set(), moving_set(), progress=False)
    overall = result.overall
    for name in ("mse", "rmse", "absrel", "sqrel", "rmse_log", "norm_mse", "norm_rmse",
                 "bumpiness", "temporal_err_m"):
        assert overall[name] == pytest.approx(0.0, abs=1e-6), name
    for name in ("delta1", "delta2", "delta3", "norm_delta1"):
        assert overall[name] == pytest.approx(1.0), name
    assert overall["num_images"] == 6 and overall["num_pairs"] == 4  # 5 windows -> 4 pairs
    summary = build_summary(result, model={"source": "oracle", "name": "oracle"},
                            data={"root": str(tmp_path), "split": None},
                            protocol={"num_frames": 4})
    paths = write_outputs(tmp_path / "out", result, summary)
    for key in ("per_sequence", "metrics", "markdown", "error_vs_depth", "sheet"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    saved = json.loads(paths["metrics"].read_text())
    assert saved["all"]["metres"]["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert saved["all"]["metres"]["delta1"] == 1.0
    assert set(saved["by_motion"]) == {"static", "dynamic"}
    with paths["per_sequence"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["sequence_index"]) for r in rows] == [0, 1, 2, 7]
    assert "| all | 0 | 0 |" in paths["markdown"].read_text()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


def test_scaled_prediction_gives_known_metric_and_normalised_errors():
    """pred = 1.1 gt: AbsRel 0.1 and delta1 = 1 in metres; on normalised depth the RMSE is the
    metric RMSE divided by each sequence's depth range, so it does not depend on scale."""
    dataset = accuracy_set()
    result = evaluate_dataset(lambda b: 1.1 * b["depth_m"].float(), dataset, progress=False)
    assert result.overall["absrel"] == pytest.approx(0.1, rel=1e-5)
    assert result.overall["delta1"] == pytest.approx(1.0)
    for row in result.per_sequence:
        seq = [dataset[i] for i in range(len(dataset))
               if dataset[i]["sequence_index"] == row["sequence_index"]]
        gts = torch.stack([item["depth_m"][item["valid"]] for item in seq])
        assert row["depth_min_m"] == pytest.approx(float(gts.min()))
        assert row["depth_max_m"] == pytest.approx(float(gts.max()))
        span = row["depth_max_m"] - row["depth_min_m"]
        assert row["norm_rmse"] == pytest.approx(row["rmse"] / span, rel=1e-5)
    # the three sequences span 1, 2 and 4 m with errors proportional to depth: in metres the
    # farthest one dominates, normalised they are comparable
    rmse = [row["rmse"] for row in result.per_sequence]
    norm = [row["norm_rmse"] for row in result.per_sequence]
    assert rmse[2] / rmse[0] > 3.5 and norm[2] / norm[0] < 1.5


def test_temporal_stability_separates_flicker_from_a_steady_bias():
    """A prediction off by a constant factor is wrong but stable along the flow; one that
    flickers by +-10 % between frames has a relative temporal error of 0.2."""
    dataset = moving_set()
    steady = evaluate_dataset(lambda b: 1.1 * b["depth_m"].float(), dataset, dataset,
                              progress=False).overall
    assert steady["absrel"] == pytest.approx(0.1, rel=1e-5)
    assert steady["temporal_err_rel"] == pytest.approx(0.0, abs=1e-4)
    # the true change along the flow is zero (the plane only translates in the image)
    assert steady["temporal_change_gt_rel"] == pytest.approx(0.0, abs=1e-5)

    def flicker(batch):
        sign = 1.0 if int(batch["frame_index"][0]) % 2 == 0 else -1.0
        return (1.0 + 0.1 * sign) * batch["depth_m"].float()

    flickering = evaluate_dataset(flicker, dataset, dataset, progress=False).overall
    assert flickering["temporal_err_rel"] == pytest.approx(0.2, rel=1e-3)
    assert flickering["num_pairs"] == 4 and 0.5 < flickering["temporal_coverage"] <= 1.0


def test_static_sequences_get_no_temporal_metrics():
    result = evaluate_dataset(oracle, accuracy_set(), accuracy_set(), progress=False)
    static = result.by_motion["static"]
    assert "temporal_err_m" not in static and static["num_images"] == 4
    # sequence 2 is dynamic, but its two items are not consecutive windows with flow
    assert result.by_motion["dynamic"]["num_images"] == 2


def test_error_by_depth_bins():
    bins = ErrorByDepth([0.0, 1.0, 2.0, 4.0])
    gt = torch.tensor([0.5, 1.5, 1.5, 3.0, 5.0]).view(1, 1, 1, 5)
    pred = gt + torch.tensor([0.1, 0.2, -0.2, 0.3, 1.0]).view(1, 1, 1, 5)
    bins.add(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    table = bins.table()
    assert table["count"] == [1.0, 2.0, 1.0]  # 5.0 m is outside the bins
    assert table["mae"] == pytest.approx([0.1, 0.2, 0.3])
    assert table["rmse"] == pytest.approx([0.1, 0.2, 0.3])
    assert table["absrel"] == pytest.approx([0.2, 0.2 / 1.5, 0.1])


# --------------------------------------------------------------------------------------------
# models through the harness


def test_fixed_size_models_run_on_stitched_tiles():
    """Tiling equals running the model once when the model is local (a per-pixel function)."""
    def per_pixel(frames, focus, camera):
        return frames[:, -1, :1] * focus[:, -1].view(-1, 1, 1, 1)

    frames = torch.rand(2, 3, 3, 64, 96)
    focus = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert torch.equal(_tiled(per_pixel, frames, focus, torch.zeros(2, 3), 32, 32),
                       per_pixel(frames, focus, None))


def test_zoo_models_run_on_frames_of_any_size():
    """Padding to the encoder's multiple and tiling for fixed-size models are transparent."""
    batch = {"frames": torch.rand(1, 4, 3, 40, 50), "focus_distance_m": torch.tensor([[0.5, 0.8, 1.2, 2.0]]),
             "camera": CAMERA[None]}
    for name in ("ddffnet_test", "lstm_ddff_test", "recurrent_ae_test", "poolnet_test"):
        torch.manual_seed(0)
        depth = model_predictor(models.create(name))(batch)
        assert depth.shape == (1, 1, 40, 50), name
        assert torch.isfinite(depth).all() and (depth > 0).all(), name


@pytest.fixture(scope="module")
def tiny_test_dir(tmp_path_factory) -> Path:
    """A tiny generated dataset (configs/data/tiny.yaml: 4 sequences of 64x64, one dynamic)."""
    from focaldepth.generate.runner import run_generate

    out = tmp_path_factory.mktemp("data") / "tiny"
    run_generate(Path(__file__).resolve().parents[1] / "configs" / "data" / "tiny.yaml", out,
                 progress=False)
    return out


def test_consecutive_windows_follow_the_sweep_in_order(tiny_test_dir):
    from focaldepth.evaluate import open_test_set

    windows = open_test_set(tiny_test_dir, num_frames=4, sample="windows")
    records = windows.base.records
    dynamic = [r for r in records if r["is_dynamic"]]
    assert dynamic and len(windows) == sum(r["num_frames"] - 3 for r in dynamic)
    first, second = windows[0], windows[1]
    assert first["sequence_index"] == second["sequence_index"]
    assert (first["frame_index"], second["frame_index"]) == (3, 4)
    # window t+1 = window t shifted by one frame
    assert torch.equal(first["frames"][1:], second["frames"][:-1])
    assert torch.equal(first["focus_distance_m"][1:], second["focus_distance_m"][:-1])
    assert second["flow"].abs().max() > 0  # the reference frame moved


def test_oracle_on_generated_data(tiny_test_dir):
    """Ground truth as the prediction: zero error and perfect accuracy in metres and
    normalised, zero temporal error along the generator's flow, on real generated items."""
    from focaldepth.evaluate import open_test_set, scene_depth_ranges

    accuracy = open_test_set(tiny_test_dir, num_frames=4, sample="ramp")
    windows = open_test_set(tiny_test_dir, num_frames=4, sample="windows")
    result = evaluate_dataset(oracle, accuracy, windows,
                              depth_ranges=scene_depth_ranges(accuracy), progress=False)
    overall = result.overall
    assert overall["rmse"] == 0.0 and overall["norm_rmse"] == 0.0
    assert overall["delta1"] == 1.0 and overall["norm_delta1"] == 1.0
    assert overall["temporal_err_m"] == 0.0 and overall["num_pairs"] == len(windows) - 1
    for row in result.per_sequence:  # normalised by the scene's range: GT inside [0, 1]
        record = next(r for r in accuracy.records if r["index"] == row["sequence_index"])
        assert row["depth_min_m"] == record["params"]["near_m"]


def test_confidence_section_ranks_errors_on_generated_data(tiny_test_dir, tmp_path):
    """A predictor with a known error pattern and confidence: informative confidence gives
    AUSE 0 and the oracle's best half; inverted confidence a rising curve. Existing metric
    keys are untouched, and a depth-only predictor adds no confidence section."""
    from focaldepth.evaluate import open_test_set

    accuracy = open_test_set(tiny_test_dir, num_frames=4, sample="ramp")

    def noisy(batch, sign):
        gt = batch["depth_m"].float()
        g = torch.Generator().manual_seed(int(batch["sequence_index"][0]))
        rel_error = 0.3 * torch.rand(gt.shape, generator=g)
        return {"depth_m": gt * (1 + rel_error), "confidence": sign * rel_error}

    good = evaluate_dataset(lambda b: noisy(b, -1.0), accuracy, progress=False)
    bad = evaluate_dataset(lambda b: noisy(b, 1.0), accuracy, progress=False)
    conf = good.confidence["all"]
    assert conf["num_images"] == len(accuracy)
    assert conf["ause_absrel"] == pytest.approx(0.0, abs=1e-9)
    assert conf["absrel_top50"] == pytest.approx(conf["absrel_oracle_top50"])
    assert conf["absrel_all"] == pytest.approx(good.overall["absrel"], rel=1e-5)
    assert conf["absrel_all"] == pytest.approx(0.15, abs=0.01)  # mean of U(0, 0.3)
    rising = bad.confidence["all"]["sparsification_absrel"]
    assert all(b > a for a, b in itertools.pairwise(rising))
    assert bad.confidence["all"]["absrel_top50"] > conf["absrel_all"]
    summary = build_summary(good, model={"source": "noisy", "name": "noisy"},
                            data={"root": str(tiny_test_dir), "split": None},
                            protocol={"num_frames": 4})
    assert summary["confidence"]["ause_absrel"] == pytest.approx(0.0, abs=1e-9)
    assert set(summary["all"]) == {"metres", "normalised", "temporal", "counts"}
    write_outputs(tmp_path / "out", good, summary)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["confidence"]["by_motion"]["static"]["num_images"] > 0
    depth_only = evaluate_dataset(oracle, accuracy, progress=False)
    assert depth_only.confidence == {}
    assert "confidence" not in build_summary(depth_only, model={"source": "o"}, data={},
                                             protocol={})


def test_model_predictor_passes_confidence_through_tiles():
    """with_confidence returns the model's confidence, stitched like depth for tiled models."""
    batch = {"frames": torch.rand(1, 4, 3, 40, 50), "focus_distance_m": torch.linspace(
        0.5, 2.0, 4)[None], "camera": CAMERA[None]}
    out = model_predictor(models.create("sweepnet_test"), with_confidence=True)(batch)
    assert out["depth_m"].shape == out["confidence"].shape == (1, 1, 40, 50)
    assert ((out["confidence"] >= 0) & (out["confidence"] <= 1)).all()
    plain = model_predictor(models.create("sweepnet_test"))(batch)
    assert isinstance(plain, torch.Tensor) and plain.shape == (1, 1, 40, 50)

    def two_maps(frames, focus, camera):
        return torch.cat([frames[:, -1, :1], frames[:, -1, 1:2]], 1)

    frames = torch.rand(2, 3, 3, 64, 64)
    stitched = _tiled(two_maps, frames, torch.zeros(2, 3), torch.zeros(2, 3), 32, 32)
    assert torch.equal(stitched, frames[:, -1, :2])


def test_evaluate_command_writes_all_outputs(tiny_test_dir, tmp_path, capsys):
    """`focaldepth evaluate` on an exported model and on the classical baseline."""
    checkpoint = tmp_path / "poolnet_test.pt"
    models.save(models.create("poolnet_test"), checkpoint,
                config={"data": {"num_frames": 4}, "model": {"name": "poolnet_test"}})
    records = [json.loads(line) for line in (tiny_test_dir / "manifest.jsonl").open()]
    pairs = sum(r["num_frames"] - 4 for r in records if r["is_dynamic"])
    for name, source in (("model", str(checkpoint)), ("classical", "classical")):
        out = tmp_path / name
        assert run_cli("evaluate", "--checkpoint", source, "--data", str(tiny_test_dir),
                       "--out", str(out)) == 0
        summary = json.loads((out / "metrics.json").read_text())
        metres = summary["all"]["metres"]
        assert all(math.isfinite(metres[k]) for k in ("mse", "rmse", "absrel", "delta1")), name
        assert 0.0 <= metres["delta1"] <= 1.0 and metres["rmse"] > 0
        assert summary["all"]["counts"] == {"num_images": len(records), "num_pairs": pairs}
        assert "scene depth range" in summary["protocol"]["normalisation"]
        for file in ("per_sequence.csv", "metrics.md", "error_vs_depth.png", "sheet.png"):
            assert (out / file).is_file(), (name, file)
        with (out / "per_sequence.csv").open() as handle:
            assert len(list(csv.DictReader(handle))) == len(records)
    # the classical baseline outputs a confidence: metrics.json scores it (poolnet has none)
    confidence = json.loads((tmp_path / "classical" / "metrics.json").read_text())["confidence"]
    assert confidence["num_images"] == len(records) and confidence["steps"] == 20
    assert len(confidence["sparsification_absrel"]) == len(confidence["fraction_removed"]) == 20
    assert confidence["absrel_all"] == pytest.approx(
        json.loads((tmp_path / "classical" / "metrics.json").read_text())["all"]["metres"]["absrel"])
    assert confidence["absrel_oracle_top50"] < confidence["absrel_all"]
    assert confidence["ause_absrel"] >= 0 and set(confidence["by_motion"]) == {"static", "dynamic"}
    assert "Confidence (sparsification" in (tmp_path / "classical" / "metrics.md").read_text()
    assert "confidence" not in json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert "δ1" in capsys.readouterr().out
    assert run_cli("evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--data",
                   str(tiny_test_dir), "--out", str(tmp_path / "x")) == 2
    assert "missing.pt" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# tables


def _write_results(path: Path, rmse: float, norm_mse: float, delta1: float) -> None:
    group = {"metres": {"rmse": rmse, "absrel": 0.05, "delta1": delta1, "bumpiness": 1.0,
                        "rmse_log": 0.1},
             "normalised": {"mse": norm_mse, "rmse": math.sqrt(norm_mse), "delta1": delta1},
             "temporal": {"temporal_err_m": 0.01}, "counts": {"num_images": 3, "num_pairs": 2}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"all": group, "by_motion": {"dynamic": group}}))


def test_tables_come_from_results_files_and_the_published_data(tmp_path):
    from focaldepth.tables import build_tables, load_published

    root = Path(__file__).resolve().parents[1]
    published = load_published(root / "configs" / "seed_published.yaml")
    assert published["rows"]["lstm_ddff_small"]["delta1"] == pytest.approx(0.9498)
    (tmp_path / "seed_published.yaml").write_text(
        (root / "configs" / "seed_published.yaml").read_text())
    _write_results(tmp_path / "results" / "a" / "metrics.json", 0.123, 2.5e-3, 0.8765)
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "summary.json").write_text(
        json.dumps({"global_step": 1500, "wall_time_s": 420.0}))
    spec = {"published": "seed_published.yaml", "tables": [
        {"name": "seed", "kind": "seed", "rows": [
            {"label": "LSTM-DDFF", "results": "results/a/metrics.json", "run": "runs/a",
             "published": "lstm_ddff_small"},
            {"label": "DDFF", "results": "results/missing/metrics.json", "published": "ddff"}]},
        {"name": "motion", "kind": "ablation", "group": "dynamic", "rows": [
            {"label": "static+dynamic", "results": "results/a/metrics.json"}]}]}
    spec_path = tmp_path / "tables.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    text = build_tables(spec_path, root=tmp_path)
    lstm_row = next(line for line in text.splitlines() if line.startswith("| LSTM-DDFF"))
    assert "2.50e-03" in lstm_row and "87.65%" in lstm_row  # ours (normalised)
    assert "1.1e-03" in lstm_row and "94.98%" in lstm_row  # the seed's, from the data file
    assert "| 1500 | 7.0 |" in lstm_row  # steps and training minutes from the run
    ddff_row = next(line for line in text.splitlines() if line.startswith("| DDFF"))
    assert "1.8e-03" in ddff_row and "not run yet" in text
    assert "temporal Δ err (m)" in text and "0.01" in text
    with pytest.raises(UserError, match="does not exist"):
        build_tables(spec_path, root=tmp_path, strict=True)
    spec["tables"][0]["rows"][0]["typo"] = 1
    spec_path.write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match="unknown key 'typo'"):
        build_tables(spec_path, root=tmp_path)


def test_shipped_table_spec_matches_the_experiment_configs():
    """Every row of configs/tables.yaml names an experiment config that exists (or the
    classical baseline), and the spec builds without results present."""
    from focaldepth.tables import build_tables

    root = Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((root / "configs" / "tables.yaml").read_text())
    for table in spec["tables"]:
        for row in table["rows"]:
            # results / run: one file, or a list of files (repeated runs, e.g. seeds)
            results = row["results"] if isinstance(row["results"], list) else [row["results"]]
            names = [Path(path).parent.name for path in results]
            for name in names:
                assert name == "classical" or (root / "configs" / "train" / f"{name}.yaml").is_file()
            if "run" in row:
                runs = row["run"] if isinstance(row["run"], list) else [row["run"]]
                assert [Path(run).name for run in runs] == names
    text = build_tables(root / "configs" / "tables.yaml", root=root / "nonexistent")
    assert text.count("### ") == len(spec["tables"])


# --------------------------------------------------------------------------------------------
# optical-flow alignment (--align: what `focaldepth predict` does to each window)


def _smooth_texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A band-limited random RGB texture (3, H, W) in [0, 1]: what optical flow can track."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, height // 4, width // 4, generator=g)
    return torch.nn.functional.interpolate(noise, size=(height, width), mode="bicubic",
                                           align_corners=False)[0].clamp(0, 1)


def test_flow_alignment_undoes_a_known_translation():
    """Frame k is the reference shifted by (3 - k) px right: after alignment every frame lines
    up with the last one (the interior; borders are replicated), which the raw stack does not."""
    from focaldepth.evaluate import flow_align_frames

    texture = _smooth_texture(80, 96)
    frames = torch.stack([torch.roll(texture, shifts=3 - k, dims=-1) for k in range(4)])
    aligned = flow_align_frames(frames)
    assert aligned.shape == frames.shape and aligned.dtype == frames.dtype
    assert torch.equal(aligned[-1], (frames[-1] * 255).round() / 255)  # reference untouched
    interior = (slice(None), slice(12, -12), slice(12, -12))
    for k in range(3):
        raw_error = (frames[k] - frames[-1])[interior].abs().mean()
        aligned_error = (aligned[k] - frames[-1])[interior].abs().mean()
        assert raw_error > 0.02, k
        assert aligned_error < 0.2 * raw_error, (k, float(aligned_error), float(raw_error))


def test_align_changes_moving_windows_and_metrics_json_records_it(tiny_test_dir, tmp_path):
    """On the generated dynamic sequence alignment really changes what the model sees (earlier
    frames move onto the current one); metrics.json says whether frames were aligned, and the
    dynamic-scene numbers differ while the raw run stays the default."""
    from focaldepth.evaluate import FlowAlignedFrames, open_test_set

    windows = open_test_set(tiny_test_dir, num_frames=5, sample="windows")
    aligned_windows = FlowAlignedFrames(windows)
    assert len(aligned_windows) == len(windows) and aligned_windows.windows is windows.windows
    raw, aligned = windows[0], aligned_windows[0]
    assert bool(raw["is_dynamic"]) and torch.equal(raw["depth_m"], aligned["depth_m"])
    assert torch.equal(aligned["frames"][-1], raw["frames"][-1])  # the current frame is kept
    first_raw = (raw["frames"][0] - raw["frames"][-1]).abs().mean()
    first_aligned = (aligned["frames"][0] - raw["frames"][-1]).abs().mean()
    assert (aligned["frames"][0] - raw["frames"][0]).abs().mean() > 0.02  # input changed
    assert first_aligned < 0.6 * first_raw  # and it now lines up better with the current frame

    summaries = {}
    for flag in ("--align", "--no-align", None):
        out = tmp_path / str(flag)
        args = ["evaluate", "--checkpoint", "classical", "--data", str(tiny_test_dir), "--out",
                str(out), "--num-frames", "5", "--sheet", "0"]
        assert run_cli(*args, *([flag] if flag else [])) == 0
        summaries[flag] = json.loads((out / "metrics.json").read_text())
    assert summaries["--align"]["protocol"]["aligned"] is True
    assert "DIS" in summaries["--align"]["protocol"]["alignment"]
    assert summaries["--no-align"]["protocol"]["aligned"] is False
    assert summaries[None]["protocol"]["aligned"] is False  # default: raw, as the tables
    assert "flow-aligned" in (tmp_path / "--align" / "metrics.md").read_text()
    aligned_dyn = summaries["--align"]["by_motion"]["dynamic"]
    raw_dyn = summaries["--no-align"]["by_motion"]["dynamic"]
    assert aligned_dyn["metres"]["rmse"] != pytest.approx(raw_dyn["metres"]["rmse"], rel=1e-3)
    assert aligned_dyn["counts"] == raw_dyn["counts"]
    assert summaries[None]["by_motion"] == summaries["--no-align"]["by_motion"]


def test_alignment_of_a_static_stack_is_near_identity(tiny_test_dir):
    """A static scene seen by a still camera: frames differ only in focus, so the flow is
    (nearly) zero and the aligned stack is the raw one to within about one grey level on
    average, far less than the motion of the dynamic sequence changes it."""
    from focaldepth.evaluate import FlowAlignedFrames, open_test_set

    stacks = open_test_set(tiny_test_dir, num_frames=5, sample="ramp")
    aligned_stacks = FlowAlignedFrames(stacks)
    static = [i for i, record in enumerate(stacks.records) if not record["is_dynamic"]]
    assert static
    for index in static:
        raw, aligned = stacks[index]["frames"], aligned_stacks[index]["frames"]
        change = (aligned - raw).abs().mean(dim=(1, 2, 3))
        assert change[-1] == 0.0
        assert float(change.max()) < 2.0 / 255.0, (index, change.tolist())
        assert float((aligned - raw).abs().max()) < 0.5


def test_shipped_model_names_resolve_to_their_files(tmp_path):
    from focaldepth.evaluate import resolve_checkpoint
    from focaldepth.predict import shipped_model_names

    assert "sweepnet_default" in shipped_model_names()
    path = resolve_checkpoint("sweepnet_default")
    assert path.is_file() and path.name == "sweepnet_default.pt"
    local = tmp_path / "sweepnet_default"  # a file of that name wins over the shipped model
    local.write_bytes(b"")
    assert resolve_checkpoint(str(local)) == local
    assert resolve_checkpoint(str(tmp_path / "nope.pt")) == tmp_path / "nope.pt"
    import hashlib

    from focaldepth.evaluate import load_model_under_test

    under_test = load_model_under_test("sweepnet_default")
    assert under_test.source == "sweepnet_default" and under_test.num_frames
    assert under_test.description["file"] == str(path)
    assert under_test.description["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
