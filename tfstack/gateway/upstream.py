"""The backend client: channels and stubs per worker, balancing, retries, deadlines, error
translation, and fetching signatures into the cache (signatures.py).

Nothing here touches the network at import time or in the gunicorn master: the endpoint pool (one
channel per backend endpoint) is built lazily on first use in each worker process, and rebuilt if
the process id changes (a fork after first use, e.g. with preload), because gRPC is not fork-safe.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from tfstack.gateway import metrics
from tfstack.gateway.balancing import Endpoint, EndpointPool, NoEndpoint
from tfstack.gateway.discovery import Discovery, DiscoveryConfig
from tfstack.gateway.domain import (
    CachedSignatures,
    Deadline,
    DeadlineExceeded,
    NoBackend,
    UpstreamError,
)
from tfstack.gateway.health import HealthTracker, Prober
from tfstack.gateway.readiness import ReadinessCheck
from tfstack.gateway.retry import RETRY, RetryPolicy
from tfstack.gateway.settings import Settings
from tfstack.gateway.signatures import SignatureCache
from tfstack.protocol.errors import ProtocolError
from tfstack.protocol.proto import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tfstack.protocol.routes import ModelRef
from tfstack.protocol.rpcs import MODEL_SERVICE, RPCS

UNKNOWN_MODEL = "_unknown"  # metrics label for a model the backend has not confirmed
# After a refused request: how long a model's signatures are trusted before the backend is asked
# again whether they changed (fresher_signatures).
RECHECK_S = 1.0
# (address, rpc, milliseconds) of each backend call the current request made, for the access log.
CALLS: contextvars.ContextVar[list[tuple[str, str, float]] | None] = contextvars.ContextVar(
    "tfstack_upstream_calls", default=None
)


def channel_options(settings: Settings) -> list[tuple[str, Any]]:
    return [
        # TF Serving sends and accepts messages up to ~2 GiB; gRPC's client default (4 MiB receive)
        # would turn a large prediction into RESOURCE_EXHAUSTED.
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        # Find a backend that vanished without closing the connection (node loss) while calls are
        # in flight; no pings on idle connections, which servers punish with GOAWAY too_many_pings.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 0),
        # Come back quickly after a backend restart instead of backing off for up to 2 minutes.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
        # One channel per endpoint and the choice per request is ours (balancing.py), so no
        # gRPC-side load balancing, and no transparent retries: retry policy lives in one place.
        ("grpc.lb_policy_name", "pick_first"),
        ("grpc.enable_retries", 0),
        ("grpc.primary_user_agent", "tfstack-gateway"),
    ]


class _Client:
    """A channel to one endpoint, its two stubs, and raw methods for the gRPC front door."""

    def __init__(self, endpoint: Endpoint, options: list[tuple[str, Any]]) -> None:
        self.channel = grpc.insecure_channel(endpoint.address, options=options)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model = model_service_pb2_grpc.ModelServiceStub(self.channel)
        # No serializers: the request's bytes go out as received, the answer's come back as is.
        self.raw = {
            rpc.name: self.channel.unary_unary(rpc.path, _registered_method=True)
            for rpc in RPCS.values()
        }

        def on_state(state: grpc.ChannelConnectivity) -> None:
            endpoint.state = state.name.lower()

        self.channel.subscribe(on_state, try_to_connect=False)

    def method(self, rpc: str) -> Callable[..., Any]:
        stub = self.model if RPCS[rpc].service == MODEL_SERVICE else self.prediction
        return getattr(stub, rpc)

    def close(self) -> None:
        self.channel.close()


class Upstream:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pool: EndpointPool | None = None
        self.signature_cache = SignatureCache()
        self._known_models: set[str] = set()
        self.health = HealthTracker()
        self._check = ReadinessCheck(settings.ready_models, min(1.0, settings.deadline_ms / 1000))
        self.retry = RetryPolicy()
        self._discovery: Discovery | None = None
        self._prober: Prober | None = None

    # -- endpoints ---------------------------------------------------------------------------
    @property
    def pool(self) -> EndpointPool:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._start_pool()
            return self._pool

    def start(self) -> None:
        """Start this process's discovery, health thread and first readiness check now rather
        than on first use (gunicorn.conf.py calls it in each worker before it serves)."""
        self.pool  # noqa: B018

    def _start_pool(self) -> None:
        """In this process: discovery feeding a health-aware pool, and the health thread (probes
        of ejected endpoints, readiness checks), after a first readiness check of every endpoint.

        See docs/resilience.md."""
        options = channel_options(self.settings)
        self.health = HealthTracker()
        self._pool = EndpointPool(
            [], lambda e: _Client(e, options), health=self.health,
            disconnect=lambda e: e.client.close(),
        )
        self._pid = os.getpid()
        self.signature_cache.clear()
        self._discovery = DiscoveryConfig.from_settings(self.settings).build()
        self._discovery.subscribe(self._pool.update)
        self._discovery.start()
        # The first list or lookup, before the first call (EndpointSlice mode imports the
        # kubernetes client first: a second or two on a busy machine).
        self._discovery.wait_known(timeout=10.0)
        self._prober = Prober(
            self.health, self._probe_address, report=_report_endpoints,
            check=self._check_addresses,
            check_interval_s=self.settings.ready_check_interval_ms / 1000,
        )
        self._prober.check_now()  # at most the check's timeout (1 s), however many replicas hang
        self._prober.start()

    def model_label(self, name: str) -> str:
        """`name` once a backend has answered for it, else `_unknown` (bounded label values)."""
        return name if name in self._known_models else UNKNOWN_MODEL

    def call(
        self, rpc: str, request: Any, model: str, deadline: Deadline, raw: bool = False,
        prefer: str | None = None,
    ) -> Any:
        """One unary call with the request's remaining deadline, retried on another endpoint
        when that is safe and the retry budget allows (tfstack/gateway/retry.py). With `raw`,
        `request` is a serialized message and so is the answer (the gRPC front door forwards
        bytes). `request` may also be a function of the chosen endpoint returning the message
        (a request converted for what that endpoint serves); what it raises ends the call.
        `prefer`: the first attempt goes to that endpoint while it is in rotation."""
        pool = self.pool
        self.retry.budget.record_request()
        tried: list[str] = []
        while True:
            timeout = deadline.remaining_s()
            try:
                endpoint = pool.acquire(exclude=tried, prefer=None if tried else prefer)
            except NoEndpoint as err:
                raise NoBackend(str(err)) from None
            tried.append(endpoint.address)
            if callable(request):
                try:
                    message = request(endpoint)
                except BaseException:
                    pool.release(endpoint)
                    raise
            else:
                message = request
            try:
                return self._attempt(pool, endpoint, rpc, message, model, timeout, raw,
                                     judge=not deadline.client_shortened)
            except grpc.RpcError as err:
                decision = self.retry.decide(
                    code=err.code(), attempts=len(tried),
                    remaining_s=deadline.left_s(), untried_endpoints=pool.untried(tried),
                )
                metrics.RETRIES.labels(decision).inc()
                if err.code() == grpc.StatusCode.UNAVAILABLE and self._discovery is not None:
                    self._discovery.refresh()  # DNS: look again now; others: no-op
                if decision != RETRY:
                    raise _translate(err, endpoint, deadline) from None

    def _attempt(
        self, pool: EndpointPool, endpoint: Endpoint, rpc: str, request: Any, model: str,
        timeout: float, raw: bool, judge: bool = True,
    ) -> Any:
        """One call on `endpoint`; its outcome counts for the endpoint's health, except a
        DEADLINE_EXCEEDED when not `judge` (the client's own short deadline ran out)."""
        started = time.perf_counter()
        error: str | None = None
        code = "OK"
        method = endpoint.client.raw[rpc] if raw else endpoint.client.method(rpc)
        try:
            response = method(request, timeout=timeout)
            self._known_models.add(model)
            return response
        except grpc.RpcError as err:
            status = err.code()
            code = status.name if status else "UNKNOWN"
            if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                error = f"{code}: {err.details()}"
            raise
        finally:
            elapsed = time.perf_counter() - started
            pool.release(endpoint, error)
            if judge or code != "DEADLINE_EXCEEDED":
                self.health.record(endpoint.address, code)
            label = self.model_label(model)
            metrics.child(metrics.UPSTREAM_DURATION, label, rpc).observe(elapsed)
            calls = CALLS.get()
            if calls is not None:
                calls.append((endpoint.address, rpc, elapsed * 1000))
            if code != "OK":
                metrics.UPSTREAM_ERRORS.labels(label, rpc, code).inc()

    def _probe_address(self, address: str) -> bool:
        """The health prober's check of an ejected endpoint: the readiness check, on it alone."""
        return self._check_addresses([address]).get(address) == ""

    def _check_addresses(self, addresses: list[str]) -> dict[str, str]:
        """The readiness check of `addresses` (connected first), all at once."""
        wanted = set(addresses)
        endpoints = [e for e in self._pool.all() if e.address in wanted] if self._pool else []
        return self._check(endpoints)

    # -- signatures ----------------------------------------------------------------------------
    def metadata(self, model: ModelRef, deadline: Deadline) -> Any:
        """GetModelMetadata (its signatures refresh this worker's cache)."""
        response, address = self._fetch_metadata(model, deadline)
        self.signature_cache.store(model, response, address)
        return response

    def _fetch_metadata(
        self, model: ModelRef, deadline: Deadline, prefer: str | None = None
    ) -> tuple[Any, str | None]:
        """The model's GetModelMetadataResponse, and the endpoint that answered it."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model.spec(), metadata_field=["signature_def"]
        )
        sent_to: list[str] = []

        def to(endpoint: Endpoint) -> Any:
            sent_to.append(endpoint.address)
            return request

        response = self.call("GetModelMetadata", to, model.name, deadline, prefer=prefer)
        return response, (sent_to[-1] if sent_to else None)

    def signatures(
        self, model: ModelRef, deadline: Deadline, wanted: str | None = None
    ) -> CachedSignatures:
        """The model's signatures: from this worker's cache unless absent or lacking `wanted`
        (see signatures.py), else fetched."""
        self.pool  # noqa: B018 (a fork since the last call empties the cache)
        cached = self.signature_cache.lookup(model, wanted)
        if cached is not None:
            return cached
        return self.signature_cache.store(model, *self._fetch_metadata(model, deadline))

    def fresher_signatures(
        self, model: ModelRef, used: CachedSignatures, deadline: Deadline,
        address: str | None = None,
    ) -> CachedSignatures | None:
        """After a request converted with `used` was refused (by `address`, or by the codec
        before any endpoint was chosen): the model's signatures as that endpoint has them now,
        when they differ from `used` (a new version with other inputs went live there); None
        when they do not, or cannot be had. Another request may have fetched them already, or
        be fetching them (then this one waits for its answer); else the endpoint is asked, at
        most once per RECHECK_S per model and endpoint (a client sending bad requests costs at
        most that many metadata calls)."""
        cache = self.signature_cache

        def current() -> CachedSignatures | None:
            return cache.lookup(model) if address is None else cache.for_endpoint(model, address)

        fresh = current()
        if fresh is None or fresh is used:
            mine, event = cache.begin_recheck(model, RECHECK_S, address)
            if mine:
                try:
                    fresh = cache.store(model, *self._fetch_metadata(model, deadline, address))
                except ProtocolError:  # no answer (no backend, deadline, ...): the refusal stands
                    return None
                finally:
                    cache.end_recheck(model, event, address)
            elif event is not None and event.wait(deadline.left_s()):
                fresh = current()
            else:
                return None
        if fresh is None or (
            fresh.version == used.version and fresh.signatures == used.signatures
        ):
            return None
        return fresh

    # -- readiness ---------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, list[dict[str, object]]]:
        """Is an endpoint in rotation serving? From the health tracker's memory: no I/O here once
        this process has started (`start()`); the health thread keeps the answer fresh."""
        self.pool  # noqa: B018 (outside gunicorn, the first call starts discovery and checks)
        return self.health.readiness()


def _report_endpoints(counts: dict[str, int]) -> None:
    for state, count in counts.items():
        metrics.ENDPOINTS.labels(state).set(count)


def _translate(err: grpc.RpcError, endpoint: Endpoint, deadline: Deadline) -> Exception:
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(deadline.timeout_ms)
    if code == grpc.StatusCode.UNAVAILABLE and _is_transport_failure(details):
        return NoBackend(f"{endpoint.address}: {details}")
    return UpstreamError(code, details)


def _is_transport_failure(details: str) -> bool:
    text = details.lower()
    return any(
        marker in text
        for marker in ("failed to connect", "connection refused", "socket closed", "dns resolution")
    )
