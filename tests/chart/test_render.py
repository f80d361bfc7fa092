"""Every scenario lints and renders under Helm 3 and Helm 4, and every rendered object validates
strictly against the Kubernetes schemas of the oldest supported, a middle and the newest version."""

from __future__ import annotations

import pytest
import yaml
from kubernetes_validate import utils as kv

from tests.chart.conftest import (
    CHART,
    HELMS,
    MONITORING_API,
    SCENARIOS,
    render,
    render_scenario,
    run_helm,
    scenario_args,
)

# Chart.yaml's kubeVersion floor, a middle release, and the newest kubernetes-validate ships.
KUBE_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_scenarios_cover_the_required_cases():
    assert {"defaults", "gpu", "custom-metric", "pvc", "remote", "everything"} <= set(SCENARIOS)


def test_kube_version_floor_matches_oldest_validated():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={KUBE_VERSIONS[0]}-0"


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict(helm, scenario):
    result = run_helm(helm, "lint", "--strict", str(CHART), *scenario_args(scenario), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm3_and_helm4_render_the_same_objects(helm, scenario):
    rendered = render_scenario(scenario, *MONITORING_API, helm=helm)
    baseline = render_scenario(scenario, *MONITORING_API, helm="helm3")
    assert rendered.objects == baseline.objects
    assert len(rendered.objects) >= 10


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_objects_validate_strictly(scenario, kube_version):
    rendered = render_scenario(scenario, *MONITORING_API)
    errors, checked = [], 0
    for obj in rendered.objects:
        if obj["kind"] in OPERATOR_KINDS:
            continue  # CRDs: no Kubernetes schema; checked by structure in test_monitoring.py
        try:
            kv.validate(obj, kube_version, strict=True)
            checked += 1
        except kv.ValidationError as err:
            where = ".".join(str(p) for p in err.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {err.message}")
    assert not errors, "\n".join(errors)
    assert checked >= 10


def test_validation_is_strict_enough_to_catch_an_unknown_field(defaults):
    deployment = defaults.deployment("tfserving")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_is_namespaced_and_labelled(scenario):
    for obj in render_scenario(scenario, *MONITORING_API).objects:
        meta = obj["metadata"]
        labels = meta["labels"]
        assert meta.get("namespace"), f"{obj['kind']}/{meta['name']} has no namespace"
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/component",
            "helm.sh/chart",
        ):
            assert key in labels, f"{obj['kind']}/{meta['name']} lacks label {key}"
        assert len(meta["name"]) <= 63


KIND_VALUES = {
    "kind": ("charts/tfstack/examples/example-models.yaml", "ci/kind/values-kind.yaml"),
    "kind-prometheus": (
        "charts/tfstack/examples/example-models.yaml",
        "ci/kind/values-kind.yaml",
        "ci/kind/values-kind-prometheus.yaml",
    ),
}


@pytest.mark.parametrize("name", sorted(KIND_VALUES))
def test_kind_run_values_lint_and_validate(name):
    """The values ci/kind/04-install.sh installs with are held to the same bar."""
    args = [arg for path in KIND_VALUES[name] for arg in ("-f", str(CHART.parents[1] / path))]
    args += ["--set", "fullnameOverride=tfstack"]
    for helm in HELMS:
        result = run_helm(helm, "lint", "--strict", str(CHART), *args, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    rendered = render(*args, *MONITORING_API, examples=False)
    for obj in rendered.objects:
        if obj["kind"] not in OPERATOR_KINDS:
            kv.validate(obj, KUBE_VERSIONS[-1], strict=True)
    container = rendered.container("tfserving")
    assert container["resources"]["requests"]["cpu"] == "250m"
    assert rendered.deployment("tfserving")["metadata"]["name"] == "tfstack-tfserving"


# Rendered manifests: no trailing spaces, blank-line runs, duplicate keys or bad indentation.
# (Sequences may be indented either way: toYaml and hand-written templates differ.)
RENDERED_YAMLLINT = """
extends: default
rules:
  line-length: disable
  document-start: disable
  comments: disable
  indentation: {indent-sequences: whatever}
"""


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_output_passes_yamllint(scenario):
    from yamllint import config, linter

    text = render_scenario(scenario, *MONITORING_API).text
    problems = list(linter.run(text, config.YamlLintConfig(RENDERED_YAMLLINT)))
    assert not problems, "\n".join(f"{p.line}:{p.column} {p.message}" for p in problems[:20])
