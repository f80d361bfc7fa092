"""Gateway settings: `TFSTACK_*` environment variables, parsed and validated once.

`load_settings()` is called by gunicorn.conf.py in the master (a bad value stops start-up with a
message naming the variable) and again by `create_app()` in each worker. docs/gateway.md has the
table of variables; keep it in step with `VARIABLES` below.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

from tfstack.gateway.admission import parse_model_limits
from tfstack.gateway.discovery import IN_CLUSTER_NAMESPACE
from tfstack.gateway.discovery import MODES as DISCOVERY_MODES

PREFIX = "TFSTACK_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# gunicorn worker classes the gateway runs under (docs/architecture.md, "Worker model").
WORKER_CLASSES = ("gevent", "gthread")
_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class SettingsError(ValueError):
    """A `TFSTACK_*` variable has a value the gateway cannot use."""


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"expected an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"expected an integer in [{low}, {high}], got {value}")
        return value

    return parse


def _host_port(raw: str) -> str:
    match = _HOST_PORT.match(raw.strip())
    if not match or not 0 < int(match.group(1)) < 65536:
        raise SettingsError(f"expected host:port, got {raw!r}")
    return raw.strip()


def _backends(raw: str) -> tuple[str, ...]:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise SettingsError("expected a comma-separated list of host:port, got an empty list")
    return tuple(dict.fromkeys(_host_port(item) for item in items))


def _names(raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _log_level(raw: str) -> str:
    level = raw.strip().lower()
    if level not in LOG_LEVELS:
        raise SettingsError(f"expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level


def _worker_class(raw: str) -> str:
    value = raw.strip().lower()
    if value not in WORKER_CLASSES:
        raise SettingsError(f"expected one of {', '.join(WORKER_CLASSES)}, got {raw!r}")
    if value == "gevent" and importlib.util.find_spec("gevent") is None:
        raise SettingsError("gevent is not installed (its pin is in pyproject.toml)")
    return value


def _discovery_mode(raw: str) -> str:
    mode = raw.strip().lower()
    if mode not in DISCOVERY_MODES:
        raise SettingsError(f"expected one of {', '.join(DISCOVERY_MODES)}, got {raw!r}")
    return mode


def _text(raw: str) -> str:
    return raw.strip()


def _model_limits(raw: str) -> tuple[tuple[str, int], ...]:
    try:
        return tuple(parse_model_limits(raw).items())
    except ValueError as err:
        raise SettingsError(str(err)) from None


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"expected true/false (or 1/0), got {raw!r}")


MiB = 1024 * 1024

# field name -> (parser, default as the environment would spell it)
VARIABLES: dict[str, tuple[Callable[[str], object], str]] = {
    "bind": (_host_port, "0.0.0.0:8080"),
    "workers": (_int(1, 64), "2"),
    "worker_class": (_worker_class, "gevent"),
    "worker_connections": (_int(1, 100_000), "1000"),  # gevent: open connections per worker
    "threads": (_int(1, 256), "8"),  # gthread only
    "backends": (_backends, "127.0.0.1:8500"),
    "deadline_ms": (_int(1, 3_600_000), "10000"),
    "max_body_bytes": (_int(1, 2**31 - 1), str(16 * MiB)),
    "grpc_max_message_bytes": (_int(4 * MiB, 2**31 - 1), str(256 * MiB)),
    "log_level": (_log_level, "info"),
    "access_log": (_bool, "true"),
    "ready_models": (_names, ""),
    "ready_check_interval_ms": (_int(100, 60_000), "1000"),
    "graceful_timeout_s": (_int(1, 3600), "30"),
    "worker_timeout_s": (_int(1, 3600), "60"),
    "debug_endpoints": (_bool, "false"),
    # Resilience (docs/resilience.md).
    "discovery": (_discovery_mode, "static"),
    "discovery_service": (_text, ""),
    "discovery_namespace": (_text, ""),
    "discovery_port_name": (_text, "grpc"),
    "discovery_dns_interval_s": (_int(1, 3600), "5"),
    "discovery_api_url": (_text, ""),  # empty: in-cluster; else e.g. kubectl proxy's URL
    "max_inflight": (_int(0, 100_000), "0"),  # 0: derived from ready endpoints (admission.py)
    "max_inflight_per_endpoint": (_int(1, 100_000), "32"),
    "model_max_inflight": (_model_limits, ""),
    "retry_after_s": (_int(1, 3600), "1"),
    "drain_delay_s": (_int(0, 3600), "0"),
    # The gRPC front door (tfstack/gateway/grpc_server.py, its own process; docs/gateway.md).
    "grpc_bind": (_host_port, "0.0.0.0:8500"),
    "grpc_ops_bind": (_host_port, "0.0.0.0:8081"),  # its /healthz, /readyz, /metrics
    "grpc_threads": (_int(2, 1024), "32"),
    "grpc_max_inflight": (_int(0, 100_000), "0"),  # 0: per ready endpoint, capped by grpc_threads
}


@dataclass(frozen=True)
class Settings:
    bind: str
    workers: int
    worker_class: str
    worker_connections: int
    threads: int
    backends: tuple[str, ...]
    deadline_ms: int
    max_body_bytes: int
    grpc_max_message_bytes: int
    log_level: str
    access_log: bool
    ready_models: tuple[str, ...]
    ready_check_interval_ms: int
    graceful_timeout_s: int
    worker_timeout_s: int
    debug_endpoints: bool
    discovery: str
    discovery_service: str
    discovery_namespace: str
    discovery_port_name: str
    discovery_dns_interval_s: int
    discovery_api_url: str
    max_inflight: int
    max_inflight_per_endpoint: int
    model_max_inflight: tuple[tuple[str, int], ...]
    retry_after_s: int
    drain_delay_s: int
    grpc_bind: str
    grpc_ops_bind: str
    grpc_threads: int
    grpc_max_inflight: int

    @classmethod
    def defaults(cls, **overrides: object) -> Settings:
        """The defaults (as parsed from their environment spelling), with `overrides` applied."""
        values = {name: parse(raw) for name, (parse, raw) in VARIABLES.items()}
        values.update(overrides)
        return cls(**values)


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `environ` (default `os.environ`); SettingsError names the bad variable."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in fields(Settings):
        parse, default = VARIABLES[field.name]
        name = env_name(field.name)
        raw = environ.get(name, default)
        try:
            values[field.name] = parse(raw)
        except SettingsError as err:
            raise SettingsError(f"{name}: {err}") from None
    settings = Settings(**values)
    if settings.discovery == "endpointslices":
        if importlib.util.find_spec("kubernetes") is None:
            raise SettingsError(
                "TFSTACK_DISCOVERY: endpointslices needs the kubernetes client "
                "(pip install 'tfstack[kubernetes]')"
            )
        if not settings.discovery_service:
            raise SettingsError(
                "TFSTACK_DISCOVERY_SERVICE: name the TF Serving Service to watch "
                "(TFSTACK_DISCOVERY=endpointslices)"
            )
        if not settings.discovery_namespace and not IN_CLUSTER_NAMESPACE.exists():
            raise SettingsError(
                f"TFSTACK_DISCOVERY_NAMESPACE: required outside a pod ({IN_CLUSTER_NAMESPACE} "
                "is missing)"
            )
    return settings
