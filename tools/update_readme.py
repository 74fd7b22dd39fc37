"""Refresh the generated blocks of README.md from committed run outputs.

Each block sits between ``<!-- BEGIN: path -->`` and ``<!-- END: path -->`` and is replaced
by the contents of ``path`` (a markdown table written by an evaluation or benchmark
command), so no number in the README is typed by hand:

    .venv/bin/python tools/update_readme.py            # rewrite README.md in place
    .venv/bin/python tools/update_readme.py --check    # exit 1 if README.md is stale
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- BEGIN: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- END: (?P=path) -->)", re.S)


def refreshed(text: str) -> str:
    def replace(match: re.Match) -> str:
        source = ROOT / match["path"]
        body = source.read_text() if source.is_file() else f"*(not produced yet: `{match['path']}`)*\n"
        return f"{match.group(1)}{body.rstrip()}\n{match.group(4)}"

    return BLOCK.sub(replace, text)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = refreshed(text)
    if "--check" in sys.argv:
        return 0 if new == text else 1
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
