"""Results tables built from run outputs, never typed by hand.

A *table spec* (YAML, e.g. ``configs/tables.yaml``) lists tables; each row names the
``metrics.json`` that ``focaldepth evaluate`` wrote (and optionally the training run folder,
for its step budget and wall time) and, for the seed comparison, the key of the seed's
published row in ``configs/seed_published.yaml``::

    published: seed_published.yaml        # relative to the spec file
    tables:
      - name: seed_comparison
        title: Architecture comparison (the seed's table, on our data)
        kind: seed                         # seed | ablation
        group: all                         # all | static | dynamic (which images to report)
        rows:
          - {label: DDFFNet, results: results/ddffnet/metrics.json, run: runs/ddffnet,
             published: ddffnet_small}

``kind: seed`` shows our normalised-depth MSE / RMS / accuracy beside the published ones and
our metric-depth RMSE / AbsRel / δ1; ``kind: ablation`` shows metric and normalised errors
(and temporal stability when the group has it). Paths in a spec are relative to the current
directory (the project root), so the same spec works from the CLI and from tests with
``root=``. Missing results are shown as "not run" (or raise with ``strict=True``).

Repeated runs (e.g. seeds) are one row whose ``results`` (and ``run``) is a *list* of files::

          - {label: "PoolNet, 3 seeds", results: [results/poolnet_cpu/metrics.json,
             results/poolnet_cpu_seed1/metrics.json, results/poolnet_cpu_seed2/metrics.json]}

Each cell of such a row is the mean ± the sample standard deviation (ddof = 1) over the runs,
so a reader can tell a difference between rows from seed noise, and the table notes n. Integer
columns (steps) show the common value, or the min–max range when the runs differ. A missing
file in a list is named in the notes and the row aggregates the runs that exist (``strict``
raises instead). A single-file row is printed exactly as before.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from focaldepth.errors import UserError
from focaldepth.evaluate import format_value
from focaldepth.io.atomic import atomic_write_text

TABLE_KINDS = ("seed", "ablation")
GROUPS = ("all", "static", "dynamic")
ROW_KEYS = {"label", "results", "run", "published", "group"}
TABLE_KEYS = {"name", "title", "kind", "group", "rows", "note"}
PUBLISHED_METRICS = ("mse", "rmse", "delta1")


@dataclass(frozen=True)
class Column:
    """One table column: where its value comes from and how it is printed."""

    header: str
    source: str  # "ours_m", "ours_norm", "ours_temporal", "published", "run"
    key: str
    fmt: str


SEED_COLUMNS = (
    Column("MSE (norm.)", "ours_norm", "mse", "{:.2e}"),
    Column("RMS (norm.)", "ours_norm", "rmse", "{:.3f}"),
    Column("Acc. δ<1.25 (norm.)", "ours_norm", "delta1", "{:.2%}"),
    Column("seed MSE", "published", "mse", "{:.1e}"),
    Column("seed RMS", "published", "rmse", "{:.3f}"),
    Column("seed Acc.", "published", "delta1", "{:.2%}"),
    Column("RMSE (m)", "ours_m", "rmse", "{:.3g}"),
    Column("AbsRel", "ours_m", "absrel", "{:.3f}"),
    Column("δ<1.25 (m)", "ours_m", "delta1", "{:.2%}"),
    Column("bump", "ours_m", "bumpiness", "{:.3g}"),
)
ABLATION_COLUMNS = (
    Column("RMSE (m)", "ours_m", "rmse", "{:.3g}"),
    Column("AbsRel", "ours_m", "absrel", "{:.3f}"),
    Column("RMSE-log", "ours_m", "rmse_log", "{:.3f}"),
    Column("δ<1.25", "ours_m", "delta1", "{:.2%}"),
    Column("MSE (norm.)", "ours_norm", "mse", "{:.2e}"),
    Column("Acc. (norm.)", "ours_norm", "delta1", "{:.2%}"),
    Column("bump", "ours_m", "bumpiness", "{:.3g}"),
)
TEMPORAL_COLUMN = Column("temporal Δ err (m)", "ours_temporal", "temporal_err_m", "{:.3g}")
RUN_COLUMNS = (Column("steps", "run", "global_step", "{:d}"),
               Column("train min", "run", "wall_time_min", "{:.1f}"))


@dataclass(frozen=True)
class Spread:
    """One metric over repeated runs (a list row): printed as mean ± sample std."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof = 1): the spread a new seed would show. None for a
        single run, where it is undefined."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise UserError("file not found", path)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserError(f"not valid YAML ({str(error).splitlines()[0]})", path) from None


