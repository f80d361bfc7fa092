"""The local stack's Prometheus config: valid for Prometheus itself (promtool check config, which
also checks the rules file it loads) and labelling targets like Kubernetes pods."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tfstack.observability.local import render_config
from tfstack.observability.paths import RULES_FILE, tool

TARGETS = {"gateway": ["127.0.0.1:8080"], "tfserving": ["127.0.0.1:8501", "127.0.0.1:8511"]}


def test_rendered_config_passes_promtool_check_config(tmp_path: Path):
    path = tmp_path / "prometheus.yml"
    path.write_text(render_config(TARGETS))
    result = subprocess.run(
        [str(tool("promtool")), "check", "config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and str(RULES_FILE) in result.stdout


def test_targets_are_labelled_like_pods_in_one_namespace():
    config = yaml.safe_load(render_config(TARGETS, scrape_interval="2s"))
    assert config["global"]["scrape_interval"] == "2s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["tfstack-tfserving"]["metrics_path"] == "/monitoring/prometheus/metrics"
    assert jobs["tfstack-gateway"]["metrics_path"] == "/metrics"
    static = jobs["tfstack-tfserving"]["static_configs"]
    assert [(s["targets"], s["labels"]) for s in static] == [
        (["127.0.0.1:8501"], {"namespace": "local", "pod": "modelserver-0"}),
        (["127.0.0.1:8511"], {"namespace": "local", "pod": "modelserver-1"}),
    ]


def test_unknown_component_is_refused():
    with pytest.raises(ValueError, match="unknown target components"):
        render_config({"grafana": ["127.0.0.1:3000"]})
