"""Bad values fail at `helm install` time with a message that says what to change: first the
schema (values.schema.json), then the chart's own checks (`fail` in _helpers.tpl)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.chart import values_doc
from tests.chart.conftest import CHART, render_error

SCHEMA_REJECTIONS = [
    (
        ["--set", "tfserving.accelerator=tpu"],
        "at '/tfserving/accelerator': value must be one of 'cpu', 'gpu'",
    ),
    (
        ["--set", "modelSource.type=hdfs"],
        "at '/modelSource/type': value must be one of 'image', 'pvc', 's3', 'remote'",
    ),
    (
        ["--set", "gateway.discovery=consul"],
        "at '/gateway/discovery': value must be one of 'endpointslices', 'dns'",
    ),
    (
        ["--set", "models.digits.versionPolicy=newest"],
        "at '/models/digits/versionPolicy': value must be one of 'latest', 'all', 'specific'",
    ),
    (
        ["--set", "models.digits.versions[0]=-1"],
        "at '/models/digits/versions/0': minimum: got -1, want 0",
    ),
    (["--set", "models.bad/name.basePath=/models/x"], "'bad/name' does not match pattern"),
    (
        ["--set", "tfserving.autoscaling.cpu.targetUtilization=150"],
        "at '/tfserving/autoscaling/cpu/targetUtilization': maximum: got 150, want 100",
    ),
    (
        ["--set", "gateway.replicas=3"],
        "at '/gateway': additional properties 'replicas' not allowed",
    ),
    (["--set", "unknownTopLevel=1"], "additional properties 'unknownTopLevel' not allowed"),
    (["--set-string", "tfserving.resources.requests.cpu=lots"], "'lots' does not match pattern"),
    (
        ["--set", "tfserving.probes.readiness.periodSeconds=0"],
        "at '/tfserving/probes/readiness/periodSeconds': minimum: got 0, want 1",
    ),
    (
        ["--set", "tfserving.probes.readinessCheck=tcp"],
        "at '/tfserving/probes/readinessCheck': value must be one of 'models', 'firstModel'",
    ),
    (
        ["--set", "metrics.serviceMonitor.enabled=maybe"],
        "at '/metrics/serviceMonitor/enabled': value must be one of true, false, 'auto'",
    ),
    (
        ["--set", "tfserving.extraArgs[0]=enable_batching"],
        "at '/tfserving/extraArgs/0': 'enable_batching' does not match pattern '^--'",
    ),
    (
        ["--set", "tfserving.grpcChannelArguments.grpc\\.x=a\\,b"],
        "at '/tfserving/grpcChannelArguments/grpc.x': 'a,b' does not match pattern",
    ),
    (["--set", "tfserving.image.tag="], "at '/tfserving/image/tag': minLength: got 0, want 1"),
    (
        ["--set-json", "tfserving.gpu.memoryFraction=1.5"],
        "at '/tfserving/gpu/memoryFraction': maximum: got 1.5, want 1",
    ),
    (
        ["--set", "tfserving.gpu.memoryFraction=1.5"],
        "at '/tfserving/gpu/memoryFraction': 'anyOf' failed",
    ),
    (["--set", "gateway.logLevel=verbose"], "at '/gateway/logLevel': value must be one of"),
    (
        ["--set", "tfserving.pdb.unhealthyPodEvictionPolicy=Never"],
        "at '/tfserving/pdb/unhealthyPodEvictionPolicy': value must be one of 'AlwaysAllow', "
        "'IfHealthyBudget'",
    ),
    (
        ["--set", "tfserving.updateStrategy.rollingUpdate.maxSurge=-1"],
        "at '/tfserving/updateStrategy/rollingUpdate/maxSurge': 'anyOf' failed",
    ),
    (
        ["--set", "tfserving.topologySpread.whenUnsatisfiable=Never"],
        "value must be one of 'ScheduleAnyway', 'DoNotSchedule'",
    ),
]

RENDER_FAILURES = [
    (
        ["--set", "models.digits.versions=null"],
        'models.digits: versionPolicy is "specific" but versions is empty. List the versions',
    ),
    (
        ["--set", "models.half_plus_two.versions={1}"],
        'models.half_plus_two: versions is set but versionPolicy is "latest". Set versionPolicy',
    ),
    (
        ["--set", "models.digits.labels.canary=3"],
        "models.digits.labels.canary: version 3 is not among the served versions [1 2]. "
        "Add it to models.digits.versions",
    ),
    (
        ["--set", "modelSource.type=remote"],
        'models.digits.basePath: modelSource.type is "remote", so basePath must be a gs:// URI',
    ),
    (
        ["--set", "models.digits.basePath=/data/digits"],
        'models.digits.basePath: "/data/digits" is outside modelSource.mountPath (/models)',
    ),
    (
        ["--set", "modelSource.type=pvc"],
        'modelSource.pvc.claimName: modelSource.type is "pvc" but no claim is named',
    ),
    (
        ["--set", "tfserving.autoscaling.cpu.enabled=false"],
        "tfserving.autoscaling: enabled but no metric is. Enable cpu, requestsPerSecond or gpu",
    ),
    (
        ["--set", "tfserving.autoscaling.minReplicas=8"],
        "tfserving.autoscaling: minReplicas (8) is greater than maxReplicas (6)",
    ),
    (
        ["--set", "gateway.autoscaling.minReplicas=9"],
        "gateway.autoscaling: minReplicas (9) is greater than maxReplicas (6)",
    ),
    (
        ["--set", "tfserving.autoscaling.gpu.enabled=true"],
        "tfserving.autoscaling.gpu.enabled: scaling on GPU utilization needs "
        "tfserving.accelerator=gpu",
    ),
    (
        ["--set", "tfserving.resources.requests.cpu=null"],
        "tfserving.autoscaling.cpu: CPU utilization is relative to the CPU request",
    ),
    (
        ["--set", "tfserving.batching.enabled=true", "--set", "tfserving.batching.maxBatchSize=40"],
        "tfserving.batching.allowedBatchSizes: the last entry (32) must equal maxBatchSize (40)",
    ),
    (
        ["--set", "tfserving.preStopSleepSeconds=60"],
        "tfserving.terminationGracePeriodSeconds (20) must be longer than "
        "tfserving.preStopSleepSeconds (60)",
    ),
    (
        ["--set", "gateway.deadlineMs=30000"],
        "gateway.terminationGracePeriodSeconds (20) leaves 13s after the drain delay "
        "(gateway.drainDelaySeconds, 5) and 2 s for the exit, less than a request may take "
        "(gateway.deadlineMs, 30000): requests in flight at shutdown would be killed. "
        "Raise the grace period to at least 37",
    ),
    (
        ["--set", "tests.model=nope"],
        'tests.model: "nope" is not in models (digits, digits_png, half_plus_two)',
    ),
    (
        ["--set", "gateway.autoscaling.targetCPUUtilization=0"],
        "gateway.autoscaling: enabled but no metric is. Set targetCPUUtilization, enable "
        "requestsPerSecond or inflightRequests",
    ),
    (
        ["--set", "tests.request="],
        'tests: model is "half_plus_two" but tests.request or tests.expectedPredictions is empty',
    ),
    (
        [
            "--set",
            "models.digits=null",
            "--set",
            "models.half_plus_two=null",
            "--set",
            "models.digits_png=null",
        ],
        "models: no model is configured",
    ),
]


def both_helms(cases: list) -> list:
    """Every case under helm 3; a sample under helm 4 as well (same validator and messages; the
    whole list twice costs a minute on a busy 2-core machine)."""
    out = [pytest.param("helm3", args, msg, id=f"helm3 {' '.join(args)}") for args, msg in cases]
    out += [
        pytest.param("helm4", args, msg, id=f"helm4 {' '.join(args)}") for args, msg in cases[::4]
    ]
    return out


@pytest.mark.parametrize(("helm", "args", "message"), both_helms(SCHEMA_REJECTIONS))
def test_schema_rejects(helm, args, message):
    stderr = render_error(*args, helm=helm)
    assert "values don't meet the specifications of the schema" in stderr
    assert message in stderr, stderr


@pytest.mark.parametrize(("helm", "args", "message"), both_helms(RENDER_FAILURES))
def test_render_fails_with_what_to_change(helm, args, message):
    stderr = render_error(*args, helm=helm)
    assert message in stderr, stderr


def test_values_file_points_at_its_schema():
    first = (CHART / "values.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=values.schema.json"


def test_every_values_key_is_documented():
    """A `# --` comment on every key, except sections (whose keys have their own) and the keys
    inside a documented value that is taken as a whole (e.g. `podSecurityContext`)."""
    found = values_doc.keys((CHART / "values.yaml").read_text())
    assert len(found) > 150
    documented = {path for path, description in found if description}
    sections = {path.rsplit(".", 1)[0] for path, _ in found if "." in path}
    missing = [
        path
        for path, description in found
        if not description
        and path not in sections
        and not any(path.startswith(f"{d}.") for d in documented)
    ]
    assert not missing, missing


def test_schema_covers_every_values_key():
    """Every key in values.yaml is declared in the schema, and every object in it is closed."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def resolve(node):
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        return node

    def walk(value, node, path):
        node = resolve(node)
        if "anyOf" in node:
            node = resolve(next(n for n in node["anyOf"] if n.get("type") != "null"))
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} is not closed"
            for key, sub in value.items():
                assert key in node["properties"], f"{path}.{key} missing from the schema"
                walk(sub, node["properties"][key], f"{path}.{key}")
        elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
            for key, sub in value.items():
                walk(sub, node["additionalProperties"], f"{path}.{key}")

    walk(values, schema, "")


def test_docs_values_table_is_up_to_date():
    doc = values_doc.DOC.read_text()
    assert doc == values_doc.render_doc(doc), (
        "docs/chart.md's values table is stale: .venv/bin/python -m tests.chart.values_doc --write"
    )
