"""Which TF Serving gRPC endpoints (`host:port`) are ready right now.

Three sources, chosen by `TFSTACK_DISCOVERY` (parsed in settings.py; see docs/resilience.md):

- `static`: the `TFSTACK_BACKENDS` list as given (the local stack);
- `dns`: each `TFSTACK_BACKENDS` entry is a headless Service name and port, re-resolved every few
  seconds and as soon as a caller reports a failure (`refresh()`);
- `endpointslices`: a list+watch of the backend Service's EndpointSlices through the `kubernetes`
  client, so a replica takes traffic within a second of turning ready.

A source publishes the whole current set to its listeners on every change. It never touches
connections: the balancer keeps an endpoint that left the set until its in-flight calls finish,
so a change in the set never drops a request. Sources run in the gunicorn worker (after fork).
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

Listener = Callable[[frozenset[str]], None]
Resolver = Callable[[str, int], Iterable[str]]

MODES = ("static", "dns", "endpointslices")
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def split_host_port(endpoint: str) -> tuple[str, int]:
    """`name:8500` or `[::1]:8500` → (host, port); ValueError names what is wrong."""
    host, sep, port = endpoint.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{endpoint!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_tcp(host: str, port: int) -> set[str]:
    """Every address `host` resolves to, as `addr:port` (IPv6 bracketed)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return {join_host_port(info[4][0], port) for info in infos}


