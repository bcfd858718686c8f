"""Service settings (all of ``spotdet serve``'s flags) in one validated object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from spotdet.errors import UsageError
from spotdet.options import DetectOptions
from spotdet.vision.image_io import DEFAULT_MAX_PIXELS

API_KEY_ENV = "SPOTDET_API_KEY"
# An empty key would turn authentication off while the command line says it is on: refused, whichever way
# it came (the flag, or the variable set to nothing, as an unfilled template or a missing secret leaves it).
EMPTY_API_KEY = (f"--api-key (or ${API_KEY_ENV}) is empty or blank: an empty key would disable authentication; "
                 f"to serve without a key, leave out --api-key and unset {API_KEY_ENV}")
#: groups run at once on a GPU by default (see ``ServeConfig.execution_plan``)
GPU_MODEL_WORKERS = 4


@dataclass
class ServeConfig:
    model: str
    precision: str | None = None
    device: str = "auto"
    backend: str = "auto"
    threads: int | None = None
    options: DetectOptions = field(default_factory=DetectOptions)  # defaults; query parameters override them
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 8
    max_wait_ms: float = 5.0
    queue_size: int = 64
    model_workers: int | None = None  # batches run concurrently on the session; None = auto (see plan)
    request_timeout_s: float = 30.0
    idle_unload_s: float | None = None  # None: never unload
    warm_windows: list[str] = field(default_factory=list)
    timezone: str | None = None  # IANA name; None = the machine's local time zone
    price_per_hour: float = 0.0
    price_source: str = "none"  # where the price came from (flag, instance name)
    max_upload_mb: float = 20.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Memory held by requests (bodies, decoded images, network inputs): see budget.py and the README.
    max_request_mb: float = 256.0  # one request; above: 413
    max_inflight_mb: float = 512.0  # all requests in flight; above: 503 + Retry-After
    # Connections (enforced by the protocol `spotdet serve` gives uvicorn, connections.py).
    max_connections: int = 256  # open connections; beyond: 503 + close
    header_timeout_s: float = 10.0  # from connection (or previous response) to the end of the request headers
    body_timeout_s: float = 10.0  # longest wait for the next part of a request body; then 408 + close
    api_key: str | None = None
    preload: bool = True  # load the model at start-up (outside warm windows it may unload later)
    monitor_db: str | None = None  # SQLite file for utilization samples while serving
    clock: Callable[[], datetime] | None = None  # the current instant, injectable for tests (see now())
    # Ray Serve (--ray): the model runs in replicas that Ray Serve autoscales on ongoing requests.
    ray: bool = False
    min_replicas: int | None = None  # None: 0 with --idle-unload (scale to zero), else 1
    max_replicas: int = 1
    ray_address: str | None = None  # an existing cluster ("auto", "ray://host:10001"); None: start a local head

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV)  # set but empty is refused below, like --api-key ""
        checks = [
            (self.api_key is None or bool(self.api_key.strip()), EMPTY_API_KEY),
            (self.max_batch >= 1, f"--max-batch must be >= 1, got {self.max_batch}"),
            (self.max_wait_ms >= 0, f"--max-wait-ms must be >= 0, got {self.max_wait_ms}"),
            (self.queue_size >= 1, f"--queue-size must be >= 1, got {self.queue_size}"),
            (self.model_workers is None or self.model_workers >= 1,
             f"--model-workers must be >= 1, got {self.model_workers}"),
            (self.request_timeout_s > 0, f"--timeout must be > 0, got {self.request_timeout_s}"),
            (self.idle_unload_s is None or self.idle_unload_s > 0, "--idle-unload must be > 0 seconds"),
            (self.price_per_hour >= 0, f"--price-per-hour must be >= 0, got {self.price_per_hour}"),
            (self.max_upload_mb > 0, "--max-upload-mb must be > 0"),
            (self.max_pixels > 0, "--max-pixels must be > 0"),
            (self.max_request_mb > 0, "--max-request-mb must be > 0"),
            (self.max_inflight_mb >= self.max_request_mb,
             f"--max-inflight-mb ({self.max_inflight_mb:g}) must be at least --max-request-mb "
             f"({self.max_request_mb:g})"),
            (self.max_connections >= 1, f"--max-connections must be >= 1, got {self.max_connections}"),
            (self.header_timeout_s > 0, "--header-timeout must be > 0 seconds"),
            (self.body_timeout_s > 0, "--body-timeout must be > 0 seconds"),
            (0 < self.port < 65536, f"--port must be 1-65535, got {self.port}"),
            (self.ray or (self.min_replicas is None and self.max_replicas == 1 and self.ray_address is None),
             "--min-replicas, --max-replicas and --ray-address need --ray"),
            (self.min_replicas is None or self.min_replicas >= 0,
             f"--min-replicas must be >= 0, got {self.min_replicas}"),
            (self.max_replicas >= 1, f"--max-replicas must be >= 1, got {self.max_replicas}"),
            (self.replica_floor <= self.max_replicas,
             f"--min-replicas ({self.replica_floor}) must not exceed --max-replicas ({self.max_replicas})"),
            (not (self.ray and self.warm_windows),
             "--warm-window is not available with --ray: keep --min-replicas 1 for always-warm replicas, or "
             "start and stop the machine around windows with `spotdet schedule`"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        self.tz()  # validate the zone name early

    def runtime(self) -> str:
        """The backend the service loads: ``auto`` keeps ONNX Runtime, unless the precision needs OpenVINO.

        Unlike ``spotdet detect``, the service does not move fp32 models to OpenVINO by itself, because which
        runtime serves more depends on the model and the plan (benchmarks/serve_load.py, req/s over ONNX
        Runtime's at 1 / 4 / 16 clients, 2 cores shared with other jobs; docs/backends.md): OpenVINO in ONNX
        Runtime's CPU plan (a single-threaded worker per core) 0.89 / 0.98 / 1.01x on yolox-nano, 0.86 / 1.22 /
        1.33x on picodet-s-416, 1.06 / 1.11 / 0.95x on yolov8n-int8-fp32; in its own default plan
        (one batch at a time) 0.58-1.00x at one client. ``--backend openvino`` or ``--precision bf16`` choose it.
        """
        from spotdet.backends import RUNTIME_PRECISIONS, choose_backend

        if self.backend == "auto" and self.precision not in RUNTIME_PRECISIONS:
            return "onnxruntime"
        return choose_backend(self.backend, self.device, self.precision)

    def execution_plan(self) -> tuple[int, int | None]:
        """(model workers, intra-op threads per session run).

        On CPU, several single-threaded runs side by side keep every core busy with useful work, where one
        multi-threaded run at a time loses time to its threads waiting on each other: measured on 2 cores
        with yolox-nano at 16 concurrent clients, 2 workers x 1 thread served ~88 req/s against ~72 for
        4 workers x 2 threads (benchmarks/serve_load.py). Single-request latency is lower with one worker
        using all cores (``--model-workers 1``). On a GPU the model thread still does the CPU side of each image
        (feeding the batch, decoding outputs, NMS), so more groups in flight keep the GPU fed: on an H100 with
        16 cores (yolox-nano, 8 clients, one run) 4 workers served 1.22x and 8 workers 1.20x what 2 did.
        OpenVINO is the other way round (benchmarks/serve_load.py, yolox-nano, 2 cores): 2 workers x 1 thread
        served 39 / 54 / 53 req/s at 1 / 4 / 16 clients, one run at a time on all cores 54 / 66 / 72, so an
        OpenVINO service runs one batch at a time by default.
        """
        if self.model_workers is not None:
            return self.model_workers, self.threads
        from spotdet.backends.onnxruntime import choose_providers

        if self.runtime() == "openvino":
            return 1, self.threads
        if choose_providers(self.device)[0] == "CPUExecutionProvider":
            return max(1, os.cpu_count() or 1), self.threads or 1
        return GPU_MODEL_WORKERS, self.threads

    @property
    def replica_floor(self) -> int:
        """The fewest model replicas under --ray: --min-replicas, else 0 with --idle-unload, else 1."""
        if self.min_replicas is not None:
            return self.min_replicas
        return 0 if self.idle_unload_s is not None else 1

    def tz(self) -> tzinfo | None:
        if not self.timezone:
            return None
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"unknown time zone {self.timezone!r} (use an IANA name such as Europe/Paris)") from None

    def now(self) -> datetime:
        """The wall-clock time in the service's zone (``timezone``, else the machine's), for warm windows.

        An aware instant from ``clock`` is converted to that zone; a naive one is taken as that zone's
        wall-clock time already.
        """
        instant = self.clock() if self.clock is not None else datetime.now(timezone.utc)
        return instant.astimezone(self.tz()) if instant.tzinfo is not None else instant

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)

    @property
    def max_inflight_bytes(self) -> int:
        return int(self.max_inflight_mb * 1024 * 1024)
