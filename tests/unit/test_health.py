"""Outlier ejection, back-off and probing, on a clock the tests move by hand."""

from __future__ import annotations

import time

import grpc
import pytest

from tfstack.gateway.health import (
    EjectionPolicy,
    HealthTracker,
    Prober,
    State,
    is_endpoint_failure,
)

A, B, C = "10.0.0.1:8500", "10.0.0.2:8500", "10.0.0.3:8500"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


def make_tracker(clock, unit_random=lambda: 0.5, **policy):
    """unit_random 0.5 means no jitter: back-offs are exactly base * 2^(n-1)."""
    tracker = HealthTracker(EjectionPolicy(**policy), clock=clock, unit_random=unit_random)
    tracker.sync([A, B, C])
    return tracker


def fail(tracker, endpoint, times, code="UNAVAILABLE"):
    for _ in range(times):
        tracker.record(endpoint, code)


@pytest.mark.parametrize(
    ("code", "counts"),
    [
        ("UNAVAILABLE", True),
        ("DEADLINE_EXCEEDED", True),
        (None, True),  # no status at all: the connection failed
        ("OK", False),
        ("INVALID_ARGUMENT", False),
        ("NOT_FOUND", False),
        ("RESOURCE_EXHAUSTED", False),
    ],
)
def test_which_codes_count_against_an_endpoint(code, counts):
    assert is_endpoint_failure(code) is counts


def test_grpc_status_code_objects_are_understood():
    assert is_endpoint_failure(grpc.StatusCode.UNAVAILABLE)
    assert not is_endpoint_failure(grpc.StatusCode.INVALID_ARGUMENT)


def test_ejected_after_consecutive_failures_only(clock):
    tracker = make_tracker(clock)
    fail(tracker, A, 2)
    tracker.record(A, "OK")  # a success in between resets the run
    fail(tracker, A, 2)
    assert tracker.state(A) is State.READY
    fail(tracker, A, 1, code="DEADLINE_EXCEEDED")
    assert tracker.state(A) is State.EJECTED
    assert tracker.available([A, B, C]) == [B, C]
    assert tracker.counts() == {"ready": 2, "ejected": 1}


def test_application_errors_prove_the_endpoint_alive(clock):
    tracker = make_tracker(clock)
    for _ in range(10):
        tracker.record(A, "UNAVAILABLE")
        tracker.record(A, "INVALID_ARGUMENT")
    assert tracker.state(A) is State.READY


def test_half_open_after_backoff_then_restored_by_a_good_probe(clock):
    tracker = make_tracker(clock, base_ejection_s=2.0)
    fail(tracker, A, 3)
    clock.advance(1.9)
    assert tracker.due_probes() == []
    assert tracker.next_probe_in() == pytest.approx(0.1)
    clock.advance(0.1)
    assert tracker.due_probes() == [A]
    assert tracker.state(A) is State.PROBING
    assert tracker.counts() == {"ready": 2, "ejected": 1}, "probing is still out of rotation"
    assert tracker.snapshot()[0]["state"] == "probing"
    assert A not in tracker.available([A, B]), "no real traffic while the probe decides"
    assert tracker.due_probes() == [], "one probe at a time"
    tracker.probe_result(A, ok=True)
    assert tracker.state(A) is State.READY
    assert tracker.available([A, B]) == [A, B]


def test_backoff_doubles_per_ejection_in_a_row_up_to_the_cap(clock):
    tracker = make_tracker(clock, base_ejection_s=1.0, max_ejection_s=5.0)
    fail(tracker, A, 3)
    periods = []
    for _ in range(5):
        wait = tracker.next_probe_in()
        periods.append(wait)
        clock.advance(wait)
        assert tracker.due_probes() == [A]
        tracker.probe_result(A, ok=False)
    assert periods == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_flapping_keeps_its_long_backoff_until_healthy_for_a_while(clock):
    tracker = make_tracker(clock, base_ejection_s=1.0, forgive_after_s=60.0)
    fail(tracker, A, 3)  # ejection 1: 1 s
    clock.advance(1)
    tracker.due_probes()
    tracker.probe_result(A, ok=True)
    fail(tracker, A, 3)  # fails again right away: ejection 2, 2 s
    assert tracker.next_probe_in() == 2.0
    clock.advance(2)
    tracker.due_probes()
    tracker.probe_result(A, ok=True)
    clock.advance(61)  # then healthy for over a minute
    fail(tracker, A, 3)
    assert tracker.next_probe_in() == 1.0


def test_jitter_spreads_backoffs_within_bounds(clock):
    for unit_random, expected in [(0.0, 8.0), (0.999999, 12.0)]:
        tracker = make_tracker(clock, unit_random=lambda r=unit_random: r,
                               base_ejection_s=10.0, jitter=0.2)
        fail(tracker, A, 3)
        assert tracker.next_probe_in() == pytest.approx(expected, abs=1e-4)


def test_in_flight_failures_after_ejection_do_not_extend_it(clock):
    tracker = make_tracker(clock, base_ejection_s=1.0)
    fail(tracker, A, 3)
    fail(tracker, A, 20)  # calls already in flight when it was ejected
    assert tracker.snapshot()[0]["ejections_in_a_row"] == 1
    assert tracker.next_probe_in() == 1.0


