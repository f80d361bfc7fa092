"""Benchmarks rewrite their own section of a doc, between two HTML comment markers."""

from __future__ import annotations

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
