"""Slow clients (issue 10): hundreds of connections trickling a request do not touch the others.

A real gateway (gunicorn, default worker class) in front of the session's model server, and
tfstack/testing/slowclients.py in its own process holding 500 connections: 250 trickling their
headers and 250 their bodies, a byte a second each, reopened whenever the gateway drops them. Normal
predicts through the same gateway meanwhile must all succeed with a p99 within 2x of the unloaded
p99 measured just before, in this test (the bound issue 10 asks for). Loopback only, bounded in
requests and time, everything stopped at the end.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.fixtures.gateway import start_gateway
from tfstack.testing.loadgen import HttpRequest, HttpTarget, run
from tfstack.testing.slowclients import SlowClients, raise_fd_limit

pytestmark = pytest.mark.slow

SLOW = 500
REQUEST = HttpRequest("POST", "/v1/models/half_plus_two:predict", b'{"instances": [1.0, 2.0]}')


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024


def open_files_limit(pid: int) -> int:
    limits = Path(f"/proc/{pid}/limits").read_text()
    return int(re.search(r"^Max open files\s+(\d+)", limits, re.M).group(1))


def test_500_slow_connections_leave_normal_predicts_alone(tmp_path, modelserver):
    # The slow clients' process and the gateway (started below) inherit this soft limit: 500
    # sockets on each side, plus whatever else the processes hold.
    assert raise_fd_limit(4096) >= 2 * SLOW, "raise the hard open-files limit (ulimit -Hn)"
    gw = start_gateway(tmp_path, [modelserver.grpc_target], access_log="false")
    try:
        workers = children(gw.process.proc.pid)
        # Each worker alone could be handed every slow connection.
        assert all(open_files_limit(pid) >= SLOW + 100 for pid in workers)
        target = HttpTarget(gw.url, REQUEST, timeout_s=10)
        run(target, requests=200, duration_s=10, concurrency=2)  # warm up: connections, caches
        unloaded = run(target, requests=1000, duration_s=30, concurrency=2)
        rss_before = [rss_bytes(pid) for pid in workers]
        with SlowClients(gw.url, headers=SLOW // 2, bodies=SLOW // 2) as slow:
            time.sleep(2)  # every slow connection has been accepted and is sending
            loaded = run(target, requests=1000, duration_s=30, concurrency=2)
            rss_during = [rss_bytes(pid) for pid in workers]
        assert children(gw.process.proc.pid) == workers, "no worker died or was replaced"
    finally:
        gw.stop()
    summary = {"unloaded": unloaded.summary(), "with_slow_clients": loaded.summary(),
               "slow_clients": slow.summary, "rss_before": rss_before, "rss_during": rss_during}
    print(json.dumps(summary))
    assert unloaded.statuses == {"200": 1000}, summary
    assert loaded.statuses == {"200": 1000}, summary
    # The gateway really was holding them: header tricklers it dropped were reopened.
    assert slow.summary["failed_opens"] == 0, summary
    # 2x the unloaded p99 of this same run, as issue 10 asks; no absolute floor. Generous: each
    # predict is a few ms on loopback, and 500 slow connections cost the gateway ~500 socket
    # wake-ups a second plus reconnects, a few percent of a core; under gthread every predict
    # here would instead wait for a free thread and time out.
    assert loaded.percentile(99) <= 2 * unloaded.percentile(99), summary
    # Bounded memory: a slow connection costs a greenlet and its buffers, far below 64 MiB / 500.
    assert max(rss_during) < max(rss_before) + 64 * 2**20, summary
