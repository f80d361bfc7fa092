"""tfstack's Grafana dashboards: up to date with their builder, valid against Grafana's own schema
(@grafana/schema's `Dashboard` type, checked by tsc), portable (datasource and namespace
variables), every query valid PromQL, and shipped by the chart as sidecar ConfigMaps."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tfstack.observability.dashboards import DASHBOARDS, dashboard_json, panel_queries, substitute
from tfstack.observability.paths import DASHBOARDS_DIR, GRAFANA_SCHEMA_DIR, tool

VARIABLES = {"namespace": "local", "model": "digits", "datasource": "prometheus"}


def _files() -> dict[str, Path]:
    return {name: DASHBOARDS_DIR / f"tfstack-{name}.json" for name in DASHBOARDS}


def test_dashboard_files_are_up_to_date_with_the_builder():
    for name, path in _files().items():
        assert path.read_text() == dashboard_json(name), (
            f"{path} is stale: run `python -m tfstack.observability.dashboards`"
        )


def _tsc(tmp_path: Path, sources: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "node_modules").symlink_to(GRAFANA_SCHEMA_DIR / "node_modules")
    for name, text in sources.items():
        (tmp_path / f"{name}.ts").write_text(
            "import type { Dashboard } from '@grafana/schema';\n"
            f"export const dashboard = {text.rstrip()} satisfies Dashboard;\n"
        )
    tsc = GRAFANA_SCHEMA_DIR / "node_modules" / "typescript" / "bin" / "tsc"
    assert tsc.exists(), "run `bash ci/setup.sh` (ci/tools/install-grafana-schema.sh)"
    argv = ["node", str(tsc), "--strict", "--noEmit", "--skipLibCheck",
            "--module", "nodenext", "--moduleResolution", "nodenext"]  # fmt: skip
    argv += [f"{name}.ts" for name in sources]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_dashboards_satisfy_grafanas_dashboard_schema(tmp_path: Path):
    sources = {name: path.read_text() for name, path in _files().items()}
    result = _tsc(tmp_path, sources)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_an_unknown_panel_property(tmp_path: Path):
    broken = json.loads(_files()["overview"].read_text())
    broken["panels"][1]["gridPosition"] = broken["panels"][1].pop("gridPos")
    result = _tsc(tmp_path, {"broken": json.dumps(broken)})
    assert result.returncode != 0 and "gridPosition" in result.stdout


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_is_portable(name: str):
    dashboard = json.loads(_files()[name].read_text())
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["type"] == "query"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'namespace=~"$namespace"' in target["expr"], (panel["title"], target["expr"])


def test_every_panel_query_is_valid_promql(tmp_path: Path):
    """promtool parses each query (variables filled in) as a recording rule expression."""
    rules = [
        {"record": f"check:{name}:{i}", "expr": substitute(expr, VARIABLES)}
        for name in DASHBOARDS
        for i, (_, expr) in enumerate(panel_queries(DASHBOARDS[name]()))
    ]
    path = tmp_path / "panels.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_chart_ships_each_dashboard_as_a_sidecar_configmap(helm_template):
    docs = helm_template(
        "metrics.grafanaDashboards.enabled=true", "metrics.grafanaDashboards.namespace=monitoring"
    )
    maps = [doc for doc in docs if doc["kind"] == "ConfigMap" and "grafana_folder" in
            doc["metadata"].get("annotations", {})]  # fmt: skip
    shipped = {key: json.loads(text) for cm in maps for key, text in cm["data"].items()}
    assert shipped == {path.name: json.loads(path.read_text()) for path in _files().values()}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "monitoring"


def test_chart_ships_no_dashboards_by_default(helm_template):
    docs = helm_template()
    assert not [doc for doc in docs if "grafana_folder" in doc["metadata"].get("annotations", {})]
