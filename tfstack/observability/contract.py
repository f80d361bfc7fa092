"""The metrics contract (docs/metrics.md) as data, and the metric names a PromQL query uses.

Tests use it to hold dashboards, rules and prometheus-adapter rules to the contract.
"""

from __future__ import annotations

import re

from tfstack.observability.paths import METRICS_CONTRACT

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan",
}  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def contract_series() -> dict[str, str]:
    """{series name: type} for every series in the first column of docs/metrics.md's series
    tables (type "recorded" for recording rules and custom metrics, whose tables have no type)."""
    series: dict[str, str] = {}
    lines = METRICS_CONTRACT.read_text().splitlines()
    header = ""
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            header = ""
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = cells[0]
            continue
        if header not in ("series", "custom metric") or line.startswith("|---"):
            continue
        kind = cells[1] if cells[1] in ("counter", "gauge", "histogram") else "recorded"
        for name in re.findall(r"`(" + _NAME + r")`", cells[0]):
            if series.get(name, "recorded") == "recorded":  # a custom metric may share a name
                series[name] = kind
    return series


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels, numbers dropped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\d+(?:\.\d+)?(?:[eE][+-]?\d+|[smhdwy])?\b", " ", text)  # numbers, durations
    names = set()
    for match in re.finditer(_NAME, text):
        name = match.group(0)
        if name.lower() not in _KEYWORDS and not text[match.end() :].lstrip().startswith("("):
            names.add(name)
    return names


def uncontracted(expr: str, contract: dict[str, str] | None = None) -> set[str]:
    """Names `expr` uses that the contract does not list (histogram suffixes resolved)."""
    contract = contract_series() if contract is None else contract
    missing = set()
    for name in metric_names(expr):
        if name in contract:
            continue
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base is None or contract.get(base) != "histogram":
            missing.add(name)
    return missing
