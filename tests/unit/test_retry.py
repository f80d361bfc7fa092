"""Retry safety rules and the retry budget, on a clock the tests move by hand."""

from __future__ import annotations

import grpc
import pytest

from tfstack.gateway.retry import (
    ATTEMPTS,
    BUDGET,
    DEADLINE,
    NO_ENDPOINT,
    RETRY,
    UNSAFE,
    RetryBudget,
    RetryPolicy,
    is_safe_to_retry,
)


class Clock:
    def __init__(self):
        self.now = 50.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize(
    ("code", "safe"),
    [
        ("UNAVAILABLE", True),  # refused or lost connection included: gRPC reports it so
        (grpc.StatusCode.UNAVAILABLE, True),
        ("DEADLINE_EXCEEDED", False),
        ("INVALID_ARGUMENT", False),
        ("RESOURCE_EXHAUSTED", False),
        ("INTERNAL", False),
        (grpc.StatusCode.NOT_FOUND, False),
        (None, False),
    ],
)
def test_only_safe_failures_are_retried(code, safe):
    assert is_safe_to_retry(code) is safe


def test_budget_allows_about_ten_percent_of_requests_as_retries():
    clock = Clock()
    budget = RetryBudget(ratio=0.1, min_per_s=0.0, max_tokens=10.0, clock=clock)
    while budget.try_spend():  # spend the initial allowance
        pass
    retries = 0
    for _ in range(1000):  # a total outage: every request fails and wants a retry
        budget.record_request()
        retries += budget.try_spend()
    assert 99 <= retries <= 100


def test_budget_floor_refills_with_time_up_to_the_cap():
    clock = Clock()
    budget = RetryBudget(ratio=0.1, min_per_s=2.0, max_tokens=5.0, clock=clock)
    while budget.try_spend():
        pass
    assert not budget.try_spend()
    clock.now += 0.5  # one token at 2 per second
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.now += 3600  # a long quiet spell saves up no more than the cap
    assert budget.tokens == 5.0
    for _ in range(100):
        budget.record_request()
    assert budget.tokens == 5.0


def test_budget_starts_full():
    budget = RetryBudget(max_tokens=3.0, min_per_s=0.0, clock=Clock())
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


def attempt(**overrides):
    values = dict(code="UNAVAILABLE", attempts=1, remaining_s=5.0, untried_endpoints=2)
    values.update(overrides)
    return values


@pytest.mark.parametrize(
    ("overrides", "outcome"),
    [
        ({}, RETRY),
        ({"code": "DEADLINE_EXCEEDED"}, UNSAFE),
        ({"code": "INVALID_ARGUMENT"}, UNSAFE),
        ({"code": None}, UNSAFE),  # no status at all: what the backend did is unknown
        ({"attempts": 3}, ATTEMPTS),
        ({"remaining_s": 0.001}, DEADLINE),
        ({"untried_endpoints": 0}, NO_ENDPOINT),
    ],
)
def test_policy_decisions(overrides, outcome):
    policy = RetryPolicy(RetryBudget(clock=Clock()), max_attempts=3, min_remaining_s=0.005)
    assert policy.decide(**attempt(**overrides)) == outcome
    assert policy.outcomes[outcome] == 1


def test_budget_is_spent_only_on_retries_that_happen():
    budget = RetryBudget(max_tokens=2.0, min_per_s=0.0, clock=Clock())
    policy = RetryPolicy(budget)
    for _ in range(10):  # refused for other reasons: no token taken
        policy.decide(**attempt(untried_endpoints=0))
        policy.decide(**attempt(code="INTERNAL"))
    assert budget.tokens == 2.0
    assert policy.should_retry(**attempt())
    assert policy.should_retry(**attempt())
    assert policy.decide(**attempt()) == BUDGET
