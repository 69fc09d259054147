"""Dynamic batching: concurrent submissions for one network of one model merge into one run.

A :class:`Batcher` owns a queue and one worker task. The worker takes the oldest submission and, if
other requests for the model are in flight but not queued here yet (``company``), waits up to
``max_delay_s`` (from that submission's arrival) for them; a lone request never waits. It then runs as many queued
submissions as fit in ``max_batch_rows`` together in a worker thread and hands each its own slice.
Runs of one batcher never overlap, so submissions that arrive during a run form the next batch.

Before a run, submissions whose deadline passed (``reason="deadline"``, whether or not gRPC has cancelled
the call yet) or whose caller went away (cancelled future, ``reason="cancelled"``) are dropped. A full queue
refuses new submissions at once (:class:`~styleserve.errors.Overloaded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from styleserve.errors import DeadlineExpired, Overloaded, Unavailable

from .metrics import Metrics

P = TypeVar("P")
R = TypeVar("R")


@dataclass(eq=False)
class _Item(Generic[P, R]):
    payload: P
    rows: int
    future: asyncio.Future[R]
    deadline: float | None  # time.monotonic() value, None = no deadline.
    enqueued: float = field(default_factory=time.monotonic)


class Batcher(Generic[P, R]):
    def __init__(
        self,
        model: str,
        network: str,
        run: Callable[[list[P]], Sequence[R]],
        *,
        max_batch_rows: int,
        max_delay_s: float,
        max_queue_rows: int,
        executor: Executor,
        metrics: Metrics,
        company: Callable[[], int] = lambda: 0,
    ) -> None:
        if max_batch_rows < 1:
            raise ValueError("max_batch_rows must be >= 1")
        self.model = model
        self.network = network
        self.max_batch_rows = max_batch_rows
        self.max_delay_s = max(0.0, max_delay_s)
        self.max_queue_rows = max_queue_rows
        self._run = run
        self._company = company  # Requests for this model in flight now (queued here or elsewhere).
        self._executor = executor
        self._metrics = metrics
        self._queue: deque[_Item[P, R]] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def poke(self) -> None:
        """Re-check the wait condition (a request for the model finished or moved on)."""
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.model}-{self.network}")

    async def close(self) -> None:
        """Refuse new work, finish what is queued, stop the worker."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def submit_all(self, parts: Sequence[tuple[P, int]], deadline: float | None = None) -> list[R]:
        """Queue one request's parts together and wait for all of them.

        Admission is per request: it is refused (Overloaded) when the queue already holds work and the
        request's rows would not fit in ``max_queue_rows``; an idle queue takes any request.
        """
        if self._closed:
            raise Unavailable("the server is shutting down")
        for _, rows in parts:
            if not 1 <= rows <= self.max_batch_rows:
                raise ValueError(f"rows must be in 1..{self.max_batch_rows}, got {rows}")
        total = sum(rows for _, rows in parts)
        if self._queued_rows and self._queued_rows + total > self.max_queue_rows:
            self._metrics.rejected.labels(self.model).inc()
            raise Overloaded(
                f"model {self.model!r}: the {self.network} queue is full ({self._queued_rows} rows waiting, "
                f"limit {self.max_queue_rows}); retry later"
            )
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        for payload, rows in parts:
            future: asyncio.Future[R] = loop.create_future()
            self._queue.append(_Item(payload, rows, future, deadline))
            self._queued_rows += rows
            futures.append(future)
        self._gauge()
        self._wakeup.set()
        return list(await asyncio.gather(*futures))

    def _gauge(self) -> None:
        self._metrics.queue_rows.labels(self.model, self.network).set(self._queued_rows)

    async def _wait(self, timeout: float | None) -> None:
        self._wakeup.clear()
        if timeout is None:
            await self._wakeup.wait()
        else:
            with contextlib.suppress(asyncio.TimeoutError):  # A distinct class on Python 3.10.
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _take(self) -> list[_Item[P, R]]:
        """Pop the submissions of the next run, dropping cancelled and expired ones."""
        batch: list[_Item[P, R]] = []
        rows = 0
        now = time.monotonic()
        while self._queue and rows + self._queue[0].rows <= self.max_batch_rows:
            item = self._queue.popleft()
            self._queued_rows -= item.rows
            reason = None
            # The deadline first: when it passes, gRPC also cancels the call (so the future is done), and
            # that drop is a deadline's, not a client's cancellation.
            if item.deadline is not None and now >= item.deadline:
                reason = "deadline"
                if not item.future.done():
                    item.future.set_exception(DeadlineExpired("deadline passed while queued; the work was not run"))
            elif item.future.done():
                reason = "cancelled"
            if reason is not None:
                self._metrics.dropped.labels(self.model, self.network, reason).inc()
                continue
            self._metrics.queue_wait_seconds.labels(self.model, self.network).observe(now - item.enqueued)
            batch.append(item)
            rows += item.rows
        self._gauge()
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                await self._wait(None)
                continue
            if self.max_delay_s > 0:
                until = self._queue[0].enqueued + self.max_delay_s
                while (
                    self._queued_rows < self.max_batch_rows
                    and self._company() > len(self._queue)
                    and (left := until - time.monotonic()) > 0
                ):
                    await self._wait(left)
            batch = self._take()
            if not batch:
                continue
            labels = (self.model, self.network)
            rows = sum(item.rows for item in batch)
            self._metrics.batch_size.labels(*labels).observe(rows)
            self._metrics.batch_requests.labels(*labels).observe(len(batch))
            self._metrics.network_rows.labels(*labels).inc(rows)
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._run, [item.payload for item in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch run returned {len(results)} results for {len(batch)} submissions")
            except Exception as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                self._metrics.compute_seconds.labels(*labels).observe(time.perf_counter() - t0)
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
