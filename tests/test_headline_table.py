"""tools/headline_table.py: the README's headline table is read from the result files, with the
model names taken from the files, and follows a new default model when its results arrive."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


headline = _tool("headline_table")


def _metrics(path: Path, absrel: float, delta1: float, group: str = "static") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = {"metres": {"absrel": absrel, "delta1": delta1}, "counts": {"num_images": 7}}
    path.write_text(json.dumps({"protocol": {"num_frames": 5}, "all": block, "by_motion": {group: block}}))
    return str(path.relative_to(path.parents[3]))


def _project(root: Path, rows: list[tuple[str, float, float]]) -> None:
    spec_rows = [{"label": label, "results": _metrics(root / "results" / "default" / label.replace(" ", "_")
                                                      / "metrics.json", a, d)} for label, a, d in rows]
    spec = {"tables": [{"name": "t", "title": "Held-out test set (data/cpu_test), static", "group": "static",
                        "rows": spec_rows}]}
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "tables_default.yaml").write_text(yaml.safe_dump(spec))


def test_roles_come_from_the_labels():
    assert headline.role_of("SweepNet default") == ("default", 0)
    assert headline.role_of("sweepnet_default") == ("default", 0)
    assert headline.role_of("SweepNet v3") == ("anchor", 3)
    assert headline.role_of("SweepNet v6") == ("previous", 6)
    assert headline.role_of("sweepnet_default_v12") == ("previous", 12)
    assert headline.role_of("Classical DFF") == ("classical", 0)
    assert headline.role_of("PoolNet") is None
    assert headline.pick_roles(["SweepNet default", "SweepNet v2", "SweepNet v3", "Classical DFF"]) == {
        "default": "SweepNet default", "previous": "SweepNet v2", "anchor": "SweepNet v3",
        "classical": "Classical DFF"}


def test_a_new_default_updates_the_table(tmp_path):
    _project(tmp_path, [("SweepNet default", 0.30, 0.60), ("SweepNet v1", 0.40, 0.50), ("Classical DFF", 0.70, 0.30)])
    before = headline.build(tmp_path)
    assert "AbsRel SweepNet v1" in before and "**0.300**" in before and "0.700" in before
    # another engineer ships a new default: its results become "SweepNet default", the old one "SweepNet v2"
    _project(tmp_path, [("SweepNet default", 0.25, 0.65), ("SweepNet v2", 0.30, 0.60), ("SweepNet v1", 0.40, 0.50),
                        ("Classical DFF", 0.70, 0.30)])
    after = headline.build(tmp_path)
    assert "AbsRel SweepNet v2" in after and "SweepNet v1" not in after
    assert "**0.250**" in after and "| 0.300 |" in after and "**65.0%**" in after
    # no RGB-D runs in this tree: only the synthetic command is listed
    assert "[A]" in after and "[B]" not in after


def test_committed_headline_and_readme_are_current():
    """results/headline.md matches the committed result files, and README/docs match their sources."""
    assert headline.build(ROOT) == (ROOT / headline.OUT).read_text(), \
        "results/headline.md is stale: run python tools/headline_table.py && python tools/update_readme.py"
    check = subprocess.run([sys.executable, str(ROOT / "tools" / "update_readme.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
