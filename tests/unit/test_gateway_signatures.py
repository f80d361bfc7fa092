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
