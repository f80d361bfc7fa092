"""TF Serving's Deployment: image, flags, model config, model sources, probes, resources, GPU."""

from __future__ import annotations

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tests.chart.conftest import (
    EXAMPLE_MODELS,
    REPO,
    SCENARIOS,
    chart_values,
    render,
    render_scenario,
    scenario_file,
    scenario_values,
)
from tfstack.model_repo.protos import BatchingParameters, MonitoringConfig


def flags(container: dict) -> dict[str, str]:
    """`--name=value` args as a dict (a bare `--flag` maps to "")."""
    out = {}
    for arg in container["args"]:
        name, _, value = arg.partition("=")
        out[name] = value
    return out


def pod_spec(rendered, component="tfserving") -> dict:
    return rendered.deployment(component)["spec"]["template"]["spec"]


def model_config(rendered) -> model_server_config_pb2.ModelServerConfig:
    text = rendered.models_config()["data"]["models.config"]
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_runs_the_official_image_and_binary(defaults, gpu):
    container = defaults.container("tfserving")
    assert container["image"] == "tensorflow/serving:2.21.0"
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    assert gpu.container("tfserving")["image"] == "tensorflow/serving:2.21.0-gpu"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}


def test_core_flags(defaults):
    f = flags(defaults.container("tfserving"))
    assert f["--port"] == "8500"
    assert f["--rest_api_port"] == "8501"
    assert f["--model_config_file"] == "/etc/tfstack/models/models.config"
    assert int(f["--model_config_file_poll_wait_seconds"]) > 0
    assert f["--monitoring_config_file"] == "/etc/tfstack/config/monitoring.config"
    # digits has version labels: TF Serving rejects them at start-up without this flag.
    assert f["--allow_version_labels_for_unavailable_models"] == "true"
    assert "--enable_batching" not in f


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_model_config_parses_and_names_the_values_models(scenario):
    rendered = render_scenario(scenario)
    config = model_config(rendered)
    models = {
        **chart_values()["models"],
        **yaml.safe_load(EXAMPLE_MODELS.read_text())["models"],
        **(scenario_values(scenario).get("models") or {}),
    }
    expected = sorted(name for name, m in models.items() if m is not None)
    assert sorted(c.name for c in config.model_config_list.config) == expected


def test_model_config_versions_policies_and_labels(defaults, everything):
    configs = {c.name: c for c in model_config(defaults).model_config_list.config}
    digits = configs["digits"]
    assert digits.base_path == "/models/digits"
    assert digits.model_platform == "tensorflow"
    assert list(digits.model_version_policy.specific.versions) == [1, 2]
    assert dict(digits.version_labels) == {"stable": 1, "canary": 2}
    assert configs["half_plus_two"].model_version_policy.latest.num_versions == 1
    half = {c.name: c for c in model_config(everything).model_config_list.config}["half_plus_two"]
    assert half.model_version_policy.latest.num_versions == 2


def test_model_config_matches_the_model_repository_config(defaults):
    """The chart's defaults serve exactly what model_repo/models.config describes."""
    repo = text_format.Parse(
        (REPO / "model_repo" / "models.config").read_text(),
        model_server_config_pb2.ModelServerConfig(),
    )
    chart = model_config(defaults)

    def normalized(config):
        out = {}
        for c in config.model_config_list.config:
            policy = c.model_version_policy
            # An unset policy means TF Serving's default: latest 1.
            if not policy.WhichOneof("policy_choice"):
                policy.latest.num_versions = 1
            out[c.name] = (
                c.base_path,
                c.model_platform,
                policy.SerializeToString(),
                dict(c.version_labels),
            )
        return out

    assert normalized(chart) == normalized(repo)


def test_set_model_from_command_line():
    rendered = render(
        "--set",
        "models.digits.basePath=/models/other_digits",
        "--set",
        "models.digits_png=null",
        "--set",
        "models.extra.versionPolicy=all",
    )
    configs = {c.name: c for c in model_config(rendered).model_config_list.config}
    assert set(configs) == {"digits", "half_plus_two", "extra"}
    assert configs["digits"].base_path == "/models/other_digits"
    assert configs["extra"].model_version_policy.HasField("all")
    assert configs["extra"].base_path == "/models/extra"


def test_model_config_is_mounted_as_a_directory_and_not_checksummed(defaults):
    """subPath mounts never see ConfigMap updates; TF Serving polls the file, no restart."""
    container = defaults.container("tfserving")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["model-config"]["mountPath"] == "/etc/tfstack/models"
    assert "subPath" not in mounts["model-config"]
    volumes = {v["name"]: v for v in pod_spec(defaults)["volumes"]}
    name = volumes["model-config"]["configMap"]["name"]
    assert name == defaults.models_config()["metadata"]["name"]
    annotations = defaults.deployment("tfserving")["spec"]["template"]["metadata"]["annotations"]
    checksummed = [k for k in annotations if k.startswith("checksum/")]
    assert checksummed == ["checksum/config"]


