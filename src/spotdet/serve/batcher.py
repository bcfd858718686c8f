"""Dynamic request batching: group queued images into one model call (max batch or max wait, first wins).

Requests put one job per image on a bounded queue (full -> the caller answers 503). A single worker
takes the first job, gathers more until ``max_batch`` images or ``max_wait_ms`` pass, and runs the group
on the model thread: one session.run for a dynamic-batch model, back to back for a static batch-1 model
(no waiting then, since grouping cannot save model calls).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from spotdet.detector import Prepared
from spotdet.options import DetectOptions
from spotdet.errors import SpotdetError
from spotdet.results import Result
from spotdet.serve.budget import Lease
from spotdet.serve.host import ModelHost
from spotdet.serve.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """No room in the queue for this request's images."""


class BatchInterruptedError(Exception):
    """The group holding a request's images stopped before answering it (cancelled): a 500, never a wait."""

    def __init__(self, images: int) -> None:
        super().__init__(f"the batch of {images} image(s) was interrupted before it answered")


@dataclass
class Job:
    prepared: Prepared
    options: DetectOptions
    future: asyncio.Future
    enqueued: float  # batcher clock
    lease: Lease | None = None  # the image's memory, held by the batcher until it lets go of the job

    def let_go(self) -> None:
        """The batcher holds this job no more (answered, failed or dropped): its memory may be given back."""
        if self.lease is not None:
            self.lease.drop()
            self.lease = None


@dataclass
class BatchOutcome:
    result: Result
    queue_ms: float
    batch_size: int
    batch_busy_s: float
    cost_usd: float


