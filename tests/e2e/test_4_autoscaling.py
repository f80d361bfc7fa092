"""Item 4: the TF Serving HPA acts. Under load through the gateway it scales out, and back in
to minReplicas when the load stops (user.yaml shortens the scale-in window, marked TEST-ONLY):
- on CPU utilization, from metrics-server;
- on the chart's per-replica request rate (`tfserving_requests_per_second`), served by
  prometheus-adapter from a Prometheus scraping the pods.

Replicas, load and the metric are recorded every 5 s to a CSV in the artifacts directory and
drawn to a PNG there (and to docs/img/ with TFSTACK_E2E_WRITE_DOCS=1).
"""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, VALUES, Release, is_ready
from tests.e2e.load import HALF_PLUS_TWO, digits_request
from tfstack.testing.loadgen import Background, HttpRequest, HttpTarget

pytestmark = pytest.mark.cluster

CUSTOM_METRICS_API = "v1beta1.custom.metrics.k8s.io"
EVERY_S = 5.0


@dataclass
class Recorder:
    """Samples the HPA and the load every EVERY_S seconds into rows."""

    release: Release
    metric: str  # "cpu" or the custom metric's name
    rows: list[dict] = field(default_factory=list)
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)
    phase: str = "idle"

    def on_response(self, _index: int, status: str, _body: bytes) -> None:
        if status == "200":
            with self.lock:
                self.answered += 1

    def sample(self) -> dict:
        hpa = self.release.get("hpa", f"{self.release.fullname}-tfserving")
        status = hpa.get("status", {})
        with self.lock:
            answered, self.answered = self.answered, 0
        elapsed = time.monotonic() - self.started
        previous = self.rows[-1]["t_s"] if self.rows else 0.0
        row = {
            "t_s": round(elapsed, 1),
            "phase": self.phase,
            "load_rps": round(answered / max(elapsed - previous, 1e-9), 1) if self.rows else 0.0,
            "desired": status.get("desiredReplicas", 0),
            "current": status.get("currentReplicas", 0),
            "ready_pods": sum(is_ready(p) and not p["metadata"].get("deletionTimestamp")
                              for p in self.release.pods("tfserving")),
            "metric": self.current_metric(status),
            "target": self.target(hpa["spec"]),
        }
        self.rows.append(row)
        print(row)
        return row

    def current_metric(self, status: dict) -> float | None:
        for metric in status.get("currentMetrics") or []:
            if self.metric == "cpu" and metric.get("type") == "Resource":
                return metric["resource"]["current"].get("averageUtilization")
            if metric.get("type") == "Pods" and metric["pods"]["metric"]["name"] == self.metric:
                return parse_quantity(metric["pods"]["current"]["averageValue"])
        return None

    def target(self, spec: dict) -> float | None:
        for metric in spec.get("metrics") or []:
            if self.metric == "cpu" and metric.get("type") == "Resource":
                return metric["resource"]["target"].get("averageUtilization")
            if metric.get("type") == "Pods" and metric["pods"]["metric"]["name"] == self.metric:
                return parse_quantity(str(metric["pods"]["target"]["averageValue"]))
        return None

    def until(self, check, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            row = self.sample()
            if check(row):
                return row
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; "
                            f"last rows: {self.rows[-5:]}\n{self.release.describe()}",
                            pytrace=False)
            time.sleep(EVERY_S)

    def save(self, directory: Path, name: str, title: str, docs: bool) -> Path:
        path = directory / f"{name}.csv"
        with path.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        plot(self.rows, directory / f"{name}.png", title, self.metric)
        if docs:
            plot(self.rows, REPO / "docs" / "img" / f"{name}.png", title, self.metric)
        return path


