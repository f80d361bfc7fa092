"""Fixtures for the Helm chart tests: real helm binaries (3 and 4), renders cached per session.

The binaries come from ci/tools/install-helm.sh (run by ci/setup.sh). A missing binary fails the
suite with the command to run: a chart suite that silently skips would count as passing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tfstack"
SCENARIOS = sorted(
    p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml")
)
# The chart ships no models: scenarios and most renders add the example models (a user's own values
# file in real life), the way CI, the kind run and docs/chart.md's quick start install the chart.
EXAMPLE_MODELS = CHART / "examples" / "example-models.yaml"
WITH_EXAMPLES = ("-f", str(EXAMPLE_MODELS))
HELMS = ("helm3", "helm4")
RELEASE = "rel"
NAMESPACE = "serving"
# monitoring.coreos.com/v1 as a cluster with the Prometheus Operator's CRDs would report it.
MONITORING_API = ("--api-versions", "monitoring.coreos.com/v1")


@cache
def helm_binary(name: str) -> str:
    local = REPO / ".tools" / "bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(
        f"{name} not found: run `bash ci/tools/install-helm.sh` (or `make setup`)", pytrace=False
    )


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [helm_binary(helm), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}", pytrace=False)
    return result


def scenario_file(scenario: str) -> str:
    return str(CHART / "ci" / f"{scenario}-values.yaml")


def scenario_args(scenario: str) -> tuple[str, ...]:
    """Values flags of a scenario: the example models, then the scenario's file."""
    return (*WITH_EXAMPLES, "-f", scenario_file(scenario))


def scenario_values(scenario: str) -> dict:
    return yaml.safe_load(Path(scenario_file(scenario)).read_text()) or {}


def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


@dataclass(frozen=True)
class Rendered:
    """The objects `helm template` produced, with lookups by kind and name."""

    text: str
    objects: tuple[dict, ...]

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, suffix: str = "") -> dict:
        matches = [o for o in self.of_kind(kind) if o["metadata"]["name"].endswith(suffix)]
        assert len(matches) == 1, f"expected one {kind} named *{suffix}, got {len(matches)}"
        return matches[0]

    def models_config(self) -> dict:
        """The models ConfigMap (`<fullname>-tfserving-models-<hash of the readiness gate>`)."""
        matches = [
            o for o in self.of_kind("ConfigMap") if "-tfserving-models-" in o["metadata"]["name"]
        ]
        assert len(matches) == 1, f"expected one models ConfigMap, got {len(matches)}"
        return matches[0]

    def deployment(self, component: str) -> dict:
        return self.get("Deployment", f"-{component}")

    def container(self, component: str) -> dict:
        return self.deployment(component)["spec"]["template"]["spec"]["containers"][0]


@cache
def _render(helm: str, args: tuple[str, ...]) -> Rendered:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    objects = tuple(o for o in yaml.safe_load_all(result.stdout) if o)
    return Rendered(result.stdout, objects)


def render(*args: str, helm: str = "helm3", examples: bool = True) -> Rendered:
    """`helm template` with the given arguments (cached for the session), over the example models
    unless `examples` is false."""
    return _render(helm, (*(WITH_EXAMPLES if examples else ()), *args))


def render_scenario(scenario: str, *args: str, helm: str = "helm3") -> Rendered:
    return render("-f", scenario_file(scenario), *args, helm=helm)


def render_error(*args: str, helm: str = "helm3", examples: bool = True) -> str:
    """stderr of a `helm template` that must fail (over the example models unless told not)."""
    result = run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        *(WITH_EXAMPLES if examples else ()),
        *args,
        check=False,
    )
    assert result.returncode != 0, f"helm template {' '.join(args)} rendered, expected an error"
    return result.stderr


@pytest.fixture(scope="session")
def defaults() -> Rendered:
    return render_scenario("defaults")


@pytest.fixture(scope="session")
def everything() -> Rendered:
    return render_scenario("everything", *MONITORING_API)


@pytest.fixture(scope="session")
def gpu() -> Rendered:
    return render_scenario("gpu")
