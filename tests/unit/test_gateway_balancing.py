"""The endpoint pool: power of two choices on outstanding requests, lazy connection, snapshot."""

from __future__ import annotations

import random
import time

import pytest

from tfstack.gateway.balancing import EndpointPool, NoEndpoint


def pool_of(n: int, connected: list[str] | None = None) -> EndpointPool:
    def connect(endpoint):
        if connected is not None:
            connected.append(endpoint.address)
        return f"client-{endpoint.address}"

    return EndpointPool([f"h{i}:1" for i in range(n)], connect, rng=random.Random(7))


def test_connects_lazily_once_per_endpoint():
    connected: list[str] = []
    pool = pool_of(1, connected)
    assert connected == []
    first = pool.acquire()
    pool.release(first)
    second = pool.acquire()
    assert first is second and first.client == "client-h0:1"
    assert connected == ["h0:1"]


def test_prefers_the_less_loaded_of_two():
    pool = pool_of(2)
    held = [pool.acquire() for _ in range(10)]
    counts = {e.address: e.outstanding for e in pool.all()}
    assert counts == {"h0:1": 5, "h1:1": 5}  # each pick tops up the idler endpoint
    for endpoint in held:
        pool.release(endpoint)
    assert {e.outstanding for e in pool.all()} == {0}


def test_a_preferred_endpoint_is_chosen_while_in_rotation():
    # A request refused by one replica, whose signatures were just fetched, goes back to it.
    pool = pool_of(3)
    busy = [pool.acquire(prefer="h2:1") for _ in range(4)]
    assert {e.address for e in busy} == {"h2:1"}, "however loaded"
    assert pool.acquire(exclude=["h2:1"], prefer="h2:1").address != "h2:1", "excluded"
    pool.update(["h0:1", "h1:1"])
    assert pool.acquire(prefer="h2:1").address in {"h0:1", "h1:1"}, "gone: any other"


def test_spreads_load_over_many_endpoints():
    pool = pool_of(4)
    held = [pool.acquire() for _ in range(400)]
    counts = sorted(e.outstanding for e in pool.all())
    assert counts[-1] - counts[0] <= 3, counts
    for endpoint in held:
        pool.release(endpoint)


def test_snapshot_reports_state_outstanding_and_failures():
    pool = pool_of(1)
    endpoint = pool.acquire()
    assert pool.snapshot()[0]["outstanding"] == 1
    pool.release(endpoint, error="UNAVAILABLE: connection refused")
    snap = pool.snapshot()[0]
    assert snap["address"] == "h0:1" and snap["outstanding"] == 0
    assert snap["requests"] == 1 and snap["failures"] == 1
    assert snap["last_error"] == "UNAVAILABLE: connection refused"


def test_snapshot_reports_when_an_endpoint_was_added_and_first_chosen():
    pool = pool_of(1)
    before = time.time()
    pool.update(["h0:1", "new:1"])
    new = next(row for row in pool.snapshot() if row["address"] == "new:1")
    assert new["first_request_at"] is None and new["added_at"] >= before
    while pool.acquire().address != "new:1":
        pass
    new = next(row for row in pool.snapshot() if row["address"] == "new:1")
    assert new["added_at"] <= new["first_request_at"] <= time.time()


def test_empty_pool():
    with pytest.raises(NoEndpoint):
        pool_of(0).acquire()
