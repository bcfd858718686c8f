"""Prometheus metrics of one service instance (own registry, so tests can start several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GpuCollector:
    """GPU utilization and memory through the project's NVML wrapper, when a GPU and its driver are present.

    Without one the collector exports nothing (no error): a CPU-only service has no GPU gauges.
    """

    def __init__(self) -> None:
        from spotdet.cost.utilization.nvml import Nvml, NvmlUnavailable

        try:
            self.nvml: Nvml | None = Nvml()
        except NvmlUnavailable:  # no driver / no GPU: nothing to export
            self.nvml = None

    def collect(self):
        if self.nvml is None:
            return
        util = GaugeMetricFamily("spotdet_gpu_utilization_percent", "GPU utilization (NVML)", labels=["gpu"])
        used = GaugeMetricFamily("spotdet_gpu_memory_used_bytes", "GPU memory used (NVML)", labels=["gpu"])
        total = GaugeMetricFamily("spotdet_gpu_memory_total_bytes", "GPU memory total (NVML)", labels=["gpu"])
        for r in self.nvml.readings():
            util.add_metric([str(r.index)], r.util_pct)
            used.add_metric([str(r.index)], r.mem_used_bytes)
            total.add_metric([str(r.index)], r.mem_total_bytes)
        yield from (util, used, total)


class ServiceMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self.gpu = GpuCollector()
        r.register(self.gpu)
        self.requests = Counter("spotdet_requests_total", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("spotdet_request_latency_seconds", "Request latency (server side)",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("spotdet_queue_depth", "Images waiting for the model", registry=r)
        self.batch_size = Histogram("spotdet_batch_size", "Images per model batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.images = Counter("spotdet_images_total", "Images run through the model", registry=r)
        self.model_loads = Counter("spotdet_model_loads_total", "Model loads (cold starts)", registry=r)
        self.model_unloads = Counter("spotdet_model_unloads_total", "Model unloads (scale to zero)", registry=r)
        self.cold_start = Histogram("spotdet_model_cold_start_seconds", "Time to load the model",
                                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=r)
        self.model_loaded = Gauge("spotdet_model_loaded", "1 while the model is in memory", registry=r)
        self.busy = Counter("spotdet_busy_seconds_total", "Seconds the model spent running batches", registry=r)
        self.cost = Counter("spotdet_cost_dollars_total", "Busy seconds times the hourly price", registry=r)
        self.inflight_bytes = Gauge("spotdet_memory_inflight_bytes",
                                    "Request memory held now: bodies, decoded images, network inputs "
                                    "(bounded by --max-inflight-mb)", registry=r)
        self.connections_closed = Counter("spotdet_connections_closed_total",
                                          "Connections the server closed itself: over --max-connections "
                                          "(limit) or request headers not in within --header-timeout "
                                          "(header_timeout)", ["reason"], registry=r)
        self.fallbacks = Counter("spotdet_oom_fallbacks_total", "Batches retried after an allocation failure",
                                 registry=r)
        # Reserved time: what the bill counts (hardware held, busy or not), beside the busy time above.
        self.uptime = Counter("spotdet_uptime_seconds_total",
                              "Seconds the model's hardware was held: the process's uptime, or under --ray the "
                              "sum over model replicas of their lifetimes (replica-seconds)", registry=r)
        self.reserved_cost = Counter("spotdet_reserved_cost_dollars_total",
                                     "Uptime times the hourly price: what the machine(s) cost, idle or not",
                                     registry=r)
        self.replicas = Gauge("spotdet_replicas", "Model replicas under --ray: running now, and the target "
                              "(running + starting)", ["state"], registry=r)

    def add_uptime(self, seconds: float, price_per_hour: float) -> None:
        """Count ``seconds`` of held hardware (process or replica-seconds) and their price."""
        if seconds > 0:
            self.uptime.inc(seconds)
            self.reserved_cost.inc(price_per_hour * seconds / 3600.0)

    def total(self, name: str) -> float:
        """A counter's value as exported (e.g. ``spotdet_busy_seconds_total``); 0 before its first sample."""
        return self.registry.get_sample_value(name) or 0.0
