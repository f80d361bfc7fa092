"""One version for the package, the CLI, the model server and the chart."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import tfstack

REPO = Path(__file__).resolve().parents[2]


def test_pyproject_package_and_chart_name_one_version():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((REPO / "charts" / "tfstack" / "Chart.yaml").read_text())
    assert tfstack.__version__ == pyproject == chart["version"] == chart["appVersion"]


def test_tfstack_version_prints_it():
    done = subprocess.run(
        [sys.executable, "-m", "tfstack.cli", "--version"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, f"tfstack {tfstack.__version__}\n")
