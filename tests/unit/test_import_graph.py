"""The project's import graph, read from the source with `ast` (nothing is imported).

Nodes are the modules of the package pyproject.toml installs (`tfstack`), plus `bench/` and
`tests/` (run from the repository). An edge is any `import` or `from ... import`
statement in a module, wherever it stands: at module level, in a function, or under a guard.
Function-level imports count because they are still dependencies: moving an import into a
function only hides a cycle from the interpreter, it does not remove it from the layering the
gateway and the model server are meant to have (issue 11). `importlib.import_module(...)` with a
computed name is not seen (tfstack export loads the user's module that way). Importing `a.b.c`
from outside package `a` also runs `a/__init__.py` and `a/b/__init__.py`: those are edges too.

Kept here:
- no import cycles between modules, nor between packages: tfstack's subpackages (tfstack.gateway,
  tfstack.modelserver, tfstack.protocol, tfstack.runtime, tfstack.cli, ...), bench and tests;
- the gateway never reaches TensorFlow or the model server (docs/architecture.md, decision 1),
  and reaches only project files its Docker image copies;
- the model server never reaches the gateway: what they share is TF Serving's protocol, in
  tfstack/protocol, which reaches neither of them, nor Flask, TensorFlow or any server code.
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Cycles allowed to stay, each as the set of modules it runs through, with the reason. Empty: keep
# it so. A new cycle fails the test, and so does an entry here that no longer matches a cycle.
KNOWN_CYCLES: dict[frozenset[str], str] = {}

# The same between packages (an edge when any module of one imports any module of the other).
# Empty since the common runtime modules (tfstack.runtime) and the CLI (tfstack.cli) have packages
# of their own, and the load tools bench and tests both use live in tfstack.testing.
KNOWN_PACKAGE_CYCLES: dict[frozenset[str], str] = {}

# The one top-level package; each of its subpackages is a node of the package graph.
NAMESPACE = "tfstack"

TENSORFLOW = ("tensorflow", "tensorflow_serving", "keras", "tf_keras")
PROTOCOL = "tfstack.protocol"
# What the protocol package may import besides the standard library: messages, gRPC's status codes
# and stubs, arrays.
PROTOCOL_DEPENDENCIES = {"google", "grpc", "numpy"}


def project_roots(repo: Path) -> list[str]:
    """Top-level packages pyproject.toml installs (tfstack), plus bench and tests."""
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    installed = sorted({p.split(".")[0].rstrip("*") for p in patterns})
    return installed + [r for r in ("bench", "tests") if (repo / r).is_dir()]


@dataclass
class Graph:
    modules: dict[str, Path]  # module name -> file
    edges: dict[str, set[str]] = field(default_factory=dict)  # project module -> project modules
    external: dict[str, set[str]] = field(default_factory=dict)  # module -> other top-level names


def module_name(repo: Path, path: Path) -> str:
    parts = list(path.relative_to(repo).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(tree: ast.AST, importer: str, is_package: bool) -> Iterable[str]:
    """Every module name a module's import statements may load (`from p import x`: p and p.x)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importer's package
                package = importer.split(".")
                package = package if is_package else package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def build_graph(repo: Path, roots: Iterable[str]) -> Graph:
    files = [p for root in roots for p in sorted((repo / root).rglob("*.py"))]
    graph = Graph({module_name(repo, p): p for p in files})
    for name, path in graph.modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets, external = set(), set()
        for imported in imported_names(tree, name, path.name == "__init__.py"):
            if imported in graph.modules:
                # Parent packages run first; those the importer is inside have run already.
                parts = imported.split(".")
                for i in range(1, len(parts) + 1):
                    module = ".".join(parts[:i])
                    if module in graph.modules and not name.startswith(module + "."):
                        targets.add(module)
            elif imported and imported.split(".")[0] not in {r.split(".")[0] for r in roots}:
                external.add(imported.split(".")[0])
        graph.edges[name] = targets - {name}
        graph.external[name] = external
    return graph


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative; only components that hold a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def path_between(edges: dict[str, set[str]], start: str, goal, within=None) -> list[str]:
    """Shortest import chain from start to a node for which goal(node) holds, or []."""
    parents: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges.get(node, ())):
                if within is not None and child not in within:
                    continue
                if goal(child):
                    chain = [child, node]
                    while parents[chain[-1]] is not None:
                        chain.append(parents[chain[-1]])
                    return chain[::-1]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    return []


