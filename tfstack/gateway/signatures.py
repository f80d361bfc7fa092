"""Each worker's signatures per model, for converting JSON with the dtypes TF Serving would use.

A model's signatures are fetched (GetModelMetadata) on its first request and kept per version. The
cache also remembers which version each backend endpoint last answered with, so that a request is
converted with the signatures of the endpoint it is sent to: while a new version rolls out over the
replicas (each TF Serving polls the model's base path on its own), old and new versions answer side
by side, and a version whose inputs differ must get requests converted for it.

An entry is kept until the model is seen to change: a response comes from a version whose
signatures were never fetched (the next request fetches them), or a request names a signature
they lack (the model may have been replaced by one that has it: look once more; if it still lacks
it, the request's own error says so), or a request converted with them is refused (a new version
whose inputs differ may have gone live: upstream.fresher_signatures asks that endpoint again, at
most once per RECHECK_S per model and endpoint, and the request is converted anew once). The cache
does no I/O; the backend client (upstream.py) fetches on a miss.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tfstack.gateway.domain import CachedSignatures
from tfstack.protocol import codec
from tfstack.protocol.routes import ModelRef

# Endpoint -> version memory: entries are dropped wholesale beyond this (endpoints come and go).
MAX_ENDPOINT_ENTRIES = 4096

RecheckKey = tuple[ModelRef, "str | None"]


class SignatureCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The signatures of the version last seen answering for each model: what a request is
        # converted with first.
        self._entries: dict[ModelRef, CachedSignatures] = {}
        self._versions: dict[tuple[ModelRef, int], CachedSignatures] = {}
        self._served: dict[tuple[str, ModelRef], int] = {}  # (endpoint, model) -> version
        self._rechecked: dict[RecheckKey, float] = {}  # -> time.monotonic() of the last recheck
        self._rechecking: dict[RecheckKey, threading.Event] = {}  # set when that recheck is done

    def lookup(self, model: ModelRef, wanted: str | None = None) -> CachedSignatures | None:
        """The cached signatures of `model`; None when absent, or when they lack `wanted`."""
        with self._lock:
            cached = self._entries.get(model)
        if cached is None or (wanted is not None and wanted not in cached.signatures):
            return None
        return cached

    def for_endpoint(
        self, model: ModelRef, address: str, wanted: str | None = None
    ) -> CachedSignatures | None:
        """The signatures of the version `address` last answered `model` with, if known (and
        having `wanted`); None otherwise."""
        with self._lock:
            version = self._served.get((address, model))
            cached = None if version is None else self._versions.get((model, version))
        if cached is None or (wanted is not None and wanted not in cached.signatures):
            return None
        return cached

    def store(self, model: ModelRef, metadata: Any, address: str | None = None) -> CachedSignatures:
        """Keep the signatures of a GetModelMetadataResponse for `model` (from `address`)."""
        cached = CachedSignatures(
            codec.signatures_from_metadata(metadata), metadata.model_spec.version.value
        )
        with self._lock:
            self._entries[model] = cached
            self._versions[(model, cached.version)] = cached
            if address is not None:
                self._serve(address, model, cached.version)
            self._forget_unused_versions(model)
        return cached

    def observe_version(self, model: ModelRef, version: int, address: str | None = None) -> None:
        """A response for `model` came from `version` (on `address`): requests are converted
        with that version's signatures from now on, or, never fetched, they are fetched anew."""
        with self._lock:
            if address is not None:
                self._serve(address, model, version)
            cached = self._entries.get(model)
            if cached is None or cached.version == version:
                return
            known = self._versions.get((model, version))
            if known is None:
                del self._entries[model]
            else:
                self._entries[model] = known
            self._forget_unused_versions(model)

    def _serve(self, address: str, model: ModelRef, version: int) -> None:
        if len(self._served) >= MAX_ENDPOINT_ENTRIES and (address, model) not in self._served:
            self._served.clear()
        self._served[(address, model)] = version

    def _forget_unused_versions(self, model: ModelRef) -> None:
        """Drop `model`'s versions that neither the entry nor any endpoint's answers point to."""
        current = self._entries.get(model)
        used = {v for (_, m), v in self._served.items() if m == model}
        if current is not None:
            used.add(current.version)
        for key in [k for k in self._versions if k[0] == model and k[1] not in used]:
            del self._versions[key]

    def begin_recheck(
        self, model: ModelRef, interval_s: float, address: str | None = None
    ) -> tuple[bool, threading.Event | None]:
        """After a refused request (sent to `address`): may that endpoint be asked again for
        `model`'s signatures?
        (True, event): yes, and the caller does it, then calls end_recheck(model, event, address).
        (False, event): another request is asking right now; wait on event, then look up.
        (False, None): it was asked in the last `interval_s`."""
        key = (model, address)
        now = time.monotonic()
        with self._lock:
            running = self._rechecking.get(key)
            if running is not None:
                return False, running
            last = self._rechecked.get(key)
            if last is not None and now - last < interval_s:
                return False, None
            if len(self._rechecked) >= MAX_ENDPOINT_ENTRIES:
                self._rechecked.clear()
            self._rechecked[key] = now
            event = self._rechecking[key] = threading.Event()
            return True, event

    def end_recheck(
        self, model: ModelRef, event: threading.Event, address: str | None = None
    ) -> None:
        key = (model, address)
        with self._lock:
            if self._rechecking.get(key) is event:
                del self._rechecking[key]
        event.set()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._versions.clear()
            self._served.clear()
            self._rechecked.clear()
            self._rechecking.clear()
