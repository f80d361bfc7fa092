"""tfstack's Grafana dashboards, built from one table of panels per dashboard.

`python -m tfstack.observability.dashboards` writes them as JSON to charts/tfstack/files/dashboards/
(the chart ships those files; tests check they are up to date, type-check them against Grafana's
schema and run every query against a real Prometheus). Queries use only docs/metrics.md's series.

Every dashboard has a `datasource` variable (any Prometheus) and a `namespace` variable; queries
use `$__rate_interval` so they follow the scrape interval of whatever Prometheus they run on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tfstack.observability.paths import DASHBOARDS_DIR

DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
INFERENCE = 'method=~"predict|classify|regress"'
TFS_JOB = 'job=~".*tfserving.*"'
GATEWAY_NAMESPACES = "label_values(tfstack_gateway_requests_total, namespace)"
# Present on every replica once its models load, whether or not traffic has arrived.
TFSERVING_NAMESPACES = "label_values(:tensorflow:cc:saved_model:load_attempt_count, namespace)"


@dataclass
class Query:
    expr: str
    legend: str = ""


@dataclass
class Panel:
    title: str
    queries: list[Query]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    height: int = 8
    description: str = ""


@dataclass
class Row:
    title: str
    panels: list[Panel] = field(default_factory=list)


def _q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


def _quantile(q: float, series: str, by: str, selector: str, scale: str = "") -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}) (rate({series}_bucket{{{selector}}}"
        f"[$__rate_interval]))){scale}"
    )


# --- variables ---------------------------------------------------------------------------------


def _datasource_var() -> dict:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "Prometheus", "value": "prometheus"},
    }


def _query_var(name: str, label: str, query: str, include_all: bool = False) -> dict:
    var = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "refresh": 2,  # on time range change: new pods and models appear
        "sort": 1,
        "includeAll": include_all,
        "multi": include_all,
    }
    if include_all:
        var["allValue"] = ".*"
        var["current"] = {"text": "All", "value": "$__all"}
    return var


# --- panels ------------------------------------------------------------------------------------


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    defaults: dict = {"unit": panel.unit}
    if panel.kind == "timeseries":
        defaults["custom"] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": defaults,
            "overrides": [],
        },
        "options": (
            {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
             "tooltip": {"mode": "multi", "sort": "desc"}}
            if panel.kind == "timeseries"
            else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                  "colorMode": "value", "graphMode": "area"}
        ),
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": q.expr,
             "legendFormat": q.legend or "__auto", "range": True}
            for i, q in enumerate(panel.queries)
        ],
    }  # fmt: skip


def build(uid: str, title: str, description: str, rows: list[Row], variables: list[dict]) -> dict:
    panels, panel_id, y = [], 1, 0
    for row in rows:
        panels.append(
            {"id": panel_id, "type": "row", "title": row.title, "collapsed": False,
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
        )  # fmt: skip
        panel_id, y, x, row_height = panel_id + 1, y + 1, 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel_json(panel, panel_id, x, y))
            panel_id, x, row_height = panel_id + 1, x + panel.width, max(row_height, panel.height)
        y += row_height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tfstack"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": [_datasource_var(), *variables]},
        "annotations": {"list": []},
        "links": [
            {"title": "tfstack dashboards", "type": "dashboards", "tags": ["tfstack"],
             "asDropdown": True, "includeVars": True, "keepTime": True, "icon": "external link",
             "targetBlank": False, "tooltip": "", "url": ""}
        ],
        "panels": panels,
    }  # fmt: skip


# --- the dashboards ----------------------------------------------------------------------------


def overview() -> dict:
    rows = [
        Row("At a glance", [
            Panel("Requests/s", [_q(
                f"sum(namespace_model:tfstack_gateway_requests:rate1m{{{NS}}})")],
                "reqps", "stat", 6, 4),
            Panel("Error ratio (5xx, 5m)", [_q(
                f"sum(rate(tfstack_gateway_requests_total{{{NS},{INFERENCE},code=~\"5..\"}}[5m]))"
                f" / sum(rate(tfstack_gateway_requests_total{{{NS},{INFERENCE}}}[5m])) or vector(0)"
            )], "percentunit", "stat", 6, 4),
            Panel("p99 latency (worst model)", [_q(
                "max(namespace_model:tfstack_gateway_request_duration_seconds:p99_rate5m"
                f"{{{NS}}})")], "s", "stat", 6, 4),
            Panel("In flight", [_q(f"sum(tfstack_gateway_inflight_requests{{{NS}}})")],
                  "short", "stat", 6, 4),
        ]),
        Row("Traffic and errors", [
            Panel("Requests/s by model", [_q(
                f"sum by (model) (namespace_model:tfstack_gateway_requests:rate1m{{{NS}}})",
                "{{model}}")], "reqps", width=8,
                description="Inference requests (predict, classify, regress) per model."),
            Panel("Responses/s by HTTP code", [_q(
                f"sum by (code) (rate(tfstack_gateway_requests_total{{{NS}}}[$__rate_interval]))",
                "{{code}}")], "reqps", width=8,
                description="Every gateway response: 4xx are callers' mistakes, 429 is load "
                            "shedding."),
            Panel("Error ratio by model (5xx)", [_q(
                f"namespace_model:tfstack_gateway_request_errors:ratio_rate5m{{{NS}}}",
                "{{model}}")], "percentunit", width=8,
                description="Share of inference requests answered 5xx; SLO: under 0.1 %."),
        ]),
        Row("Latency", [
            Panel("Gateway latency by model", [
                _q(f"namespace_model:tfstack_gateway_request_duration_seconds:p50_rate5m{{{NS}}}",
                   "{{model}} p50"),
                _q(f"namespace_model:tfstack_gateway_request_duration_seconds:p90_rate5m{{{NS}}}",
                   "{{model}} p90"),
                _q(f"namespace_model:tfstack_gateway_request_duration_seconds:p99_rate5m{{{NS}}}",
                   "{{model}} p99"),
            ], "s", description="Inference latency seen by clients; SLO: p99 under 500 ms."),
            Panel("TF Serving call latency (p99) by RPC", [_q(
                _quantile(0.99, "tfstack_gateway_upstream_duration_seconds", "rpc, le", NS),
                "{{rpc}}")], "s", description="gRPC calls from the gateway to TF Serving."),
        ]),
        Row("Saturation", [
            Panel("In flight and rejected", [
                _q(f"sum(tfstack_gateway_inflight_requests{{{NS}}})", "in flight"),
                _q(f"sum(rate(tfstack_gateway_requests_total{{{NS},code=\"429\"}}"
                   "[$__rate_interval]))", "rejected/s (429)"),
            ], width=8, description="Requests being handled, and requests turned away by "
                                    "admission control."),
            Panel("Load per TF Serving replica", [_q(
                f"namespace_pod:tfserving_requests:rate1m{{{NS}}}", "{{pod}}")], "reqps", width=8,
                description="What the HPA's tfserving_requests_per_second sees."),
            Panel("TF Serving errors by gRPC code", [_q(
                f"sum by (rpc, grpc_code) (rate(tfstack_gateway_upstream_errors_total{{{NS}}}"
                "[$__rate_interval]))", "{{rpc}} {{grpc_code}}")], "reqps", width=8),
        ]),
        Row("Replicas and autoscaling", [
            Panel("TF Serving replicas vs HPA", [
                _q(f"count(up{{{NS},{TFS_JOB}}} == 1)", "scraped and up"),
                _q(f"sum(kube_horizontalpodautoscaler_status_current_replicas{{{NS},"
                   "horizontalpodautoscaler=~\".*tfserving.*\"})", "HPA current"),
                _q(f"sum(kube_horizontalpodautoscaler_status_desired_replicas{{{NS},"
                   "horizontalpodautoscaler=~\".*tfserving.*\"})", "HPA desired"),
                _q(f"sum(kube_horizontalpodautoscaler_spec_max_replicas{{{NS},"
                   "horizontalpodautoscaler=~\".*tfserving.*\"})", "HPA max"),
            ], description="HPA series need kube-state-metrics (docs/metrics.md)."),
            Panel("Gateway endpoints by state", [_q(
                f"max by (state) (tfstack_gateway_endpoints{{{NS}}})", "{{state}}")],
                description="TF Serving endpoints each gateway balances over; ejected ones "
                            "get no traffic until probed back."),
        ]),
    ]  # fmt: skip
    ns = _query_var("namespace", "Namespace", GATEWAY_NAMESPACES)
    return build("tfstack-overview", "tfstack / Overview",
                 "Traffic, errors, latency, saturation and autoscaling of a tfstack release.",
                 rows, [ns])  # fmt: skip


def per_model() -> dict:
    sel = f'{NS},model=~"$model"'
    tfs = f'{NS},model_name=~"$model"'
    rows = [
        Row("Traffic and errors", [
            Panel("Requests/s by method and code", [_q(
                f"sum by (method, code) (rate(tfstack_gateway_requests_total{{{sel}}}"
                "[$__rate_interval]))", "{{method}} {{code}}")], "reqps"),
            Panel("Error ratio (5xx) over the burn-rate windows", [
                _q(f"namespace_model:tfstack_gateway_request_errors:ratio_rate5m{{{sel}}}",
                   "{{model}} 5m"),
                _q(f"namespace_model:tfstack_gateway_request_errors:ratio_rate1h{{{sel}}}",
                   "{{model}} 1h"),
                _q(f"namespace_model:tfstack_gateway_request_errors:ratio_rate6h{{{sel}}}",
                   "{{model}} 6h"),
            ], "percentunit"),
        ]),
        Row("Latency", [
            Panel("Gateway latency (inference)", [
                _q(f"namespace_model:tfstack_gateway_request_duration_seconds:p50_rate5m{{{sel}}}",
                   "{{model}} p50"),
                _q(f"namespace_model:tfstack_gateway_request_duration_seconds:p99_rate5m{{{sel}}}",
                   "{{model}} p99"),
            ], "s", width=8),
            Panel("Gateway latency p99 by method", [_q(
                _quantile(0.99, "tfstack_gateway_request_duration_seconds", "method, le", sel),
                "{{method}}")], "s", width=8),
            Panel("TF Serving call latency p99 by RPC", [_q(
                _quantile(0.99, "tfstack_gateway_upstream_duration_seconds", "rpc, le", sel),
                "{{rpc}}")], "s", width=8),
        ]),
        Row("Inside TF Serving", [
            Panel("TF Serving requests/s by status", [_q(
                f"sum by (status) (rate(:tensorflow:serving:request_count{{{tfs}}}"
                "[$__rate_interval]))", "{{status}}")], "reqps", width=8),
            Panel("Model run time (p50, p99)", [
                _q(_quantile(0.5, ":tensorflow:serving:runtime_latency", "le", tfs, " / 1e6"),
                   "p50"),
                _q(_quantile(0.99, ":tensorflow:serving:runtime_latency", "le", tfs, " / 1e6"),
                   "p99"),
            ], "s", width=8),
            Panel("Gateway errors from TF Serving by gRPC code", [_q(
                f"sum by (rpc, grpc_code) (rate(tfstack_gateway_upstream_errors_total{{{sel}}}"
                "[$__rate_interval]))", "{{rpc}} {{grpc_code}}")], "reqps", width=8),
        ]),
    ]  # fmt: skip
    ns = _query_var("namespace", "Namespace", GATEWAY_NAMESPACES)
    model = _query_var(
        "model", "Model",
        'label_values(tfstack_gateway_requests_total{namespace=~"$namespace"}, model)', True,
    )  # fmt: skip
    return build("tfstack-model", "tfstack / Model",
                 "One model (or several): traffic, errors and latency at the gateway and inside "
                 "TF Serving.", rows, [ns, model])  # fmt: skip


def tfserving() -> dict:
    rows = [
        Row("Load", [
            Panel("Requests/s per replica", [_q(
                f"namespace_pod:tfserving_requests:rate1m{{{NS}}}", "{{pod}}")], "reqps", width=8),
            Panel("Requests/s by model and status", [_q(
                f"sum by (model_name, status) (rate(:tensorflow:serving:request_count{{{NS}}}"
                "[$__rate_interval]))", "{{model_name}} {{status}}")], "reqps", width=8),
            Panel("Replicas scraped", [_q(f"sum by (pod) (up{{{NS},{TFS_JOB}}})", "{{pod}}")],
                  width=8, description="1 when Prometheus reached the replica's metrics."),
        ]),
        Row("Latency", [
            Panel("Request latency p99 by model and API", [_q(
                _quantile(0.99, ":tensorflow:serving:request_latency", "model_name, API, le", NS,
                          " / 1e6"), "{{model_name}} {{API}}")], "s",
                description="Successful requests, end to end inside TF Serving."),
            Panel("Runtime latency by model (p50, p99)", [
                _q(_quantile(0.5, ":tensorflow:serving:runtime_latency", "model_name, le", NS,
                             " / 1e6"), "{{model_name}} p50"),
                _q(_quantile(0.99, ":tensorflow:serving:runtime_latency", "model_name, le", NS,
                             " / 1e6"), "{{model_name}} p99"),
            ], "s", description="Time spent running the model."),
        ]),
        Row("Batching", [
            Panel("Batch queuing latency (p50, p99)", [
                _q(_quantile(0.5, ":tensorflow:serving:batching_session:queuing_latency", "le", NS,
                             " / 1e6"), "p50"),
                _q(_quantile(0.99, ":tensorflow:serving:batching_session:queuing_latency", "le",
                             NS, " / 1e6"), "p99"),
            ], "s", description="Time requests wait for a batch (only with batching enabled)."),
            Panel("Mean processed batch size", [_q(
                "sum(rate(:tensorflow:serving:batching_session:processed_batch_size_sum"
                f"{{{NS}}}[$__rate_interval])) / sum(rate("
                f":tensorflow:serving:batching_session:processed_batch_size_count{{{NS}}}"
                "[$__rate_interval]))", "batch size")], description="Padding included."),
        ]),
        Row("Model loading", [
            Panel("Model load attempts by status", [_q(
                "sum by (model_path, status) "
                f"(:tensorflow:cc:saved_model:load_attempt_count{{{NS}}})",
                "{{model_path}} {{status}}")], width=12,
                description="status=\"fail\": a version that could not be loaded (alert "
                            "TFStackModelLoadFailed)."),
            Panel("Model load time", [_q(
                f"max by (model_path) (:tensorflow:cc:saved_model:load_latency{{{NS}}}) / 1e6",
                "{{model_path}}")], "s", width=12),
        ]),
    ]  # fmt: skip
    ns = _query_var("namespace", "Namespace", TFSERVING_NAMESPACES)
    return build("tfstack-tfserving", "tfstack / TF Serving",
                 "TF Serving replicas: load, latency, batching and model loading.",
                 rows, [ns])  # fmt: skip


DASHBOARDS = {"overview": overview, "model": per_model, "tfserving": tfserving}


def dashboard_json(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2) + "\n"


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, variables: dict[str, str], rate_interval: str = "1m") -> str:
    """Fill a panel query's Grafana variables the way Grafana would."""
    expr = expr.replace("$__rate_interval", rate_interval)
    return re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), expr)


def write(out_dir: Path = DASHBOARDS_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DASHBOARDS:
        path = out_dir / f"tfstack-{name}.json"
        path.write_text(dashboard_json(name))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write():
        print(f"wrote {written}")