def load_published(path: str | Path) -> dict[str, Any]:
    """The seed's published numbers (``configs/seed_published.yaml``): ``source``, ``protocol``
    and ``rows`` of ``{label, mse, rmse, delta1}`` with delta1 a fraction."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("rows"), dict) or "source" not in data:
        raise UserError("expected a mapping with 'source' and 'rows'", path)
    for key, row in data["rows"].items():
        missing = [m for m in ("label", *PUBLISHED_METRICS) if m not in (row or {})]
        if missing:
            raise UserError(f"published row {key!r} lacks {missing}", path)
        if not 0 <= float(row["delta1"]) <= 1:
            raise UserError(f"published row {key!r}: delta1 is a fraction in [0, 1]", path)
    return data


def _metrics_group(summary: Mapping[str, Any], group: str) -> Mapping[str, Any] | None:
    return summary.get("all") if group == "all" else summary.get("by_motion", {}).get(group)


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """Step budget and wall time of a training run (its ``summary.json``)."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {"global_step": int(data["global_step"]),
            "wall_time_min": float(data["wall_time_s"]) / 60.0}


def _results_sources(results: str, group: str, root: Path,
                     spec_path: Path) -> dict[str, Mapping[str, Any]]:
    """The value sources of one existing ``metrics.json`` (metric, normalised, temporal and the
    evaluated checkpoint's step)."""
    summary = json.loads((root / results).read_text())
    metrics = _metrics_group(summary, group)
    if metrics is None:
        raise UserError(f"{results} has no '{group}' group (no such sequences in its test set)",
                        spec_path)
    sources: dict[str, Mapping[str, Any]] = {
        "ours_m": metrics.get("metres", {}), "ours_norm": metrics.get("normalised", {}),
        "ours_temporal": metrics.get("temporal", {})}
    step = (summary.get("model") or {}).get("global_step")
    if step is not None:  # the evaluated checkpoint's step (no wall time)
        sources["run"] = {"global_step": step}
    return sources


def _spread_sources(per_run: Sequence[Mapping[str, Mapping[str, Any]]]
                    ) -> dict[str, dict[str, Spread]]:
    """Combine the sources of repeated runs key by key. A value missing (or not a number) in
    any run is left out of the row rather than averaged over fewer runs than the note says."""
    combined: dict[str, dict[str, Spread]] = {}
    if not per_run:
        return combined
    for source in set.intersection(*(set(run) for run in per_run)):
        keys = set.intersection(*(set(run[source]) for run in per_run))
        values = {key: [run[source][key] for run in per_run] for key in keys}
        combined[source] = {
            key: Spread(tuple(float(v) for v in vals)) for key, vals in values.items()
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)}
    return combined