def parse_quantity(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def plot(rows: list[dict], path: Path, title: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    t = [r["t_s"] for r in rows]
    fig, (top, middle, bottom) = plt.subplots(3, 1, sharex=True, figsize=(8, 7))
    top.step(t, [r["desired"] for r in rows], where="post", label="desired")
    top.step(t, [r["ready_pods"] for r in rows], where="post", label="Ready pods")
    top.set_ylabel("TF Serving replicas")
    top.legend(loc="upper right")
    middle.plot(t, [r["metric"] if r["metric"] is not None else float("nan") for r in rows],
                label="current (HPA status)")
    middle.step(t, [r["target"] if r["target"] is not None else float("nan") for r in rows],
                where="post", linestyle="--", label="target")
    middle.legend(loc="upper right")
    middle.set_ylabel("CPU, % of request" if metric == "cpu" else f"{metric}\n(per replica)")
    bottom.plot(t, [r["load_rps"] for r in rows])
    bottom.set_ylabel("answered requests/s")
    bottom.set_xlabel("seconds")
    loaded = [r["t_s"] for r in rows if r["phase"] == "load"]
    for axis in (top, middle, bottom):
        axis.grid(alpha=0.3)
        if loaded:
            axis.axvspan(min(loaded), max(loaded), color="orange", alpha=0.1)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scale_out_and_in(release: Release, recorder: Recorder, request: HttpRequest,
                     url: str, **load: object) -> None:
    minimum = release.get("hpa", f"{release.fullname}-tfserving")["spec"]["minReplicas"]
    # Before the load: at the minimum, wanting no more, the metric read and under its target
    # (an earlier test's load can linger in it: the request rate is a 1-minute average).
    recorder.until(lambda r: r["desired"] == r["current"] == r["ready_pods"] == minimum
                   and r["metric"] is not None and r["metric"] < r["target"], 300,
                   f"the HPA idle at its {minimum} minimum replicas before the load")
    recorder.phase = "load"
    target = HttpTarget(url, request, timeout_s=15, on_response=recorder.on_response,
                        loopback_only=False)
    background = Background(target, requests=10_000_000, duration_s=600, **load)
    try:
        recorder.until(lambda r: r["desired"] > minimum and r["ready_pods"] > minimum, 300,
                       "the HPA to scale out under load")
        # A little more load after the scale-out shows the metric settling with more replicas.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            recorder.sample()
            time.sleep(EVERY_S)
    finally:
        background.stop_event.set()
        background.join(timeout=60)
    recorder.phase = "after"
    recorder.until(lambda r: r["desired"] == minimum and r["current"] == minimum, 420,
                   "the HPA to scale back in once the load stopped")


@pytest.mark.timeout(1200)
def test_hpa_scales_out_and_in_on_cpu(release, artifacts, settings):
    recorder = Recorder(release, "cpu")
    with release.gateway_url() as url:
        try:
            scale_out_and_in(release, recorder, digits_request(), url, concurrency=8)
        finally:
            if recorder.rows:
                saved = recorder.save(artifacts, "hpa-cpu",
                                      "TF Serving HPA on CPU (metrics-server)",
                                      settings.write_docs)
                print(f"recorded {saved}")
    assert max(r["desired"] for r in recorder.rows) > 2


def custom_metrics_api_present(release: Release) -> bool:
    found = release.kube.kubectl("get", "apiservice", CUSTOM_METRICS_API, "-o", "name",
                                 check=False)
    return bool(found.strip())


@pytest.mark.timeout(1500)
def test_hpa_scales_out_and_in_on_requests_per_second(release, artifacts, settings):
    if not custom_metrics_api_present(release):
        if settings.no_custom_metrics:
            pytest.skip(f"NOT RUN: no {CUSTOM_METRICS_API} APIService on this cluster and the "
                        "runner said so (TFSTACK_E2E_NO_CUSTOM_METRICS=1)")
        pytest.fail(f"the {CUSTOM_METRICS_API} APIService is missing: install Prometheus and "
                    "prometheus-adapter (k8s/prometheus-adapter), or run with "
                    "TFSTACK_E2E_NO_CUSTOM_METRICS=1 to leave this test out", pytrace=False)
    release.upgrade(extra=(VALUES / "requests-per-second.yaml",))
    recorder = Recorder(release, "tfserving_requests_per_second")
    try:
        with release.gateway_url() as url:
            # Open loop, 30 requests/s: 15 per replica at 2 replicas, twice the 5/s target.
            scale_out_and_in(release, recorder, HALF_PLUS_TWO, url, concurrency=8, rate=30)
    finally:
        if recorder.rows:
            recorder.save(artifacts, "hpa-requests-per-second",
                          "TF Serving HPA on requests/s (Prometheus + prometheus-adapter)",
                          settings.write_docs)
        release.upgrade()
    assert max(r["desired"] for r in recorder.rows) > 2
