"""Server-side batching: concurrent Predicts on the same servable/signature run as one batch.

A small take on TF's SharedBatchScheduler as TF Serving configures it: one queue per
(servable, signature, feeds, fetches, per-row shapes), each holding batches of whole tasks (a
task never splits); the open batch closes when the next task would not fit; a queue may hold at
most `max_enqueued_batches` batches and rejects the task that needs one more with UNAVAILABLE;
`num_batch_threads` threads run the batches; a batch runs when it is closed or full, or when its
oldest task has waited `batch_timeout_micros`. Results are split back by each task's rows.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence

import grpc
import numpy as np

from tfstack.modelserver.config import BatchingSettings
from tfstack.modelserver.errors import ServingError, invalid_argument, unavailable
from tfstack.modelserver.metrics import Metrics

Runner = Callable[[tuple[np.ndarray, ...]], dict[str, np.ndarray]]

QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


class _Task:
    __slots__ = ("feeds", "size", "enqueued", "done", "result", "error")

    def __init__(self, feeds: tuple[np.ndarray, ...], size: int) -> None:
        self.feeds, self.size = feeds, size
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.result: dict[str, np.ndarray] | None = None
        self.error: ServingError | None = None


class _Batch:
    __slots__ = ("tasks", "size", "opened")

    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self.size = 0
        self.opened = time.monotonic()


class _Queue:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.batches: collections.deque[_Batch] = collections.deque([_Batch()])


def batch_size_of(feeds: Sequence[np.ndarray]) -> int | None:
    """Rows in a task, or None when it cannot be batched (a scalar, or disagreeing dim 0)."""
    if not feeds or any(f.ndim == 0 for f in feeds):
        return None
    sizes = {f.shape[0] for f in feeds}
    return sizes.pop() if len(sizes) == 1 else None


class BatchScheduler:
    def __init__(self, settings: BatchingSettings, metrics: Metrics) -> None:
        self.settings = settings
        self._metrics = metrics
        self._timeout = settings.batch_timeout_micros / 1e6
        self._queues: dict[tuple, _Queue] = {}
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
            for i in range(max(settings.num_batch_threads, 1))
        ]
        for thread in self._threads:
            thread.start()

    def run(self, key: tuple, feeds: tuple[np.ndarray, ...], runner: Runner):
        """Run `feeds` as part of a batch; blocks until this task's rows are back."""
        size = batch_size_of(feeds)
        if size is None or size == 0:
            return runner(feeds)
        limit = self.settings.max_batch_size
        if size > limit:
            raise invalid_argument(
                f"Task size {size} is larger than maximum input batch size {limit}"
            )
        key = key + tuple((f.dtype.str, f.shape[1:]) for f in feeds)
        task = _Task(feeds, size)
        with self._cond:
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(runner)
            if queue.batches[-1].size + size > limit:
                if len(queue.batches) >= self.settings.max_enqueued_batches:
                    raise unavailable(QUEUE_FULL)
                queue.batches.append(_Batch())
            batch = queue.batches[-1]
            if not batch.tasks:
                batch.opened = time.monotonic()
            batch.tasks.append(task)
            batch.size += size
            self._cond.notify()
        self._metrics.input_batch_size.observe(size)
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    # -- batch threads ---------------------------------------------------------------------------
    def _next_batch(self) -> tuple[_Queue, _Batch] | None:
        """The oldest runnable batch (caller holds the lock), or None."""
        now, best = time.monotonic(), None
        for key, queue in self._queues.items():
            batch = queue.batches[0]
            if not batch.tasks:
                continue
            ready = (
                len(queue.batches) > 1
                or batch.size >= self.settings.max_batch_size
                or now - batch.opened >= self._timeout
            )
            if ready and (best is None or batch.opened < best[2].opened):
                best = (key, queue, batch)
        if best is None:
            return None
        key, queue, batch = best
        queue.batches.popleft()
        if not queue.batches:
            queue.batches.append(_Batch())
        if len(queue.batches) == 1 and not queue.batches[0].tasks:
            del self._queues[key]
        return queue, batch

    def _wait_time(self) -> float | None:
        opened = [q.batches[0].opened for q in self._queues.values() if q.batches[0].tasks]
        if not opened:
            return None
        return max(min(opened) + self._timeout - time.monotonic(), 0.0005)

    def _work(self) -> None:
        while True:
            with self._cond:
                found = self._next_batch()
                while found is None:
                    self._cond.wait(self._wait_time())
                    found = self._next_batch()
            self._process(*found)

    def _process(self, queue: _Queue, batch: _Batch) -> None:
        started = time.monotonic()
        pool = self.settings.thread_pool_name
        for task in batch.tasks:
            self._metrics.queuing_latency.observe((started - task.enqueued) * 1e6, pool)
        padded = self._padded_size(batch.size)
        self._metrics.processed_batch_size.observe(padded)
        self._metrics.padding_size.observe(padded - batch.size, str(padded))
        self._metrics.wrapped_run_count.inc()
        try:
            merged = self._merge(batch, padded)
            outputs = queue.runner(merged)
            self._split(batch, outputs)
        except ServingError as err:
            for task in batch.tasks:
                task.error = err
        except Exception as err:  # noqa: BLE001 (every waiting caller must be answered)
            for task in batch.tasks:
                task.error = ServingError(grpc.StatusCode.UNKNOWN, str(err))
        for task in batch.tasks:
            task.done.set()

    def _padded_size(self, size: int) -> int:
        for allowed in self.settings.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size

    @staticmethod
    def _merge(batch: _Batch, padded: int) -> tuple[np.ndarray, ...]:
        if len(batch.tasks) == 1 and padded == batch.size:
            return batch.tasks[0].feeds
        merged = []
        for index in range(len(batch.tasks[0].feeds)):
            parts = [task.feeds[index] for task in batch.tasks]
            if padded > batch.size:  # pad with copies of the first row, as TF does
                first = parts[0][:1]
                parts.append(np.repeat(first, padded - batch.size, axis=0))
            merged.append(np.concatenate(parts, axis=0))
        return tuple(merged)

    @staticmethod
    def _split(batch: _Batch, outputs: dict[str, np.ndarray]) -> None:
        if len(batch.tasks) == 1 and all(
            v.ndim > 0 and v.shape[0] == batch.size for v in outputs.values()
        ):
            batch.tasks[0].result = outputs
            return
        for name, value in outputs.items():
            if value.ndim == 0:
                raise invalid_argument(f"Batched output tensor has 0 dimensions: {name}")
            if value.shape[0] < batch.size:
                raise invalid_argument(
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    "dimension sizes of the input tensors"
                )
        start = 0
        for task in batch.tasks:
            end = start + task.size
            task.result = {name: value[start:end] for name, value in outputs.items()}
            start = end
