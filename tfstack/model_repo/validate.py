"""Check a model repository and its TF Serving config before `helm install`.

    tfstack validate CONFIG [--path-map /models=DIR] [--batching FILE] [--monitoring FILE]

(also `python -m tfstack.model_repo.validate` and `tfstack-validate-models`, its older name).

Reports every problem as `file:line: message` (parse errors as `file:line:col: message`) and exits
1, or prints a summary and exits 0. The checks follow what TF Serving itself enforces when it loads
the config (messages are TF Serving's where it has one), plus what it would only log and then wait
on forever: a missing base path, no numeric version directory, a `specific` version that is not
there, a version without a loadable saved_model.pb, a label on a version the policy does not serve.
Base paths that are URIs (gs://, s3://, ...) are checked for syntax only.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError

from tfstack.model_repo.config import (
    ConfigError,
    EntryLines,
    config_entry_lines,
    map_path,
    parse_batching_parameters,
    parse_model_server_config,
    parse_monitoring_config,
)
from tfstack.model_repo.layout import version_number

PLATFORM = "tensorflow"
SERVE_TAG = "serve"
INIT_OP_SIGNATURE = "__saved_model_init_op"  # TF2's internal init signature, not a serving one


@dataclass(order=True)
class Problem:
    path: str
    line: int
    message: str
    column: int = 0  # parse errors only

    def __str__(self) -> str:
        where = f"{self.line}:{self.column}" if self.column else str(self.line)
        return f"{self.path}:{where}: {self.message}"

    @classmethod
    def from_parse_error(cls, err: ConfigError) -> Problem:
        return cls(err.path, err.line, err.message, err.column)


@dataclass
class ModelReport:
    name: str
    base_path: str
    versions: list[int] = field(default_factory=list)
    policy: str = "latest"
    labels: dict[str, int] = field(default_factory=dict)
    signatures: dict[int, list[str]] = field(default_factory=dict)


class Checker:
    """Collects the problems of one config file and the repository it points at."""

    def __init__(self, config_path: str, path_map: list[tuple[str, str]]) -> None:
        self.path = config_path
        self.path_map = path_map
        self.problems: list[Problem] = []
        self.models: list[ModelReport] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, message))

    def run(self) -> None:
        config, problems = _parse(parse_model_server_config, self.path)
        if config is None:
            self.problems += problems
            return
        kind = config.WhichOneof("config")
        if kind != "model_config_list":
            what = "custom_model_config is not supported" if kind else "no model_config_list"
            self.problem(1, f"{what}: TF Serving would serve no model from this file")
            return
        entries = config.model_config_list.config
        lines = config_entry_lines(Path(self.path).read_text(encoding="utf-8"))
        if len(lines) != len(entries):  # unusual syntax the line scanner missed: point at line 1
            lines = [EntryLines(1) for _ in entries]
        first_seen: dict[str, int] = {}
        for entry, where in zip(entries, lines, strict=True):
            self.check_entry(entry, where, first_seen)
        if not entries:
            self.problem(1, "model_config_list lists no model")

    def check_entry(self, entry, where: EntryLines, first_seen: dict[str, int]) -> None:
        name = entry.name
        if not name:
            self.problem(where.line, "model has no name")
        elif name in first_seen:
            self.problem(
                where.of("name"),
                f"Illegal to list model {name} multiple times in config list "
                f"(first at line {first_seen[name]})",
            )
        else:
            first_seen[name] = where.of("name")
        self.check_platform(entry, where)
        base = entry.base_path
        if not base.startswith("/") and "://" not in base:
            self.problem(
                where.of("base_path"),
                f"Expected model {name} to have an absolute path or URI; got base_path()={base}",
            )
            return
        report = ModelReport(name, base)
        self.models.append(report)
        if "://" in base:
            return
        self.check_versions(entry, where, report)

    def check_platform(self, entry, where: EntryLines) -> None:
        platform = entry.model_platform
        if not platform and not entry.model_type:
            self.problem(
                where.line,
                "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                f"ModelServerConfig::model_platform, model name is {entry.name}",
            )
        elif platform and platform != PLATFORM:
            self.problem(
                where.of("model_platform"),
                f"Model {entry.name} requests unsupported platform {platform} "
                f'(TF Serving serves "{PLATFORM}")',
            )

    def check_versions(self, entry, where: EntryLines, report: ModelReport) -> None:
        name, base_line = entry.name, where.of("base_path")
        local = Path(map_path(entry.base_path, self.path_map))
        shown = str(local) if str(local) == entry.base_path else f"{local} ({entry.base_path})"
        if not local.is_dir():
            hint = "" if self.path_map else " (check a local copy with --path-map FROM=DIR)"
            self.problem(base_line, f"Could not find base path {shown} for servable {name}{hint}")
            return
        found = self.numeric_children(local, base_line)
        if not found:
            self.problem(
                base_line,
                f"No versions of servable {name} found under base path {shown}. "
                "Did you forget to name your leaf directory as a number (eg. '/1/')?",
            )
            return
        served = self.served_versions(entry, where, sorted(found), report)
        report.versions = served
        for version in served:
            self.check_saved_model(name, version, found[version], base_line, report)
        for label, version in sorted(entry.version_labels.items()):
            report.labels[label] = version
            if version not in served:
                self.problem(
                    where.labels.get(label, where.of("version_labels")),
                    f"version label {label} points at version {version} of model {name}, which "
                    f"its version policy does not serve (served: {_versions(served)})",
                )

    def numeric_children(self, base: Path, line: int) -> dict[int, Path]:
        """Version number -> directory, as TF Serving reads them (layout.version_number)."""
        found: dict[int, Path] = {}
        for child in sorted(base.iterdir()):
            version = version_number(child.name)
            if version is None:
                continue
            if version in found:
                self.problem(
                    line,
                    f"{found[version].name} and {child.name} in {base} are both version {version}"
                    " (TF Serving keeps whichever it lists last)",
                )
            found[version] = child
        return found

    def served_versions(self, entry, where: EntryLines, found: list[int], report) -> list[int]:
        policy = entry.model_version_policy.WhichOneof("policy_choice") or "latest"
        report.policy = policy
        if policy == "all":
            return found
        if policy == "latest":
            keep = max(entry.model_version_policy.latest.num_versions, 1)
            return found[-keep:]
        wanted = list(entry.model_version_policy.specific.versions)
        if not wanted:
            self.problem(where.of("model_version_policy"), "specific policy lists no version")
        for version in wanted:
            if version not in found:
                self.problem(
                    where.versions.get(version, where.of("model_version_policy")),
                    f"Version {version} of servable {entry.name}, which was requested to be "
                    "served as a 'specific' version in the servable's version policy, was not "
                    f"found in the file system (found: {_versions(found)})",
                )
        return sorted(v for v in set(wanted) if v in found)

    def check_saved_model(self, name, version, directory: Path, line, report) -> None:
        where = f"version {version} of model {name} ({directory})"
        if not directory.is_dir():
            self.problem(line, f"{where} is not a directory")
            return
        pb, pbtxt = directory / "saved_model.pb", directory / "saved_model.pbtxt"
        if not pb.is_file():
            if not pbtxt.is_file():
                self.problem(line, f"{where} holds no saved_model.pb")
            return  # a text SavedModel loads too; not inspected here
        from tfstack.model_repo.protos import SavedModel

        saved = SavedModel()
        try:
            saved.ParseFromString(pb.read_bytes())
        except DecodeError as err:
            self.problem(line, f"{where}: saved_model.pb is not a SavedModel ({err})")
            return
        graphs = [g for g in saved.meta_graphs if SERVE_TAG in g.meta_info_def.tags]
        if not graphs:
            tags = [list(g.meta_info_def.tags) for g in saved.meta_graphs]
            self.problem(line, f"{where}: no MetaGraph tagged '{SERVE_TAG}' (tags: {tags})")
            return
        names = sorted(e.key for e in graphs[0].signature_def if e.key != INIT_OP_SIGNATURE)
        if not names:
            self.problem(line, f"{where}: the SavedModel has no signatures to serve")
        report.signatures[version] = names


def _parse(parse, path: str):
    """(message, []) or (None, [the problem that stopped parsing])."""
    try:
        return parse(path), []
    except ConfigError as err:
        return None, [Problem.from_parse_error(err)]
    except OSError as err:
        return None, [Problem(path, 0, f"cannot read {path}: {err.strerror}")]


def check_batching(path: str) -> list[Problem]:
    params, problems = _parse(parse_batching_parameters, path)
    if params is None:
        return problems
    text = Path(path).read_text(encoding="utf-8")
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches"):
        if params.HasField(name) and getattr(params, name).value < (1 if "size" in name else 0):
            problems.append(Problem(path, _field_line(text, name), f"{name} is out of range"))
    sizes = list(params.allowed_batch_sizes)
    if sizes:
        line = _field_line(text, "allowed_batch_sizes")
        max_size = params.max_batch_size.value if params.HasField("max_batch_size") else 1000
        if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) or sizes[0] <= 0:
            problems.append(
                Problem(path, line, "allowed_batch_sizes entries must be monotonically increasing")
            )
        if sizes[-1] != max_size:
            problems.append(
                Problem(
                    path,
                    line,
                    "Last entry in allowed_batch_sizes must match max_batch_size; last entry "
                    f"was {sizes[-1]}; expected {max_size}",
                )
            )
    return problems


def check_monitoring(path: str) -> list[Problem]:
    config, problems = _parse(parse_monitoring_config, path)
    if config is None:
        return problems
    metrics_path = config.prometheus_config.path
    if metrics_path and not metrics_path.startswith("/"):
        line = _field_line(Path(path).read_text(encoding="utf-8"), "path")
        return [Problem(path, line, f"prometheus_config.path must start with '/': {metrics_path}")]
    return []


def _field_line(text: str, name: str) -> int:
    match = re.search(rf"^\s*{name}\b", text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _versions(versions: list[int]) -> str:
    return ", ".join(map(str, versions)) or "none"


def _summary(checker: Checker) -> list[str]:
    out = [f"{checker.path}: OK, {len(checker.models)} model(s)"]
    for model in checker.models:
        if not model.versions:
            out.append(f"  {model.name}: {model.base_path} (URI: not checked)")
            continue
        labels = ", ".join(f"{k}={v}" for k, v in sorted(model.labels.items()))
        out.append(
            f"  {model.name}: {model.policy} policy serves version(s) {_versions(model.versions)}"
            + (f"; labels {labels}" if labels else "")
        )
        for version, names in sorted(model.signatures.items()):
            out.append(f"    v{version} signatures: {', '.join(names)}")
    if any(model.labels for model in checker.models):
        out.append(
            "  note: TF Serving needs --allow_version_labels_for_unavailable_models to accept "
            "version_labels at start-up"
        )
    return out


def _path_map(value: str) -> tuple[str, str]:
    src, sep, dst = value.partition("=")
    if not sep or not src.startswith("/") or not dst:
        raise argparse.ArgumentTypeError(f"expected /CONTAINER/PATH=LOCAL_DIR, got {value!r}")
    return src, dst


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The validator's arguments, for `tfstack validate` and `tfstack-validate-models` alike."""
    parser.add_argument("config", help="model config file (model_config_list text format)")
    parser.add_argument(
        "--path-map",
        type=_path_map,
        action="append",
        default=[],
        metavar="FROM=TO",
        help="check base paths under FROM (as the server sees them) in the local folder TO; "
        "e.g. /models=model_repo/models. May be repeated.",
    )
    parser.add_argument("--batching", help="batching parameters file to check too")
    parser.add_argument("--monitoring", help="monitoring config file to check too")
    return parser


DESCRIPTION = "Check a TF Serving model config and the model repository it points at."


def run(args: argparse.Namespace) -> int:
    checker = Checker(args.config, args.path_map)
    checker.run()
    problems = list(checker.problems)
    if args.batching:
        problems += check_batching(args.batching)
    if args.monitoring:
        problems += check_monitoring(args.monitoring)
    if problems:
        for problem in sorted(problems):
            print(problem)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print("\n".join(_summary(checker)))
    for extra in (args.batching, args.monitoring):
        if extra:
            print(f"{extra}: OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`tfstack-validate-models`, the older name of `tfstack validate`."""
    parser = argparse.ArgumentParser(prog="tfstack-validate-models", description=DESCRIPTION)
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
