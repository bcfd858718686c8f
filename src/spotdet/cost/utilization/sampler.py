"""``Sampler``: utilization samples every ``interval`` seconds into the SQLite log, in the foreground or a thread.

It runs in a background thread (``start()``/``stop()``, or as a context manager) so a long-running
service can log while it serves; ``spotdet monitor`` runs the same class in the foreground.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

import psutil

from spotdet.cost.utilization.backends import open_backend
from spotdet.cost.utilization.store import Sample, open_db, write_samples
from spotdet.errors import UsageError

log = logging.getLogger(__name__)


class Sampler:
    """Samples utilization every ``interval`` seconds into the SQLite log at ``db``.

    The backend is NVML when it opens (one row per GPU per tick), otherwise system CPU utilization and
    memory through psutil; ``fallback_reason`` says why NVML was not used.

    >>> with Sampler("util.sqlite", interval=1.0):   # background thread
    ...     serve_requests()
    """

    def __init__(self, db: str | Path, interval: float = 1.0, pid: int | None = None, backend: str = "auto",
                 on_sample: Callable[[list[Sample]], None] | None = None) -> None:
        if not interval > 0:
            raise UsageError(f"interval must be > 0 seconds, got {interval}")
        self.db = Path(db)
        self.interval = float(interval)
        self.on_sample = on_sample
        self.backend, self.fallback_reason = open_backend(backend)
        self.process = None
        if pid is not None:
            try:
                self.process = psutil.Process(pid)
                self.process.cpu_percent(interval=None)
            except psutil.Error as exc:
                self.backend.close()
                raise UsageError(f"cannot watch process {pid}: {exc}") from None
        self.count = 0
        self._conn: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None
        try:
            open_db(self.db).close()  # fail now, in the caller's thread, if the log cannot be written
        except Exception:
            self.backend.close()
            raise

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def sample_once(self) -> list[Sample]:
        """Take one sample (per device), write it, and return it."""
        ts = time.time()
        samples = self.backend.sample(ts)
        if self.process is not None:
            try:
                with self.process.oneshot():
                    cpu = self.process.cpu_percent(interval=None) / (psutil.cpu_count() or 1)
                    rss = self.process.memory_info().rss / 2**20
            except psutil.Error:
                cpu = rss = None
            samples = [Sample(s.ts, s.source, s.util_pct, s.mem_used_mb, s.mem_total_mb, cpu, rss) for s in samples]
        if self._conn is None:
            self._conn = open_db(self.db)
        write_samples(self._conn, samples)
        self.count += len(samples)
        if self.on_sample:
            self.on_sample(samples)
        return samples

    def run(self, duration: float | None = None, max_samples: int | None = None) -> None:
        """Sample in the calling thread until ``stop()``, ``duration`` seconds or ``max_samples`` ticks."""
        start = time.monotonic()
        ticks = 0
        next_at = start
        try:
            while not self._stop.is_set():
                self.sample_once()
                ticks += 1
                if max_samples is not None and ticks >= max_samples:
                    break
                next_at += self.interval
                if duration is not None and next_at - start > duration:
                    break
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            self._close_conn()

    def request_stop(self) -> None:
        """Ask a running ``run()`` loop to finish after the current sample (safe from a signal handler)."""
        self._stop.set()

    def start(self) -> "Sampler":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._thread_main, name="spotdet-utilization", daemon=True)
        self._thread.start()
        return self

    def _thread_main(self) -> None:
        try:
            self.run()
        except Exception as exc:  # keep the host service alive; the error is kept for the caller to inspect
            self.error = exc
            log.warning("utilization sampler stopped: %s", exc)

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.interval + 5.0)
            self._thread = None
        self.backend.close()

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
