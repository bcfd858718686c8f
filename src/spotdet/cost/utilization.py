"""Utilization log: samples of GPU (NVML) or CPU (psutil) utilization and memory, stored in SQLite.

``Sampler`` picks NVML when ``pynvml.nvmlInit()`` succeeds (one row per GPU per tick), otherwise system
CPU utilization and memory through psutil; ``sampler.fallback_reason`` says why NVML was not used.
It runs in a background thread (``start()``/``stop()``, or as a context manager) so a long-running
service can log while it serves; ``spotdet monitor`` runs the same class in the foreground.

``read_nvidia_smi_csv`` reads what
``nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,memory.total --format=csv -l 1`` writes.
"""

from __future__ import annotations

import csv
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

import psutil

from spotdet.errors import SpotdetError, UsageError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    ts REAL NOT NULL,             -- unix time, seconds
    source TEXT NOT NULL,         -- 'gpu0', 'gpu1', ... (NVML) or 'cpu' (psutil)
    util_pct REAL NOT NULL,       -- GPU utilization, or system CPU utilization, 0-100
    mem_used_mb REAL,             -- GPU memory used, or system memory used
    mem_total_mb REAL,
    proc_cpu_pct REAL,            -- the watched process's CPU, 0-100 of the whole machine (optional)
    proc_rss_mb REAL              -- the watched process's resident memory (optional)
);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
"""


class UtilizationLogError(SpotdetError):
    """A utilization log that cannot be read, or that holds no samples."""


@dataclass(frozen=True)
class Sample:
    ts: float
    source: str
    util_pct: float
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    proc_cpu_pct: float | None = None
    proc_rss_mb: float | None = None


@dataclass
class LoadedLog:
    """Samples read from a log plus how many input lines were skipped as malformed."""

    samples: list[Sample]
    skipped: int = 0
    source: str = ""
    skipped_examples: list[str] = field(default_factory=list)


# -- storage --------------------------------------------------------------------------------------------

def open_db(path: str | Path) -> sqlite3.Connection:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise UtilizationLogError(f"{path}: not a usable SQLite utilization log ({exc})") from None
    except OSError as exc:
        raise UtilizationLogError(f"{path}: cannot open ({exc})") from None
    return conn


def write_samples(conn: sqlite3.Connection, samples: Iterable[Sample]) -> None:
    conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(s.ts, s.source, s.util_pct, s.mem_used_mb, s.mem_total_mb, s.proc_cpu_pct, s.proc_rss_mb)
                      for s in samples])
    conn.commit()


def read_db(path: str | Path, since: float | None = None) -> LoadedLog:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such utilization log (record one with `spotdet monitor --db {path}`)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        try:
            rows = conn.execute("SELECT ts, source, util_pct, mem_used_mb, mem_total_mb, proc_cpu_pct, proc_rss_mb "
                                "FROM samples WHERE ts >= ? ORDER BY ts", (since or 0.0,)).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise UtilizationLogError(f"{path}: not a spotdet utilization log ({exc})") from None
    return LoadedLog([Sample(*row) for row in rows], source=str(path))


# -- sampling backends ----------------------------------------------------------------------------------

class NvmlBackend:
    """GPU utilization and memory for every GPU through NVML (nvidia-ml-py)."""

    name = "nvml"

    def __init__(self) -> None:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()  # raises NVMLError when there is no driver/GPU
        self._nvml = pynvml
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        if not self.handles:
            pynvml.nvmlShutdown()
            raise RuntimeError("NVML reports no GPU")
        self.description = ", ".join(_text(pynvml.nvmlDeviceGetName(h)) for h in self.handles)

    def sample(self, ts: float) -> list[Sample]:
        out = []
        for i, h in enumerate(self.handles):
            util = self._nvml.nvmlDeviceGetUtilizationRates(h)
            mem = self._nvml.nvmlDeviceGetMemoryInfo(h)
            out.append(Sample(ts, f"gpu{i}", float(util.gpu), mem.used / 2**20, mem.total / 2**20))
        return out

    def process_gpu_memory_mb(self, pid: int) -> float | None:
        """GPU memory used by ``pid`` on any GPU (None when the driver does not say)."""
        total, seen = 0.0, False
        for h in self.handles:
            try:
                procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(h)
            except self._nvml.NVMLError:
                continue
            for p in procs:
                if p.pid == pid and p.usedGpuMemory is not None:
                    total += p.usedGpuMemory / 2**20
                    seen = True
        return total if seen else None

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # shutting down a library that is going away; nothing useful to report
            pass


class CpuBackend:
    """System CPU utilization and memory through psutil (the fallback when there is no GPU)."""

    name = "cpu"

    MIN_SPAN = 0.1  # seconds; a CPU percentage over a shorter span is mostly noise

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only sets the reference point
        self._since = time.monotonic()
        self.description = f"{psutil.cpu_count()} logical CPUs (system-wide utilization)"

    def sample(self, ts: float) -> list[Sample]:
        wait = self.MIN_SPAN - (time.monotonic() - self._since)
        if wait > 0:
            time.sleep(wait)
        self._since = time.monotonic()
        vm = psutil.virtual_memory()
        return [Sample(ts, "cpu", float(psutil.cpu_percent(interval=None)), (vm.total - vm.available) / 2**20,
                       vm.total / 2**20)]

    def close(self) -> None:
        pass


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_backend(kind: str = "auto") -> tuple[NvmlBackend | CpuBackend, str | None]:
    """(backend, why NVML was not used or None). ``kind`` is auto | gpu | cpu."""
    if kind not in ("auto", "gpu", "cpu"):
        raise UsageError(f"backend must be auto, gpu or cpu, got {kind!r}")
    if kind == "cpu":
        return CpuBackend(), "CPU sampling was asked for"
    try:
        return NvmlBackend(), None
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ImportError ...
        reason = f"NVML unavailable ({type(exc).__name__}: {exc or 'no NVIDIA driver'})"
        if kind == "gpu":
            raise UsageError(f"{reason}; GPU sampling needs an NVIDIA driver and nvidia-ml-py") from None
        return CpuBackend(), f"{reason}; sampling CPU utilization instead"


class Sampler:
    """Samples utilization every ``interval`` seconds into the SQLite log at ``db``.

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
                raise UsageError(f"cannot watch process {pid}: {exc}") from None
        self.count = 0
        self._conn: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None
        open_db(self.db).close()  # fail now, in the caller's thread, if the log cannot be written

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