def describe_cycle(edges: dict[str, set[str]], component: set[str]) -> str:
    first = min(component)
    return " -> ".join(path_between(edges, first, lambda n: n == first, within=component))


def cycles(graph: Graph) -> dict[frozenset[str], str]:
    return {frozenset(c): describe_cycle(graph.edges, c) for c in strongly_connected(graph.edges)}


def package_of(module: str) -> str:
    """The package a module counts in for layering: `tfstack.X` for anything under tfstack's
    subpackage or module X, `tfstack` for its `__init__`, else the top-level name (bench, tests)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == NAMESPACE else parts[0]


def package_graph(graph: Graph) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {package_of(m): set() for m in graph.modules}
    for module, targets in graph.edges.items():
        edges[package_of(module)].update(package_of(t) for t in targets)
    return {package: targets - {package} for package, targets in edges.items()}


def reachable(edges: dict[str, set[str]], starts: Iterable[str]) -> set[str]:
    seen, todo = set(starts), list(starts)
    while todo:
        for child in edges.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def image_files(package: str) -> set[str]:
    """Repository paths the Dockerfile of `package` (the gateway, the model server) copies
    (directories end with '/')."""
    copied = set()
    dockerfile = (REPO / package.replace(".", "/") / "Dockerfile").read_text()
    for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0].upper() == "COPY" and not any(w.startswith("--") for w in words):
            copied.update(words[1:-1])
    return copied


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


GATEWAY_PACKAGE = "tfstack.gateway"
MODELSERVER_PACKAGE = "tfstack.modelserver"
GRAPH = build_graph(REPO, project_roots(REPO))
GATEWAY = sorted(m for m in GRAPH.modules if in_package(m, GATEWAY_PACKAGE))


# --- the graph itself --------------------------------------------------------------------------


def test_graph_covers_the_installed_packages_and_their_imports():
    assert project_roots(REPO) == ["tfstack", "bench", "tests"]
    assert {
        "tfstack.gateway", "tfstack.modelserver", "tfstack.model_repo", "tfstack.observability",
        "tfstack.protocol", "tfstack.runtime", "tfstack.cli", "tfstack.testing", "bench", "tests",
    } <= {package_of(m) for m in GRAPH.modules}
    from_app = reachable(GRAPH.edges, ["tfstack.gateway.app"])
    assert {"tfstack.gateway.service", "tfstack.gateway.upstream", "tfstack.protocol.codec"} <= (
        from_app
    )
    # What the gateway must not reach:
    assert "tensorflow" in GRAPH.external["tfstack.modelserver.tensors"]


def test_a_cycle_through_a_function_level_import_is_found_and_named(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def late():\n    from .. import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("import pkg.a\n")  # reaches the cycle, is not part of it

    found = cycles(build_graph(tmp_path, ["pkg"]))

    assert found == {
        frozenset({"pkg.a", "pkg.sub.b", "pkg.c"}): "pkg.a -> pkg.sub.b -> pkg.c -> pkg.a"
    }


def test_a_cycle_between_subpackages_of_the_namespace_is_a_package_cycle(tmp_path):
    root = tmp_path / NAMESPACE
    for sub in ("runtime", "cli", "server"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "runtime" / "logs.py").write_text("")
    (root / "server" / "main.py").write_text("from tfstack.runtime import logs\n")
    (root / "cli" / "up.py").write_text("import tfstack.server.main\n")
    graph = build_graph(tmp_path, [NAMESPACE])
    assert not strongly_connected(package_graph(graph))  # the CLI on top, runtime at the bottom

    (root / "runtime" / "logs.py").write_text("def late():\n    from tfstack.cli import up\n")
    packages = package_graph(build_graph(tmp_path, [NAMESPACE]))

    assert strongly_connected(packages) == [{"tfstack.runtime", "tfstack.cli", "tfstack.server"}]


# --- no cycles ---------------------------------------------------------------------------------


def test_no_import_cycles_beyond_the_known_ones():
    found = cycles(GRAPH)
    new = [chain for members, chain in found.items() if members not in KNOWN_CYCLES]
    assert not new, (
        "import cycles (break them, or list them in KNOWN_CYCLES with the reason):\n"
        + ("\n".join(new))
    )
    gone = [sorted(members) for members in KNOWN_CYCLES if members not in found]
    assert not gone, f"these KNOWN_CYCLES no longer exist; remove them: {gone}"


def test_no_cycles_between_packages_beyond_the_known_ones():
    packages = package_graph(GRAPH)
    found = {frozenset(c): describe_cycle(packages, c) for c in strongly_connected(packages)}
    new = [chain for members, chain in found.items() if members not in KNOWN_PACKAGE_CYCLES]
    assert not new, "package cycles (break them, or list them in KNOWN_PACKAGE_CYCLES):\n" + (
        "\n".join(new)
    )
    gone = [sorted(members) for members in KNOWN_PACKAGE_CYCLES if members not in found]
    assert not gone, f"these KNOWN_PACKAGE_CYCLES no longer exist; remove them: {gone}"


def test_no_program_reaches_the_test_tools():
    programs = [
        m for m in GRAPH.modules
        if package_of(m) not in ("tfstack.testing", "tests", "bench")
    ]
    problems = [
        " -> ".join(path_between(GRAPH.edges, m, lambda n: in_package(n, "tfstack.testing")))
        for m in programs
    ]
    assert not any(problems), "tfstack.testing is for tests and bench only:\n" + "\n".join(
        p for p in problems if p
    )


# --- the gateway stays TensorFlow-free ---------------------------------------------------------


def chain_from_gateway(module: str) -> list[str]:
    """The shortest import chain from some gateway module to `module`."""
    if module in GATEWAY:
        return [module]
    chains = [path_between(GRAPH.edges, g, lambda n: n == module) for g in GATEWAY]
    return min((c for c in chains if c), key=len)


def test_gateway_never_reaches_tensorflow_or_the_model_server():
    problems = []
    for module in sorted(reachable(GRAPH.edges, GATEWAY)):
        heavy = sorted(GRAPH.external[module] & set(TENSORFLOW))
        if in_package(module, MODELSERVER_PACKAGE) or heavy:
            problems.append(" -> ".join(chain_from_gateway(module) + heavy))
    assert not problems, "the gateway image has no TensorFlow (decision 1):\n" + "\n".join(problems)


def uncopied(package: str) -> list[str]:
    """Project files `package` reaches that its image does not copy, each with an import chain."""
    copied = image_files(package)
    assert package.replace(".", "/") + "/" in copied and "tfstack/__init__.py" in copied
    starts = sorted(m for m in GRAPH.modules if in_package(m, package))
    missing = []
    for module in sorted(reachable(GRAPH.edges, starts)):
        path = GRAPH.modules[module].relative_to(REPO).as_posix()
        if not any(path == c or (c.endswith("/") and path.startswith(c)) for c in copied):
            chains = [path_between(GRAPH.edges, s, lambda n, m=module: n == m) for s in starts]
            chain = min((c for c in chains if c), key=len, default=[module])
            missing.append(f"{path}: " + " -> ".join(chain))
    return missing


def test_gateway_reaches_only_project_files_its_image_copies():
    missing = uncopied(GATEWAY_PACKAGE)
    assert not missing, (
        "tfstack/gateway/Dockerfile does not copy what the gateway imports:\n" + "\n".join(missing)
    )


def test_the_model_server_reaches_only_project_files_its_image_copies():
    # The test cluster's TF Serving stand-in image: a module it lacks crashes every pod at start.
    missing = uncopied(MODELSERVER_PACKAGE)
    assert not missing, (
        "tfstack/modelserver/Dockerfile does not copy what the model server imports:\n"
        + "\n".join(missing)
    )


# --- one protocol package below both programs --------------------------------------------------


def test_the_model_server_never_reaches_the_gateway():
    modelserver = sorted(m for m in GRAPH.modules if in_package(m, MODELSERVER_PACKAGE))
    problems = [
        " -> ".join(path_between(GRAPH.edges, start, lambda n: in_package(n, GATEWAY_PACKAGE)))
        for start in modelserver
    ]
    assert not any(problems), "modelserver imports the gateway:\n" + "\n".join(
        p for p in problems if p
    )


def test_the_protocol_package_reaches_only_itself_and_its_few_dependencies():
    protocol = sorted(m for m in GRAPH.modules if in_package(m, PROTOCOL))
    assert {f"{PROTOCOL}.codec", f"{PROTOCOL}.routes", f"{PROTOCOL}.errors"} <= set(protocol)
    problems = []
    for module in sorted(reachable(GRAPH.edges, protocol)):
        if not in_package(module, PROTOCOL) and module != "tfstack":
            problems.append(f"{module} (project)")
        foreign = GRAPH.external[module] - PROTOCOL_DEPENDENCIES - set(sys.stdlib_module_names)
        problems += [f"{module} imports {name}" for name in sorted(foreign)]
    assert not problems, "tfstack/protocol must stay below both programs:\n" + "\n".join(problems)