class Batcher:
    """Groups queued images and runs them; prices each group (README, "--price-per-hour").

    A group's busy seconds are the wall time of its model run (the cold start excluded). Each of its images
    costs ``price_per_hour * busy / 3600 / images in the group / groups running when it started`` (the
    groups in flight at once share the machine). ``spotdet_busy_seconds_total`` and
    ``spotdet_cost_dollars_total`` grow by the union of busy time, so overlapping groups are not counted
    twice. ``clock`` (seconds, monotonic) times the queue and the runs; tests inject one.
    """

    def __init__(self, host: ModelHost, metrics: ServiceMetrics, max_batch: int, max_wait_ms: float,
                 queue_size: int, price_per_hour: float, model_workers: int = 1,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.host = host
        self.clock = clock
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.price_per_hour = price_per_hour
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        # Groups in flight at once; each runs on its own thread against the same (thread-safe) session.
        self.model_workers = model_workers
        self.model_thread = ThreadPoolExecutor(max_workers=model_workers, thread_name_prefix="spotdet-model")
        self._slots = asyncio.Semaphore(model_workers)
        self._lock = threading.Lock()
        self._active = 0  # groups running right now
        self._busy_until = 0.0  # end of the union of busy intervals so far (clock)
        self._running: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="spotdet-batcher")

    async def stop(self) -> None:
        """Finish every queued job, then stop the worker (graceful drain)."""
        while not self.queue.empty() or self._running:
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.model_thread.shutdown(wait=True)

    def has_room(self, n: int) -> bool:
        """Whether ``n`` more images fit in the queue now (checked again when they are submitted)."""
        return self.queue.maxsize - self.queue.qsize() >= n

    async def submit(self, prepared: list[Prepared], options: DetectOptions,
                     leases: list[Lease] | None = None) -> list[BatchOutcome]:
        """Queue the images of one request; all or none are queued (QueueFullError when no room).

        ``leases``: one per image, held from here until the batcher lets go of the image's job (a request
        that times out leaves its jobs queued until the worker drops them)."""
        if not self.has_room(len(prepared)):
            raise QueueFullError
        loop = asyncio.get_running_loop()
        now = self.clock()
        jobs = [Job(p, options, loop.create_future(), now) for p in prepared]
        for job, lease in zip(jobs, leases or []):
            lease.hold()
            job.lease = lease
        for job in jobs:
            self.queue.put_nowait(job)
        self.metrics.queue_depth.set(self.queue.qsize())
        try:
            return list(await asyncio.gather(*(j.future for j in jobs)))
        finally:
            for job in jobs:  # a timed-out request: its queued jobs are dropped by the worker
                job.future.cancel()

    async def _gather(self) -> list[Job]:
        group = [await self.queue.get()]
        detector = self.host.loaded
        wait = self.max_wait_s if detector is not None and detector.dynamic_batch else 0.0
        deadline = time.perf_counter() + wait
        while len(group) < self.max_batch:
            try:
                group.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                group.append(await asyncio.wait_for(self.queue.get(), remaining))
            except (asyncio.TimeoutError, TimeoutError):
                break
        self.metrics.queue_depth.set(self.queue.qsize())
        for job in group:
            if job.future.done():  # its request timed out: dropped here
                job.let_go()
        return [job for job in group if not job.future.done()]

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            group = await self._gather()
            if not group:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._serve_group(group))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _serve_group(self, group: list[Job]) -> None:
        """Run one group and answer its requests. Whatever happens (answered, a model error, out of memory, an
        error while pricing, cancellation), every job is answered and let go of here, once: a job left
        holding its lease would keep its image's bytes counted in the budget for good."""
        error: Exception | None = None
        try:
            for job, outcome in zip(group, await self._run_and_price(group), strict=True):
                if not job.future.done():
                    job.future.set_result(outcome)
        except Exception as exc:  # reported to each request; the worker keeps serving
            if not isinstance(exc, SpotdetError):
                log.exception("batch of %d image(s) failed", len(group))
            error = exc
        finally:
            self._slots.release()
            for job in group:
                if not job.future.done():
                    job.future.set_exception(error or BatchInterruptedError(len(group)))
                job.let_go()

    async def _run_and_price(self, group: list[Job]) -> list[BatchOutcome]:
        """Run the group on the model thread; each image's outcome with its share of the group's cost."""
        started = self.clock()
        loop = asyncio.get_running_loop()
        results, busy, shared_by, union = await loop.run_in_executor(self.model_thread, self._run_group, group)
        n = len(group)
        # The machine is shared by the groups running at once: each pays its busy time / their number; inside
        # a group each image pays its share of the network input pixels (tiles and escalations cost more).
        group_cost = self.price_per_hour * busy / shared_by / 3600.0
        self.metrics.batch_size.observe(n)
        self.metrics.images.inc(n)
        self.metrics.busy.inc(union)
        self.metrics.cost.inc(self.price_per_hour * union / 3600.0)
        if any(r.notes for r in results):
            self.metrics.fallbacks.inc()
        return [BatchOutcome(result, (started - job.enqueued) * 1000.0, n, busy, group_cost * share)
                for job, result, share in zip(group, results, pixel_shares(results), strict=True)]

    def _run_group(self, group: list[Job]) -> tuple[list[Result], float, int, float]:
        """Model thread: load if needed, then run the group.

        Returns (results, busy seconds, groups running when it started, seconds it added to the union
        of busy time). Busy time excludes the cold start.
        """
        detector = self.host.detector()
        with self._lock:
            self._active += 1
            shared_by = self._active
        start = self.clock()
        try:
            results = run_jobs(detector, group)
        finally:
            end = self.clock()
            with self._lock:
                self._active -= 1
                union = max(0.0, end - max(start, self._busy_until))
                self._busy_until = max(self._busy_until, end)
        return results, end - start, shared_by, union


def pixel_shares(results: list[Result]) -> list[float]:
    """Each image's share of a group's cost: its network input pixels over the group's (tiles and escalations
    cost more; images of one size pay alike)."""
    pixels = [max(1, r.input_pixels) for r in results]
    total = sum(pixels)
    return [px / total for px in pixels]


def run_jobs(detector, group: list[Job]) -> list[Result]:
    """One-pass images run together through ``infer``; tiled and adaptive ones each take their own passes."""
    results: list[Result | None] = [None] * len(group)
    single = [i for i, job in enumerate(group) if not job.options.multi_pass]
    if single:
        ran = detector.infer([group[i].prepared for i in single], [group[i].options for i in single])
        for i, result in zip(single, ran):
            results[i] = result
    for i, job in enumerate(group):
        if job.options.multi_pass:
            p = job.prepared
            results[i] = detector.detect_passes(p.image, p.path, p.timings, job.options, keep_image=p.keep_image)
    return results  # type: ignore[return-value]
