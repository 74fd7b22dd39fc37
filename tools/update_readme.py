"""Refresh the generated blocks of README.md and docs/*.md from committed run outputs.

Each block sits between ``<!-- BEGIN: path -->`` and ``<!-- END: path -->`` and is replaced
by the contents of ``path`` (a markdown table written by an evaluation or benchmark
command), so no number in the README is typed by hand. Commands recorded in a result file
with a module path that has since moved (``python -m focaldepth.rgbd_eval``) are shown with
the current path (:func:`focaldepth.experiments.current_command`); the file itself is left as
it was written:

    .venv/bin/python tools/update_readme.py            # rewrite README.md and docs/*.md in place
    .venv/bin/python tools/update_readme.py --check    # exit 1 if any of them is stale

Paths in the markers are relative to the project root, whichever page holds them. Running it
twice changes nothing the second time.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from focaldepth.experiments import current_command

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- BEGIN: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- END: (?P=path) -->)", re.S)


def refreshed(text: str) -> str:
    def replace(match: re.Match) -> str:
        source = ROOT / match["path"]
        body = current_command(source.read_text()) if source.is_file() else f"*(not produced yet: `{match['path']}`)*\n"
        return f"{match.group(1)}{body.rstrip()}\n{match.group(4)}"

    return BLOCK.sub(replace, text)


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every markdown page under docs/."""
    return [root / "README.md"] + sorted((root / "docs").glob("*.md"))


def main() -> int:
    stale = []
    for page in pages():
        text = page.read_text()
        new = refreshed(text)
        if new == text:
            continue
        stale.append(page.relative_to(ROOT))
        if "--check" not in sys.argv:
            tmp = page.with_suffix(page.suffix + ".tmp")
            tmp.write_text(new)
            tmp.replace(page)
    if "--check" in sys.argv:
        for page in stale:
            print(f"stale: {page}", file=sys.stderr)
        return 1 if stale else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
