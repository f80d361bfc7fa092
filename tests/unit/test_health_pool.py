"""The endpoint pool with discovery updates and outlier ejection (no network: fake clients)."""

from __future__ import annotations

import random

import pytest

from tfstack.gateway.balancing import EndpointPool, NoEndpoint
from tfstack.gateway.health import EjectionPolicy, HealthTracker

A, B, C = "10.0.0.1:8500", "10.0.0.2:8500", "10.0.0.3:8500"


class Clients:
    """connect/disconnect callables that remember what they did."""

    def __init__(self):
        self.opened: list[str] = []
        self.closed: list[str] = []

    def connect(self, endpoint):
        self.opened.append(endpoint.address)
        return object()

    def disconnect(self, endpoint):
        self.closed.append(endpoint.address)


@pytest.fixture
def clients():
    return Clients()


def make_pool(clients, addresses=(A, B, C), health=None):
    return EndpointPool(addresses, clients.connect, rng=random.Random(7), health=health,
                        disconnect=clients.disconnect)


def test_update_adds_and_removes_keeping_known_endpoints(clients):
    pool = make_pool(clients, [A, B])
    first = pool.acquire()
    pool.release(first)
    pool.update([A, B, C])
    assert pool.find(first.address) is first, "a kept endpoint keeps its channel and counters"
    assert {row["address"] for row in pool.snapshot()} == {A, B, C}
    pool.update([C])
    assert [row["address"] for row in pool.snapshot()] == [C]


def test_removed_endpoint_is_closed_only_after_its_calls_finish(clients):
    pool = make_pool(clients, [A])
    in_flight = pool.acquire()
    pool.update([B])
    assert clients.closed == [], "a call is still running on A"
    assert pool.acquire().address == B
    pool.release(in_flight)
    assert clients.closed == [A]


def test_idle_removed_endpoint_is_closed_at_once(clients):
    pool = make_pool(clients, [A, B])
    for _ in range(10):
        pool.release(pool.acquire())
    pool.update([B])
    assert A in clients.closed


def test_exclude_picks_another_endpoint_or_says_none_is_left(clients):
    pool = make_pool(clients)
    for _ in range(20):
        endpoint = pool.acquire(exclude=[A, B])
        assert endpoint.address == C
        pool.release(endpoint)
    with pytest.raises(NoEndpoint):
        pool.acquire(exclude=[A, B, C])
    assert pool.untried([A]) == 2


def test_ejected_endpoints_get_no_traffic_and_do_not_count_for_retries(clients):
    health = HealthTracker(EjectionPolicy(consecutive_failures=1), clock=lambda: 0.0)
    pool = make_pool(clients, health=health)
    health.record_failure(A)
    chosen = set()
    for _ in range(50):
        endpoint = pool.acquire()
        chosen.add(endpoint.address)
        pool.release(endpoint)
    assert chosen == {B, C}
    assert pool.untried([B]) == 1
    assert pool.snapshot()[0]["health"]["state"] == "ejected"


def test_all_ejected_still_serves_panic_mode(clients):
    health = HealthTracker(EjectionPolicy(consecutive_failures=1), clock=lambda: 0.0)
    pool = make_pool(clients, health=health)
    for address in (A, B, C):
        health.record_failure(address)
    assert pool.acquire().address in {A, B, C}
    assert pool.untried([]) == 0, "but no retry goes to an ejected endpoint"


def test_update_syncs_health(clients):
    health = HealthTracker(clock=lambda: 0.0)
    pool = make_pool(clients, [A], health=health)
    pool.update([A, B])
    assert health.counts() == {"ready": 2, "ejected": 0}