def test_panic_mode_offers_all_when_none_is_healthy(clock):
    tracker = make_tracker(clock)
    for endpoint in (A, B, C):
        fail(tracker, endpoint, 3)
    assert not tracker.any_healthy()
    assert tracker.available([A, B, C]) == [A, B, C]


def test_sync_adds_healthy_and_forgets_removed(clock):
    tracker = make_tracker(clock)
    fail(tracker, A, 3)
    tracker.sync([B, C, "10.0.0.4:8500"])
    assert tracker.state(A) is None
    assert tracker.state("10.0.0.4:8500") is State.READY
    tracker.sync([A, B])  # A comes back (a new pod on the same IP): it starts healthy
    assert tracker.state(A) is State.READY
    assert tracker.available([A, B]) == [A, B]
    fail(tracker, "10.9.9.9:1", 5)  # unknown endpoints are ignored, not an error


def test_snapshot_for_the_debug_listing(clock):
    tracker = make_tracker(clock, base_ejection_s=4.0)
    fail(tracker, B, 3)
    fail(tracker, C, 1)
    clock.advance(1.5)
    rows = {row["endpoint"]: row for row in tracker.snapshot()}
    assert rows[A] == {"endpoint": A, "state": "ready", "consecutive_failures": 0,
                       "ejections_in_a_row": 0, "ejected_for_s": 0.0}
    assert rows[B]["state"] == "ejected"
    assert rows[B]["ejected_for_s"] == 2.5
    assert rows[C]["consecutive_failures"] == 1


def test_prober_runs_due_probes_and_survives_a_broken_probe(clock):
    tracker = make_tracker(clock, base_ejection_s=1.0)
    fail(tracker, A, 3)
    fail(tracker, B, 3)
    answers = {A: True}

    def probe(endpoint):
        if endpoint not in answers:
            raise ConnectionError("refused")
        return answers[endpoint]

    prober = Prober(tracker, probe)
    assert prober.run_once() == 0
    clock.advance(1)
    assert prober.run_once() == 2
    assert tracker.state(A) is State.READY
    assert tracker.state(B) is State.EJECTED
    assert tracker.next_probe_in() == 2.0


def test_prober_thread_brings_an_endpoint_back_after_its_backoff():
    """The real thread, real time: ejected for 0.1 s, probed and back in rotation well within the
    2 s allowed here (a loaded machine can delay a thread's wake-up by tens of milliseconds; that
    the probe waits for the back-off is shown on a hand-moved clock above)."""
    tracker = HealthTracker(EjectionPolicy(base_ejection_s=0.1, jitter=0.0))
    tracker.sync([A])
    reports = []
    prober = Prober(tracker, lambda endpoint: True, max_wait_s=0.2, report=reports.append)
    prober.start()
    try:
        fail(tracker, A, 3)
        assert tracker.state(A) is State.EJECTED
        assert wait_until(lambda: tracker.state(A) is State.READY, 2)
        assert wait_until(lambda: reports[-1:] == [{"ready": 1, "ejected": 0}], 2)
    finally:
        prober.stop()


def wait_until(condition, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_ready_only_when_an_endpoint_in_rotation_passed_its_last_check(clock):
    tracker = make_tracker(clock)
    ready, rows = tracker.readiness()
    assert not ready
    assert {row["reason"] for row in rows} == {"not checked yet"}
    tracker.record_check(A, "UNAVAILABLE: connection refused")
    tracker.record_check(B, "")
    tracker.record_check(C, "")
    fail(tracker, C, 3)
    ready, rows = tracker.readiness()
    assert ready
    assert rows == [
        {"address": A, "ready": False, "reason": "UNAVAILABLE: connection refused"},
        {"address": B, "ready": True, "reason": ""},
        {"address": C, "ready": False, "reason": "ejected: failing calls took it out of rotation"},
    ]
    fail(tracker, B, 3)
    assert tracker.readiness()[0] is False, "ejected endpoints do not make the gateway ready"


def test_a_good_probe_counts_as_a_passed_check(clock):
    tracker = make_tracker(clock, base_ejection_s=1.0)
    fail(tracker, A, 3)
    clock.advance(1)
    assert tracker.due_probes() == [A]
    tracker.probe_result(A, ok=True)
    ready, rows = tracker.readiness()
    assert ready and rows[0] == {"address": A, "ready": True, "reason": ""}


def test_prober_checks_endpoints_in_rotation_and_records_why_not(clock):
    tracker = make_tracker(clock)
    fail(tracker, C, 3)
    asked = []

    def check(endpoints):
        asked.append(sorted(endpoints))
        return {A: "", B: "DEADLINE_EXCEEDED: Deadline Exceeded"}

    prober = Prober(tracker, lambda endpoint: False, check=check, check_interval_s=5, clock=clock)
    prober.check_now()
    assert asked == [[A, B]], "the ejected endpoint is the probe's business, not the check's"
    rows = {row["address"]: row for row in tracker.readiness()[1]}
    assert rows[A]["ready"] and not rows[B]["ready"]
    assert rows[B]["reason"] == "DEADLINE_EXCEEDED: Deadline Exceeded"


def test_a_broken_check_fails_the_endpoints_it_was_checking(clock):
    tracker = make_tracker(clock)
    tracker.record_check(A, "")

    def check(endpoints):
        raise RuntimeError("channel closed")

    Prober(tracker, lambda endpoint: True, check=check).check_now()
    ready, rows = tracker.readiness()
    assert not ready
    assert all(row["reason"].startswith("check failed: RuntimeError") for row in rows)
