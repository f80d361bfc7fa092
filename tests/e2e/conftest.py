"""Fixtures for the cluster tests (marked `kind`): a kubectl bound to the release ci/kind installed.

ci/kind/05-test.sh runs them after `helm install` with TFSTACK_KIND_CONTEXT, TFSTACK_NAMESPACE and
TFSTACK_RELEASE set; `make test` deselects them (`-m "not kind"`): this machine has no cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tfstack.procs import ManagedProcess, free_port, port_open

REPO = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    """The pinned binary from .tools/bin (ci/tools/install-helm.sh), else the one on PATH."""
    pinned = REPO / ".tools" / "bin" / name
    return str(pinned) if pinned.exists() else (shutil.which(name) or name)


@dataclass(frozen=True)
class Cluster:
    context: str
    namespace: str
    release: str

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        result = subprocess.run(
            [tool("kubectl"), "--context", self.context, "-n", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def helm(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            [tool("helm"), "--kube-context", self.context, "-n", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"helm {' '.join(args)} failed: {result.stderr}"
        return result.stdout

    @contextmanager
    def port_forward(self, target: str, port: int, tmp_path: Path) -> Iterator[int]:
        """`kubectl port-forward` to a free loopback port; yields that port."""
        local = free_port()
        proc = ManagedProcess(
            f"port-forward-{port}",
            [
                tool("kubectl"),
                "--context",
                self.context,
                "-n",
                self.namespace,
                "port-forward",
                "--address",
                "127.0.0.1",
                target,
                f"{local}:{port}",
            ],
            tmp_path / f"port-forward-{local}.log",
        ).start()
        try:
            proc.wait_until(lambda: port_open("127.0.0.1", local), timeout=30, what="port-forward")
            yield local
        finally:
            proc.stop()


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 3.0) -> None:
    """Polls `check` until true; fails after `timeout` seconds (bounded, no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    context = os.environ.get("TFSTACK_KIND_CONTEXT")
    if not context:
        pytest.fail(
            "cluster tests need TFSTACK_KIND_CONTEXT (run them with ci/kind/05-test.sh)",
            pytrace=False,
        )
    return Cluster(
        context,
        os.environ.get("TFSTACK_NAMESPACE", "tfstack"),
        os.environ.get("TFSTACK_RELEASE", "tfstack"),
    )
