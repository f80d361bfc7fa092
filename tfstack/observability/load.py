"""Bounded, mixed traffic against a local gateway, so every dashboard panel and rule has data.

`drive(gateway_url, seconds, concurrency)` sends, from `concurrency` threads until `seconds` pass
(or `max_requests` are sent): predictions on the example models (predict, classify, regress, a
version label), status and metadata GETs, malformed bodies (400), an unknown model and an unknown
version (404; the latter an upstream NOT_FOUND for a known model), and ends with a burst wider
than the gateway admits, which its admission control answers with 429.
Loopback only. Returns {HTTP status: count}.

    python -m tfstack.observability.load --gateway http://127.0.0.1:8080 --seconds 60
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

_DIGIT = [[float((r * 8 + c) % 17) for c in range(8)] for r in range(8)]

# (method, path, body); body None means GET. Weighted by repetition: mostly good traffic.
REQUESTS: list[tuple[str, str, object]] = [
    ("POST", "/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]}),
    ("POST", "/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]}),
    ("POST", "/v1/models/digits:predict", {"instances": [_DIGIT, _DIGIT]}),
    ("POST", "/v1/models/digits/labels/canary:predict", {"instances": [_DIGIT]}),
    ("POST", "/v1/models/half_plus_two:classify",
     {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}, {"x": 3.0}]}),
    ("POST", "/v1/models/half_plus_two:regress",
     {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}),
    ("GET", "/v1/models/digits", None),
    ("GET", "/v1/models/half_plus_two/metadata", None),
    ("POST", "/v1/models/half_plus_two:predict", b"{not json"),  # 400
    ("POST", "/v1/models/half_plus_two:predict", {"instances": [[1.0], "x"]}),  # 400
    ("POST", "/v1/models/no_such_model:predict", {"instances": [1.0]}),  # 404
    ("POST", "/v1/models/digits/versions/9:predict", {"instances": [_DIGIT]}),  # 404 from upstream
]  # fmt: skip


def _send(base: str, method: str, path: str, body: object, timeout: float = 10.0) -> int:
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (loopback)
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        err.read()
        return err.code
    except OSError:
        return 0  # connection refused / timed out: counted, never raised


def _check_loopback(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise ValueError(f"load goes to loopback only, not {host!r}")
    return url.rstrip("/")


def drive(
    gateway_url: str,
    seconds: float = 10.0,
    concurrency: int = 4,
    max_requests: int = 20_000,
    burst: int = 64,
) -> Counter[int]:
    """Mixed traffic for `seconds` (at most `max_requests`), then one burst of `burst` requests."""
    base = _check_loopback(gateway_url)
    codes: Counter[int] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    budget = itertools.count()

    def worker(offset: int) -> None:
        for i in itertools.count(offset):
            if time.monotonic() > deadline or next(budget) >= max_requests:
                return
            code = _send(base, *REQUESTS[i % len(REQUESTS)])
            with lock:
                codes[code] += 1

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    # Wider than the gateway admits at once (workers x threads x 3/4): the excess gets 429.
    # Small requests, so the burst tests admission, not TF Serving's batch queue.
    with ThreadPoolExecutor(burst) as pool:
        for code in pool.map(lambda _: _send(base, *REQUESTS[0]), range(burst)):
            codes[code] += 1
    return codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="gateway URL on loopback")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    codes = drive(args.gateway, args.seconds, args.concurrency)
    print(json.dumps(dict(sorted(codes.items()))))


if __name__ == "__main__":
    main()
