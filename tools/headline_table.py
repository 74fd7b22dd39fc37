"""The README's headline accuracy table: the default model against its predecessor and the
classical baseline on each kind of data, read from committed result files only.

    .venv/bin/python tools/headline_table.py            # writes results/headline.md
    .venv/bin/python tools/update_readme.py             # copies it into README.md

Sources (nothing here is typed by hand, and nothing is re-run):

- synthetic, path-traced (Blender Cycles) and dynamic (video) test sets: the rows of
  ``configs/tables_default.yaml`` (each row's ``metrics.json``, the group the table reports);
- real photographs with measured depth: ``results/rgbd_presets_v7/metrics.json`` (Middlebury
  *Motorcycle*, mean over the camera presets) and ``results/rgbd_dfd_v7/metrics.json`` (DFD indoor,
  the mean over its configurations).

Which row is which model is read from the files' own labels: the one named ``default`` (without
a version) is the shipped model, the highest ``vN`` is the previous default, the one named
``classical`` the baseline. When a new default is evaluated (rows "SweepNet default" and
"SweepNet v3" in the spec, methods ``sweepnet_default`` and ``sweepnet_default_v3`` in the RGB-D
runs), rerunning this script updates the table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from focaldepth.experiments import current_command

ROOT = Path(__file__).resolve().parent.parent
SPEC = "configs/tables_default.yaml"
PRESETS = "results/rgbd_presets_v7/metrics.json"  # since session 6 (v7 the default); before: results/rgbd_presets_v6
DFD = "results/rgbd_dfd_v7/metrics.json"  # since session 6; before: results/rgbd_dfd_v6
OUT = "results/headline.md"

#: "anchor" = v3, the default of sessions 1-3, which issue 10 keeps in every table beside
#: the previous default (the highest other version).
ANCHOR_VERSION = 3
ROLES = ("default", "previous", "anchor", "classical")
METRICS = (("absrel", "AbsRel", min), ("delta1", "δ<1.25", max))
SYNTHETIC_COMMAND = (
    "for name in cpu_test cpu_test_v2 cpu_test_blender cpu_test_blender_v2; do "
    "focaldepth generate --config configs/data/$name.yaml --out data/$name --workers 2; done; "
    "tools/evaluate_default.sh; "  # the *_blender* sets need the optional bpy extra
    "focaldepth tables --spec configs/tables_default.yaml --out results/tables_default.md")
KIND_ORDER = ("synthetic", "path-traced", "real", "video")
KIND_TEXT = {"synthetic": "synthetic, static",
             "path-traced": "path-traced (Cycles), static",
             "real": "real photos + measured depth",
             "video": "video (moving camera / objects)"}


def role_of(name: str) -> tuple[str, int] | None:
    """(role, version) of a row label ("SweepNet v2", "Classical DFF") or method name
    ("sweepnet_default", "sweepnet_default_v2", "classical"); None for other rows."""
    low = name.lower()
    if "classical" in low:
        return "classical", 0
    version = re.search(r"(?:^|[\s_])v(\d+)\b", low)
    if version:
        number = int(version.group(1))
        return ("anchor" if number == ANCHOR_VERSION else "previous"), number
    if re.search(r"(?:^|[\s_])default$", low) or re.search(r"\bdefault\b", low):
        return "default", 0
    return None


def pick_roles(names: Sequence[str]) -> dict[str, str]:
    """Role -> the name that fills it (previous = the highest version)."""
    picked: dict[str, tuple[int, str]] = {}
    for name in names:
        role = role_of(name)
        if role is None:
            continue
        key, version = role
        if key not in picked or (key == "previous" and version > picked[key][0]):
            picked[key] = (version, name)
    return {role: name for role, (_, name) in picked.items()}


def version_tag(name: str) -> str:
    match = re.search(r"v(\d+)\b", name.lower())
    return f"v{match.group(1)}" if match else name


def _read_json(root: Path, path: str) -> Any:
    return json.loads((root / path).read_text())


def synthetic_rows(root: Path) -> list[dict[str, Any]]:
    spec_path = root / SPEC
    spec = yaml.safe_load(spec_path.read_text())
    rows = []
    for table in spec["tables"]:
        group = table.get("group", "all")
        title = table.get("title", table["name"])
        kind = ("video" if group == "dynamic" else
                "path-traced" if re.search(r"cycles|blender|path-traced", title, re.I) else "synthetic")
        labels = [row["label"] for row in table["rows"] if row.get("results")]
        roles = pick_roles(labels)
        by_label = {row["label"]: row["results"] for row in table["rows"] if row.get("results")}
        values, frames, count = {}, None, None
        for role, label in roles.items():
            summary = _read_json(root, by_label[label])
            metrics = summary["all"] if group == "all" else summary["by_motion"][group]
            values[role] = {key: metrics["metres"][key] for key, _, _ in METRICS}
            frames = frames or summary.get("protocol", {}).get("num_frames")
            count = count or metrics.get("counts", {}).get("num_images")
        data = re.search(r"\((data/[^)]+)\)", title)
        what = f"`{data.group(1)}`" if data else title
        detail = ", ".join(x for x in (f"{count} sequences" if count else "",
                                       f"{frames} frames" if frames else "") if x)
        rows.append({"kind": kind, "data": f"{what}, {detail}", "roles": roles,
                     "values": values, "command": "A"})
    return rows


def presets_row(root: Path) -> tuple[dict[str, Any], str] | None:
    if not (root / PRESETS).is_file():
        return None
    entries = _read_json(root, PRESETS)
    methods = list(dict.fromkeys(e["method"] for e in entries))
    presets = list(dict.fromkeys(e["preset"] for e in entries))
    roles = pick_roles(methods)
    values = {}
    for role, method in roles.items():
        mine = [e for e in entries if e["method"] == method]
        values[role] = {key: sum(e[key] for e in mine) / len(mine) for key, _, _ in METRICS}
    frames = len(entries[0].get("focus_m", [])) or None
    row = {"kind": "real",
           "data": f"Middlebury *Motorcycle*, mean of {len(presets)} camera presets "
                   f"({', '.join(presets)}), {frames} frames",
           "roles": roles, "values": values, "command": "B"}
    command = (f"python -m focaldepth.experiments.rgbd_eval --out {Path(PRESETS).parent.as_posix()} "
               f"--methods {' '.join(methods)}")
    return row, command


def dfd_row(root: Path) -> tuple[dict[str, Any], str] | None:
    if not (root / DFD).is_file():
        return None
    summary = _read_json(root, DFD)
    settings, overall = summary["settings"], summary["overall"]
    roles = pick_roles(list(overall))
    values = {role: {key: overall[method][key] for key, _, _ in METRICS} for role, method in roles.items()}
    frames = " and ".join(str(f) for f in settings.get("frames", []))
    row = {"kind": "real",
           "data": f"DFD indoor, {settings['num_scenes']} scenes, mean of {len(summary['configs'])} "
                   f"sweep settings (2 cameras x 3 protocols x {frames} frames)",
           "roles": roles, "values": values, "command": "C"}
    return row, current_command(settings["command"])  # recorded before a module moved: the path to run now


def _cell(row: Mapping[str, Any], role: str, key: str, best: float | None, tag: str | None) -> str:
    if role not in row["values"]:
        return "–"
    value = row["values"][role][key]
    text = f"{value:.1%}" if key == "delta1" else f"{value:.3f}"
    if role == "previous" and tag and version_tag(row["roles"][role]) != tag:
        text += f" ({version_tag(row['roles'][role])})"
    return f"**{text}**" if best is not None and value == best else text


def render(rows: Sequence[Mapping[str, Any]], commands: Mapping[str, str]) -> str:
    names: dict[str, Counter] = {role: Counter() for role in ROLES}
    for row in rows:
        for role, name in row["roles"].items():
            names[role][name] += 1
    # column names: the spec's labels ("SweepNet default", "SweepNet v2", "Classical DFF")
    spec_names = {role: next((n for n in names[role] if " " in n), None) for role in ROLES}
    tags = Counter(version_tag(n) for row in rows for r, n in row["roles"].items() if r == "previous")
    tag = tags.most_common(1)[0][0] if tags else None
    header_name = {"default": spec_names["default"] or "default",
                   "previous": spec_names["previous"] or (f"previous default ({tag})" if tag else "previous"),
                   "anchor": spec_names["anchor"] or f"v{ANCHOR_VERSION}",
                   "classical": spec_names["classical"] or "classical"}
    present = [role for role in ROLES if names[role]]
    head = ["kind", "data"] + [f"{label} {header_name[role]}" for _, label, _ in METRICS for role in present] + ["cmd"]
    lines = ["<!-- generated by `python tools/headline_table.py` from committed result files: do not edit -->",
             "",
             "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for kind in KIND_ORDER:
        for row in (r for r in rows if r["kind"] == kind):
            cells = [KIND_TEXT[kind], row["data"]]
            for key, _, better in METRICS:
                shown = [row["values"][role][key] for role in present if role in row["values"]]
                best = better(shown) if len(shown) > 1 else None
                cells += [_cell(row, role, key, best, tag) for role in present]
            cells.append(f"[{row['command']}]")
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Best of each row in bold. AbsRel: mean |pred - gt| / gt (lower is better); "
              "δ<1.25: fraction of pixels within 25 % of the true depth (higher is better); "
              "metric depth in metres throughout; the real photographs get focus sweeps rendered from "
              "their measured depth ([docs/real_data.md](docs/real_data.md)). "
              + ", ".join(f"{header_name[r]} = `{n}`" for r in present for n in names[r] if " " not in n)
              + " in the RGB-D runs.", ""]
    for key in sorted(commands):
        lines.append(f"- [{key}] `{commands[key]}`" + (" (the Cycles sets need the optional `bpy` extra)" if key == "A" else ""))
    lines += [f"- this table: `python tools/headline_table.py && python tools/update_readme.py`", ""]
    return "\n".join(lines)


def build(root: Path = ROOT) -> str:
    rows = synthetic_rows(root)
    commands = {"A": SYNTHETIC_COMMAND}
    for extra in (presets_row(root), dfd_row(root)):
        if extra is not None:
            row, command = extra
            rows.append(row)
            commands[row["command"]] = command
    return render(rows, commands)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="project root holding configs/ and results/")
    parser.add_argument("--out", default=OUT, help="output markdown, relative to --root")
    args = parser.parse_args(argv)
    text = build(args.root)
    out = args.root / args.out
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
