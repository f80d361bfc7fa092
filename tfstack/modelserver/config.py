"""TF Serving's config files: ModelServerConfig, MonitoringConfig and BatchingParameters.

All three are text protos. ModelServerConfig comes from tensorflow-serving-api; the other two are
not shipped in that package, so their (small, stable) message definitions come from
tfstack/model_repo/protos.py; all three are parsed by tfstack/model_repo/config.py, the parser
`tfstack validate` uses, so both read a file the same way.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tensorflow_serving.config import model_server_config_pb2

from tfstack.model_repo import protos
from tfstack.model_repo.config import ConfigError, parse_file
from tfstack.modelserver.errors import ServingError, invalid_argument

TENSORFLOW_PLATFORM = "tensorflow"
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class ConfigFileError(Exception):
    """A config file that does not parse; `str()` names the file and line."""


def _parse_text(path: Path, message, type_name: str):
    """Parsed as `tfstack validate` parses it (tfstack/model_repo/config.py), with TF Serving's
    text."""
    try:
        return parse_file(path, message)
    except ConfigError as err:
        raise ConfigFileError(
            f"{path}:{err.line}:{err.column}: Error parsing text-format {type_name}: "
            f"{err.message}\nINVALID_ARGUMENT: Invalid protobuf file: '{path}'"
        ) from None


def read_model_server_config(path: Path) -> model_server_config_pb2.ModelServerConfig:
    return _parse_text(
        path,
        model_server_config_pb2.ModelServerConfig(),
        "tensorflow.serving.ModelServerConfig",
    )


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name, entry.base_path, entry.model_platform = name, base_path, TENSORFLOW_PLATFORM
    return config


def validate_model_config(config, source: Path | None = None) -> None:
    """ServerCore's checks on a ModelConfigList (`server_core.cc`), messages verbatim."""
    seen: set[str] = set()
    for entry in config.model_config_list.config:
        where = _where(source, entry.name)
        if entry.name in seen:
            raise invalid_argument(
                f"{where}Illegal to list model {entry.name} multiple times in config list"
            )
        seen.add(entry.name)
        if not (os.path.isabs(entry.base_path) or "://" in entry.base_path):
            raise invalid_argument(
                f"{where}Expected model {entry.name} to have an absolute path or URI; "
                f"got base_path()={entry.base_path}"
            )
        if not entry.model_platform and entry.model_type == 0:
            raise invalid_argument(
                f"{where}Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                f"ModelServerConfig::model_platform, model name is {entry.name}"
            )
        platform = entry.model_platform or TENSORFLOW_PLATFORM
        if platform != TENSORFLOW_PLATFORM:
            raise invalid_argument(
                f"{where}Model {entry.name} requests unsupported platform {platform}"
            )
        if entry.base_path.startswith(("gs://", "s3://", "hdfs://")):
            raise invalid_argument(
                f"{where}Model {entry.name}: base_path {entry.base_path} is a remote file system, "
                "which this local server does not read"
            )


def _where(source: Path | None, model_name: str) -> str:
    """`file:line: ` of the model's `name:` in the config file, for messages people can act on."""
    if source is None:
        return ""
    try:
        lines = Path(source).read_text().splitlines()
    except OSError:
        return f"{source}: "
    pattern = re.compile(r"""name\s*:\s*["']""" + re.escape(model_name) + r"""["']""")
    for number, line in enumerate(lines, 1):
        if pattern.search(line):
            return f"{source}:{number}: "
    return f"{source}: "


# -- monitoring and batching configs -----------------------------------------------------------
# tensorflow-serving-api's wheel lacks these messages; tfstack.model_repo.protos declares them (same
# package, names and field numbers as TF Serving) in a private pool, for the validator and us.
_MESSAGES = {
    "tensorflow.serving.MonitoringConfig": protos.MonitoringConfig,
    "tensorflow.serving.BatchingParameters": protos.BatchingParameters,
}


def _message(name: str):
    return _MESSAGES[name]()


@dataclass(frozen=True)
class MonitoringSettings:
    enabled: bool = False
    path: str = DEFAULT_PROMETHEUS_PATH


def read_monitoring_config(path: Path | None) -> MonitoringSettings:
    if not path:
        return MonitoringSettings()
    config = _parse_text(
        path, _message("tensorflow.serving.MonitoringConfig"), "tensorflow.serving.MonitoringConfig"
    )
    prometheus = config.prometheus_config
    return MonitoringSettings(prometheus.enable, prometheus.path or DEFAULT_PROMETHEUS_PATH)


@dataclass(frozen=True)
class BatchingSettings:
    """BatchingParameters with SharedBatchScheduler's defaults for unset fields."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1
    thread_pool_name: str = "model_server_batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False


def read_batching_parameters(path: Path | None) -> BatchingSettings:
    if not path:
        return BatchingSettings()
    params = _parse_text(
        path,
        _message("tensorflow.serving.BatchingParameters"),
        "tensorflow.serving.BatchingParameters",
    )
    defaults = BatchingSettings()

    def get(field: str, default):
        return getattr(params, field).value if params.HasField(field) else default

    settings = BatchingSettings(
        max_batch_size=get("max_batch_size", defaults.max_batch_size),
        batch_timeout_micros=get("batch_timeout_micros", defaults.batch_timeout_micros),
        max_enqueued_batches=get("max_enqueued_batches", defaults.max_enqueued_batches),
        num_batch_threads=get("num_batch_threads", defaults.num_batch_threads),
        thread_pool_name=get("thread_pool_name", defaults.thread_pool_name),
        allowed_batch_sizes=tuple(params.allowed_batch_sizes),
        pad_variable_length_inputs=params.pad_variable_length_inputs,
    )
    sizes = settings.allowed_batch_sizes
    if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != settings.max_batch_size):
        raise ServingError(
            invalid_argument("").code,
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
            f"{sizes[-1]}; expected {settings.max_batch_size}",
        )
    return settings
