"""Outlier ejection: take failing endpoints out of rotation, probe them, and bring them back.

An endpoint whose calls fail `consecutive_failures` times in a row — connection refused (which
gRPC reports as UNAVAILABLE), UNAVAILABLE, DEADLINE_EXCEEDED — is ejected for a back-off period
that doubles with each ejection in a row (capped, with jitter, so that gateway workers do not probe
in lockstep). When the period ends the endpoint is half-open: one probe (e.g. GetModelStatus)
decides whether it is healthy again or ejected for longer. Application errors (a bad request, an
unknown model) prove the endpoint is alive and count as successes here.

If every known endpoint is ejected, `available()` offers them all anyway ("panic mode", as Envoy
does): sending to possibly-bad endpoints beats refusing everything when the detector is wrong.

The tracker also keeps each endpoint's last readiness check (readiness.py), so `/readyz` answers
from memory: ready when an endpoint in rotation passed its last check.

Each gunicorn worker keeps its own tracker; nothing here blocks or does I/O except `Prober`.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Status codes that say the endpoint, not the request, is the problem.
ENDPOINT_FAILURE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


class State(enum.Enum):
    """An endpoint's state, as the debug listing shows it (metrics: see `counts()`)."""

    READY = "ready"  # in rotation
    EJECTED = "ejected"  # out of rotation until its back-off ends
    PROBING = "probing"  # back-off over; a probe decides


def is_endpoint_failure(code: object) -> bool:
    """True for a gRPC status (a `grpc.StatusCode` or its name) that should count against the
    endpoint; None (the call never got a status, e.g. the connection failed) counts too."""
    if code is None:
        return True
    return getattr(code, "name", code) in ENDPOINT_FAILURE_CODES


@dataclass(frozen=True)
class EjectionPolicy:
    consecutive_failures: int = 3
    base_ejection_s: float = 1.0
    max_ejection_s: float = 30.0
    jitter: float = 0.2  # each back-off is scaled by a random factor in [1 - jitter, 1 + jitter]
    forgive_after_s: float = 60.0  # healthy this long: the next ejection starts from base again

    def backoff_s(self, ejections: int, unit_random: float) -> float:
        """Back-off for the `ejections`-th ejection in a row (1-based); unit_random in [0, 1)."""
        period = min(self.max_ejection_s, self.base_ejection_s * 2 ** (ejections - 1))
        return period * (1 + self.jitter * (2 * unit_random - 1))


@dataclass
class _Endpoint:
    state: State = State.READY
    failures: int = 0  # consecutive failures while healthy
    ejections: int = 0  # ejections in a row, the back-off exponent
    ejected_until: float = 0.0
    healthy_since: float = 0.0
    checked: bool = False  # a readiness check (or a probe) has answered since it appeared
    problem: str = ""  # why its last check failed; "" when it passed


