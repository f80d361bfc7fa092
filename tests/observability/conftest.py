"""Shared helpers for the observability tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
import yaml

from tfstack.observability.paths import REPO, tool


def _helm_template(*sets: str) -> list[dict]:
    """`helm template` of the chart with `--set` items, serving the example models (the chart
    ships none); the rendered objects."""
    chart = REPO / "charts" / "tfstack"
    argv = [str(tool("helm")), "template", "rel", str(chart),
            "-f", str(chart / "examples" / "example-models.yaml")]
    for item in sets:
        argv += ["--set", item]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture
def helm_template() -> Callable[..., list[dict]]:
    return _helm_template
