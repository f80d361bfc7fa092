"""Admission control: bounded in-flight work per worker and per-model limits.

What a decision costs (~1 µs) is measured by a benchmark, not asserted here on a shared machine:
`python -m bench.balancing_admission_cost` (docs/resilience.md)."""

from __future__ import annotations

import threading
import time

import pytest

from tfstack.gateway.admission import Admission, parse_model_limits, thread_cap
from tfstack.gateway.settings import SettingsError, load_settings


@pytest.mark.parametrize(("threads", "expected"), [(1, 1), (2, 1), (4, 3), (8, 7), (32, 31)])
def test_gthread_cap_leaves_one_thread_free(threads, expected):
    assert thread_cap(threads) == expected


def test_default_bound_follows_the_ready_endpoints():
    ready = [3]
    admission = Admission(per_endpoint=2, ready_endpoints=lambda: ready[0])
    for _ in range(6):
        assert admission.try_acquire("m") is None
    assert admission.try_acquire("m").reason == "worker_inflight"
    ready[0] = 4  # a replica turned ready: room for two more at once
    assert admission.try_acquire("m") is None
    assert admission.try_acquire("m") is None
    assert admission.try_acquire("m") is not None
    ready[0] = 0  # none in rotation (panic mode sends anyway): still one endpoint's worth
    assert admission.max_inflight == 2


def test_a_fixed_bound_and_the_thread_cap_override_the_endpoints():
    assert Admission(max_inflight=5, per_endpoint=64, ready_endpoints=lambda: 3).max_inflight == 5
    assert Admission(per_endpoint=64, ready_endpoints=lambda: 3, cap=7).max_inflight == 7


def test_admits_up_to_the_bound_then_rejects_with_a_reason():
    admission = Admission(max_inflight=2, retry_after_s=3)
    assert admission.try_acquire("m") is None
    assert admission.try_acquire("m") is None
    rejection = admission.try_acquire("m")
    assert (rejection.reason, rejection.retry_after_s) == ("worker_inflight", 3)
    admission.release("m")
    assert admission.try_acquire("m") is None, "a released slot is free again"
    assert admission.inflight == 2
    assert admission.rejected == {"worker_inflight": 1, "model_inflight": 0}


def test_per_model_limits_leave_other_models_alone():
    admission = Admission(max_inflight=10, model_limits={"digits": 2})
    assert admission.try_acquire("digits") is None
    assert admission.try_acquire("digits") is None
    assert admission.try_acquire("digits").reason == "model_inflight"
    for _ in range(8):
        assert admission.try_acquire("half_plus_two") is None
    assert admission.try_acquire("half_plus_two").reason == "worker_inflight"
    admission.release("digits")
    assert admission.model_inflight("digits") == 1
    admission.release("half_plus_two")
    assert admission.try_acquire("digits") is None


def test_a_model_rejection_does_not_take_a_worker_slot():
    admission = Admission(max_inflight=3, model_limits={"digits": 1})
    assert admission.try_acquire("digits") is None
    for _ in range(5):
        assert admission.try_acquire("digits").reason == "model_inflight"
    assert admission.inflight == 1


def test_concurrent_acquire_never_exceeds_the_bound():
    admission = Admission(max_inflight=5)
    holding = peak = 0
    lock = threading.Lock()
    admitted = []

    def worker():
        nonlocal holding, peak
        count = 0
        for _ in range(2000):
            if admission.try_acquire("m") is None:
                with lock:  # how many admitted requests are really running at once
                    holding += 1
                    peak = max(peak, holding)
                time.sleep(0)
                with lock:
                    holding -= 1
                count += 1
                admission.release("m")
        admitted.append(count)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert peak <= 5
    assert admission.inflight == 0
    assert sum(admitted) + sum(admission.rejected.values()) == 8 * 2000


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", {}), ("digits=4", {"digits": 4}), (" a=1 , b=20 ,", {"a": 1, "b": 20})],
)
def test_parse_model_limits(text, expected):
    assert parse_model_limits(text) == expected


@pytest.mark.parametrize("text", ["digits", "digits=", "=4", "digits=0", "digits=-1", "d=x"])
def test_parse_model_limits_rejects(text):
    with pytest.raises(ValueError, match="model=limit"):
        parse_model_limits(text)


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"TFSTACK_MAX_INFLIGHT": "-1"}, "TFSTACK_MAX_INFLIGHT"),
        ({"TFSTACK_MAX_INFLIGHT": "many"}, "TFSTACK_MAX_INFLIGHT"),
        ({"TFSTACK_MAX_INFLIGHT_PER_ENDPOINT": "0"}, "TFSTACK_MAX_INFLIGHT_PER_ENDPOINT"),
        ({"TFSTACK_RETRY_AFTER_S": "0"}, "TFSTACK_RETRY_AFTER_S"),
        ({"TFSTACK_MODEL_MAX_INFLIGHT": "digits"}, "TFSTACK_MODEL_MAX_INFLIGHT"),
    ],
)
def test_settings_errors_name_the_variable(environ, variable):
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ)


def test_settings_parse_model_limits():
    settings = load_settings({"TFSTACK_MODEL_MAX_INFLIGHT": "digits=3, half_plus_two=5"})
    assert dict(settings.model_max_inflight) == {"digits": 3, "half_plus_two": 5}
