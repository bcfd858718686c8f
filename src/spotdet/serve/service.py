"""What a detection request goes through, and the service's life around it.

request -> ``DetectOptions`` (the service's defaults, overridden by the query) -> room in the queue, then
each image's size from its header and its memory from the budget (``budget.py``), before anything is
decoded -> decode + prepare (thread pool) -> the batcher (grouped with other requests, run on the model
thread) -> ``Result.to_dict()`` plus what only the service knows (precision, time queued, whole-request
time, group size, cost).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import cv2
from starlette.concurrency import run_in_threadpool

from spotdet.detector import Detector, Prepared
from spotdet.options import DetectOptions
from spotdet.serve.batcher import BatchOutcome, Batcher, QueueFullError
from spotdet.serve.budget import Lease, MemoryBudget, RequestBudget, decode_transient, image_bytes
from spotdet.serve.config import ServeConfig
from spotdet.serve.errors import RequestTimeoutError
from spotdet.serve.host import ModelHost
from spotdet.serve.metrics import ServiceMetrics
from spotdet.serve.uploads import Upload, decode_upload, image_size

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL_S = 0.25


class DetectionService:
    """The model host, the batcher and the policy loop of one service instance.

    ``start``/``stop`` run inside the app's lifespan; ``stop`` drains: every queued request is answered.
    """

    def __init__(self, config: ServeConfig, metrics: ServiceMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or ServiceMetrics()
        self.host = ModelHost(config, self.metrics)
        self.batcher = Batcher(self.host, self.metrics, config.max_batch, config.max_wait_ms, config.queue_size,
                               config.price_per_hour, self.host.workers)
        self.budget = MemoryBudget(config.max_inflight_bytes, config.max_request_bytes,
                                   on_change=self.metrics.inflight_bytes.set)
        self.draining = False
        self._watchdog: asyncio.Task | None = None
        self._sampler = None
        self._uptime_mark: float | None = None  # monotonic time up to which uptime has been counted

    # -- life -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.batcher.start()
        if self.config.preload:
            await asyncio.get_running_loop().run_in_executor(self.batcher.model_thread, self.host.detector)
        self._count_uptime()
        self._watchdog = asyncio.create_task(self._apply_policy())
        self._sampler = start_sampler(self.config.monitor_db, os.getpid())

    async def stop(self) -> None:
        self.draining = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self.batcher.stop()
        if self._sampler is not None:
            self._sampler.stop()
        self._count_uptime()

    def _count_uptime(self) -> None:
        """Add the process's time up since the last call (the first call: since the process started) to
        ``spotdet_uptime_seconds_total`` and its price to the reserved cost: the bill runs while the process
        (and its machine) is up, whether the model is loaded or not."""
        now = time.monotonic()
        if self._uptime_mark is None:
            started = self.metrics.total("process_start_time_seconds")  # ProcessCollector's; 0 off Linux
            since = max(0.0, time.time() - started) if started else 0.0
        else:
            since = now - self._uptime_mark
        self._uptime_mark = now
        self.metrics.add_uptime(since, self.config.price_per_hour)

    async def _apply_policy(self) -> None:
        """Apply the idle/warm-window policy a few times a second, on the model thread."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            self._count_uptime()
            if self.batcher.queue.empty():
                try:
                    await loop.run_in_executor(self.batcher.model_thread, self.host.tick)
                except Exception:  # never let the policy loop die
                    log.exception("watchdog tick failed")

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body of /readyz). A cold model is ready: the next request loads it (scale to zero).
        A failed load is not, and neither is a draining service."""
        host = self.host
        ready = not self.draining and (host.state == "warm" or host.last_error is None)
        return ready, {"state": host.state, "draining": self.draining, "last_error": host.last_error,
                       "ready": ready}

    def queue_depth(self) -> int:
        return self.batcher.queue.qsize()

    # -- requests ---------------------------------------------------------------------------------
    async def detect(self, uploads: list[Upload], overrides: dict[str, Any], budget: RequestBudget | None = None,
                     keep_image: bool = False) -> list[BatchOutcome]:
        """Decode, prepare and run ``uploads`` with the service's options and the request's ``overrides``.

        The model is loaded first if it is cold; an unknown class is a 400 before any decoding work, and so
        is a full queue (503). Each image's memory is taken from ``budget`` (the request's share; a fresh one
        when not given) from the size in its header, before any image is decoded: 413 when the request
        cannot fit, 503 while the server's budget is taken.
        """
        if budget is None:
            with self.budget.request() as own:
                return await self.detect(uploads, overrides, own, keep_image)
        host, config = self.host, self.config
        host.acquire()
        try:
            loop = asyncio.get_running_loop()
            detector = host.loaded or await loop.run_in_executor(self.batcher.model_thread, host.detector)
            options: DetectOptions = detector.options_for(**overrides)
            detector.check_options(options)
            if not self.batcher.has_room(len(uploads)):  # refused now, not after decoding (checked again)
                raise QueueFullError

            prepared, leases = await run_in_threadpool(prepare_uploads, detector, uploads, options, config.max_pixels,
                                                       budget, keep_image)
            try:
                return await asyncio.wait_for(self.batcher.submit(prepared, options, leases),
                                              config.request_timeout_s)
            except (asyncio.TimeoutError, TimeoutError):
                raise RequestTimeoutError(config.request_timeout_s) from None
        finally:
            host.release()

    def payload(self, outcome: BatchOutcome, received: float) -> dict[str, Any]:
        """The Result's own dict plus what only the service knows: precision, time queued, request time, cost.

        ``received`` is the request's arrival (``time.perf_counter()``); ``total_ms`` runs from it to now.
        """
        body = outcome.result.to_dict()
        body["precision"] = self.host.card.precision
        timings = body["timings"]
        timings["queue_ms"] = round(outcome.queue_ms, 3)
        timings["total_ms"] = round((time.perf_counter() - received) * 1000.0, 3)  # the whole request
        body["batch_size"] = outcome.batch_size
        body["cost_usd"] = outcome.cost_usd
        return body

    def batch_payload(self, outcomes: list[BatchOutcome], received: float) -> dict[str, Any]:
        items = [self.payload(o, received) for o in outcomes]
        return {"model": self.host.card.name, "count": len(items), "results": items,
                "cost_usd": sum(i["cost_usd"] for i in items)}

    @staticmethod
    def annotated_jpeg(outcome: BatchOutcome) -> bytes:
        ok, buf = cv2.imencode(".jpg", outcome.result.plot())
        return buf.tobytes()


def prepare_uploads(detector: Detector, uploads: list[Upload], options: DetectOptions, max_pixels: int,
                    budget: RequestBudget, keep_image: bool) -> tuple[list[Prepared], list[Lease]]:
    """Decode and prepare a request's images for the model, once their memory is granted (a thread-pool job:
    OpenCV releases the GIL). Shared by the single-process service and the Ray ingress, so both refuse the
    same way.

    Each image's size is read from its header first (400/413 here), its memory taken from ``budget`` before
    anything is decoded (413/503), and one lease per image returned for whoever holds the image next.
    Tiled and adaptive requests are only decoded: their passes are cut from the image on the model side.
    """
    size = detector.input_size() if options.multi_pass else detector.input_size(options.imgsz)
    sizes = [image_size(u, max_pixels) for u in uploads]
    costs = [image_bytes(w, h, size, keep_image) for w, h in sizes]
    transient = decode_transient(sizes)
    what = f"{len(uploads)} images" if len(uploads) > 1 else "the image"
    budget.take(sum(costs) + transient, what)
    leases = [budget.lease(c) for c in costs]
    try:
        if options.multi_pass:
            return [detector.decoded(decode_upload(u, max_pixels), keep_image=keep_image) for u in uploads], leases
        return [detector.prepare(decode_upload(u, max_pixels), size, keep_image=keep_image) for u in uploads], leases
    finally:
        budget.give(transient)


def start_sampler(monitor_db: str | None, pid: int | None):
    """``--monitor-db``: the samples `spotdet monitor` records (GPU by NVML, else CPU and memory), plus process
    ``pid``'s CPU and RSS when given (None: the machine only, as under ``--ray``, where the model runs in replica
    processes that come and go). None without a file."""
    if not monitor_db:
        return None
    from spotdet.cost.utilization import Sampler

    return Sampler(monitor_db, pid=pid).start()
