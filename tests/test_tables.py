"""Results tables with repeated runs (seed repeats): mean ± sample std over a list of files.

The single-file behaviour (seed and ablation tables, published numbers, missing runs) is
tested in tests/test_evaluate.py; here: rows whose ``results`` / ``run`` are lists."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from focaldepth.errors import UserError
from focaldepth.tables import Spread, build_tables

ROOT = Path(__file__).resolve().parents[1]


def _write_metrics(path: Path, rmse_m: float, absrel: float, delta1: float,
                   temporal_err_m: float = 0.01, global_step: int = 900) -> str:
    """A hand-made ``metrics.json`` as ``focaldepth evaluate`` writes it (only the keys the
    tables read); returns its path relative to the table root."""
    group = {"metres": {"rmse": rmse_m, "absrel": absrel, "delta1": delta1, "bumpiness": 2.0,
                        "rmse_log": 0.5},
             "normalised": {"mse": rmse_m ** 2 / 100, "rmse": rmse_m / 10, "delta1": delta1 / 2},
             "temporal": {"temporal_err_m": temporal_err_m},
             "counts": {"num_images": 3, "num_pairs": 2}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": {"global_step": global_step}, "all": group,
                                "by_motion": {"dynamic": group}}))
    return str(path.relative_to(path.parents[2]))


def _write_run(folder: Path, global_step: int, wall_time_s: float) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps({"global_step": global_step,
                                                     "wall_time_s": wall_time_s}))
    return str(folder.relative_to(folder.parents[1]))


def _row(text: str, label: str) -> list[str]:
    """The cells of the markdown row whose first cell is ``label``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _header(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("| model |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.fixture
def three_seeds(tmp_path: Path) -> dict[str, list[str]]:
    """Three runs with RMSE 1, 2, 4 m, AbsRel 0.1, 0.2, 0.6, δ1 50/60/70 %, temporal error
    0.01/0.02/0.03 m, trained for 1000 steps in 1, 2 and 3 minutes."""
    values = [(1.0, 0.1, 0.5, 0.01, 60.0), (2.0, 0.2, 0.6, 0.02, 120.0),
              (4.0, 0.6, 0.7, 0.03, 180.0)]
    results, runs = [], []
    for seed, (rmse, absrel, delta1, temporal, wall_s) in enumerate(values):
        results.append(_write_metrics(tmp_path / "results" / f"m_seed{seed}" / "metrics.json",
                                      rmse, absrel, delta1, temporal))
        runs.append(_write_run(tmp_path / "runs" / f"m_seed{seed}", 1000, wall_s))
    return {"results": results, "run": runs}


def _spec(tmp_path: Path, tables: list[dict]) -> Path:
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump({"tables": tables}, allow_unicode=True))
    return path


def test_spread_is_the_sample_standard_deviation():
    spread = Spread((1.0, 2.0, 4.0))
    assert spread.mean == pytest.approx(7 / 3)
    # ddof = 1: sqrt(sum((x - mean)^2) / (n - 1)) = sqrt(14/3 / 2); ddof = 0 would be 1.247
    assert spread.std == pytest.approx(math.sqrt(7 / 3)) and spread.std == pytest.approx(1.5275, abs=1e-4)
    assert Spread((3.0,)).std is None


def test_list_row_shows_mean_and_sample_std_and_notes_n(tmp_path, three_seeds):
    single = _write_metrics(tmp_path / "results" / "single" / "metrics.json", 2.5, 0.3, 0.55)
    spec = _spec(tmp_path, [
        {"name": "seeds", "kind": "seed", "rows": [
            {"label": "three seeds", **three_seeds},
            {"label": "one run", "results": single}]},
        {"name": "dynamic", "group": "dynamic", "rows": [
            {"label": "three seeds", "results": three_seeds["results"]}]}])
    text = build_tables(spec, root=tmp_path)
    seed_table, dynamic_table = text.split("### dynamic")
    header = _header(seed_table)
    cells = dict(zip(header, _row(seed_table, "three seeds")))
    # RMSE 1, 2, 4 m: mean 2.33, sample std 1.53 (population std would print 1.25)
    assert cells["RMSE (m)"] == "2.33 ± 1.53"
    # AbsRel 0.1, 0.2, 0.6: mean 0.3, sample std sqrt(0.14 / 2) = 0.265
    assert cells["AbsRel"] == "0.300 ± 0.265"
    assert cells["δ<1.25 (m)"] == "60.00% ± 10.00%"
    assert cells["Acc. δ<1.25 (norm.)"] == "30.00% ± 5.00%"
    assert cells["steps"] == "1000"  # the same budget: one value, not "1000 ± 0"
    assert cells["train min"] == "2.0 ± 1.0"
    assert "three seeds: mean ± sample standard deviation (ddof = 1) over n = 3 runs" in seed_table
    # A single-file row is printed as before: plain values, no ± and no n note.
    one = dict(zip(header, _row(seed_table, "one run")))
    assert one["RMSE (m)"] == "2.5" and one["AbsRel"] == "0.300" and one["steps"] == "900"
    assert "one run: mean" not in seed_table
    # Temporal stability (dynamic group) is aggregated the same way: 0.01, 0.02, 0.03 m.
    dynamic = dict(zip(_header(dynamic_table), _row(dynamic_table, "three seeds")))
    assert dynamic["temporal Δ err (m)"] == "0.02 ± 0.01"
    assert dynamic["steps"] == "900"  # no run list: the evaluated checkpoints' step


def test_single_file_rows_are_unchanged_by_a_list_row_beside_them(tmp_path, three_seeds):
    single = {"label": "one run", "results": three_seeds["results"][1], "run": three_seeds["run"][1]}
    alone = build_tables(_spec(tmp_path, [{"name": "t", "rows": [single]}]), root=tmp_path)
    both = build_tables(_spec(tmp_path, [{"name": "t", "rows": [single, {"label": "three",
                                                                         **three_seeds}]}]),
                        root=tmp_path)
    assert _row(alone, "one run") == _row(both, "one run")
    assert _row(alone, "one run")[1:] == ["2", "0.200", "0.500", "60.00%", "4.00e-02", "30.00%",
                                          "2", "1000", "2.0"]


def test_steps_that_differ_between_runs_show_their_range(tmp_path, three_seeds):
    _write_run(tmp_path / "runs" / "m_seed2", 800, 180.0)
    text = build_tables(_spec(tmp_path, [{"name": "t", "rows": [{"label": "x", **three_seeds}]}]),
                        root=tmp_path)
    assert dict(zip(_header(text), _row(text, "x")))["steps"] == "800–1000"


def test_missing_file_in_a_list_is_named(tmp_path, three_seeds):
    missing = "results/m_seed3/metrics.json"
    row = {"label": "four seeds", "results": three_seeds["results"] + [missing],
           "run": three_seeds["run"] + ["runs/m_seed3"]}
    spec = _spec(tmp_path, [{"name": "t", "rows": [row]}])
    text = build_tables(spec, root=tmp_path)
    assert f"four seeds: not run yet ({missing} missing); the row shows 3 of 4 runs" in text
    assert "over n = 3 runs" in text
    cells = dict(zip(_header(text), _row(text, "four seeds")))
    assert cells["RMSE (m)"] == "2.33 ± 1.53"  # the three runs that exist
    # One run lacks its training summary: steps and time fall back to the evaluated checkpoints
    # rather than averaging the wall time over fewer runs than the row.
    assert cells["steps"] == "900" and "train min" not in cells
    with pytest.raises(UserError, match="results/m_seed3/metrics.json do not exist") as error:
        build_tables(spec, root=tmp_path, strict=True)
    assert str(spec) in str(error.value)


def test_malformed_lists_are_rejected(tmp_path):
    for bad in ([], [1, 2], {"a": 1}):
        spec = _spec(tmp_path, [{"name": "t", "rows": [{"label": "x", "results": bad}]}])
        with pytest.raises(UserError, match="'results' must be a path or a non-empty list"):
            build_tables(spec, root=tmp_path)


def test_shipped_seed_repeats_table_lists_existing_experiment_configs():
    """The seed_repeats rows name the seed-0 runs and configs that differ from them only in
    seed and name, and the whole shipped spec builds without any results present."""
    from focaldepth.train.config import differences, load_config

    spec = yaml.safe_load((ROOT / "configs" / "tables.yaml").read_text())
    table = next(t for t in spec["tables"] if t["name"] == "seed_repeats")
    for row in table["rows"]:
        names = [Path(path).parent.name for path in row["results"]]
        assert [Path(path).name for path in row["run"]] == names
        base = load_config(ROOT / "configs" / "train" / f"{names[0]}.yaml")
        seeds = [base.seed]
        for name in names[1:]:
            config = load_config(ROOT / "configs" / "train" / f"{name}.yaml")
            assert differences(base.to_dict(), config.to_dict()) == ["name", "seed"], name
            seeds.append(config.seed)
        assert len(set(seeds)) == len(seeds) == 3
    text = build_tables(ROOT / "configs" / "tables.yaml", root=ROOT / "nonexistent")
    assert text.count("### ") == len(spec["tables"])
