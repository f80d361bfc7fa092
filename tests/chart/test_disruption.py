"""Disruptions on rendered output: PodDisruptionBudgets, the TF Serving update strategy (CPU and
GPU profiles) and termination, where the preStop delay, grace periods, the gateway's drain and
its deadline have to agree (docs/resilience.md#drain-in-the-chart)."""

from __future__ import annotations

import pytest

from tests.chart.conftest import REPO, render, render_error


def env_of(rendered, component: str) -> dict:
    return {e["name"]: e.get("value") for e in rendered.container(component)["env"]}


def pod_spec(rendered, component: str) -> dict:
    return rendered.deployment(component)["spec"]["template"]["spec"]


def test_pdbs_never_block_a_drain_on_an_unhealthy_pod(defaults):
    pdbs = defaults.of_kind("PodDisruptionBudget")
    assert len(pdbs) == 2
    for pdb in pdbs:
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    custom = render("--set", "gateway.pdb.unhealthyPodEvictionPolicy=IfHealthyBudget")
    policies = {
        p["metadata"]["name"].rsplit("-", 1)[1]: p["spec"]["unhealthyPodEvictionPolicy"]
        for p in custom.of_kind("PodDisruptionBudget")
    }
    assert policies == {"gateway": "IfHealthyBudget", "tfserving": "AlwaysAllow"}


def test_tf_serving_update_strategy_defaults_to_surge_and_is_configurable(defaults, gpu):
    assert defaults.deployment("tfserving")["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    # The GPU scenario as docs/chart.md recommends: no spare GPU for a surge pod.
    assert gpu.deployment("tfserving")["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    recreate = render("--set-json", 'tfserving.updateStrategy={"type": "Recreate"}')
    assert recreate.deployment("tfserving")["spec"]["strategy"] == {"type": "Recreate"}


def test_an_update_strategy_that_cannot_roll_fails_at_render_time():
    stderr = render_error("--set", "tfserving.updateStrategy.rollingUpdate.maxSurge=0")
    assert "maxSurge and maxUnavailable are both 0" in stderr, stderr


def test_runtime_class_only_when_set(defaults, gpu):
    assert "runtimeClassName" not in pod_spec(defaults, "tfserving")
    assert pod_spec(gpu, "tfserving")["runtimeClassName"] == "nvidia"


def test_tf_serving_serves_through_the_prestop_sleep_and_dies_at_the_grace_period(defaults):
    """TF Serving has no SIGTERM handler and is PID 1 (the chart runs the binary directly), so
    only the kubelet's SIGKILL stops it: it serves for at least the preStop sleep, at most the
    grace period. The sleep covers a call the gateway sent just before the endpoint removal."""
    container = defaults.container("tfserving")
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = pod_spec(defaults, "tfserving")["terminationGracePeriodSeconds"]
    deadline_s = int(env_of(defaults, "gateway")["TFSTACK_DEADLINE_MS"]) / 1000
    assert deadline_s < sleep < grace


def test_gateway_drains_itself_instead_of_a_prestop_sleep(defaults):
    """The drain delay is the gateway's own (TFSTACK_DRAIN_DELAY_S: /readyz 503, still serving),
    not a preStop sleep in front of it; the graceful stop after it covers a request's deadline."""
    container = defaults.container("gateway")
    assert "lifecycle" not in container
    env = env_of(defaults, "gateway")
    grace = pod_spec(defaults, "gateway")["terminationGracePeriodSeconds"]
    assert env["TFSTACK_DRAIN_DELAY_S"] == "5"
    assert int(env["TFSTACK_GRACEFUL_TIMEOUT_S"]) == grace - 5 - 2
    assert int(env["TFSTACK_GRACEFUL_TIMEOUT_S"]) * 1000 >= int(env["TFSTACK_DEADLINE_MS"])
    longer = render(
        "--set", "gateway.drainDelaySeconds=10", "--set", "gateway.terminationGracePeriodSeconds=40"
    )
    env = env_of(longer, "gateway")
    assert (env["TFSTACK_DRAIN_DELAY_S"], env["TFSTACK_GRACEFUL_TIMEOUT_S"]) == ("10", "28")


def test_drain_settings_that_disagree_fail_at_render_time():
    stderr = render_error(
        "--set", "gateway.drainDelaySeconds=15", "--set", "gateway.terminationGracePeriodSeconds=25"
    )
    assert "Raise the grace period to at least 27" in stderr, stderr


@pytest.mark.parametrize("doc", ["README.md", "docs/resilience.md", "docs/gateway.md"])
def test_docs_say_what_the_chart_sets(doc):
    text = (REPO / doc).read_text()
    assert "TFSTACK_DRAIN_DELAY_S" in text
    assert "gateway.drainDelaySeconds" in text, f"{doc} does not say which value sets the delay"
