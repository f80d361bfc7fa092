"""Each worker's signatures per model, for converting JSON with the dtypes TF Serving would use.

A model's signatures are fetched (GetModelMetadata) on its first request and kept until the model
is seen to change: a response comes from another version than the one they were fetched from, or a
request names a signature they lack (the model may have been replaced by one that has it: look
once more; if it still lacks it, the request's own error says so), or a request converted with
them is refused (a new version whose inputs differ may have gone live: upstream.fresher_signatures
looks again, at most once per RECHECK_S per model, and the request is converted anew once). The
cache does no I/O; the backend client (upstream.py) fetches on a miss.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tfstack.gateway.domain import CachedSignatures
from tfstack.protocol import codec
from tfstack.protocol.routes import ModelRef


class SignatureCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[ModelRef, CachedSignatures] = {}
        self._rechecked: dict[ModelRef, float] = {}  # model -> time.monotonic() of its last recheck
        self._rechecking: dict[ModelRef, threading.Event] = {}  # set when that recheck is done

    def lookup(self, model: ModelRef, wanted: str | None = None) -> CachedSignatures | None:
        """The cached signatures of `model`; None when absent, or when they lack `wanted`."""
        with self._lock:
            cached = self._entries.get(model)
        if cached is None or (wanted is not None and wanted not in cached.signatures):
            return None
        return cached

    def store(self, model: ModelRef, metadata: Any) -> CachedSignatures:
        """Keep the signatures of a GetModelMetadataResponse for `model`."""
        cached = CachedSignatures(
            codec.signatures_from_metadata(metadata), metadata.model_spec.version.value
        )
        with self._lock:
            self._entries[model] = cached
        return cached

    def begin_recheck(
        self, model: ModelRef, interval_s: float
    ) -> tuple[bool, threading.Event | None]:
        """After a refused request: may the backend be asked again for `model`'s signatures?
        (True, event): yes, and the caller does it, then calls end_recheck(model, event).
        (False, event): another request is asking right now; wait on event, then look up.
        (False, None): it was asked in the last `interval_s`."""
        now = time.monotonic()
        with self._lock:
            running = self._rechecking.get(model)
            if running is not None:
                return False, running
            last = self._rechecked.get(model)
            if last is not None and now - last < interval_s:
                return False, None
            self._rechecked[model] = now
            event = self._rechecking[model] = threading.Event()
            return True, event

    def end_recheck(self, model: ModelRef, event: threading.Event) -> None:
        with self._lock:
            if self._rechecking.get(model) is event:
                del self._rechecking[model]
        event.set()

    def observe_version(self, model: ModelRef, version: int) -> None:
        """A response came from `version`: drop an entry fetched from another version."""
        with self._lock:
            cached = self._entries.get(model)
            if cached is not None and cached.version != version:
                del self._entries[model]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._rechecked.clear()
            self._rechecking.clear()