class Discovery:
    """Holds the current endpoint set and tells listeners when it changes."""

    def __init__(self) -> None:
        self._endpoints: frozenset[str] = frozenset()
        self._listeners: list[Listener] = []
        self._publish_lock = threading.Lock()  # listeners see changes one at a time, in order
        self._known = threading.Event()  # set once the first result is in

    def endpoints(self) -> frozenset[str]:
        return self._endpoints

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(endpoints)` now and on every later change."""
        with self._publish_lock:
            self._listeners.append(listener)
            self._notify(listener, self._endpoints)

    def wait_known(self, timeout: float) -> bool:
        """True once the source has produced its first result (possibly empty)."""
        return self._known.wait(timeout)

    def start(self) -> None:
        """Begin watching (a no-op for sources that never change)."""

    def stop(self) -> None:
        """Stop watching; the last published set stays readable."""

    def refresh(self) -> None:
        """A caller saw an endpoint fail: re-check soon if the source can (DNS does)."""

    def _publish(self, endpoints: Iterable[str]) -> None:
        new = frozenset(endpoints)
        with self._publish_lock:
            self._known.set()
            if new == self._endpoints:
                return
            log.info(
                "endpoints: %s (added %s, removed %s)",
                sorted(new), sorted(new - self._endpoints), sorted(self._endpoints - new),
            )
            self._endpoints = new
            for listener in self._listeners:
                self._notify(listener, new)

    @staticmethod
    def _notify(listener: Listener, endpoints: frozenset[str]) -> None:
        try:
            listener(endpoints)
        except Exception:  # one broken listener must not stop discovery for the others
            log.exception("endpoint listener %r failed", listener)


class StaticDiscovery(Discovery):
    def __init__(self, endpoints: Iterable[str]) -> None:
        super().__init__()
        for endpoint in endpoints:
            split_host_port(endpoint)
        self._publish(endpoints)


class _Worker(Discovery):
    """A source that polls or watches in one daemon thread until `stop()`."""

    thread_name = "discovery"

    def __init__(self) -> None:
        super().__init__()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        deadline = time.monotonic() + 5
        # Interrupt repeatedly: the thread may be just about to block on a new request.
        while self._thread is not None and self._thread.is_alive() and time.monotonic() < deadline:
            self._interrupt()
            self._thread.join(timeout=0.05)

    def _interrupt(self) -> None:
        """Wake the thread from whatever it blocks on."""

    def _run(self) -> None:
        raise NotImplementedError


class DnsDiscovery(_Worker):
    """Re-resolves `host:port` targets (headless Services) every `interval_s` and on `refresh()`.

    A failed lookup keeps that target's last known addresses (a DNS hiccup must not empty the
    pool) and is retried with back-off from `min_interval_s`.
    """

    thread_name = "discovery-dns"

    def __init__(
        self,
        targets: Sequence[str],
        interval_s: float = 5.0,
        min_interval_s: float = 0.5,
        resolve: Resolver = resolve_tcp,
    ) -> None:
        super().__init__()
        self._targets = [split_host_port(t) for t in targets]
        if not self._targets:
            raise ValueError("DNS discovery needs at least one host:port")
        self._interval_s = interval_s
        self._min_interval_s = min_interval_s
        self._resolve = resolve
        self._last: dict[tuple[str, int], frozenset[str]] = {}
        self._wake = threading.Event()

    def refresh(self) -> None:
        self._wake.set()

    def _interrupt(self) -> None:
        self._wake.set()

    def resolve_once(self) -> bool:
        """Resolve every target now and publish; True if all lookups succeeded."""
        ok = True
        for target in self._targets:
            try:
                self._last[target] = frozenset(self._resolve(*target))
            except OSError as err:
                ok = False
                log.warning("DNS lookup of %s failed (%s); keeping %d known endpoints",
                            join_host_port(*target), err, len(self._last.get(target, ())))
        self._publish(ep for eps in self._last.values() for ep in eps)
        return ok

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            failures = 0 if self.resolve_once() else failures + 1
            wait = self._interval_s
            if failures:
                wait = min(self._interval_s, self._min_interval_s * 2 ** (failures - 1))
            # At most one lookup per min_interval_s, however often refresh() is called.
            if self._stopping.wait(self._min_interval_s):
                return
            self._wake.wait(max(0.0, wait - self._min_interval_s))
            self._wake.clear()


def slice_endpoints(endpoint_slice: object, port_name: str) -> frozenset[str]:
    """Ready `addr:port` of one EndpointSlice (a kubernetes V1EndpointSlice), using the named port.

    Per the EndpointSlice API, an unset `ready` condition means "unknown, treat as ready", and
    only the first address of an endpoint is used.
    """
    ports = endpoint_slice.ports or []
    matching = [p.port for p in ports if p.name == port_name and p.port]
    if not matching and not port_name and len(ports) == 1:
        matching = [ports[0].port]
    if not matching:
        return frozenset()
    ready = set()
    for endpoint in endpoint_slice.endpoints or []:
        conditions = endpoint.conditions
        is_ready = conditions is None or conditions.ready is None or conditions.ready
        if is_ready and endpoint.addresses:
            ready.add(join_host_port(endpoint.addresses[0], matching[0]))
    return frozenset(ready)


class EndpointSliceDiscovery(_Worker):
    """List+watch of `kubernetes.io/service-name=<service>` EndpointSlices in `namespace`.

    Needs RBAC get/list/watch on `endpointslices` (group discovery.k8s.io) in the namespace. The
    watch resumes from the last resourceVersion; when the server says that version is gone
    (410), the state is re-listed. Other errors back off exponentially (with jitter) up to
    `backoff_max_s`, keeping the last known endpoints meanwhile.
    """

    thread_name = "discovery-endpointslices"

    def __init__(
        self,
        service: str,
        namespace: str,
        port_name: str = "grpc",
        api_client: object | None = None,
        api_url: str = "",
        watch_timeout_s: int = 300,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        super().__init__()
        if not service or not namespace:
            raise ValueError("EndpointSlice discovery needs a service and a namespace")
        self.service, self.namespace, self.port_name = service, namespace, port_name
        self._api_client = api_client
        self._api_url = api_url
        self._watch_timeout_s = watch_timeout_s
        self._backoff = (backoff_base_s, backoff_max_s)
        self._slices: dict[str, frozenset[str]] = {}
        self._watch: object | None = None
        self.relists = 0  # how many full lists were made (tests and the debug listing read it)

    @property
    def selector(self) -> str:
        return f"kubernetes.io/service-name={self.service}"

    def _interrupt(self) -> None:
        watch = self._watch
        if watch is None:
            return
        watch.stop()
        # Watch.stop() alone leaves a blocked read of a plain-HTTP stream waiting for the next
        # event; shutting the response's socket down ends it now.
        response = getattr(watch, "_resp", None)
        try:
            if response is not None:
                response.shutdown()
        except (OSError, ValueError, RuntimeError):
            pass

    def _run(self) -> None:
        try:
            from kubernetes.client.exceptions import ApiException

            api = self._discovery_api()
        except Exception:  # no client, no in-cluster config: say so loudly, once
            log.exception("EndpointSlice discovery cannot start; no endpoints will be found")
            self._publish(())
            return
        failures = 0
        while not self._stopping.is_set():
            try:
                version = self._list(api)
                failures = 0
                while not self._stopping.is_set():
                    version = self._watch_from(api, version)
            except ApiException as err:
                if err.status == 410:  # our resourceVersion expired: start over from a list
                    log.info("EndpointSlice watch expired (410 Gone); re-listing")
                    continue
                failures += 1
                log.warning("EndpointSlice API error %s %s", err.status, err.reason)
            # urllib3, socket and decoding errors alike: back off and retry, never die.
            except Exception as err:  # noqa: BLE001
                if self._stopping.is_set():
                    return
                failures += 1
                log.warning("EndpointSlice list/watch failed: %r", err)
            base, cap = self._backoff
            delay = min(cap, base * 2 ** (failures - 1))
            self._stopping.wait(delay * random.uniform(0.8, 1.2))

    def _discovery_api(self) -> object:
        # Imported here so that only this mode needs the `kubernetes` extra.
        from kubernetes import client, config

        if self._api_client is None:
            if self._api_url:  # e.g. `kubectl proxy` when running outside a pod
                configuration = client.Configuration(host=self._api_url)
            else:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
            self._api_client = client.ApiClient(configuration)
        return client.DiscoveryV1Api(self._api_client)

    def _list(self, api: object) -> str:
        result = api.list_namespaced_endpoint_slice(
            self.namespace, label_selector=self.selector, _request_timeout=30
        )
        self.relists += 1
        self._slices = {
            item.metadata.name: slice_endpoints(item, self.port_name) for item in result.items
        }
        self._publish_slices()
        return result.metadata.resource_version

    def _watch_from(self, api: object, version: str) -> str:
        from kubernetes import watch

        self._watch = stream = watch.Watch()
        if self._stopping.is_set():
            return version
        # Spread re-watches of many gateway pods over time (client-go does the same).
        timeout = int(self._watch_timeout_s * random.uniform(1.0, 2.0))
        events = stream.stream(
            api.list_namespaced_endpoint_slice,
            self.namespace,
            label_selector=self.selector,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=(10, timeout + 30),
        )
        for event in events:
            kind, item = event["type"], event["object"]
            if kind in ("ADDED", "MODIFIED"):
                self._slices[item.metadata.name] = slice_endpoints(item, self.port_name)
            elif kind == "DELETED":
                self._slices.pop(item.metadata.name, None)
            else:  # BOOKMARK: only moves the resourceVersion on
                continue
            self._publish_slices()
        return stream.resource_version or version

    def _publish_slices(self) -> None:
        self._publish(ep for eps in self._slices.values() for ep in eps)


@dataclass(frozen=True)
class DiscoveryConfig:
    """How to find backends (settings.py parses `TFSTACK_DISCOVERY*`; docs/resilience.md)."""

    mode: str = "static"
    backends: tuple[str, ...] = ()  # static: the endpoints; dns: names to resolve
    service: str = ""  # endpointslices: the TF Serving Service
    namespace: str = ""  # endpointslices: default, the gateway pod's own namespace
    port_name: str = "grpc"  # endpointslices: the Service port to use, by name
    dns_interval_s: float = 5.0
    api_url: str = ""  # endpointslices: Kubernetes API base URL; empty: in-cluster config

    @classmethod
    def from_settings(cls, settings: object) -> DiscoveryConfig:
        """From the gateway's parsed `Settings` (its `discovery*` and `backends` fields)."""
        s = settings
        return cls(s.discovery, tuple(s.backends), s.discovery_service, s.discovery_namespace,
                   s.discovery_port_name, float(s.discovery_dns_interval_s), s.discovery_api_url)

    def build(self) -> Discovery:
        """The source this configuration selects (not started)."""
        if self.mode == "dns":
            return DnsDiscovery(self.backends, interval_s=self.dns_interval_s)
        if self.mode == "endpointslices":
            namespace = self.namespace or IN_CLUSTER_NAMESPACE.read_text().strip()
            return EndpointSliceDiscovery(
                self.service, namespace, self.port_name, api_url=self.api_url
            )
        return StaticDiscovery(self.backends)
