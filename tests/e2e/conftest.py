"""Fixtures for the cluster suite (marker `cluster`): the suite installs the chart itself.

The same tests run against any cluster a kubeconfig reaches:
- ci/cluster/e2e.sh (Kubernetes built here): pytest runs inside the cluster's network namespace
  with TFSTACK_E2E_DIRECT=1, so Service ClusterIPs and pod IPs are reached directly;
- ci/kind/05-test.sh (kind): from the host, through `kubectl port-forward`.

Environment:
  TFSTACK_E2E_KUBECONFIG     the kubeconfig (required)
  TFSTACK_E2E_CONTEXT        a context in it (default: its current context)
  TFSTACK_E2E_IMAGE_VALUES   values file with the image overrides, the only values besides
                             tests/e2e/values/user.yaml (required)
  TFSTACK_E2E_DIRECT         1: cluster addresses are routable from this process
  TFSTACK_E2E_ARTIFACTS      directory for the recorded series and plots (default .run/e2e)
  TFSTACK_E2E_NAMESPACE      prefix of the namespaces the suite creates (default tfstack-e2e)
  TFSTACK_E2E_WRITE_DOCS     1: also write the HPA plot to docs/img/
  TFSTACK_E2E_NO_CUSTOM_METRICS  1: this cluster has no Prometheus + prometheus-adapter; the
                             custom-metric HPA test does not run (and the summary says so)
  TFSTACK_E2E_REUSE          a namespace holding a release from an earlier run with this variable:
                             used as is and kept (for working on one test; never in CI)

`make test` deselects the suite (`-m "not cluster"`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pytest

from tfstack.runtime.procs import ManagedProcess, free_port, port_open

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tfstack"
VALUES = Path(__file__).resolve().parent / "values"
USER_VALUES = VALUES / "user.yaml"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"


def tool(name: str) -> str:
    """The pinned binary from .tools/bin (ci/tools/install-*.sh), else the one on PATH."""
    pinned = REPO / ".tools" / "bin" / name
    return str(pinned) if pinned.exists() else (shutil.which(name) or name)


def wait_until(check: Callable[[], object], timeout: float, what: str | Callable[[], str],
               every: float = 1.0) -> object:
    """Polls `check` until it returns something true (returned); fails after `timeout` s.
    `what` may be a function, called only on failure (e.g. to describe the pods)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            message = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {message}", pytrace=False)
        time.sleep(every)
    return result


def condition(obj: dict, kind: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == kind), {})


def is_ready(pod: dict) -> bool:
    return condition(pod, "Ready").get("status") == "True"


def restarts(pod: dict) -> int:
    return sum(s.get("restartCount", 0) for s in pod.get("status", {}).get("containerStatuses", []))


@dataclass(frozen=True)
class Settings:
    kubeconfig: str
    context: str
    image_values: Path
    direct: bool
    artifacts: Path
    namespace_prefix: str
    write_docs: bool
    no_custom_metrics: bool
    reuse: str

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        required = ("TFSTACK_E2E_KUBECONFIG", "TFSTACK_E2E_IMAGE_VALUES")
        missing = [name for name in required if not env.get(name)]
        if missing:
            pytest.fail(
                f"the cluster suite needs {' and '.join(missing)}: run it with ci/cluster/e2e.sh, "
                "ci/cluster/run.sh or ci/kind/05-test.sh",
                pytrace=False,
            )
        image_values = Path(env["TFSTACK_E2E_IMAGE_VALUES"])
        if not image_values.is_file():
            pytest.fail(f"TFSTACK_E2E_IMAGE_VALUES: no file {image_values}", pytrace=False)
        artifacts = Path(env.get("TFSTACK_E2E_ARTIFACTS") or REPO / ".run" / "e2e")
        artifacts.mkdir(parents=True, exist_ok=True)
        return cls(
            kubeconfig=env["TFSTACK_E2E_KUBECONFIG"],
            context=env.get("TFSTACK_E2E_CONTEXT", ""),
            image_values=image_values,
            direct=env.get("TFSTACK_E2E_DIRECT") == "1",
            artifacts=artifacts,
            namespace_prefix=env.get("TFSTACK_E2E_NAMESPACE", "tfstack-e2e"),
            write_docs=env.get("TFSTACK_E2E_WRITE_DOCS") == "1",
            no_custom_metrics=env.get("TFSTACK_E2E_NO_CUSTOM_METRICS") == "1",
            reuse=env.get("TFSTACK_E2E_REUSE", ""),
        )


