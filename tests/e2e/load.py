"""Load through the gateway Service for the cluster suite: tfstack.testing.loadgen's bounded
generator, aimed at a cluster address, plus what the tests read back from the result."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from prometheus_client.parser import text_string_to_metric_families

from tfstack.testing.loadgen import Background, HttpRequest, HttpTarget, LoadResult

HALF_PLUS_TWO = HttpRequest(
    "POST", "/v1/models/half_plus_two:predict", json.dumps({"instances": [1.0, 2.0, 5.0]}).encode())


def digits_request(batch: int = 16) -> HttpRequest:
    """A batch of 8x8 images for the digits model: more model work per request than
    half_plus_two, so load spends its CPU in TF Serving rather than in HTTP and JSON."""
    image = [[float((row * 8 + col) % 16) for col in range(8)] for row in range(8)]
    body = {"instances": [image] * batch}
    return HttpRequest("POST", "/v1/models/digits:predict", json.dumps(body).encode())


def target(base_url: str, request: HttpRequest = HALF_PLUS_TWO, timeout_s: float = 15.0
           ) -> HttpTarget:
    # The suite runs inside the cluster's network namespace (or through a loopback
    # port-forward): Service addresses are the run's own, never outside ones.
    return HttpTarget(base_url, request, timeout_s=timeout_s, loopback_only=False)


@contextmanager
def steady_load(base_url: str, *, seconds: float, concurrency: int = 4,
                rate: float | None = None, request: HttpRequest = HALF_PLUS_TWO
                ) -> Iterator[Background]:
    """Bounded load (time cap `seconds`) running while the block runs; stopped at its end."""
    load = Background(target(base_url, request), requests=10_000_000, duration_s=seconds,
                      concurrency=concurrency, rate=rate)
    try:
        yield load
    finally:
        load.stop_event.set()
        load.join(timeout=60)


def failures(result: LoadResult) -> list[tuple[float, float, str]]:
    return [r for r in result.records if r[2] != "200"]


def failure_summary(result: LoadResult) -> str:
    bad = failures(result)
    first = ", ".join(f"{status} at {start:.1f}s" for start, _, status in bad[:10])
    return (f"{len(bad)} of {len(result.records)} requests failed "
            f"({dict(Counter(s for _, _, s in bad))}); first: {first}")


def per_second(result: LoadResult, seconds: float) -> list[int]:
    """Successful requests completed in each second of the run."""
    counts = [0] * max(1, math.ceil(seconds))
    for start, latency, status in result.records:
        second = int(start + latency)
        if status == "200" and second < len(counts):
            counts[second] += 1
    return counts


def scrape(url: str, timeout: float = 2.0) -> dict[tuple[str, tuple], float]:
    """A Prometheus text exposition as {(sample name, sorted labels): value}."""
    text = requests.get(url, timeout=timeout).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric_sum(values: dict, name: str, **labels: str) -> float:
    """Sum of the samples of `name` with these labels (the parser names a counter's samples
    `<name>_total` when the exposition declares it `# TYPE <name> counter`)."""
    return sum(v for (n, lbls), v in values.items()
               if n in (name, f"{name}_total") and all((k, w) in lbls for k, w in labels.items()))
