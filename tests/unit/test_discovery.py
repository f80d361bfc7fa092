"""Static and DNS endpoint discovery, and choosing a source from the environment."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tfstack.gateway.discovery import (
    DiscoveryConfig,
    DnsDiscovery,
    EndpointSliceDiscovery,
    StaticDiscovery,
    join_host_port,
    resolve_tcp,
    split_host_port,
)
from tfstack.gateway.settings import SettingsError, load_settings


class FakeResolver:
    """A DNS the test controls: name → addresses, or an OSError to raise."""

    def __init__(self, answers):
        self.answers = dict(answers)
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, host, port):
        with self.lock:
            self.calls += 1
            answer = self.answers[host]
        if isinstance(answer, Exception):
            raise answer
        return {join_host_port(addr, port) for addr in answer}


class Sets:
    """Listener collecting every published set."""

    def __init__(self):
        self.cond = threading.Condition()
        self.seen: list[frozenset[str]] = []

    def __call__(self, endpoints):
        with self.cond:
            self.seen.append(endpoints)
            self.cond.notify_all()

    def wait_for(self, expected, timeout=2.0):
        with self.cond:
            ok = self.cond.wait_for(lambda: self.seen and self.seen[-1] == set(expected), timeout)
        assert ok, f"last published {self.seen[-1:]} never became {sorted(expected)}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tfs:8500", ("tfs", 8500)),
        ("10.0.0.1:1", ("10.0.0.1", 1)),
        ("[::1]:8500", ("::1", 8500)),
        (" tfs.ns.svc.cluster.local:8500 ", ("tfs.ns.svc.cluster.local", 8500)),
    ],
)
def test_split_host_port(text, expected):
    assert split_host_port(text) == expected
    assert split_host_port(join_host_port(*expected)) == expected


@pytest.mark.parametrize("text", ["tfs", "tfs:", ":8500", "tfs:http", "tfs:0", "tfs:70000"])
def test_split_host_port_rejects(text):
    with pytest.raises(ValueError, match="host:port"):
        split_host_port(text)


def test_static_publishes_its_list_to_subscribers():
    found = StaticDiscovery(["127.0.0.1:8500", "127.0.0.1:8600"])
    sets = Sets()
    found.subscribe(sets)
    assert found.wait_known(0)
    assert sets.seen == [frozenset({"127.0.0.1:8500", "127.0.0.1:8600"})]


def test_a_failing_listener_does_not_starve_the_others():
    resolver = FakeResolver({"tfs": ["10.0.0.1"]})
    found = DnsDiscovery(["tfs:8500"], resolve=resolver)

    def broken(_endpoints):
        raise RuntimeError("listener bug")

    found.subscribe(broken)
    sets = Sets()
    found.subscribe(sets)
    found.resolve_once()
    assert sets.seen[-1] == {"10.0.0.1:8500"}


def test_dns_adds_and_drops_endpoints_as_records_change():
    resolver = FakeResolver({"tfs": ["10.0.0.1", "10.0.0.2"], "extra": ["10.0.9.9"]})
    found = DnsDiscovery(["tfs:8500", "extra:9000"], interval_s=0.1, min_interval_s=0.02,
                         resolve=resolver)
    sets = Sets()
    found.subscribe(sets)
    found.start()
    try:
        sets.wait_for({"10.0.0.1:8500", "10.0.0.2:8500", "10.0.9.9:9000"})
        resolver.answers["tfs"] = ["10.0.0.2", "10.0.0.3"]
        sets.wait_for({"10.0.0.2:8500", "10.0.0.3:8500", "10.0.9.9:9000"})
    finally:
        found.stop()
    # Only changes are published, however often the names are resolved.
    assert len(sets.seen) == 3  # empty at subscribe, first result, the change


def test_dns_failure_keeps_last_known_endpoints_and_retries():
    resolver = FakeResolver({"tfs": ["10.0.0.1"]})
    found = DnsDiscovery(["tfs:8500"], interval_s=60, min_interval_s=0.02, resolve=resolver)
    sets = Sets()
    found.subscribe(sets)
    assert found.resolve_once()
    resolver.answers["tfs"] = OSError("Temporary failure in name resolution")
    found.start()
    try:
        deadline = time.monotonic() + 2
        while resolver.calls < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert resolver.calls >= 4, "a failed lookup is retried well before the 60 s interval"
        assert found.endpoints() == {"10.0.0.1:8500"}
        resolver.answers["tfs"] = ["10.0.0.5"]
        sets.wait_for({"10.0.0.5:8500"})
    finally:
        found.stop()


def test_refresh_re_resolves_at_once_but_rate_limited():
    resolver = FakeResolver({"tfs": ["10.0.0.1"]})
    found = DnsDiscovery(["tfs:8500"], interval_s=60, min_interval_s=0.1, resolve=resolver)
    sets = Sets()
    found.subscribe(sets)
    found.start()
    try:
        sets.wait_for({"10.0.0.1:8500"})
        resolver.answers["tfs"] = ["10.0.0.7"]
        start = time.monotonic()
        found.refresh()  # e.g. the balancer saw a connection refused
        # Looked up again at once, not at the next 60 s interval (10 s: headroom for busy cores).
        sets.wait_for({"10.0.0.7:8500"}, timeout=10)
        assert time.monotonic() - start < 10
        calls = resolver.calls
        storm_end = time.monotonic() + 0.5
        while time.monotonic() < storm_end:  # every failing request asks for a refresh
            found.refresh()
            time.sleep(0.001)
        assert resolver.calls - calls <= 7, "at most one lookup per min_interval_s"
    finally:
        found.stop()


def test_real_getaddrinfo_of_localhost():
    addresses = resolve_tcp("localhost", 8500)
    assert addresses & {"127.0.0.1:8500", "[::1]:8500"}
    found = DnsDiscovery(["localhost:8500"])
    found.resolve_once()
    assert found.endpoints() == addresses


def test_stop_is_prompt_even_with_a_long_interval():
    found = DnsDiscovery(["tfs:8500"], interval_s=3600, resolve=FakeResolver({"tfs": ["10.0.0.1"]}))
    found.start()
    assert found.wait_known(2)
    start = time.monotonic()
    found.stop()
    assert time.monotonic() - start < 1


def discovery_from_env(environ):
    return DiscoveryConfig.from_settings(load_settings(environ))


def test_config_defaults_to_static_backends():
    config = discovery_from_env({"TFSTACK_BACKENDS": "127.0.0.1:8500, 127.0.0.1:8600"})
    assert config.mode == "static"
    found = config.build()
    assert isinstance(found, StaticDiscovery)
    assert found.endpoints() == {"127.0.0.1:8500", "127.0.0.1:8600"}


def test_config_selects_dns_and_endpointslices():
    dns = discovery_from_env({
        "TFSTACK_DISCOVERY": "dns", "TFSTACK_BACKENDS": "tfs-headless:8500",
        "TFSTACK_DISCOVERY_DNS_INTERVAL_S": "2",
    })
    assert isinstance(dns.build(), DnsDiscovery)
    assert dns.dns_interval_s == 2.0
    slices = discovery_from_env({
        "TFSTACK_DISCOVERY": "EndpointSlices", "TFSTACK_DISCOVERY_SERVICE": "tfs",
        "TFSTACK_DISCOVERY_NAMESPACE": "serving",
        "TFSTACK_DISCOVERY_API_URL": "http://127.0.0.1:8001",
    })
    assert slices.api_url == "http://127.0.0.1:8001"
    built = slices.build()
    assert isinstance(built, EndpointSliceDiscovery)
    assert (built.service, built.namespace, built.port_name) == ("tfs", "serving", "grpc")
    assert built.selector == "kubernetes.io/service-name=tfs"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"TFSTACK_DISCOVERY": "consul"}, "TFSTACK_DISCOVERY"),
        ({"TFSTACK_BACKENDS": "a:1,b"}, "TFSTACK_BACKENDS"),
        ({"TFSTACK_DISCOVERY": "endpointslices"}, "TFSTACK_DISCOVERY_SERVICE"),
        ({"TFSTACK_DISCOVERY": "endpointslices", "TFSTACK_DISCOVERY_SERVICE": "tfs"},
         "TFSTACK_DISCOVERY_NAMESPACE"),
        ({"TFSTACK_DISCOVERY_DNS_INTERVAL_S": "soon"}, "TFSTACK_DISCOVERY_DNS_INTERVAL_S"),
    ],
)
def test_config_errors_name_the_variable(environ, variable):
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ)


def test_kubernetes_client_is_imported_only_when_that_mode_runs():
    code = (
        "import sys; from tfstack.gateway.discovery import DiscoveryConfig as C;"
        "C(mode='endpointslices', service='tfs', namespace='ns').build();"
        "C(mode='static', backends=('a:1',)).build();"
        "assert 'kubernetes' not in sys.modules, 'imported kubernetes eagerly'"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)
