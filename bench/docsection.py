"""Benchmarks rewrite their own section of a doc, between two HTML comment markers."""

from __future__ import annotations

import time
from pathlib import Path


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the text from the `start` marker to the `end` marker with `section`, which carries
    both markers itself (or append it)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def replace_section(path: Path, begin: str, end: str, report: str, heading: str) -> None:
    """Put `report` between `begin` and `end` in `path`; a new `heading` section when absent."""
    section = f"{begin}\n{report}\n{end}"
    if not (path.exists() and begin in path.read_text()):
        section = f"## {heading}\n\n{section}"
    write_section(path, section, begin, end)


def publish(report: str, path: Path, begin: str, end: str, heading: str, write: bool) -> None:
    """Print `report`; with `write`, also put it into its section of `path`."""
    print(report)
    if write:
        replace_section(path, begin, end, report, heading)


def provenance(command: str, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    """How and when a figure was measured: "`command`, <UTC time> (load average X before, Y
    after)", the opening of a report."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"`{command}`, {stamp} (load average {load_before[0]:.1f} before, "
            f"{load_after[0]:.1f} after)")


def markdown_table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A Markdown table: the first `left` columns aligned left, the others (figures) right."""
    align = ["---"] * left + ["---:"] * (len(header) - left)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in (header, align, *rows))
