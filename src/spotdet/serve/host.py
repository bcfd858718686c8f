"""The model's life in the service: cold -> loading -> warm, unloading when idle outside warm windows."""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

from spotdet.cost.formula import cost_split
from spotdet.cost.windows import Window, parse_windows
from spotdet.detector import Detector
from spotdet.errors import SpotdetError
from spotdet.models.ref import resolve_model
from spotdet.serve.config import ServeConfig
from spotdet.serve.metrics import ServiceMetrics

log = logging.getLogger(__name__)

COLD, LOADING, WARM = "cold", "loading", "warm"
DEFAULT_IDLE_WITH_WINDOWS_S = 300.0


class ModelLoadError(SpotdetError):
    """The model could not be loaded. Its message is what clients see (a 500, ``/models``, ``/readyz``): the
    kind of failure only; the cause, with its paths, is in the server log and chained as ``__cause__``."""


class ModelHost:
    """Owns the Detector. Loads on demand (measuring the cold start) and releases it when idle.

    Thread-safe: requests call ``acquire``/``release`` around their use, the batcher's model thread
    calls ``detector()``, and a watchdog calls ``tick()`` periodically.
    """

    def __init__(self, config: ServeConfig, metrics: ServiceMetrics) -> None:
        self.config = config
        self.metrics = metrics
        # Resolved once, at start-up: unknown names, precisions or missing files fail now, and a cold start
        # later only loads the file.
        self.ref = resolve_model(config.model, precision=config.precision)
        self.card = self.ref.card
        config.options.class_ids(dict(enumerate(self.card.names)))  # --classes unicorn fails now, not at load
        self.windows: list[Window] = parse_windows(config.warm_windows) if config.warm_windows else []
        self.workers, self.threads = config.execution_plan()
        self.idle_unload_s = config.idle_unload_s
        if self.windows and self.idle_unload_s is None:
            self.idle_unload_s = DEFAULT_IDLE_WITH_WINDOWS_S
        self._detector: Detector | None = None
        self._lock = threading.RLock()
        self.state = COLD
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.load_count = 0
        self.unload_count = 0
        self.last_cold_start_s: float | None = None
        self.last_error: str | None = None

    # -- use ------------------------------------------------------------------------------------
    def acquire(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.last_used = time.monotonic()

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.last_used = time.monotonic()

    def detector(self) -> Detector:
        """The loaded Detector, loading it first when cold (blocking; call from a worker thread)."""
        with self._lock:
            if self._detector is None:
                self._load()
            self.last_used = time.monotonic()
            return self._detector  # type: ignore[return-value]

    def _load(self) -> None:
        self.state = LOADING
        start = time.perf_counter()
        try:
            self._detector = Detector(self.ref, device=self.config.device, threads=self.threads,
                                      backend=self.config.runtime(), precision=self.config.precision,
                                      options=self.config.options)
        except Exception as exc:
            self.state = COLD
            log.error("model %s failed to load: %s", self.card.name, exc)
            self.last_error = (f"the model could not be loaded ({type(exc).__name__}); the server log has the "
                               "details")
            raise ModelLoadError(self.last_error) from exc
        seconds = time.perf_counter() - start
        self.state = WARM
        self.load_count += 1
        self.last_cold_start_s = seconds
        self.last_error = None
        self.metrics.model_loads.inc()
        self.metrics.cold_start.observe(seconds)
        self.metrics.model_loaded.set(1)
        log.info("model %s loaded in %.3f s on %s", self.card.name, seconds, self._detector.provider)

    def unload(self, reason: str) -> bool:
        with self._lock:
            if self._detector is None or self.in_flight:
                return False
            self._detector = None
            self.state = COLD
            self.unload_count += 1
        gc.collect()  # the ONNX Runtime session holds the weights and arenas: free them now
        self.metrics.model_unloads.inc()
        self.metrics.model_loaded.set(0)
        log.info("model %s unloaded (%s)", self.card.name, reason)
        return True

    # -- policy ---------------------------------------------------------------------------------
    def in_warm_window(self) -> bool:
        if not self.windows:
            return False
        now = self.config.now()
        return any(w.contains(now) for w in self.windows)

    def tick(self) -> str | None:
        """Apply the policy once: load inside a warm window, unload when idle outside. Returns the action."""
        if self.windows and self.in_warm_window():
            if self._detector is None:
                try:
                    self.detector()
                except Exception as exc:  # reported in /models and /readyz; retried on the next tick
                    log.error("warm-window load failed: %s", exc)
                    return None
                return "load (warm window)"
            return None
        if self.idle_unload_s is None or self._detector is None or self.in_flight:
            return None
        if time.monotonic() - self.last_used >= self.idle_unload_s:
            reason = f"idle {self.idle_unload_s:g} s" + (" outside warm windows" if self.windows else "")
            return "unload" if self.unload(reason) else None
        return None

    # -- reporting ------------------------------------------------------------------------------
    def cost(self) -> dict[str, Any]:
        """Busy cost beside reserved cost (price x uptime) and the idle share, so far: unloading the model
        when idle frees memory, but the process, and the machine's bill, stay up (the uptime counts on)."""
        m = self.metrics
        return cost_split(self.config.price_per_hour, m.total("spotdet_busy_seconds_total"),
                          m.total("spotdet_uptime_seconds_total")).to_dict()

    @property
    def loaded(self) -> Detector | None:
        return self._detector

    def status(self) -> dict[str, Any]:
        """What ``GET /models`` answers: the model, its card, where it runs and its load state."""
        import os

        det = self._detector
        card = self.card
        nvml = self.metrics.gpu.nvml  # the service's one NVML session (None without a GPU)
        gpu_bytes = nvml.process_memory_bytes(os.getpid()) if det and nvml else None
        return {
            "model": card.name,
            "family": card.family,
            "tier": card.tier,
            "precision": card.precision,
            "input_size": list(card.input_size),
            "backend": det.backend.name if det else None,
            "device": det.provider if det else None,
            # NVML's figure for this process (CUDA context + the model's arena), None without a GPU or while cold
            "gpu_memory_mb": round(gpu_bytes / 2**20, 1) if gpu_bytes is not None else None,
            "model_workers": self.workers,
            "threads_per_run": self.threads,
            "state": self.state,
            "load_count": self.load_count,
            "unload_count": self.unload_count,
            "last_cold_start_s": self.last_cold_start_s,
            "idle_unload_s": self.idle_unload_s,
            "warm_windows": [str(w) for w in self.windows],
            "in_warm_window": self.in_warm_window(),
            "options": self.config.options.to_dict(),  # the defaults a request's query parameters override
            "last_error": self.last_error,
            "cost": self.cost(),
            "card": {"published_map": card.published_map, "params_m": card.params_m, "license": card.license,
                     "sha256": card.sha256, "classes": len(card.names)},
        }
