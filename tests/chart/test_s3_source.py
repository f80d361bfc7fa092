"""`modelSource.type: s3`: the storage initializer the chart renders, run for real against an
S3-compatible server on loopback, then the copied models served by the model server with the
chart's own model config.

The server is moto's S3-compatible server (.tools/bin/moto_server, installed by
ci/tools/install-s3-tools.sh): real S3 HTTP requests (SigV4-signed, ListObjectsV2, GetObject) on a
loopback port, standing in for AWS S3, which cannot exist here. The rendered init container's
script and environment are run by sh with the AWS CLI v1 from PyPI; the chart's image runs v2 of
the same CLI with the same commands.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.chart.conftest import REPO, render, render_error
from tfstack.runtime.procs import ManagedProcess, free_port

TOOLS = REPO / ".tools" / "bin"
BUCKET = "models"
PREFIX = "prod/v7"
KEYS = {"AWS_ACCESS_KEY_ID": "tfstack-test", "AWS_SECRET_ACCESS_KEY": "tfstack-test-secret"}


def _tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} not found: run `bash ci/tools/install-s3-tools.sh` (or `make setup`)")
    return str(path)


def s3_values(endpoint: str, *more: str) -> tuple[str, ...]:
    return (
        "--set",
        "models.digits=null",
        "--set",
        "models.digits_png=null",
        "--set",
        "modelSource.type=s3",
        "--set",
        f"modelSource.s3.uri=s3://{BUCKET}/{PREFIX}",
        "--set",
        f"modelSource.s3.endpoint={endpoint}",
        "--set",
        "modelSource.s3.secretName=model-store-credentials",
        "--set",
        "modelSource.s3.region=eu-west-1",
        "--set",
        "modelSource.s3.addressingStyle=path",
        *more,
    )


def fetch_container(rendered) -> dict:
    spec = rendered.deployment("tfserving")["spec"]["template"]["spec"]
    (container,) = [c for c in spec["initContainers"] if c["name"] == "fetch-models"]
    return container


def run_fetch(
    container: dict, store: Path, home: Path, secret: dict
) -> subprocess.CompletedProcess:
    """The init container's command as the kubelet would run it: its env, the Secret's keys as
    env (envFrom), /model-store and /tmp (its two mounts) replaced by local directories."""
    assert container["command"] == ["/bin/sh", "-ec"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/model-store", "/tmp"]
    (script,) = container["args"]
    env = {"PATH": f"{TOOLS}:/usr/bin:/bin"}
    env.update({e["name"]: e["value"] for e in container["env"]})
    assert env.pop("HOME") == "/tmp"
    env["HOME"] = str(home)
    assert [s["secretRef"]["name"] for s in container["envFrom"]] == ["model-store-credentials"]
    env.update(secret)
    return subprocess.run(
        ["/bin/sh", "-ec", script.replace("/model-store/", f"{store}/")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory, models_root):
    """moto's S3 server on loopback with the example models uploaded under s3://models/prod/v7/."""
    tmp = tmp_path_factory.mktemp("s3")
    port = free_port()
    server = ManagedProcess(
        "moto_server",
        [_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        tmp / "moto.log",
    ).start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        server.wait_until(lambda: _answers(endpoint), 60, "answering")
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp), "AWS_REGION": "eu-west-1", **KEYS}
        aws = [_tool("aws"), "--endpoint-url", endpoint]
        for cmd in (
            ["s3", "mb", f"s3://{BUCKET}"],
            [
                "s3",
                "cp",
                "--recursive",
                "--only-show-errors",
                str(models_root / "half_plus_two"),
                f"s3://{BUCKET}/{PREFIX}/half_plus_two",
            ],
        ):
            subprocess.run([*aws, *cmd], env=env, check=True, capture_output=True, timeout=120)
        yield endpoint
    finally:
        server.stop()


def _answers(endpoint: str) -> bool:
    try:
        return requests.get(endpoint, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def test_s3_source_renders_a_fetching_init_container_and_no_uri_for_tf_serving():
    rendered = render(*s3_values("https://minio.storage:9000"))
    spec = rendered.deployment("tfserving")["spec"]["template"]["spec"]
    container = fetch_container(rendered)
    assert container["image"] == "amazon/aws-cli:2.32.2"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    (models_volume,) = [v for v in spec["volumes"] if v["name"] == "models"]
    assert models_volume["emptyDir"]["sizeLimit"] == "2Gi"
    config = rendered.models_config()["data"]["models.config"]
    # TF Serving reads the copy from the emptyDir; it is never handed an s3:// path.
    assert 'base_path: "/models/half_plus_two"' in config
    assert "s3://" not in config
    assert all("s3://" not in a for a in rendered.container("tfserving")["args"])


def test_s3_fetch_copies_each_model_and_tf_serving_layout_is_served(s3_server, tmp_path):
    from tests.fixtures.modelserver import start_modelserver

    rendered = render(*s3_values(s3_server))
    store, home = tmp_path / "model-store", tmp_path / "home"
    store.mkdir()
    home.mkdir()
    result = run_fetch(fetch_container(rendered), store, home, KEYS)
    assert result.returncode == 0, result.stderr
    assert f"s3://{BUCKET}/{PREFIX}/half_plus_two/" in result.stdout
    assert (store / "half_plus_two" / "1" / "saved_model.pb").is_file()
    # The copy is what TF Serving's layout needs, and the chart's own model config serves it.
    config = tmp_path / "models.config"
    config.write_text(
        rendered.models_config()["data"]["models.config"].replace('"/models/', f'"{store}/')
    )
    server = start_modelserver(tmp_path, None, f"--model_config_file={config}")
    try:
        answer = requests.post(
            f"{server.rest_url}/v1/models/half_plus_two:predict",
            json={"instances": [1.0, 2.0, 5.0]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [2.5, 3.0, 4.5]}
    finally:
        server.stop()


def test_s3_fetch_of_a_prefix_without_versions_fails_naming_the_uri(s3_server, tmp_path):
    rendered = render(*s3_values(s3_server, "--set", "models.resnet.versionPolicy=latest"))
    result = run_fetch(fetch_container(rendered), tmp_path, tmp_path, KEYS)
    assert result.returncode != 0
    assert f"no <version>/saved_model.pb under s3://{BUCKET}/{PREFIX}/resnet/" in result.stderr


def test_s3_fetch_from_a_missing_bucket_fails_with_the_stores_error(s3_server, tmp_path):
    rendered = render(*s3_values(s3_server, "--set", "modelSource.s3.uri=s3://no-such-bucket/x"))
    result = run_fetch(fetch_container(rendered), tmp_path, tmp_path, KEYS)
    assert result.returncode != 0
    assert "NoSuchBucket" in result.stderr


def test_s3_source_needs_a_uri():
    error = render_error("--set", "modelSource.type=s3")
    assert 'modelSource.s3.uri: modelSource.type is "s3" but no bucket is named' in error


@pytest.mark.parametrize("uri", ["s3://bucket/half_plus_two", "hdfs://nn/half_plus_two"])
def test_remote_source_refuses_uris_tf_serving_cannot_read(uri):
    error = render_error(
        "--set",
        "modelSource.type=remote",
        "--set",
        f"models.half_plus_two.basePath={uri}",
        examples=False,
    )
    assert "does not read this kind of URI itself (only gs:// since 2.7)" in error
    assert "modelSource.type: s3" in error
