"""Benchmarks rewrite their own section of a doc, between two HTML comment markers."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, begin: str, end: str, report: str, heading: str) -> None:
    """Put `report` between `begin` and `end` in `path`; a new `heading` section when absent."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{begin}\n{report}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + section + "\n"
    path.write_text(text)


def publish(report: str, path: Path, begin: str, end: str, heading: str, write: bool) -> None:
    """Print `report`; with `write`, also put it into its section of `path`."""
    print(report)
    if write:
        replace_section(path, begin, end, report, heading)