class HealthTracker:
    """Per-endpoint failure counting and ejection state, for one worker (thread-safe)."""

    def __init__(
        self,
        policy: EjectionPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        unit_random: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy or EjectionPolicy()
        self._clock = clock
        self._random = unit_random
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}

    # --- membership (a discovery listener) -------------------------------------------------
    def sync(self, endpoints: Iterable[str]) -> None:
        """Track exactly `endpoints`: new ones start healthy, gone ones are forgotten."""
        wanted = set(endpoints)
        now = self._clock()
        with self._lock:
            for gone in self._endpoints.keys() - wanted:
                del self._endpoints[gone]
            for new in wanted - self._endpoints.keys():
                self._endpoints[new] = _Endpoint(healthy_since=now)

    # --- outcomes of real calls --------------------------------------------------------------
    def record(self, endpoint: str, code: object) -> None:
        """Record a finished call by its gRPC status (`OK` or an error code)."""
        if getattr(code, "name", code) != "OK" and is_endpoint_failure(code):
            self.record_failure(endpoint)
        else:
            self.record_success(endpoint)

    def record_success(self, endpoint: str) -> None:
        with self._lock:
            entry = self._endpoints.get(endpoint)
            if entry is not None and entry.state is State.READY:
                entry.failures = 0

    def record_failure(self, endpoint: str) -> bool:
        """Count a failure; True if it ejected the endpoint."""
        now = self._clock()
        with self._lock:
            entry = self._endpoints.get(endpoint)
            # Calls that were already in flight when the endpoint left rotation change nothing.
            if entry is None or entry.state is not State.READY:
                return False
            entry.failures += 1
            if entry.failures < self.policy.consecutive_failures:
                return False
            if now - entry.healthy_since >= self.policy.forgive_after_s:
                entry.ejections = 0
            self._eject(endpoint, entry, now)
            return True

    def _eject(self, endpoint: str, entry: _Endpoint, now: float) -> None:
        entry.ejections += 1
        backoff = self.policy.backoff_s(entry.ejections, self._random())
        entry.state, entry.failures, entry.ejected_until = State.EJECTED, 0, now + backoff
        log.warning("endpoint %s ejected for %.1fs (ejection %d in a row)",
                    endpoint, backoff, entry.ejections)

    # --- routing -----------------------------------------------------------------------------
    def is_healthy(self, endpoint: str) -> bool:
        entry = self._endpoints.get(endpoint)
        return entry is not None and entry.state is State.READY

    def available(self, endpoints: Iterable[str]) -> list[str]:
        """The endpoints to route to: the healthy ones; all of them if none is (panic mode)."""
        candidates = list(endpoints)
        with self._lock:
            healthy = [ep for ep in candidates
                       if (entry := self._endpoints.get(ep)) is None
                       or entry.state is State.READY]
        return healthy or candidates

    def any_healthy(self) -> bool:
        with self._lock:
            return any(e.state is State.READY for e in self._endpoints.values())

    # --- probing -----------------------------------------------------------------------------
    def due_probes(self) -> list[str]:
        """Ejected endpoints whose back-off is over; they turn PROBING until `probe_result`."""
        now = self._clock()
        with self._lock:
            due = [ep for ep, e in self._endpoints.items()
                   if e.state is State.EJECTED and e.ejected_until <= now]
            for endpoint in due:
                self._endpoints[endpoint].state = State.PROBING
        return due

    def probe_result(self, endpoint: str, ok: bool) -> None:
        now = self._clock()
        with self._lock:
            entry = self._endpoints.get(endpoint)
            if entry is None or entry.state is not State.PROBING:
                return
            if ok:
                entry.state, entry.failures, entry.healthy_since = State.READY, 0, now
                entry.checked, entry.problem = True, ""  # the probe is the readiness check
                log.info("endpoint %s restored after a successful probe", endpoint)
            else:
                self._eject(endpoint, entry, now)

    def next_probe_in(self) -> float | None:
        """Seconds until the earliest back-off ends (0 if one is due), None if none is ejected."""
        now = self._clock()
        with self._lock:
            ends = [e.ejected_until for e in self._endpoints.values() if e.state is State.EJECTED]
        return max(0.0, min(ends) - now) if ends else None

    # --- readiness ---------------------------------------------------------------------------
    def to_check(self) -> list[str]:
        """Endpoints in rotation, for the periodic readiness check (the prober sees to the rest)."""
        with self._lock:
            return [ep for ep, e in self._endpoints.items() if e.state is State.READY]

    def unchecked(self) -> bool:
        """True when an endpoint in rotation has had no readiness check yet."""
        with self._lock:
            return any(not e.checked for e in self._endpoints.values() if e.state is State.READY)

    def record_check(self, endpoint: str, problem: str) -> None:
        """The result of a readiness check: "" if the endpoint serves, else why not."""
        with self._lock:
            entry = self._endpoints.get(endpoint)
            if entry is not None:
                entry.checked, entry.problem = True, problem

    def readiness(self) -> tuple[bool, list[dict[str, object]]]:
        """Ready when an endpoint in rotation passed its last check; one row per endpoint."""
        with self._lock:
            rows = [
                {"address": endpoint, "ready": not reason, "reason": reason}
                for endpoint, entry in sorted(self._endpoints.items())
                for reason in [_not_ready_reason(entry)]
            ]
        return any(row["ready"] for row in rows), rows

    # --- reporting ---------------------------------------------------------------------------
    def state(self, endpoint: str) -> State | None:
        entry = self._endpoints.get(endpoint)
        return entry.state if entry else None

    def counts(self) -> dict[str, int]:
        """Endpoints per `state` label of `tfstack_gateway_endpoints` (docs/metrics.md): `ready`
        and `ejected`, both always present; a probing endpoint is still out of rotation, so it
        counts as ejected there (the debug listing shows `probing`)."""
        with self._lock:
            ready = sum(1 for e in self._endpoints.values() if e.state is State.READY)
            total = len(self._endpoints)
        return {State.READY.value: ready, State.EJECTED.value: total - ready}

    def snapshot(self) -> list[dict[str, object]]:
        """One row per endpoint for the debug listing (the balancer adds outstanding requests)."""
        now = self._clock()
        with self._lock:
            return [
                {
                    "endpoint": endpoint,
                    "state": entry.state.value,
                    "consecutive_failures": entry.failures,
                    "ejections_in_a_row": entry.ejections,
                    "ejected_for_s": round(max(0.0, entry.ejected_until - now), 3)
                    if entry.state is State.EJECTED else 0.0,
                }
                for endpoint, entry in sorted(self._endpoints.items())
            ]


