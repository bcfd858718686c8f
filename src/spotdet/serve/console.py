"""The web console: a page at ``/`` to try the model and watch the service (issue 14).

The page (``web/``, plain HTML/CSS/JS, no build step, nothing fetched from elsewhere) calls the same API as
any client: ``/predict`` or ``/predict/batch`` for "Try it" (boxes are drawn in the browser from the JSON)
and ``GET /stats`` for the dashboard, sending the API key it asks for with each call. Nothing about the key
is kept here.

``/stats`` is built from what the service already measures (``ServiceMetrics``, ``host.status()``): the
counters are read through prometheus-client's public ``collect()``, so the dashboard and ``/metrics`` can
never disagree. Rates and percentiles need two points in time: each poll of ``/stats`` adds a sample to a
short ring buffer (at most one per ``SAMPLE_EVERY_S``), and each point of ``series`` compares a sample with
an older one. Nothing samples while nobody polls (no background task): such gaps show as gaps in time.

Latency percentiles are estimated from the request-latency histogram the way Prometheus'
``histogram_quantile`` does (linear inside a bucket), so they are only as fine as its buckets.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil
from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from spotdet.serve import routes
from spotdet.serve.service import DetectionService

WEB_DIR = Path(__file__).with_name("web")
DETECT_ENDPOINTS = (routes.PREDICT.path, routes.PREDICT_BATCH.path)  # what "requests" means on the dashboard
SAMPLE_EVERY_S = 0.5  # at most one sample per this many seconds, however many pages poll
HISTORY = 600  # samples kept (10 minutes at the page's one poll per second)
RATE_WINDOW_S = 5.0  # requests/s, images/s and utilization are averaged over this long
LATENCY_WINDOW_S = 15.0  # p50/p95 over the requests answered in this long


@dataclass(frozen=True)
class Sample:
    """The service's cumulative counters at one instant (monotonic ``t``; ``wall`` for the page's clock)."""

    t: float
    wall: float
    requests: dict[str, float]  # detect requests by status class: "2xx", "4xx", "5xx"
    latency: tuple[tuple[float, float], ...]  # cumulative (upper bound s, count) of detect requests
    images: float
    busy_s: float
    cpu_s: float
    queue_depth: int
    inflight_bytes: float
    gpu_pct: float | None

    @property
    def request_count(self) -> float:
        return sum(self.requests.values())


def _samples(metric) -> list:
    """The samples of one prometheus-client metric (all its label sets), through the public collect()."""
    return [s for family in metric.collect() for s in family.samples]


def _histogram(metric, endpoints: tuple[str, ...] | None = None) -> tuple[tuple[float, float], ...]:
    """Cumulative (upper bound, count) buckets, summed over ``endpoints`` (every label set when None)."""
    sums: dict[float, float] = {}
    for s in _samples(metric):
        if s.name.endswith("_bucket") and (endpoints is None or s.labels.get("endpoint") in endpoints):
            le = float(s.labels["le"])
            sums[le] = sums.get(le, 0.0) + s.value
    return tuple(sorted(sums.items()))


def _histogram_sum_count(metric) -> tuple[float, float]:
    values = {s.name.rsplit("_", 1)[-1]: s.value for s in _samples(metric) if s.name.endswith(("_sum", "_count"))}
    return values.get("sum", 0.0), values.get("count", 0.0)


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """The ``q`` quantile of cumulative histogram ``buckets`` as Prometheus' histogram_quantile estimates it:
    linear inside the bucket that holds the rank; the highest finite bound when it falls in +Inf. None
    without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _minus(a: tuple[tuple[float, float], ...], b: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
    """Buckets observed between two samples (``a`` later than ``b``)."""
    before = dict(b)
    return tuple((le, count - before.get(le, 0.0)) for le, count in a)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


class Console:
    """Reads one service's numbers into the JSON the dashboard draws; keeps the recent samples."""

    def __init__(self, service: DetectionService, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.clock = clock  # seconds, monotonic; tests inject one
        self.started = clock()
        self.wall_offset = time.time() - self.started  # wall time = clock() + this
        self.history: deque[Sample] = deque(maxlen=HISTORY)
        self.cores = _cpu_count()
        self.process = psutil.Process()

    # -- reading the service --------------------------------------------------------------------------
    def sample(self) -> Sample:
        m = self.service.metrics
        requests = {"2xx": 0.0, "4xx": 0.0, "5xx": 0.0}
        for s in _samples(m.requests):
            if s.name.endswith("_total") and s.labels.get("endpoint") in DETECT_ENDPOINTS:
                kind = s.labels["status"][0] + "xx"
                requests[kind] = requests.get(kind, 0.0) + s.value
        t = self.clock()
        return Sample(t=t, wall=t + self.wall_offset, requests=requests,
                      latency=_histogram(m.latency, DETECT_ENDPOINTS), images=m.total("spotdet_images_total"),
                      busy_s=m.total("spotdet_busy_seconds_total"), cpu_s=time.process_time(),
                      queue_depth=self.service.queue_depth(),
                      inflight_bytes=m.total("spotdet_memory_inflight_bytes"), gpu_pct=self._gpu_pct())

    def _gpu_pct(self) -> float | None:
        """Mean utilization of the GPUs NVML sees, or None without a GPU."""
        values = [s.value for family in self.service.metrics.gpu.collect() for s in family.samples
                  if s.name == "spotdet_gpu_utilization_percent"]
        return sum(values) / len(values) if values else None

    def record(self) -> Sample:
        """Take a sample now; keep it in the history unless the last one is younger than SAMPLE_EVERY_S."""
        now = self.sample()
        if not self.history or now.t - self.history[-1].t >= SAMPLE_EVERY_S:
            self.history.append(now)
        return now

    # -- derived numbers ------------------------------------------------------------------------------
    def _before(self, sample: Sample, seconds: float, index: int) -> Sample | None:
        """The newest kept sample at least ``seconds`` older than ``sample`` (kept sample ``index`` or
        earlier); the oldest one when none is that old; None when there is no earlier sample."""
        older = None
        for i in range(index, -1, -1):
            s = self.history[i]
            if s.t < sample.t:
                older = s
                if sample.t - s.t >= seconds:
                    break
        return older

    def point(self, sample: Sample, index: int) -> dict[str, Any]:
        """One point of the dashboard's charts: rates over RATE_WINDOW_S, percentiles over LATENCY_WINDOW_S."""
        point: dict[str, Any] = {"t": round(sample.wall, 3), "queue_depth": sample.queue_depth,
                                 "inflight_mb": round(sample.inflight_bytes / 2**20, 3), "gpu_pct": sample.gpu_pct,
                                 "rps": None, "images_per_s": None, "busy_pct": None, "cpu_pct": None,
                                 "p50_ms": None, "p95_ms": None}
        rate_from = self._before(sample, RATE_WINDOW_S, index - 1)
        if rate_from is not None:
            dt = sample.t - rate_from.t
            point.update(rps=round((sample.request_count - rate_from.request_count) / dt, 3),
                         images_per_s=round((sample.images - rate_from.images) / dt, 3),
                         busy_pct=round(min(100.0, 100.0 * (sample.busy_s - rate_from.busy_s) / dt), 2),
                         cpu_pct=round(100.0 * (sample.cpu_s - rate_from.cpu_s) / dt / self.cores, 2))
        latency_from = self._before(sample, LATENCY_WINDOW_S, index - 1)
        if latency_from is not None:
            recent = _minus(sample.latency, latency_from.latency)
            point.update(p50_ms=_ms(quantile(0.5, recent)), p95_ms=_ms(quantile(0.95, recent)))
        return point

    def stats(self, since: float | None = None) -> dict[str, Any]:
        """What ``GET /stats`` answers (docs/console.md describes each field). ``series`` holds the points
        after wall time ``since`` (all kept points when None): a page that keeps its own history asks only
        for what it has not seen."""
        now = self.record()
        service, m = self.service, self.service.metrics
        price = service.config.price_per_hour
        uptime = now.t - self.started
        model = service.host.status()
        # Busy against reserved cost as the service counts them (host.status()'s "cost": price x uptime, or
        # replica-seconds under --ray); None where a service does not report it.
        split = model.get("cost") if price > 0 else None
        loads_sum, loads = _histogram_sum_count(m.cold_start)
        batch_sum, batches = _histogram_sum_count(m.batch_size)
        history = list(self.history)
        points = [self.point(s, i) for i, s in enumerate(history) if since is None or round(s.wall, 3) > since]
        current = self.point(now, len(history) - 1 if history[-1] is now else len(history))
        return {
            "time": round(now.wall, 3),
            "uptime_s": round(uptime, 3),
            "started": round(self.started + self.wall_offset, 3),
            "model": model,
            "draining": service.draining,
            "price": {"per_hour_usd": price, "source": service.config.price_source},
            "cost": {
                "busy_usd": m.total("spotdet_cost_dollars_total"),
                "reserved_usd": split["reserved_usd"] if split else None,
                "held_s": split["uptime_s"] if split else None,
                "idle_share": split["idle_share"] if split else None,
            },
            "totals": {
                "requests": now.request_count, "requests_by_status": now.requests, "images": now.images,
                "busy_s": round(now.busy_s, 6), "batches": batches,
                "mean_batch_size": batch_sum / batches if batches else None,
                "p50_ms": _ms(quantile(0.5, now.latency)), "p95_ms": _ms(quantile(0.95, now.latency)),
                "oom_fallbacks": m.total("spotdet_oom_fallbacks_total"),
                "rss_mb": round(self.process.memory_info().rss / 2**20, 1),
            },
            "cold_starts": {
                "count": loads, "mean_s": loads_sum / loads if loads else None,
                "last_s": service.host.last_cold_start_s, "unloads": m.total("spotdet_model_unloads_total"),
            },
            "batch_sizes": _batch_sizes(_histogram(m.batch_size), service.config.max_batch),
            "now": current,
            "series": points,
            "windows_s": {"rate": RATE_WINDOW_S, "latency": LATENCY_WINDOW_S},
            "cpu_cores": self.cores,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _batch_sizes(buckets: tuple[tuple[float, float], ...], max_batch: int) -> list[dict[str, Any]]:
    """Batches per size range, from the cumulative histogram: [{"sizes": "3-4", "count": 2}, ...]; ranges
    that start above ``max_batch`` are left out unless a batch landed there (none can)."""
    out, lower, below = [], 0, 0.0
    for bound, count in buckets:
        upper = math.inf if math.isinf(bound) else int(bound)
        label = f">{lower}" if math.isinf(upper) else str(upper) if upper == lower + 1 else f"{lower + 1}-{upper}"
        if lower < max_batch or count > below:
            out.append({"sizes": label, "count": count - below})
        lower, below = upper, count
    return out


def install_console(app: FastAPI, service: DetectionService) -> None:
    """Serve the console's page, its static files and the JSON stats it polls."""
    console = Console(service)
    app.state.console = console
    index = WEB_DIR / "index.html"

    @routes.register(app, routes.CONSOLE, include_in_schema=False)
    async def page():
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    @routes.register(app, routes.CONSOLE_ASSETS, include_in_schema=False)
    async def assets_root():
        """The prefix itself is not a file: send the browser to the page."""
        return RedirectResponse(".")  # relative: right behind a path prefix too

    @routes.register(app, routes.STATS)
    async def stats(since: float | None = None):
        """The dashboard's numbers; ``since`` (unix seconds): only the chart points after it."""
        return console.stats(since)

    app.mount(routes.CONSOLE_ASSETS.path, StaticFiles(directory=WEB_DIR), name="console")
