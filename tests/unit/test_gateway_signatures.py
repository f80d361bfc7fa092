"""The gateway's per-worker signature cache: when it answers and when it sends the caller back to
the backend."""

from __future__ import annotations

from tests.fixtures.gateway import fake_metadata_response
from tfstack.gateway.signatures import SignatureCache
from tfstack.protocol.routes import ModelRef

MODEL = ModelRef("half_plus_two")


def test_a_stored_model_answers_for_its_signatures_and_only_those():
    cache = SignatureCache()
    assert cache.lookup(MODEL) is None
    stored = cache.store(MODEL, fake_metadata_response("half_plus_two", version=3))
    assert stored.version == 3 and set(stored.signatures) == {"serving_default"}
    assert cache.lookup(MODEL) is stored
    assert cache.lookup(MODEL, "serving_default") is stored
    assert cache.lookup(MODEL, "other") is None, "a signature it lacks means: look again"
    assert cache.lookup(ModelRef("half_plus_two", version=3)) is None, "versions are other keys"


def test_an_answer_from_another_version_drops_the_entry():
    cache = SignatureCache()
    cache.store(MODEL, fake_metadata_response("half_plus_two", version=1))
    cache.observe_version(MODEL, 1)
    assert cache.lookup(MODEL) is not None
    cache.observe_version(MODEL, 2)
    assert cache.lookup(MODEL) is None
    cache.observe_version(MODEL, 2)  # nothing cached: nothing to drop


def test_one_recheck_at_a_time_and_once_an_interval():
    cache = SignatureCache()
    mine, event = cache.begin_recheck(MODEL, 60.0)
    assert mine and not event.is_set(), "never rechecked: this caller asks"
    assert cache.begin_recheck(MODEL, 60.0) == (False, event), "asking now: wait for it"
    cache.end_recheck(MODEL, event)
    assert event.is_set()
    assert cache.begin_recheck(MODEL, 60.0) == (False, None), "asked a moment ago"
    assert cache.begin_recheck(ModelRef("other"), 60.0)[0], "per model"
    mine, event = cache.begin_recheck(MODEL, 0.0)
    assert mine
    cache.end_recheck(MODEL, event)
    cache.clear()
    assert cache.begin_recheck(MODEL, 60.0)[0], "a fork forgets the rechecks with the entries"


def test_each_endpoint_gets_the_signatures_of_the_version_it_answered_with():
    # A roll-out in progress: replica a still serves version 1, replica b already version 2.
    cache = SignatureCache()
    v1 = cache.store(MODEL, fake_metadata_response("half_plus_two", version=1), "a:8500")
    assert cache.for_endpoint(MODEL, "a:8500") is v1
    assert cache.for_endpoint(MODEL, "b:8500") is None, "never seen answering"
    v2 = cache.store(MODEL, fake_metadata_response("half_plus_two", version=2), "b:8500")
    assert cache.for_endpoint(MODEL, "a:8500") is v1
    assert cache.for_endpoint(MODEL, "b:8500") is v2
    assert cache.for_endpoint(MODEL, "b:8500", "other") is None, "lacks the signature"
    # Answers from both, alternating: nothing is dropped (no metadata call per answer); the
    # entry a request is first converted with is the version last seen.
    for address, version, expected in [("a:8500", 1, v1), ("b:8500", 2, v2), ("a:8500", 1, v1)]:
        cache.observe_version(MODEL, version, address)
        assert cache.lookup(MODEL) is expected
    # Replica a moves to version 2: both convert with it; version 1 is forgotten once unused.
    cache.observe_version(MODEL, 2, "a:8500")
    assert cache.for_endpoint(MODEL, "a:8500") is v2 and cache.lookup(MODEL) is v2
    cache.store(MODEL, fake_metadata_response("half_plus_two", version=2), "a:8500")
    cache.observe_version(MODEL, 1, "c:8500")  # a third replica, on version 1: fetch again
    assert cache.lookup(MODEL) is None
    assert cache.for_endpoint(MODEL, "c:8500") is None


def test_a_recheck_is_per_endpoint():
    cache = SignatureCache()
    mine, event = cache.begin_recheck(MODEL, 60.0, "a:8500")
    assert mine
    assert cache.begin_recheck(MODEL, 60.0, "b:8500")[0], "another endpoint: its own recheck"
    assert cache.begin_recheck(MODEL, 60.0, "a:8500") == (False, event)
    cache.end_recheck(MODEL, event, "a:8500")
    assert cache.begin_recheck(MODEL, 60.0, "a:8500") == (False, None)