def _list_row_values(row: Mapping[str, Any], group: str, root: Path, spec_path: Path,
                     strict: bool) -> tuple[dict[str, Mapping[str, Any]], list[str], int]:
    """The value sources of a repeated-runs row (``results`` and/or ``run`` a list), its notes
    and the number of runs aggregated."""
    label, notes = row["label"], []
    results = _as_list(row.get("results"))
    present = [path for path in results if (root / path).is_file()]
    missing = [path for path in results if path not in present]
    if missing and strict:
        raise UserError(f"row {label!r}: results file(s) {', '.join(missing)} do not exist "
                        "(run the experiments first)", spec_path)
    if missing:
        notes.append(f"{label}: not run yet ({', '.join(missing)} missing); the row shows "
                     f"{len(present)} of {len(results)} runs")
    per_run = [_results_sources(path, row.get("group", group), root, spec_path)
               for path in present]
    sources: dict[str, Mapping[str, Any]] = dict(_spread_sources(per_run))
    runs = [read_run(root / path) for path in _as_list(row.get("run"))]
    # The training summaries also have the wall time; used only when every run has one, so the
    # step and time cells cover the same runs (else: the evaluated checkpoints' steps).
    if runs and all(run is not None for run in runs):
        sources["run"] = _spread_sources([{"run": run} for run in runs])["run"]
    return sources, notes, len(present)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def _is_list_row(row: Mapping[str, Any]) -> bool:
    return isinstance(row.get("results"), list) or isinstance(row.get("run"), list)


def _row_values(row: Mapping[str, Any], group: str, published: Mapping[str, Any], root: Path,
                spec_path: Path, strict: bool) -> tuple[dict[str, Mapping[str, Any]], list[str]]:
    """The value sources of one row and notes (missing files)."""
    notes: list[str] = []
    sources: dict[str, Mapping[str, Any]] = {}
    if _is_list_row(row):
        sources, notes, runs = _list_row_values(row, group, root, spec_path, strict)
        if runs > 1:
            notes.append(f"{row['label']}: mean ± sample standard deviation (ddof = 1) over "
                         f"n = {runs} runs")
        elif runs == 1:
            notes.append(f"{row['label']}: a single run (n = 1), no spread")
    elif row.get("results"):
        if (root / row["results"]).is_file():
            sources = _results_sources(row["results"], row.get("group", group), root, spec_path)
        elif strict:
            raise UserError(f"results file {row['results']} does not exist (run the experiment "
                            "first)", spec_path)
        else:
            notes.append(f"{row['label']}: not run yet ({row['results']} missing)")
    if row.get("published"):
        key = row["published"]
        if key not in published.get("rows", {}):
            raise UserError(f"row {row['label']!r}: no published row {key!r}", spec_path)
        sources["published"] = published["rows"][key]
    if row.get("run") and not _is_list_row(row):  # the run's summary also has its wall time
        run = read_run(root / row["run"])
        if run is not None:
            sources["run"] = run
    return sources, notes


def _spread_cell(spread: Spread, column: Column) -> str:
    """Mean ± sample std of repeated runs; integer columns (steps) show the common value or
    the min–max range, since a fractional step count means nothing."""
    if not all(math.isfinite(v) for v in spread.values):
        return "–"
    if column.fmt == "{:d}":
        low, high = int(min(spread.values)), int(max(spread.values))
        return format_value(low, column.fmt) if low == high else f"{low}–{high}"
    mean = format_value(spread.mean, column.fmt)
    return mean if spread.std is None else f"{mean} ± {format_value(spread.std, column.fmt)}"


def _cell(sources: Mapping[str, Mapping[str, Any]], column: Column) -> str:
    value = sources.get(column.source, {}).get(column.key)
    if isinstance(value, Spread):
        return _spread_cell(value, column)
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    return format_value(float(value) if column.fmt != "{:d}" else int(value), column.fmt)


