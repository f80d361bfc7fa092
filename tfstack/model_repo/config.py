"""TF Serving's config files: parse them with line numbers; render models.config for a local run.

ModelServerConfig is parsed with the official `tensorflow_serving.config` messages. The pip package
`tensorflow-serving-api` ships neither `monitoring_config_pb2` nor `session_bundle_config_pb2`, so
`MonitoringConfig` and `BatchingParameters` come from `tfstack.model_repo.protos`, declared with
the same package, names, field numbers and types as TF Serving's .proto files (all the text format
needs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import Message
from tensorflow_serving.config import model_server_config_pb2

MODEL_REPO = Path(__file__).resolve().parents[2] / "model_repo"  # models, configs, README
MODELS_CONFIG = MODEL_REPO / "models.config"
BATCHING_PARAMETERS = MODEL_REPO / "batching_parameters.txt"
MONITORING_CONFIG = MODEL_REPO / "monitoring.config"
CONTAINER_ROOT = "/models"


class ConfigError(ValueError):
    """A text proto that does not parse; str() is `file:line:col: message`."""

    def __init__(self, path: str | Path, line: int, column: int, message: str) -> None:
        self.path, self.line, self.column, self.message = str(path), line, column, message
        super().__init__(f"{self.path}:{line}:{column}: {message}")


def parse_text(text: str, message: Message, path: str | Path = "<string>") -> Message:
    """Parse a text proto into `message` (TF Serving's ParseProtoTextFile), or raise ConfigError."""
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        line, column = err.GetLine() or 0, err.GetColumn() or 0
        # ParseError's own text starts with "line:col : "; keep only the explanation.
        detail = re.sub(r"^\d+:\d+ : ", "", str(err))
        raise ConfigError(path, line, column, detail) from None
    return message


def parse_file(path: str | Path, message: Message) -> Message:
    path = Path(path)
    return parse_text(path.read_text(encoding="utf-8"), message, path)


def parse_model_server_config(path: str | Path) -> model_server_config_pb2.ModelServerConfig:
    return parse_file(path, model_server_config_pb2.ModelServerConfig())


def parse_batching_parameters(path: str | Path) -> Message:
    from tfstack.model_repo.protos import BatchingParameters

    return parse_file(path, BatchingParameters())


def parse_monitoring_config(path: str | Path) -> Message:
    from tfstack.model_repo.protos import MonitoringConfig

    return parse_file(path, MonitoringConfig())


# --- where each `config` entry sits in the file --------------------------------------------------

_TOKEN = re.compile(
    r"""\#[^\n]*                       # comment
      | "(?:[^"\\\n]|\\.)*"            # double-quoted string
      | '(?:[^'\\\n]|\\.)*'            # single-quoted string
      | [A-Za-z_][\w.]*                # identifier
      | [{}<>:]                        # structure
      | [^\s{}<>:]+                    # anything else (numbers, commas, ...)
    """,
    re.VERBOSE,
)


@dataclass
class EntryLines:
    """Source lines of one `model_config_list.config` entry and of its fields."""

    line: int
    fields: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)

    def of(self, name: str) -> int:
        return self.fields.get(name, self.line)


def config_entry_lines(text: str) -> list[EntryLines]:
    """Line numbers of each `config` entry (in file order) for a text that already parsed.

    Python's text_format has no ParseInfoTree, so this walks the tokens tracking the field path.
    """
    entries: list[EntryLines] = []
    stack: list[str] = []
    tokens = [
        (m.group(), text.count("\n", 0, m.start()) + 1)
        for m in _TOKEN.finditer(text)
        if not m.group().startswith("#")
    ]
    for i, (tok, line) in enumerate(tokens):
        nxt = tokens[i + 1][0] if i + 1 < len(tokens) else ""
        after = tokens[i + 2][0] if i + 2 < len(tokens) else ""
        if tok in ("{", "<"):
            continue
        if tok in ("}", ">"):
            if stack:
                stack.pop()
            continue
        if not re.fullmatch(r"[A-Za-z_][\w.]*", tok) or nxt not in (":", "{", "<"):
            continue
        opens = nxt in "{<" or after in ("{", "<")
        path = tuple(stack)
        if path == ("model_config_list",) and tok == "config":
            entries.append(EntryLines(line))
        elif entries and path == ("model_config_list", "config"):
            entries[-1].fields.setdefault(tok, line)
        elif entries and path[-1:] == ("version_labels",) and tok == "key":
            entries[-1].labels.setdefault(_unquote(after), line)
        elif entries and path[-1:] == ("specific",) and tok == "versions" and after.isdigit():
            entries[-1].versions.setdefault(int(after), line)
        if opens:
            stack.append(tok)
    return entries


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return token[1:-1].encode().decode("unicode_escape")
    return token


# --- local rendering ------------------------------------------------------------------------------

_BASE_PATH = re.compile(r"""(base_path\s*:\s*)(["'])/models(/[^"']*)?\2""")


def render_local_config(models_root: str | Path, config_path: str | Path = MODELS_CONFIG) -> str:
    """models.config with the container root `/models` replaced by the absolute `models_root`."""
    root = str(Path(models_root).resolve())
    text = Path(config_path).read_text(encoding="utf-8")
    return _BASE_PATH.sub(lambda m: f'{m.group(1)}"{root}{m.group(3) or ""}"', text)


def map_path(path: str, path_map: list[tuple[str, str]]) -> str:
    """Apply the first `--path-map FROM=TO` whose FROM is `path` or a parent folder of it."""
    for src, dst in path_map:
        src = src.rstrip("/")
        if path == src or path.startswith(src + "/"):
            return str(Path(dst).resolve()) + path[len(src) :]
    return path
