"""Item 1, last: `helm upgrade` with a values change applies it; `helm uninstall` then leaves
nothing of the release behind. Runs last: the release is gone afterwards."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import INSTANCE, Release, wait_until

pytestmark = pytest.mark.cluster


def gateway_env(release: Release) -> dict[str, str]:
    deployment = release.get("deployment", f"{release.fullname}-gateway")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def kinds(release: Release, namespaced: bool) -> list[str]:
    out = release.kube.kubectl("api-resources", f"--namespaced={str(namespaced).lower()}",
                               "--verbs=list", "-o", "name")
    # Events are records about objects, not objects of the release (and carry no labels).
    return [k for k in out.split() if k not in ("events", "events.events.k8s.io")]


def leftovers(release: Release) -> list[str]:
    """Every object, of every listable kind, with the release's instance label; plus any PVC,
    Secret or ConfigMap left in the namespace (a namespace starts with kube-root-ca.crt only)."""
    selector = f"{INSTANCE}={release.name}"
    found = release.kubectl("get", ",".join(kinds(release, True)), "-l", selector, "-o", "name",
                            timeout=120).split()
    found += release.kube.kubectl("get", ",".join(kinds(release, False)), "-l", selector,
                                  "-o", "name", timeout=120).split()
    found += release.kubectl("get", "pvc,secrets,configmaps", "-o", "name").split()
    return [name for name in found if name != "configmap/kube-root-ca.crt"]


@pytest.mark.timeout(900)
def test_upgrade_applies_a_values_change(release):
    assert gateway_env(release)["TFSTACK_LOG_LEVEL"] == "info"
    release.upgrade("--set", "gateway.logLevel=debug")
    assert gateway_env(release)["TFSTACK_LOG_LEVEL"] == "debug"
    release.kubectl("rollout", "status", f"deployment/{release.fullname}-gateway",
                    "--timeout=300s", timeout=330)
    history = release.helm_ok("history", release.name, "-o", "json")
    assert '"status":"deployed"' in history.replace(" ", "")


@pytest.mark.timeout(900)
def test_uninstall_leaves_nothing_behind(release):
    release.uninstall()
    wait_until(lambda: not leftovers(release), 120,
               lambda: f"nothing left of the release: {leftovers(release)}")
    assert not release.installed()