# -- nvidia-smi CSV -----------------------------------------------------------------------------------

_TS_FORMATS = ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S",
               "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S")
_DEFAULT_COLUMNS = ["timestamp", "utilization.gpu", "memory.used", "memory.total"]


def _parse_ts(value: str) -> float:
    value = value.strip()
    for fmt in _TS_FORMATS:
        try:
            return datetime.strptime(value, fmt).timestamp()
        except ValueError:
            continue
    raise ValueError(f"unreadable timestamp {value!r}")


def _number(value: str, unit: str) -> float:
    """``"45 %"`` -> 45.0, ``"1234 MiB"`` -> 1234.0; the unit must match when present."""
    text = value.strip()
    if text.endswith(unit):
        text = text[: -len(unit)].strip()
    number = float(text)  # "[N/A]", "" and the like raise ValueError
    if number != number or number < 0:
        raise ValueError(f"bad value {value!r}")
    return number


def _header_name(cell: str) -> str:
    return cell.strip().split(" [")[0].strip().lower()


def read_nvidia_smi_csv(path: str | Path) -> LoadedLog:
    """Samples from nvidia-smi's CSV; malformed lines are skipped and counted, never fatal."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    columns = list(_DEFAULT_COLUMNS)
    samples: list[Sample] = []
    skipped: list[str] = []
    gpu_of_line: dict[float, int] = {}
    for lineno, row in enumerate(csv.reader(text.splitlines(), skipinitialspace=True), start=1):
        if not row or not any(c.strip() for c in row):
            continue
        if _header_name(row[0]) in ("timestamp", "index") and "utilization.gpu" in [_header_name(c) for c in row]:
            columns = [_header_name(c) for c in row]  # a header line (nvidia-smi repeats it after restarts)
            continue
        try:
            if len(row) != len(columns):
                raise ValueError(f"{len(row)} fields, expected {len(columns)}")
            cells = dict(zip(columns, row))
            ts = _parse_ts(cells["timestamp"])
            util = _number(cells["utilization.gpu"], "%")
            if util > 100:
                raise ValueError(f"utilization {util} > 100")
            used = _number(cells["memory.used"], "MiB") if "memory.used" in cells else None
            total = _number(cells["memory.total"], "MiB") if "memory.total" in cells else None
            if "index" in cells:
                gpu = int(cells["index"])
            else:  # without an index column, lines with the same timestamp are successive GPUs
                gpu = gpu_of_line.get(ts, -1) + 1
                gpu_of_line[ts] = gpu
            samples.append(Sample(ts, f"gpu{gpu}", util, used, total))
        except (ValueError, KeyError) as exc:
            skipped.append(f"line {lineno}: {exc}")
    samples.sort(key=lambda s: s.ts)
    return LoadedLog(samples, skipped=len(skipped), source=str(path), skipped_examples=skipped[:3])