def test_startup_config_change_rolls_pods_but_model_change_does_not():
    def checksum(*args):
        dep = render(*args).deployment("tfserving")
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum()
    assert checksum("--set", "tfserving.batching.enabled=true") != base
    assert checksum("--set", "models.digits_png=null") == base


def test_what_reloads_in_place_and_what_rolls():
    """Base paths, labels and latest-N are re-read by TF Serving (same pod template and models
    ConfigMap, no rollout); changing the set of served models or versions changes the readiness
    gate, so the pods roll one at a time and a model that cannot load stops the rollout instead
    of every replica. Such a change also renders a ConfigMap of another name: the old pods keep
    the config their readiness expects until they are replaced (with one shared ConfigMap they
    re-read the new one, unload a version their readiness still waits for, and leave the
    endpoints all at once — the cluster suite lost requests that way)."""

    def template_and_config(*args):
        rendered = render(*args)
        return (
            rendered.deployment("tfserving")["spec"]["template"],
            rendered.models_config()["metadata"]["name"],
        )

    base, config = template_and_config()
    for in_place in (
        ("--set", "models.digits.labels.canary=1"),
        ("--set", "models.half_plus_two.basePath=/models/hpt"),
        ("--set", "models.half_plus_two.latestVersions=2"),
    ):
        assert template_and_config(*in_place) == (base, config), in_place
    for rolls in (
        ("--set", "models.digits_png=null"),
        ("--set", "models.digits.versions={2}", "--set", "models.digits.labels=null"),
    ):
        template, name = template_and_config(*rolls)
        assert template != base and name != config, rolls


def test_monitoring_config_enables_prometheus(defaults):
    text = defaults.get("ConfigMap", "-tfserving-config")["data"]["monitoring.config"]
    config = text_format.Parse(text, MonitoringConfig())
    assert config.prometheus_config.enable is True
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_batching_parameters(everything):
    f = flags(everything.container("tfserving"))
    assert f["--enable_batching"] == "true"
    assert f["--batching_parameters_file"] == "/etc/tfstack/config/batching_parameters.txt"
    text = everything.get("ConfigMap", "-tfserving-config")["data"]["batching_parameters.txt"]
    params = text_format.Parse(text, BatchingParameters())
    assert params.max_batch_size.value == 64
    assert list(params.allowed_batch_sizes) == [16, 32, 64]
    # numBatchThreads 0: one per requested core (1500m -> 2).
    assert params.num_batch_threads.value == 2


def test_tuning_flags(everything):
    f = flags(everything.container("tfserving"))
    assert f["--tensorflow_intra_op_parallelism"] == "4"
    assert f["--tensorflow_inter_op_parallelism"] == "2"
    assert f["--grpc_channel_arguments"] == (
        "grpc.max_connection_age_grace_ms=30000,grpc.max_connection_age_ms=300000"
    )
    assert f["--rest_api_num_threads"] == "16"
    assert f["--grpc_max_threads"] == "32"
    assert f["--rest_api_timeout_in_ms"] == "20000"
    assert f["--num_load_threads"] == "2"
    assert everything.container("tfserving")["args"][-1] == "--enable_signature_method_name_check"


@pytest.mark.parametrize(
    ("cpu", "threads"),
    [("500m", "1"), ("1", "1"), ("1500m", "2"), ("2.5", "3"), ("4", "4")],
)
def test_thread_pools_follow_a_cpu_limit(cpu, threads):
    """A CPU limit is a hard cap: pools sized to the node's cores would be throttled at it
    (bench/tfserving_threads.py measures more threads than CPUs costing throughput)."""
    f = flags(
        render("--set-string", f"tfserving.resources.limits.cpu={cpu}").container("tfserving")
    )
    assert f["--tensorflow_intra_op_parallelism"] == threads
    assert f["--tensorflow_inter_op_parallelism"] == threads


@pytest.mark.parametrize("cpu", ["500m", "1", "4"])
def test_without_a_cpu_limit_tf_serving_sizes_its_own_pools(cpu):
    """A request alone is no cap (the pod may use idle cores): TF Serving auto-configures both
    pools, as its performance guide advises; a 1-CPU request no longer pins inter-op to 1."""
    f = flags(
        render("--set-string", f"tfserving.resources.requests.cpu={cpu}").container("tfserving")
    )
    assert "--tensorflow_intra_op_parallelism" not in f
    assert "--tensorflow_inter_op_parallelism" not in f


def test_gpu_profile(gpu, defaults):
    container = gpu.container("tfserving")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["cpu"] == "2"
    spec = pod_spec(gpu)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert flags(container)["--per_process_gpu_memory_fraction"] == "0.8"
    cpu_container = defaults.container("tfserving")
    assert "nvidia.com/gpu" not in cpu_container["resources"].get("limits", {})
    assert "tolerations" not in pod_spec(defaults)
    assert "--per_process_gpu_memory_fraction" not in flags(cpu_container)


def test_image_model_source_copies_into_an_emptydir(defaults):
    spec = pod_spec(defaults)
    (init,) = spec["initContainers"]
    assert init["image"] == "ghcr.io/tfstack/models:0.1.0"
    assert init["command"] == ["cp", "-R", "/models/.", "/model-store/"]
    assert init["volumeMounts"] == [{"name": "models", "mountPath": "/model-store"}]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["models"]
    mounts = {m["name"]: m for m in defaults.container("tfserving")["volumeMounts"]}
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}


