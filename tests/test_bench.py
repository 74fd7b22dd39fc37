"""Benchmarks run and report their figures beside the reference workload (smoke size)."""

import json

import pytest
from typer.testing import CliRunner

from focaldepth.cli import app


def test_render_benchmark_quick_writes_json_with_reference(tmp_path):
    out = tmp_path / "render.json"
    result = CliRunner().invoke(app, ["benchmark", "render", "--quick", "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["reference"]["seconds"] > 0
    case = data["results"][0]
    assert case["frames_per_s"] > 0 and case["frame_time_over_reference"] > 0


def test_predict_benchmark_reports_constant_memory_fields(tmp_path):
    from focaldepth.bench.predict import run

    # smoke size: one tiny whole-command case instead of the 640x360 / 1080p ones
    result = run(sizes_hw=((48, 64),), num_frames=12, reference_runs=1, command_cases=((48, 64, 5, 8, {}), (48, 64, 8, 10, {"max_slices": 4})),
                 stack_cases=((48, 64, 6),))
    case = result["results"][0]
    stack = result["command_results"][-1]  # one sweep in a folder: a tripod stack, observed once
    assert stack["mode"] == "stack" and stack["stack_still"] is True and stack["observations_computed"] == 1
    assert stack["frames_per_s_end_to_end"] > 0 and stack["name"].startswith("stack 64x48, 6 frames")
    assert result["command_results"][1]["name"] == "command 64x48 window 8 --max-slices 4"
    assert case["frames_per_s"] > 0 and case["window"] == 5
    assert case["rss_at_end_mib"] > 0 and case["frame_time_over_reference"] > 0
    # every case is also divided by a reference run timed right after it (drifting VMs)
    for row in [case, *result["command_results"]]:
        assert row["adjacent_reference_s"] > 0
        assert row["frame_time_over_adjacent_reference"] == pytest.approx(
            (row.get("latency_median_s") or 1.0 / row["frames_per_s_end_to_end"]) / row["adjacent_reference_s"])