def render_table(table: Mapping[str, Any], published: Mapping[str, Any], root: Path,
                 spec_path: Path, strict: bool = False) -> str:
    """One table as markdown (title, table, notes)."""
    kind, group = table.get("kind", "ablation"), table.get("group", "all")
    columns: list[Column] = list(SEED_COLUMNS if kind == "seed" else ABLATION_COLUMNS)
    if kind == "ablation" and group == "dynamic":
        columns.append(TEMPORAL_COLUMN)
    rows, notes = [], []
    for row in table["rows"]:
        sources, row_notes = _row_values(row, group, published, root, spec_path, strict)
        rows.append((row["label"], sources))
        notes += row_notes
    if any("run" in sources for _, sources in rows):
        columns += [c for c in RUN_COLUMNS
                    if any(c.key in sources.get("run", {}) for _, sources in rows)]
    if kind == "seed":
        columns = [c for c in columns if c.source != "published"] if not any(
            "published" in s for _, s in rows) else columns
    lines = [f"### {table.get('title', table['name'])}", ""]
    if table.get("note"):
        lines += [str(table["note"]).strip(), ""]
    lines.append("| " + " | ".join(["model"] + [c.header for c in columns]) + " |")
    lines.append("|" + "---|" * (len(columns) + 1))
    for label, sources in rows:
        lines.append("| " + " | ".join([label] + [_cell(sources, c) for c in columns]) + " |")
    lines.append("")
    if kind == "seed" and any("published" in s for _, s in rows):
        lines += [f"Seed numbers: {published['source'].strip()} {published.get('protocol', '').strip()}",
                  ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    return "\n".join(lines)


def _check_spec(spec: Any, path: Path) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("tables"), list):
        raise UserError("a table spec needs a 'tables' list", path)
    unknown = set(spec) - {"published", "tables", "title"}
    if unknown:
        raise UserError(f"unknown key {min(unknown)!r} in table spec", path)
    for table in spec["tables"]:
        if not isinstance(table, dict) or "name" not in table or not isinstance(table.get("rows"), list):
            raise UserError(f"each table needs a 'name' and 'rows', got {table!r}", path)
        bad = set(table) - TABLE_KEYS
        if bad:
            raise UserError(f"table {table['name']!r}: unknown key {min(bad)!r}", path)
        if table.get("kind", "ablation") not in TABLE_KINDS:
            raise UserError(f"table {table['name']!r}: kind must be one of {TABLE_KINDS}", path)
        if table.get("group", "all") not in GROUPS:
            raise UserError(f"table {table['name']!r}: group must be one of {GROUPS}", path)
        for row in table["rows"]:
            if not isinstance(row, dict) or "label" not in row:
                raise UserError(f"table {table['name']!r}: each row needs a 'label'", path)
            bad = set(row) - ROW_KEYS
            if bad:
                raise UserError(f"table {table['name']!r}, row {row['label']!r}: unknown key "
                                f"{min(bad)!r}", path)
            for key in ("results", "run"):
                value = row.get(key)
                if value is None or isinstance(value, str):
                    continue
                if not (isinstance(value, list) and value
                        and all(isinstance(v, str) for v in value)):
                    raise UserError(f"table {table['name']!r}, row {row['label']!r}: '{key}' "
                                    "must be a path or a non-empty list of paths", path)


def build_tables(spec_path: str | Path, *, root: str | Path = ".", names: Sequence[str] = (),
                 strict: bool = False) -> str:
    """All (or the ``names``d) tables of a spec as one markdown document."""
    spec_path = Path(spec_path)
    spec = _read_yaml(spec_path)
    _check_spec(spec, spec_path)
    published = load_published(spec_path.parent / spec["published"]) if spec.get("published") \
        else {"rows": {}, "source": ""}
    root = Path(root)
    tables = [t for t in spec["tables"] if not names or t["name"] in names]
    unknown = set(names) - {t["name"] for t in spec["tables"]}
    if unknown:
        raise UserError(f"no table named {min(unknown)!r}", spec_path)
    header = [f"<!-- generated by `focaldepth tables --spec {spec_path}`: do not edit -->",
              ""]
    if spec.get("title"):
        header += [f"## {spec['title']}", ""]
    return "\n".join(header + [render_table(t, published, root, spec_path, strict) for t in tables])


def write_tables(spec_path: str | Path, out_path: str | Path, **kwargs: Any) -> Path:
    """Build the tables and write them atomically to ``out_path``."""
    return atomic_write_text(out_path, build_tables(spec_path, **kwargs))
