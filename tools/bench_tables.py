"""Markdown tables of the committed benchmark JSONs (benchmarks/*.json -> benchmarks/*.md),
each with the reference workload timed in the same run, for the README.

    .venv/bin/python tools/bench_tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def table(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[key] for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    from focaldepth.bench import predict, render

    for name, module in (("render", render), ("predict", predict)):
        source = ROOT / "benchmarks" / f"{name}.json"
        if not source.is_file():
            continue
        result = json.loads(source.read_text())
        reference = result["reference"]
        model = f"Model `{result['model']}`. " if result.get("model") else ""
        text = table(module.table_rows(result)) + (
            f"\n{model}Reference workload `{reference['workload']}` in the same run: {reference['seconds']:.3f} s "
            f"(median; {result['platform']['cpu_count']} cores, {result['platform']['cpu']}, "
            f"load average {result['platform'].get('load_average_1_5_15min')}).\n")
        (ROOT / "benchmarks" / f"{name}.md").write_text(text)
        print(f"wrote benchmarks/{name}.md")


if __name__ == "__main__":
    main()
