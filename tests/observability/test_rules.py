"""tfstack's alerts and recording rules: promtool checks them and runs their unit tests
(tests/observability/rules/*.yaml); every alert is documented and tested firing and quiet; the
chart's PrometheusRule carries exactly the same rules."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tfstack.observability.paths import REPO, RULES_FILE, rules, tool

RULE_TESTS = sorted((Path(__file__).parent / "rules").glob("*_test.yaml"))
RUNBOOKS = REPO / "docs" / "observability.md"


def _alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_promtool_check_rules_accepts_the_rules_file():
    result = _run([str(tool("promtool")), "check", "rules", str(RULES_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path):
    result = _run([str(tool("promtool")), "test", "rules", str(test_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_quiet():
    firing, quiet = set(), set()
    for test_file in RULE_TESTS:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {alert["alert"] for alert in _alerts()}
    assert names - firing == set(), "alerts without a firing test case"
    assert names - quiet == set(), "alerts without a not-firing test case"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_every_alert_has_summary_description_and_a_runbook_section(alert: dict):
    annotations = alert["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert alert["labels"]["severity"] in ("critical", "warning")
    url = annotations["runbook_url"]
    assert url.split("#")[0].endswith("/docs/observability.md"), url
    assert url.split("#")[1] in _anchors(RUNBOOKS.read_text()), f"no runbook section for {url}"


# Matchers naming a release called tfstack, and what the chart makes of them for release "rel" in
# namespace "default" (templates/prometheusrule.yaml).
RELEASE_SCOPE = (
    ('job="tfstack-gateway"', 'namespace="default",job="rel-tfstack-gateway"'),
    ('job="tfstack-tfserving"', 'namespace="default",job="rel-tfstack-tfserving"'),
    ('deployment="tfstack-tfserving"', 'namespace="default",deployment="rel-tfstack-tfserving"'),
    (
        'horizontalpodautoscaler="tfstack-tfserving"',
        'namespace="default",horizontalpodautoscaler="rel-tfstack-tfserving"',
    ),
    ('pod=~"tfstack-tfserving-', 'namespace="default",pod=~"rel-tfstack-tfserving-'),
)
SERIES = re.compile(
    r"(?<![\w:])(tfstack_gateway_\w*|:tensorflow:[\w:]*|kube_\w*|namespace\w*:[\w:]+)(\{[^}]*\})?"
)


def test_every_series_the_rules_read_is_one_releases():
    """Every selector of a tfstack, TF Serving or kube-state-metrics series (and of a recorded
    series an alert reads) names the release's job or objects: two releases, in one namespace or
    not, never see each other's pods."""
    unscoped = []
    for rule in rules():
        for name, matchers in SERIES.findall(rule["expr"]):
            if not re.search(r'(job|deployment|horizontalpodautoscaler)="tfstack-|pod=~"tfstack-',
                             matchers):
                unscoped.append((rule.get("alert") or rule.get("record"), name, matchers))
    assert not unscoped, unscoped


def test_chart_prometheusrule_scopes_the_rules_file_to_the_release(helm_template):
    docs = helm_template(
        "metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=kps"
    )
    (rule,) = [doc for doc in docs if doc["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kps"
    text = RULES_FILE.read_text()
    for old, new in RELEASE_SCOPE:
        assert old in text, old
        text = text.replace(old, new)
    assert rule["spec"] == yaml.safe_load(text)
    assert '"tfstack-' not in yaml.safe_dump(rule["spec"])


def test_the_monitors_set_the_job_the_rules_select(helm_template):
    docs = helm_template("metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true")
    jobs = {}
    for doc in docs:
        if doc["kind"] in ("ServiceMonitor", "PodMonitor"):
            endpoint = (doc["spec"].get("endpoints") or doc["spec"]["podMetricsEndpoints"])[0]
            (relabel,) = endpoint["relabelings"]
            assert relabel["targetLabel"] == "job"
            jobs[doc["kind"]] = relabel["replacement"]
    assert jobs == {"ServiceMonitor": "rel-tfstack-gateway", "PodMonitor": "rel-tfstack-tfserving"}


def test_chart_renders_no_prometheusrule_by_default(helm_template):
    assert not [doc for doc in helm_template() if doc["kind"] == "PrometheusRule"]