def _not_ready_reason(entry: _Endpoint) -> str:
    if entry.state is not State.READY:
        return f"{entry.state.value}: failing calls took it out of rotation"
    if not entry.checked:
        return "not checked yet"
    return entry.problem


class Prober:
    """One daemon thread per worker: runs `probe(endpoint) -> bool` for endpoints whose back-off
    ended, and `check(endpoints) -> {endpoint: problem}` on the endpoints in rotation every
    `check_interval_s` (and at once for a new endpoint), recording the results in the tracker.

    Both must bound their own time (gRPC calls with a short `timeout=`); an exception counts as a
    failure. Probes run one at a time, so keep their timeout short; a check should run its calls
    concurrently (readiness.py does). `report(counts)`, if given, gets `tracker.counts()` at least
    every `max_wait_s` (metrics).
    """

    def __init__(
        self,
        tracker: HealthTracker,
        probe: Callable[[str], bool],
        max_wait_s: float = 1.0,
        report: Callable[[dict[str, int]], None] | None = None,
        check: Callable[[list[str]], dict[str, str]] | None = None,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.probe = probe
        self.max_wait_s = max_wait_s
        self.report = report
        self.check = check
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._checked_at: float | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Probe every due endpoint now; returns how many were probed."""
        due = self.tracker.due_probes()
        for endpoint in due:
            try:
                ok = bool(self.probe(endpoint))
            except Exception:  # a probe that blows up is a failed probe, not a dead prober
                log.exception("probe of %s failed", endpoint)
                ok = False
            self.tracker.probe_result(endpoint, ok)
        return len(due)

    def check_now(self) -> None:
        """Check every endpoint in rotation now and record the results in the tracker."""
        if self.check is None:
            return
        self._checked_at = self._clock()
        endpoints = self.tracker.to_check()
        try:
            problems = self.check(endpoints) if endpoints else {}
        except Exception as err:  # a broken check fails the endpoints, not the thread
            log.exception("readiness check failed")
            problems = dict.fromkeys(endpoints, f"check failed: {err!r}")
        for endpoint in endpoints:
            self.tracker.record_check(endpoint, problems.get(endpoint, "not checked"))

    def _check_in(self) -> float | None:
        """Seconds until the next readiness check is due (0: now), None without a check."""
        if self.check is None:
            return None
        if self._checked_at is None or self.tracker.unchecked():
            return 0.0
        return max(0.0, self._checked_at + self.check_interval_s - self._clock())

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="health-prober", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.run_once()
            if self._check_in() == 0.0:
                self.check_now()
            if self.report is not None:
                try:
                    self.report(self.tracker.counts())
                except Exception:  # metrics trouble must not stop probing
                    log.exception("endpoint state report failed")
            waits = [w for w in (self.tracker.next_probe_in(), self._check_in()) if w is not None]
            # A new endpoint shows up as unchecked: look again soon rather than at max_wait_s.
            self._stopping.wait(min([self.max_wait_s, *waits]) or 0.05)
