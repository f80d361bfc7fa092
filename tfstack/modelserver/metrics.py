"""TF Serving's monitoring metrics and their Prometheus exposition.

TF Serving names its metrics like `/tensorflow/serving/request_count` and its exporter
(`util/prometheus_exporter.cc`) turns every character outside `[a-zA-Z0-9_]` into `:`, prints only
`# TYPE` lines (no `# HELP`), formats doubles the way `absl::StrCat` does (six significant digits)
and prints `name{} v` for a metric without labels. prometheus_client cannot produce names that
start with `:`, so this module keeps its own small registry and renderer.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Sequence


def exponential_buckets(scale: float, growth: float, count: int) -> list[float]:
    """TF's `Buckets::Exponential(scale, growth_factor, bucket_count)` limits."""
    return [scale * growth**i for i in range(count)]


def _fmt_double(value: float) -> str:
    return f"{value:.6g}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_name(tf_name: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)
    return "_" + name if name[:1].isdigit() else name


class _Metric:
    kind = "untyped"

    def __init__(self, tf_name: str, label_names: Sequence[str]) -> None:
        self.name = prometheus_name(tf_name)
        self.tf_name = tf_name
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _labels(self, values: tuple[str, ...]) -> str:
        return ",".join(
            f'{re.sub(r"[^a-zA-Z0-9]", "_", n)}="{_escape(str(v))}"'
            for n, v in zip(self.label_names, values, strict=True)
        )


class Counter(_Metric):
    kind = "counter"

    def __init__(self, tf_name: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(tf_name, label_names)
        # A metric without labels has its one cell from the start, as in TF.
        self._cells: dict[tuple[str, ...], int] = {} if label_names else {(): 0}

    def inc(self, *labels: str, amount: int = 1) -> None:
        with self._lock:
            self._cells[labels] = self._cells.get(labels, 0) + int(amount)

    def value(self, *labels: str) -> int:
        return self._cells.get(labels, 0)

    def render(self) -> list[str]:
        with self._lock:
            cells = sorted(self._cells.items())
        lines = [f"# TYPE {self.name} {self.kind}"]
        lines += [f"{self.name}{{{self._labels(k)}}} {v}" for k, v in cells]
        return lines


class Gauge(Counter):
    kind = "gauge"

    def set(self, *labels: str, value: int) -> None:
        with self._lock:
            self._cells[labels] = int(value)


class _HistogramCell:
    __slots__ = ("buckets", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.sum = 0.0


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, tf_name: str, limits: Sequence[float], label_names: Sequence[str] = ()
    ) -> None:
        super().__init__(tf_name, label_names)
        self.limits = list(limits)
        self._cells: dict[tuple[str, ...], _HistogramCell] = (
            {} if label_names else {(): _HistogramCell(len(self.limits) + 1)}
        )

    def observe(self, value: float, *labels: str) -> None:
        # TF's histogram puts a value in the first bucket whose limit is above it.
        index = bisect.bisect_right(self.limits, value)
        with self._lock:
            cell = self._cells.get(labels)
            if cell is None:
                cell = self._cells[labels] = _HistogramCell(len(self.limits) + 1)
            cell.buckets[index] += 1
            cell.sum += value

    def snapshot(self, *labels: str) -> tuple[list[int], float]:
        """(per-bucket counts, sum) for one label set; zeros when never observed."""
        with self._lock:
            cell = self._cells.get(labels)
            if cell is None:
                return [0] * (len(self.limits) + 1), 0.0
            return list(cell.buckets), cell.sum

    def render(self) -> list[str]:
        with self._lock:
            cells = sorted((k, list(c.buckets), c.sum) for k, c in self._cells.items())
        lines = [f"# TYPE {self.name} histogram"]
        for key, buckets, total in cells:
            labels = self._labels(key)
            prefix = f"{self.name}_bucket{{{labels}{',' if labels else ''}"
            cumulative = 0
            for i, count in enumerate(buckets):
                cumulative += count
                limit = _fmt_double(self.limits[i]) if i < len(self.limits) else "+Inf"
                lines.append(f'{prefix}le="{limit}"}} {cumulative}')
            lines.append(f"{self.name}_sum{{{labels}}} {_fmt_double(total)}")
            lines.append(f"{self.name}_count{{{labels}}} {cumulative}")
        return lines


class Metrics:
    """Every metric this server exports, declared once, named as TF Serving names them."""

    def __init__(self) -> None:
        latency = exponential_buckets(10, 1.8, 33)
        self.request_count = Counter("/tensorflow/serving/request_count", ("model_name", "status"))
        self.request_latency = Histogram(
            "/tensorflow/serving/request_latency", latency, ("model_name", "API", "entrypoint")
        )
        self.runtime_latency = Histogram(
            "/tensorflow/serving/runtime_latency", latency, ("model_name", "API", "runtime")
        )
        self.request_example_counts = Histogram(
            "/tensorflow/serving/request_example_counts", exponential_buckets(1, 2, 15), ("model",)
        )
        self.request_example_count_total = Counter(
            "/tensorflow/serving/request_example_count_total", ("model",)
        )
        self.load_attempt_count = Counter(
            "/tensorflow/cc/saved_model/load_attempt_count", ("model_path", "status")
        )
        self.load_latency = Counter("/tensorflow/cc/saved_model/load_latency", ("model_path",))
        self.warmup_latency = Histogram(
            "/tensorflow/serving/model_warmup_latency", latency, ("model_path", "status")
        )
        self.warmup_records_read = Counter(
            "/tensorflow/serving/model_warmup_records_read", ("model_path", "status")
        )
        self.queuing_latency = Histogram(
            "/tensorflow/serving/batching_session/queuing_latency",
            exponential_buckets(100, 1.2, 52),
            ("thread_pool_name",),
        )
        self.wrapped_run_count = Counter("/tensorflow/serving/batching_session/wrapped_run_count")
        batch_sizes = exponential_buckets(1, 2, 14)
        self.input_batch_size = Histogram(
            "/tensorflow/serving/batching_session/input_batch_size", batch_sizes
        )
        self.processed_batch_size = Histogram(
            "/tensorflow/serving/batching_session/processed_batch_size", batch_sizes
        )
        self.padding_size = Histogram(
            "/tensorflow/serving/batching_session/padding_size",
            batch_sizes,
            ("execution_batch_size",),
        )

    def all(self) -> list[_Metric]:
        found = [m for m in vars(self).values() if isinstance(m, _Metric)]
        # TF's registry is a std::map keyed by the TF name: the page is in that order.
        return sorted(found, key=lambda m: m.tf_name)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines += metric.render()
        return "\n".join(lines) + "\n"