@dataclass
class Kube:
    """kubectl, helm and a Kubernetes API client bound to one kubeconfig and context."""

    settings: Settings
    logs: Path

    def _run(self, argv: list[str], timeout: float, input: str | None = None
             ) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  input=input, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(argv[:6])} ... did not finish within {timeout:.0f}s",
                        pytrace=False)

    def kubectl_argv(self, *args: str, namespace: str | None = None) -> list[str]:
        argv = [tool("kubectl"), "--kubeconfig", self.settings.kubeconfig]
        if self.settings.context:
            argv += ["--context", self.settings.context]
        if namespace:
            argv += ["-n", namespace]
        return [*argv, *args]

    def kubectl(self, *args: str, namespace: str | None = None, check: bool = True,
                timeout: float = 60, input: str | None = None) -> str:
        result = self._run(self.kubectl_argv(*args, namespace=namespace), timeout, input)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def get(self, *args: str, namespace: str | None = None) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json", namespace=namespace))

    def helm(self, *args: str, namespace: str, timeout: float = 900
             ) -> subprocess.CompletedProcess:
        argv = [tool("helm"), "--kubeconfig", self.settings.kubeconfig, "-n", namespace]
        if self.settings.context:
            argv += ["--kube-context", self.settings.context]
        return self._run([*argv, *args], timeout)

    @cached_property
    def api(self):
        """CoreV1Api: pods are polled often (every 0.1 s in the timing tests), too often for a
        kubectl process each time."""
        from kubernetes import client, config

        api_client = config.new_client_from_config(
            config_file=self.settings.kubeconfig, context=self.settings.context or None)
        return client.CoreV1Api(api_client)

    def pods(self, namespace: str, selector: str) -> list[dict]:
        """Pods as the API returns them (camelCase JSON, as from kubectl)."""
        response = self.api.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False, _request_timeout=10)
        return json.loads(response.data)["items"]

    @contextmanager
    def port_forward(self, namespace: str, target: str, port: int) -> Iterator[int]:
        local = free_port()
        proc = ManagedProcess(
            f"port-forward-{local}",
            self.kubectl_argv("port-forward", "--address", "127.0.0.1", target,
                              f"{local}:{port}", namespace=namespace),
            self.logs / f"port-forward-{local}.log",
        ).start()
        try:
            proc.wait_until(lambda: port_open("127.0.0.1", local), timeout=30, what="port-forward")
            yield local
        finally:
            proc.stop()


