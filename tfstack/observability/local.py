"""A Prometheus for the local stack, with tfstack's rules, on loopback.

`start_prometheus(targets, rules_file, port, data_dir)` renders `prometheus-local.yml` and starts
the pinned Prometheus (`ci/tools/install-prometheus.sh` puts it in .tools/bin) as a
`ManagedProcess`; it returns once Prometheus is ready. `tfstack up --with-prometheus` and
tests/observability use it.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

from tfstack.observability.paths import RULES_FILE, tool
from tfstack.runtime.procs import ManagedProcess

CONFIG_TEMPLATE = Path(__file__).with_name("prometheus-local.yml")
NAMESPACE = "local"
# Components and the pod-name prefix their targets get (`gateway-0`, `modelserver-1`, ...).
COMPONENTS = {"gateway": "gateway", "tfserving": "modelserver"}


def _static_configs(component: str, addresses: Sequence[str]) -> str:
    """One static_config per target, labelled like a pod (YAML flow style, i.e. JSON)."""
    prefix = COMPONENTS[component]
    configs = [
        {"targets": [address], "labels": {"namespace": NAMESPACE, "pod": f"{prefix}-{i}"}}
        for i, address in enumerate(addresses)
    ]
    return json.dumps(configs)


def render_config(
    targets: Mapping[str, Sequence[str]],
    rules_file: Path = RULES_FILE,
    scrape_interval: str = "1s",
) -> str:
    """prometheus.yml for `targets`: {"gateway": [host:port, ...], "tfserving": [host:port, ...]}
    (TF Serving targets are REST ports: the metrics are served there)."""
    unknown = set(targets) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown target components {sorted(unknown)}; use {sorted(COMPONENTS)}")
    return string.Template(CONFIG_TEMPLATE.read_text()).substitute(
        scrape_interval=scrape_interval,
        scrape_timeout=scrape_interval,
        evaluation_interval=scrape_interval,
        rules_file=json.dumps(str(Path(rules_file).resolve())),
        gateway_targets=_static_configs("gateway", targets.get("gateway", ())),
        tfserving_targets=_static_configs("tfserving", targets.get("tfserving", ())),
    )


def start_prometheus(
    targets: Mapping[str, Sequence[str]],
    rules_file: Path = RULES_FILE,
    port: int = 9090,
    data_dir: Path = Path(".run/prometheus"),
    scrape_interval: str = "1s",
    host: str = "127.0.0.1",
    ready_timeout: float = 30.0,
) -> ManagedProcess:
    """Start Prometheus on `host:port` scraping `targets` with `rules_file`; wait until ready.

    Its config and log go to `data_dir`, its TSDB to `data_dir/tsdb`. Stop it with `.stop()`.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "prometheus.yml"
    config.write_text(render_config(targets, rules_file, scrape_interval))
    process = ManagedProcess(
        "prometheus",
        [
            str(tool("prometheus")),
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir / 'tsdb'}",
            f"--web.listen-address={host}:{port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ],
        data_dir / "prometheus.log",
    ).start()
    try:
        process.wait_http(f"http://{host}:{port}/-/ready", timeout=ready_timeout)
    except BaseException:
        process.stop()
        raise
    return process
