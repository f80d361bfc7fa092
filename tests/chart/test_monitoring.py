"""Prometheus Operator objects (no Kubernetes schema to validate them against): checked against the
fields of the monitoring.coreos.com/v1 CRDs the chart uses, closed so a typo fails."""

from __future__ import annotations

import os
import subprocess

import jsonschema
import pytest

from tests.chart.conftest import (
    CHART,
    MONITORING_API,
    NAMESPACE,
    RELEASE,
    WITH_EXAMPLES,
    helm_binary,
    render,
)


def closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": list(required),
    }


STRING, DURATION = {"type": "string"}, {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
SELECTOR = closed({"matchLabels": LABELS, "matchExpressions": {"type": "array"}})
NAMESPACE_SELECTOR = closed(
    {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": STRING}}
)
ENDPOINT = closed(
    {
        "port": STRING,
        "path": STRING,
        "interval": DURATION,
        "scrapeTimeout": DURATION,
        "scheme": STRING,
        "honorLabels": {"type": "boolean"},
        "relabelings": {"type": "array"},
        "metricRelabelings": {"type": "array"},
    },
    required=("port",),
)
METADATA = closed(
    {"name": STRING, "namespace": STRING, "labels": LABELS, "annotations": LABELS},
    required=("name", "namespace"),
)


def resource(kind: str, spec: dict) -> dict:
    return closed(
        {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        required=("apiVersion", "kind", "metadata", "spec"),
    )


SCHEMAS = {
    "ServiceMonitor": resource(
        "ServiceMonitor",
        closed(
            {
                "selector": SELECTOR,
                "namespaceSelector": NAMESPACE_SELECTOR,
                "jobLabel": STRING,
                "endpoints": {"type": "array", "minItems": 1, "items": ENDPOINT},
            },
            required=("selector", "endpoints"),
        ),
    ),
    "PodMonitor": resource(
        "PodMonitor",
        closed(
            {
                "selector": SELECTOR,
                "namespaceSelector": NAMESPACE_SELECTOR,
                "jobLabel": STRING,
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": ENDPOINT},
            },
            required=("selector", "podMetricsEndpoints"),
        ),
    ),
    "PrometheusRule": resource(
        "PrometheusRule",
        closed(
            {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": closed(
                        {
                            "name": STRING,
                            "interval": DURATION,
                            "limit": {"type": "integer"},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": closed(
                                    {
                                        "record": STRING,
                                        "alert": STRING,
                                        "expr": {"type": ["string", "integer"]},
                                        "for": DURATION,
                                        "keep_firing_for": DURATION,
                                        "labels": LABELS,
                                        "annotations": LABELS,
                                    },
                                    required=("expr",),
                                ),
                            },
                        },
                        required=("name", "rules"),
                    ),
                },
            },
            required=("groups",),
        ),
    ),
}


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_operator_objects_match_their_crd_fields(everything, kind):
    objects = everything.of_kind(kind)
    assert objects, f"the everything scenario renders no {kind}"
    for obj in objects:
        jsonschema.validate(obj, SCHEMAS[kind])


def test_crd_check_catches_a_misspelt_field(everything):
    monitor = everything.of_kind("ServiceMonitor")[0]
    broken = {**monitor, "spec": {**monitor["spec"], "endpoint": monitor["spec"]["endpoints"]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMAS["ServiceMonitor"])


def test_monitor_namespace_and_labels_from_values():
    rendered = render(
        *MONITORING_API,
        "--set",
        "metrics.serviceMonitor.namespace=monitoring",
        "--set",
        "metrics.serviceMonitor.labels.release=prom",
    )
    for monitor in rendered.of_kind("ServiceMonitor"):
        assert monitor["metadata"]["namespace"] == "monitoring"
        assert monitor["metadata"]["labels"]["release"] == "prom"
        # Scrapes the release's namespace, wherever the monitor lives.
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_notes_say_how_to_reach_the_gateway_and_predict():
    """NOTES.txt as `helm install` prints it (helm 4 renders a client-side dry run offline)."""
    env = {**os.environ, "KUBECONFIG": os.devnull}
    result = subprocess.run(
        [helm_binary("helm4"), "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client",
         *WITH_EXAMPLES],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"kubectl -n {NAMESPACE} port-forward svc/{RELEASE}-tfstack-gateway 8080:8080" in notes
    assert (
        "curl -s -X POST localhost:8080/v1/models/half_plus_two:predict "
        "-d '{\"instances\": [1.0, 2.0, 5.0]}'"
    ) in notes
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes
    assert "- digits from /models/digits (specific [1 2])" in notes
    assert f"kubectl -n {NAMESPACE} port-forward svc/{RELEASE}-tfstack-gateway 8500:8500" in notes


MONITORING_ON = (
    "--set", "metrics.serviceMonitor.enabled=true",
    "--set", "metrics.podMonitor.enabled=true",
    "--set", "metrics.prometheusRule.enabled=true",
)


def operator_objects(rendered) -> list[dict]:
    return [o for o in rendered.objects if o["apiVersion"] == "monitoring.coreos.com/v1"]


def test_a_stock_kube_prometheus_stack_selects_every_operator_object():
    """Its serviceMonitorSelector, podMonitorSelector and ruleSelector match
    `release: <its Helm release name>`: the chart sets it by default, on every kind."""
    objects = operator_objects(render(*MONITORING_ON))
    assert sorted(o["kind"] for o in objects) == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    for obj in objects:
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack", obj["kind"]
    renamed = operator_objects(render(*MONITORING_ON, "--set", "metrics.prometheusRelease=prom"))
    assert {o["metadata"]["labels"]["release"] for o in renamed} == {"prom"}
    unlabelled = operator_objects(render(*MONITORING_ON, "--set", "metrics.prometheusRelease="))
    assert not [o for o in unlabelled if "release" in o["metadata"]["labels"]]


def test_an_objects_own_labels_win_over_the_release_label(everything):
    labels = {o["kind"]: o["metadata"]["labels"] for o in operator_objects(everything)}
    assert labels["ServiceMonitor"]["release"] == "prom"
    assert labels["ServiceMonitor"]["prometheus"] == "main"
    assert labels["PodMonitor"]["release"] == "prom"
    assert labels["PrometheusRule"]["release"] == "kube-prometheus-stack"


def test_explicit_true_renders_without_the_api_and_auto_needs_it():
    """`auto` asks .Capabilities.APIVersions, which `helm template` (and Argo CD before the CRDs
    exist) cannot answer from a cluster; `true` renders regardless."""
    assert not render().of_kind("ServiceMonitor")
    assert len(render(*MONITORING_API).of_kind("ServiceMonitor")) == 2
    assert len(operator_objects(render(*MONITORING_ON))) == 3