@dataclass
class Release:
    """One installation of the chart, in its own namespace."""

    kube: Kube
    namespace: str
    name: str
    values: list[Path] = field(default_factory=list)
    install_seconds: float = 0.0

    @property
    def fullname(self) -> str:
        return self.name if "tfstack" in self.name else f"{self.name}-tfstack"

    def selector(self, component: str | None = None) -> str:
        labels = f"{INSTANCE}={self.name}"
        return f"{labels},{COMPONENT}={component}" if component else labels

    def kubectl(self, *args: str, **kwargs) -> str:
        return self.kube.kubectl(*args, namespace=self.namespace, **kwargs)

    def get(self, *args: str) -> dict:
        return self.kube.get(*args, namespace=self.namespace)

    def pods(self, component: str) -> list[dict]:
        return self.kube.pods(self.namespace, self.selector(component))

    def helm(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return self.kube.helm(*args, namespace=self.namespace, timeout=timeout)

    def helm_ok(self, *args: str, timeout: float = 900) -> str:
        result = self.helm(*args, timeout=timeout)
        assert result.returncode == 0, (
            f"helm {' '.join(args[:2])} failed: {result.stderr.strip()}\n{self.describe()}")
        return result.stdout

    def value_flags(self, extra: tuple[Path, ...] = ()) -> list[str]:
        return [flag for path in (*self.values, *extra) for flag in ("-f", str(path))]

    def install(self, *args: str, wait: bool = True) -> float:
        """`helm install` (with --wait unless told not to); returns the seconds it took."""
        started = time.monotonic()
        self.helm_ok("install", self.name, str(CHART), "--create-namespace",
                     *self.value_flags(), *(["--wait", "--timeout", "10m"] if wait else []), *args)
        return time.monotonic() - started

    def upgrade(self, *args: str, extra: tuple[Path, ...] = ()) -> float:
        """`helm upgrade --wait` with the release's values plus `extra` files and `args`."""
        started = time.monotonic()
        self.helm_ok("upgrade", self.name, str(CHART), *self.value_flags(extra),
                     "--wait", "--timeout", "10m", *args)
        return time.monotonic() - started

    def uninstall(self) -> None:
        self.helm_ok("uninstall", self.name, "--wait", "--timeout", "5m")

    def installed(self) -> bool:
        result = self.helm("status", self.name, timeout=60)
        return result.returncode == 0

    def delete_namespace(self) -> None:
        self.kube.kubectl("delete", "namespace", self.namespace, "--ignore-not-found",
                          "--wait=true", "--timeout=180s", check=False, timeout=240)

    def describe(self) -> str:
        """Pod states and the latest events: cheap context for an assertion message."""
        try:
            pods = self.kube.pods(self.namespace, self.selector())
            events = self.get("events")["items"]
        except Exception as err:  # noqa: BLE001 (a message helper must not raise)
            return f"(could not describe {self.namespace}: {err})"
        lines = [f"pods in {self.namespace}:"]
        for pod in pods:
            states = [
                f"{s['name']}:{next(iter(s.get('state', {'?': 0})))}"
                f"(restarts {s.get('restartCount', 0)})"
                for s in pod["status"].get("containerStatuses", [])
            ]
            lines.append(
                f"  {pod['metadata']['name']} {pod['status'].get('phase')} "
                f"ready={is_ready(pod)} {' '.join(states)}")
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        lines.append("latest events:")
        for event in events[-15:]:
            obj = event.get("involvedObject", {})
            lines.append(f"  {event.get('lastTimestamp') or event.get('eventTime')} "
                         f"{obj.get('kind')}/{obj.get('name')} {event.get('reason')}: "
                         f"{(event.get('message') or '').strip()[:200]}")
        return "\n".join(lines)

    @contextmanager
    def service_url(self, service: str, port: int) -> Iterator[str]:
        """Base URL of a Service: its ClusterIP (TFSTACK_E2E_DIRECT=1) or a port-forward."""
        if self.kube.settings.direct:
            ip = self.get("service", service)["spec"]["clusterIP"]
            yield f"http://{ip}:{port}"
            return
        with self.kube.port_forward(self.namespace, f"svc/{service}", port) as local:
            yield f"http://127.0.0.1:{local}"

    @contextmanager
    def pod_url(self, pod: dict, port: int) -> Iterator[str]:
        """Base URL of one pod's port: its pod IP (TFSTACK_E2E_DIRECT=1) or a port-forward."""
        if self.kube.settings.direct:
            yield f"http://{pod['status']['podIP']}:{port}"
            return
        with self.kube.port_forward(self.namespace, f"pod/{pod['metadata']['name']}",
                                    port) as local:
            yield f"http://127.0.0.1:{local}"

    @contextmanager
    def gateway_url(self) -> Iterator[str]:
        with self.service_url(f"{self.fullname}-gateway", 8080) as url:
            yield url


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def kube(settings, tmp_path_factory) -> Kube:
    kube = Kube(settings, tmp_path_factory.mktemp("kube"))
    version = kube.kubectl("version", "-o", "json", timeout=30, check=False)
    if not version:
        pytest.fail(f"no API server answers with {settings.kubeconfig} "
                    f"(context {settings.context or 'current'})", pytrace=False)
    return kube


def new_release(kube: Kube, suffix: str, *values: Path) -> Release:
    namespace = f"{kube.settings.namespace_prefix}-{suffix}-{secrets.token_hex(3)}"
    return Release(kube, namespace, "tfstack", [*values, kube.settings.image_values])


@contextmanager
def installed(release: Release, *args: str, wait: bool = True) -> Iterator[Release]:
    """Installs `release` (fresh namespace), yields it, then uninstalls it and removes the
    namespace whatever happened (unless a test already uninstalled it)."""
    try:
        release.install_seconds = release.install(*args, wait=wait)
        yield release
    finally:
        if release.installed():
            release.helm("uninstall", release.name, "--wait", "--timeout", "5m", timeout=400)
        release.delete_namespace()


@pytest.fixture(scope="session")
def release(kube) -> Iterator[Release]:
    """The chart as a user would install it: tests/e2e/values/user.yaml + image overrides."""
    if kube.settings.reuse:
        values = [USER_VALUES, kube.settings.image_values]
        rel = Release(kube, kube.settings.reuse, "tfstack", values)
        if not rel.installed():
            rel.install()
        yield rel
        return
    with installed(new_release(kube, "main", USER_VALUES)) as rel:
        yield rel


@pytest.fixture
def artifacts(settings) -> Path:
    return settings.artifacts
