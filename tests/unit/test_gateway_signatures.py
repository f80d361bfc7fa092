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


def test_a_recheck_is_due_once_an_interval_and_only_for_the_entry_still_cached():
    cache = SignatureCache()
    used = cache.store(MODEL, fake_metadata_response("half_plus_two", version=1))
    assert cache.recheck_due(MODEL, used, 60.0), "never rechecked: due"
    assert not cache.recheck_due(MODEL, used, 60.0), "rechecked a moment ago"
    assert cache.recheck_due(MODEL, used, 0.0)
    newer = cache.store(MODEL, fake_metadata_response("half_plus_two", version=2))
    assert not cache.recheck_due(MODEL, used, 0.0), "another request already refreshed it"
    assert cache.recheck_due(MODEL, newer, 0.0)
    cache.clear()
    assert cache.recheck_due(MODEL, newer, 60.0), "a fork forgets the rechecks with the entries"
