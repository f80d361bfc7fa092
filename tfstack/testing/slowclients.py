"""Slow clients: connections that trickle a request to an HTTP server a byte at a time, bounded.

Two kinds, as issue 10 measured them:

- `headers`: the request line and headers, one byte per `--interval`, never finished;
- `bodies`: complete headers announcing a 1 MB JSON body, then the body one byte per interval.

A connection the server closes (gunicorn's gevent worker drops a client that has not sent its
headers within the keep-alive timeout) is opened again at once, so the count stays where it was
asked to be, as an attacker's would. One thread and non-blocking sockets: 500 connections cost
the client a few percent of a core. Loopback targets only; stops by itself after `--seconds`.
Prints `ready` once every connection is open and a JSON summary at the end.

    python -m tfstack.testing.slowclients http://127.0.0.1:8080 --headers 250 --bodies 250 \\
        --seconds 30

`SlowClients` runs it as a separate process (so its work does not share the GIL with a
measuring client) for tests and benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

PATH = "/v1/models/half_plus_two:predict"
BODY_LENGTH = 1_000_000
HEADERS = f"POST {PATH} HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\nX-Pad: "
BODY_HEAD = (
    f"POST {PATH} HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
    f"Content-Length: {BODY_LENGTH}\r\n\r\n"
)
BODY = '{"instances": [' + "1.0," * (BODY_LENGTH // 4)
LOOPBACK = ("127.", "::1", "localhost")


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file soft limit to `wanted` (at most the hard limit); children
    started afterwards inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Trickle:
    """One slow connection: `text` is sent a byte at a time, the first `sent_at_once` at once."""

    def __init__(self, address: tuple[str, int], text: str, sent_at_once: int) -> None:
        self.address, self.data, self.at_once = address, text.encode(), sent_at_once
        self.sock: socket.socket | None = None
        self.pos = 0

    def open(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=5)
        self.sock.setblocking(False)
        self.sock.send(self.data[: self.at_once])
        self.pos = self.at_once

    def step(self) -> bool:
        """Send the next byte; False when the server has closed the connection (or answered)."""
        try:
            self.sock.recv(4096, socket.MSG_PEEK)
            return False  # an answer (400, 408) or EOF: either way this request is over
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            self.sock.send(self.data[self.pos : self.pos + 1])
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.pos = min(self.pos + 1, len(self.data) - 1)  # past the end: repeat the last byte
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def run(url: str, headers: int, bodies: int, seconds: float, interval: float) -> dict:
    parts = urlsplit(url)
    if not (parts.hostname or "").startswith(LOOPBACK):
        raise SystemExit(f"slow clients go to loopback only, not {parts.hostname}")
    address = (parts.hostname, parts.port or 80)
    raise_fd_limit(headers + bodies + 64)
    conns = [Trickle(address, HEADERS + "a" * 8000, 0) for _ in range(headers)]
    conns += [Trickle(address, BODY_HEAD + BODY, len(BODY_HEAD)) for _ in range(bodies)]
    for conn in conns:
        conn.open()
    print("ready", flush=True)
    stop_at = time.monotonic() + seconds
    reopened = failed_opens = 0
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    slices = [conns[i : i + 10] for i in range(0, len(conns), 10)]
    while time.monotonic() < stop_at and not stopping:
        for group in slices:  # one byte each per interval, spread over it
            due = time.monotonic() + interval / len(slices)
            for conn in group:
                if conn.step():
                    continue
                conn.close()
                try:
                    conn.open()
                    reopened += 1
                except OSError:
                    failed_opens += 1
            time.sleep(max(0.0, due - time.monotonic()))
    for conn in conns:
        conn.close()
    return {"headers": headers, "bodies": bodies, "reopened": reopened,
            "failed_opens": failed_opens}


class SlowClients:
    """`python -m tfstack.testing.slowclients` as a child process; a context manager that returns
    once every connection is open and stops the process (and so every connection) on exit."""

    def __init__(self, url: str, headers: int, bodies: int, seconds: float = 120.0) -> None:
        # The checkout this module is in, so the child runs the same code as its parent.
        repo = Path(__file__).resolve().parents[2]
        argv = [sys.executable, "-m", "tfstack.testing.slowclients", url, "--headers", str(headers),
                "--bodies", str(bodies), "--seconds", str(seconds)]
        self.proc = subprocess.Popen(argv, cwd=repo, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONPATH=str(repo)))
        self.summary: dict = {}

    def __enter__(self) -> SlowClients:
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"slow clients did not start: {line!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        lines = [line for line in (out or "").splitlines() if line.startswith("{")]
        self.summary = json.loads(lines[-1]) if lines else {}
        return self.summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--headers", type=int, default=40, help="connections trickling headers")
    parser.add_argument("--bodies", type=int, default=0, help="connections trickling bodies")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between bytes")
    args = parser.parse_args(argv)
    summary = run(args.url, args.headers, args.bodies, args.seconds, args.interval)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