def test_pvc_model_source():
    rendered = render_scenario("pvc")
    spec = pod_spec(rendered)
    assert "initContainers" not in spec
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {
        "claimName": "tfstack-models",
        "readOnly": True,
    }
    mounts = {m["name"]: m for m in rendered.container("tfserving")["volumeMounts"]}
    assert mounts["models"]["subPath"] == "exported"
    assert mounts["models"]["readOnly"] is True


def test_remote_model_source_passes_uris_through():
    rendered = render_scenario("remote")
    spec = pod_spec(rendered)
    assert "initContainers" not in spec
    assert "models" not in {v["name"] for v in spec["volumes"]}
    paths = {c.name: c.base_path for c in model_config(rendered).model_config_list.config}
    assert paths == {
        "half_plus_two": "gs://tfstack-models/half_plus_two",
        "digits": "gs://tfstack-models/digits",
    }
    sa = rendered.get("ServiceAccount", "-tfserving")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith("tfserving@")


def test_probes_mean_what_they_say(defaults):
    container = defaults.container("tfserving")
    startup, ready, live = (
        container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")
    )
    # Start-up tolerates slow model loads: 10 s x 60 = 10 minutes.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    # Readiness asks TF Serving for every configured model (and each specific version).
    command = ready["exec"]["command"]
    assert command[:2] == ["/bin/bash", "-c"]
    assert command[3:] == [
        "tfstack-ready",
        "8501",
        "digits/1",
        "digits/2",
        "digits_png",
        "half_plus_two",
    ]
    assert startup["exec"] == ready["exec"]
    assert (ready["periodSeconds"], ready["failureThreshold"], ready["timeoutSeconds"]) == (5, 2, 4)
    # Liveness only catches a process that does not answer, never a model: an HTTP GET the
    # process itself must answer (a TCP connect succeeds on a stopped process), on a path that
    # answers whatever the models' state.
    assert live == {
        "httpGet": {"path": "/monitoring/prometheus/metrics", "port": "http"},
        "periodSeconds": 10,
        "failureThreshold": 6,
        "timeoutSeconds": 3,
    }


def test_probe_thresholds_come_from_values():
    rendered = render(
        "--set",
        "tfserving.probes.startup.failureThreshold=90",
        "--set",
        "tfserving.probes.readiness.periodSeconds=7",
        "--set",
        "tfserving.probes.liveness.timeoutSeconds=9",
    )
    container = rendered.container("tfserving")
    assert container["startupProbe"]["failureThreshold"] == 90
    assert container["readinessProbe"]["periodSeconds"] == 7
    assert container["livenessProbe"]["timeoutSeconds"] == 9


def test_first_model_readiness_alternative():
    container = render("--set", "tfserving.probes.readinessCheck=firstModel").container("tfserving")
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/models/digits", "port": "http"}


def test_graceful_termination(defaults):
    container = defaults.container("tfserving")
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]
    assert pod_spec(defaults)["terminationGracePeriodSeconds"] == 20


def test_rolling_update_keeps_capacity(defaults):
    strategy = defaults.deployment("tfserving")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxUnavailable": 0, "maxSurge": 1}


def test_read_only_root_gets_a_writable_tmp(defaults):
    container = defaults.container("tfserving")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOME"] == "/tmp"
    assert pod_spec(defaults)["automountServiceAccountToken"] is False


def test_gpu_memory_fraction_from_the_command_line():
    """`--set` passes 0.5 as a string: accepted, and 0 leaves TF's default alone."""
    f = flags(
        render("-f", scenario_file("gpu"), "--set", "tfserving.gpu.memoryFraction=0.5").container(
            "tfserving"
        )
    )
    assert f["--per_process_gpu_memory_fraction"] == "0.5"
    f = flags(
        render("-f", scenario_file("gpu"), "--set", "tfserving.gpu.memoryFraction=0").container(
            "tfserving"
        )
    )
    assert "--per_process_gpu_memory_fraction" not in f


def test_default_model_config_validates_against_the_built_models(defaults, models_root, tmp_path):
    """What the models image holds (model_repo/models at /models) is what the chart tells TF Serving
    to load: every base path, version and label resolves (model_repo's validator)."""
    import subprocess
    import sys

    config = tmp_path / "models.config"
    config.write_text(defaults.models_config()["data"]["models.config"])
    batching = tmp_path / "batching_parameters.txt"
    batching.write_text(
        render("--set", "tfserving.batching.enabled=true").get("ConfigMap", "-tfserving-config")[
            "data"
        ]["batching_parameters.txt"]
    )
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(
        defaults.get("ConfigMap", "-tfserving-config")["data"]["monitoring.config"]
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfstack.model_repo.validate",
            str(config),
            "--path-map",
            f"/models={models_root}",
            "--batching",
            str(batching),
            "--monitoring",
            str(monitoring),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
