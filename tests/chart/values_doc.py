"""The values reference table in docs/chart.md, generated from values.yaml's helm-docs comments.

    .venv/bin/python -m tests.chart.values_doc          # print the table
    .venv/bin/python -m tests.chart.values_doc --write  # update docs/chart.md between the markers

tests/chart/test_values.py fails when docs/chart.md's table is out of date.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "charts" / "tfstack" / "values.yaml"
DOC = REPO / "docs" / "chart.md"
BEGIN, END = "<!-- values-table:begin -->", "<!-- values-table:end -->"
KEY = re.compile(r"^(\s*)([A-Za-z0-9_.\-/\"]+):(\s|$)")


def keys(text: str) -> list[tuple[str, str | None]]:
    """(key path, description or None) for every mapping key, in file order; the description is
    the `# --` comment block right above the key."""
    out: list[tuple[str, str | None]] = []
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("-"):
            comments = []
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        starts = [i for i, c in enumerate(comments) if c.startswith("--")]
        description = " ".join(comments[starts[-1] :])[2:].strip() if starts else None
        out.append((".".join(k for _, k in stack), description))
        comments = []
    return out


def documented_keys(text: str) -> list[tuple[str, str]]:
    return [(path, d) for path, d in keys(text) if d is not None]


def lookup(values: dict, path: str):
    node = values
    for part in path.split("."):
        node = node[part]
    return node


def table() -> str:
    text = VALUES.read_text()
    values = yaml.safe_load(text)
    rows = ["| key | default | description |", "|---|---|---|"]
    for path, description in documented_keys(text):
        default = json.dumps(lookup(values, path), separators=(",", ":"))
        if len(default) > 60:
            default = "(see values.yaml)"
        cell = default.replace("|", "\\|")
        rows.append(f"| `{path}` | `{cell}` | {description.replace('|', '/')} |")
    return "\n".join(rows)


def render_doc(doc: str) -> str:
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    if "--write" in argv:
        DOC.write_text(render_doc(DOC.read_text()))
    else:
        print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
