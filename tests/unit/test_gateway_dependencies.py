"""The gateway image installs pyproject's `dependencies` and the `kubernetes` extra, and nothing
else (tfstack/gateway/Dockerfile). Every distribution the gateway's processes import must therefore
be in the dependency closure of those pins: one that the dev venv happens to hold (a test tool's
dependency) would pass every local test and crash the image. That happened: gunicorn's gevent
worker imports `packaging`, which gunicorn does not declare.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
# What the gateway container and the gRPC front door container load: the app, both worker
# classes gunicorn may run, grpc's gevent integration and the EndpointSlice watch.
ENTRY_MODULES = (
    "tfstack.gateway.app",
    "tfstack.gateway.grpc_server",
    "tfstack.gateway.discovery",
    "gunicorn.workers.ggevent",
    "gunicorn.workers.gthread",
    "grpc.experimental.gevent",
    "kubernetes.watch",
)
PROJECT = {"gateway", "tfstack"}
# Imported only when present (each importer catches the ImportError); the dev venv has them, the
# image does not. The check hides them, so what it sees is what the image imports.
OPTIONAL = {
    "grpc_tools": "grpc compiles .proto files at runtime with it when installed",
    "kubernetes_validate": "kubernetes.dynamic validates manifests with it when installed",
}


def _name(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def image_closure() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    todo += [Requirement(r) for r in project["optional-dependencies"]["kubernetes"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _name(req.name)
        if name in seen:
            continue
        seen.add(name)
        todo += [Requirement(r) for r in md.requires(req.name) or []]
    return seen


def imported_modules() -> set[str]:
    """Top-level names of the third-party modules the entry modules load (those the venv's own
    start-up, e.g. .pth hooks, loaded before are left out)."""
    code = (
        "import importlib, importlib.abc, json, sys\n"
        "class Absent(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {sorted(OPTIONAL)!r}:\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        "before = set(sys.modules)\n"
        f"for m in {list(ENTRY_MODULES)!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in set(sys.modules) - before})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    return set(json.loads(out)) - set(sys.stdlib_module_names) - PROJECT


def test_every_distribution_the_gateway_imports_is_installed_by_its_image():
    closure = image_closure()
    assert "gunicorn" in closure and "gevent" in closure  # the closure is what it claims
    owners = md.packages_distributions()
    # A top-level name may be shared (e.g. `google`): one owner inside the closure is enough.
    # Names no distribution owns are the interpreter's own (Cython runtimes, sysconfig data).
    missing = {
        top: sorted(owners[top])
        for top in imported_modules()
        if top in owners and not {_name(d) for d in owners[top]} & closure
    }
    assert not missing, (
        f"the gateway imports {missing} (module: distributions), which its image does not "
        "install: pin them in pyproject.toml's dependencies"
    )
