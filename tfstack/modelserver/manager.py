"""Model versions: which to serve (version policy over the base path), loading and unloading them
without dropping a request, their states for GetModelStatus, and version labels.

Semantics follow TF Serving's ServerCore / AspiredVersionsManager:
- each poll turns a base path's numeric children into the aspired versions (latest N, all,
  specific); new versions load before versions that are no longer aspired unload
  (AvailabilityPreservingPolicy), so `Latest` keeps resolving during a rollover;
- a version goes START -> LOADING -> AVAILABLE -> UNLOADING -> END; states are kept after END
  (history), a failed load ends in END with its error;
- only AVAILABLE versions are served; an unloading version finishes its in-flight requests first.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from tfstack.modelserver.config import validate_model_config
from tfstack.modelserver.errors import (
    ServingError,
    failed_precondition,
    invalid_argument,
    not_found,
)
from tfstack.modelserver.metrics import Metrics
from tfstack.modelserver.servable import Servable
from tfstack.modelserver.versions import aspired_versions, list_versions

log = logging.getLogger("tfstack.modelserver.manager")

State = get_model_status_pb2.ModelVersionStatus.State
START, LOADING, AVAILABLE, UNLOADING, END = (
    State.START,
    State.LOADING,
    State.AVAILABLE,
    State.UNLOADING,
    State.END,
)

Loader = Callable[[str, int, Path], Servable]


@dataclass
class VersionEntry:
    version: int
    state: int = START
    error: ServingError | None = None
    servable: Servable | None = None
    inflight: int = 0


@dataclass
class ModelEntry:
    config: model_server_config_pb2.ModelConfig
    versions: dict[int, VersionEntry] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    active: bool = True  # False once removed from the config (history stays for status)
    paths: dict[int, Path] = field(default_factory=dict)  # version -> directory, last poll


@dataclass(frozen=True)
class ManagerOptions:
    file_system_poll_wait_seconds: float = 1.0
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0


class Manager:
    def __init__(
        self,
        loader: Loader,
        options: ManagerOptions,
        metrics: Metrics,
        warmup: Callable[[Servable], None] | None = None,
    ) -> None:
        self._loader = loader
        self._options = options
        self._metrics = metrics
        self._warmup = warmup
        self._models: dict[str, ModelEntry] = {}
        self._cond = threading.Condition()
        self._reconcile_lock = threading.Lock()
        self._config: model_server_config_pb2.ModelServerConfig | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # -- configuration -----------------------------------------------------------------------
    @property
    def config(self):
        return self._config

    def load_initial(self, config, source: Path | None = None) -> None:
        """Apply the start-up config and block until every model is AVAILABLE or failed."""
        validate_model_config(config, source)
        self._config = config
        with self._cond:
            for entry in config.model_config_list.config:
                self._models[entry.name] = ModelEntry(config=entry)
        # Labels are checked before the first load, as in ServerCore (hence the flag).
        self._update_labels(config)
        while not self._stop.is_set():
            self.reconcile()
            pending = [m for m in self._active_models() if not self._settled(m)]
            if not pending:
                break
            self._stop.wait(max(self._options.file_system_poll_wait_seconds, 0.5))
        failed = self._failures()
        if failed:
            raise _not_available("servable(s)", failed)

    def reload(self, config, source: Path | None = None) -> None:
        """ServerCore::ReloadConfig: replace the model list; raises ServingError on a bad one."""
        if config.WhichOneof("config") is None:
            log.info("Taking no action for empty config.")
            return
        if config.WhichOneof("config") != "model_config_list":
            raise invalid_argument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                "ModelConfigList is currently supported"
            )
        validate_model_config(config, source)
        if self._config is not None and self._config == config:
            return
        names = {entry.name for entry in config.model_config_list.config}
        with self._cond:
            added = [
                e.name
                for e in config.model_config_list.config
                if e.name not in self._models or not self._models[e.name].active
            ]
            for entry in config.model_config_list.config:
                model = self._models.get(entry.name)
                if model is None:
                    self._models[entry.name] = ModelEntry(config=entry)
                else:
                    model.config, model.active = entry, True
            for name, model in self._models.items():
                if name not in names:
                    model.active = False
            self._config = config
        self.reconcile()
        failed = [(n, v, e) for n, v, e in self._failures() if n in added]
        if failed:
            raise _not_available("model(s)", failed)
        self._update_labels(config)

    def _update_labels(self, config) -> None:
        allow = self._options.allow_version_labels_for_unavailable_models
        new_labels: dict[str, dict[str, int]] = {}
        with self._cond:
            for entry in config.model_config_list.config:
                model = self._models[entry.name]
                for label, version in entry.version_labels.items():
                    current = model.versions.get(version)
                    available = current is not None and current.state == AVAILABLE
                    if not available and not (allow and label not in model.labels):
                        raise failed_precondition(
                            f"Request to assign label to version {version} of model "
                            f"{entry.name}, which is not currently available for inference"
                        )
                new_labels[entry.name] = dict(entry.version_labels)
            for name, labels in new_labels.items():
                self._models[name].labels = labels

    # -- polling -------------------------------------------------------------------------------
    def start_polling(self) -> None:
        if self._options.file_system_poll_wait_seconds <= 0:
            return
        self._poller = threading.Thread(target=self._poll_loop, name="fs-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._options.file_system_poll_wait_seconds):
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 (a poll must never kill the poller)
                log.exception("file system poll failed")

    def stop(self) -> None:
        self._stop.set()

    def unload_all(self) -> None:
        with self._cond:
            targets = [
                (m, e)
                for m in self._models.values()
                for e in m.versions.values()
                if e.state == AVAILABLE
            ]
        for model, entry in targets:
            self._unload(model.config.name, entry)

    # -- reconciliation ------------------------------------------------------------------------
    def reconcile(self) -> None:
        """One pass: load newly aspired versions, then unload the ones no longer aspired."""
        with self._reconcile_lock:
            with self._cond:
                models = list(self._models.values())
            for model in models:
                aspired = self._aspired(model) if model.active else set()
                if aspired is None:
                    continue
                for version in sorted(aspired - self._live_or_failed(model), reverse=True):
                    self._load(model, version)
                for entry in list(model.versions.values()):
                    if entry.state == AVAILABLE and entry.version not in aspired:
                        self._unload(model.config.name, entry)

    def _live_or_failed(self, model: ModelEntry) -> set[int]:
        """Versions not to (re)load: loaded ones, and failed ones still aspired (no retry loop)."""
        with self._cond:
            return {
                v
                for v, e in model.versions.items()
                if e.state in (START, LOADING, AVAILABLE) or e.error is not None
            }

    def _aspired(self, model: ModelEntry) -> set[int] | None:
        found = list_versions(model.config)
        if found is None:
            return None
        model.paths = found
        return aspired_versions(model.config, found)

    def _load(self, model: ModelEntry, version: int) -> None:
        name = model.config.name
        path = model.paths[version]
        entry = VersionEntry(version=version, state=START)
        with self._cond:
            model.versions[version] = entry
            entry.state = LOADING
        log.info("Loading servable version {name: %s version: %d}", name, version)
        attempts = 1 + max(self._options.max_num_load_retries, 0)
        for attempt in range(attempts):
            started = time.monotonic()
            try:
                servable = self._loader(name, version, path)
                if self._warmup is not None:
                    self._warmup(servable)
            except Exception as err:  # noqa: BLE001 (a failed load must end the version)
                if not isinstance(err, ServingError):
                    log.exception("loading %s failed", path)
                    err = ServingError(grpc.StatusCode.UNKNOWN, str(err))
                self._metrics.load_attempt_count.inc(str(path), "fail")
                log.error(
                    "Loading servable version {name: %s version: %d} failed: %s: %s",
                    name,
                    version,
                    err.code_name,
                    err.message,
                )
                if attempt + 1 < attempts and not self._stop.wait(
                    self._options.load_retry_interval_seconds
                ):
                    continue
                with self._cond:
                    entry.state, entry.error = END, err
                    self._cond.notify_all()
                return
            self._metrics.load_attempt_count.inc(str(path), "success")
            self._metrics.load_latency.inc(str(path), amount=(time.monotonic() - started) * 1e6)
            with self._cond:
                entry.servable, entry.state = servable, AVAILABLE
                self._cond.notify_all()
            log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
            return

    def _unload(self, name: str, entry: VersionEntry) -> None:
        with self._cond:
            if entry.state != AVAILABLE:
                return
            entry.state = UNLOADING
            log.info("Unloading servable version {name: %s version: %d}", name, entry.version)
            # Requests that already hold this version finish on it (availability preserving).
            self._cond.wait_for(lambda: entry.inflight == 0, timeout=60)
            servable, entry.servable = entry.servable, None
        if servable is not None:
            servable.close()
        with self._cond:
            entry.state = END
            self._cond.notify_all()
        log.info("Done unloading servable version {name: %s version: %d}", name, entry.version)

    def _active_models(self) -> list[ModelEntry]:
        with self._cond:
            return [m for m in self._models.values() if m.active]

    def _settled(self, model: ModelEntry) -> bool:
        """Initial load done for this model: some version AVAILABLE, or every one failed."""
        with self._cond:
            states = [e.state for e in model.versions.values()]
        if AVAILABLE in states:
            return True
        return bool(states) and all(s == END for s in states)

    def _failures(self) -> list[tuple[str, int, ServingError]]:
        with self._cond:
            return [
                (m.config.name, e.version, e.error)
                for m in self._models.values()
                if m.active
                for e in m.versions.values()
                if e.state == END
                and e.error is not None
                and not any(o.state == AVAILABLE for o in m.versions.values())
            ]

    # -- serving -------------------------------------------------------------------------------
    def resolve_label(self, name: str, label: str) -> int:
        with self._cond:
            model = self._models.get(name)
            version = model.labels.get(label) if model is not None else None
        if version is None:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return version

    @contextlib.contextmanager
    def acquire(self, name: str, version: int | None = None) -> Iterator[Servable]:
        """Hold an AVAILABLE servable for one request (Latest when version is None)."""
        with self._cond:
            model = self._models.get(name)
            entry = None
            if model is not None and model.active:
                if version is None:
                    ready = [e for e in model.versions.values() if e.state == AVAILABLE]
                    entry = max(ready, key=lambda e: e.version) if ready else None
                else:
                    found = model.versions.get(version)
                    entry = found if found is not None and found.state == AVAILABLE else None
            if entry is None:
                what = f"Latest({name})" if version is None else f"Specific({name}, {version})"
                raise not_found(f"Servable not found for request: {what}")
            entry.inflight += 1
            servable = entry.servable
        try:
            yield servable
        finally:
            with self._cond:
                entry.inflight -= 1
                if entry.inflight == 0:
                    self._cond.notify_all()

    def version_states(self, name: str) -> list[VersionEntry]:
        """Every version ever seen for `name`, highest first (GetModelStatus order)."""
        with self._cond:
            model = self._models.get(name)
            entries = list(model.versions.values()) if model is not None else []
            return [
                VersionEntry(e.version, e.state, e.error)
                for e in sorted(entries, key=lambda e: e.version, reverse=True)
            ]


def _not_available(what: str, failed: list[tuple[str, int, ServingError]]) -> ServingError:
    """load_servables_fast.cc / server_core.cc: every version that ended in an error."""
    items = "".join(
        f"{{name: {n} version: {v}}} due to error: {e.code_name}: {e.message}, "
        for n, v, e in failed
    )
    return ServingError(
        grpc.StatusCode.UNKNOWN, f"{len(failed)} {what} did not become available: {{{items}}}"
    )
