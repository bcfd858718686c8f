"""``spotdet bench``: latency, throughput, memory, cost and mAP per model x input size x batch.

What one measurement is: a batch of already-decoded images goes through resize/letterbox, tensor
conversion, ``session.run`` and the family decoder + NMS (conf 0.25), exactly as ``Detector`` does it.
Per-image latency is the batch's wall time divided by the batch size. A few warm-up batches are run
and discarded; then batches are timed in rounds until the median of all timed batches moves by less
than ``tolerance`` between rounds (or ``max_seconds`` runs out, in which case the row says so).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import socket
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from spotdet.bench.memory import GpuMemory, PeakMemory, rss_mb
from spotdet.cost.formula import cost_per_1000_images
from spotdet.errors import SpotdetError, UsageError

log = logging.getLogger(__name__)

BENCH_CONF = 0.25
WARMUP_BATCHES = 3
ROUND_BATCHES = 10
MIN_BATCHES = 20
TIMING_IMAGES = 8


@dataclass
class BenchRow:
    """One model x input size x batch combination (``status`` ok | skipped | failed)."""

    model: str
    precision: str
    imgsz: int | None  # the requested square size; None = the model's native size
    input: str  # "HxW" the network ran at
    batch: int
    device: str  # ONNX Runtime provider
    threads: int | None
    status: str = "ok"
    note: str = ""
    latency_p50_ms: float | None = None  # per image
    latency_p95_ms: float | None = None
    images_per_s: float | None = None
    batches_timed: int = 0
    stable: bool | None = None
    peak_rss_mb: float | None = None  # process peak since the model was loaded
    model_rss_mb: float | None = None  # that peak minus the process RSS before loading
    gpu_mem_mb: float | None = None
    file_mb: float | None = None
    usd_per_1000: float | None = None
    map50_95: float | None = None
    map50: float | None = None
    map_data: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def key(self) -> tuple:
        return (self.model, self.precision, self.input, self.batch, self.device, self.threads)


@dataclass
class BenchReport:
    machine: dict[str, Any]
    created: str
    price_per_hour: float | None
    price_source: str
    timing_input: str
    rows: list[BenchRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "rows"},
                "rows": [asdict(r) for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# -- machine identity and cache ---------------------------------------------------------------------------

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort
    import psutil

    from spotdet.bench.memory import GpuMemory

    gpu = GpuMemory()
    gpus = gpu.description
    gpu.close()
    return {"hostname": socket.gethostname(), "cpu": cpu_name(), "logical_cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "gpus": gpus,
            "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
            "python": platform.python_version()}


def machine_key(info: dict[str, Any] | None = None) -> str:
    """A file-name-safe id of this machine: hostname + CPU model + CPU count (+ GPU names)."""
    info = info or machine_info()
    raw = f"{info['hostname']}-{info['cpu']}-{info['logical_cpus']}c" + (f"-{info['gpus']}" if info.get("gpus") else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("_")[:150]


def cache_path(info: dict[str, Any] | None = None) -> Path:
    from spotdet.models.locations import spotdet_home

    return spotdet_home() / "bench" / f"{machine_key(info)}.json"


def report_from_dict(data: dict[str, Any], source: str = "bench results") -> BenchReport:
    names = {f.name for f in fields(BenchRow)}
    try:
        rows = [BenchRow(**{k: v for k, v in r.items() if k in names}) for r in data["rows"]]
        return BenchReport(machine=dict(data.get("machine", {})), created=str(data.get("created", "")),
                           price_per_hour=data.get("price_per_hour"), price_source=str(data.get("price_source", "")),
                           timing_input=str(data.get("timing_input", "")), rows=rows)
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{source}: not a spotdet bench result ({type(exc).__name__}: {exc})") from None


def load_report(path: str | Path) -> BenchReport:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such bench result file") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a readable bench result ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a spotdet bench result (expected a JSON object)")
    return report_from_dict(data, str(path))


def load_cached(info: dict[str, Any] | None = None) -> BenchReport | None:
    path = cache_path(info)
    return load_report(path) if path.is_file() else None


def save_cached(report: BenchReport) -> Path:
    """Merge ``report`` into this machine's cached results (newer rows replace rows with the same key)."""
    path = cache_path(report.machine)
    old = load_cached(report.machine) if path.is_file() else None
    merged = {r.key(): r for r in (old.rows if old else [])}
    merged.update({r.key(): r for r in report.rows})
    out = BenchReport(report.machine, report.created, report.price_per_hour, report.price_source,
                      report.timing_input, list(merged.values()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(out.to_json(), encoding="utf-8")
    tmp.replace(path)
    return path


# -- inputs -----------------------------------------------------------------------------------------------

def synthetic_image(seed: int = 0, h: int = 480, w: int = 640) -> np.ndarray:
    """A deterministic 640x480 BGR test card (gradients + shapes) for timing when no images are given."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1).astype(np.uint8)
    for _ in range(12):
        x, y = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 80))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(30, 200)), y + int(rng.integers(30, 200))), color, -1)
    return img


def timing_images(data: str | Path | None = None, images: Iterable[str | Path] | None = None,
                  count: int = TIMING_IMAGES) -> tuple[list[np.ndarray], str]:
    """Decoded images to time on (from ``images``, else ``data``'s images, else a synthetic card) + a label."""
    from spotdet.vision.image_io import load_image

    paths: list[Path] = []
    if images:
        for item in images:
            p = Path(item)
            paths.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in (".jpg", ".jpeg", ".png"))
                         if p.is_dir() else [p])
        label = "given images"
    elif data is not None:
        from spotdet.eval.coco import find_dataset

        _, image_dir = find_dataset(data)
        paths = sorted(q for q in image_dir.iterdir() if q.suffix.lower() in (".jpg", ".jpeg", ".png"))
        label = f"images from {data}"
    else:
        return [synthetic_image(i) for i in range(2)], "synthetic 640x480 test card (no --data/--images)"
    decoded = []
    for p in paths[:count]:
        decoded.append(load_image(str(p), exif_orientation=False)[0])
    if not decoded:
        raise UsageError(f"no images found to time on ({label})")
    shapes = {f"{im.shape[1]}x{im.shape[0]}" for im in decoded}
    return decoded, f"{len(decoded)} {label} ({', '.join(sorted(shapes))})"


# -- measurement ----------------------------------------------------------------------------------------

def _run_batch(det, images: list[np.ndarray], size: tuple[int, int]) -> float:
    """Seconds for one batch: preprocess + inference + decode/NMS, as the Detector does it."""
    options = det.options_for(conf=BENCH_CONF)
    t0 = time.perf_counter()
    det.infer([det.prepare(img, size, keep_image=False) for img in images], options)
    return time.perf_counter() - t0


def time_until_stable(det, images: list[np.ndarray], size: tuple[int, int], batch: int, tolerance: float = 0.05,
                      max_seconds: float = 15.0, warmup: int = WARMUP_BATCHES, on_round=None) -> tuple[list[float], bool]:
    """Per-batch seconds after warm-up, timed in rounds until the median is stable (or time runs out)."""
    def batch_at(i: int) -> list[np.ndarray]:
        return [images[(i * batch + j) % len(images)] for j in range(batch)]

    for i in range(warmup):
        _run_batch(det, batch_at(i), size)
    times: list[float] = []
    prev = None
    start = time.perf_counter()
    while True:
        for _ in range(ROUND_BATCHES):
            times.append(_run_batch(det, batch_at(len(times)), size))
        median = statistics.median(times)
        stable = prev is not None and len(times) >= MIN_BATCHES and abs(median - prev) / prev < tolerance
        if on_round:
            on_round(len(times))
        if stable:
            return times, True
        if time.perf_counter() - start > max_seconds:
            return times, False
        prev = median


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def parse_sizes(text: str | None, name: str) -> list[int] | None:
    """``"320,416,640"`` -> [320, 416, 640]; None stays None (the model's native size / batch 1)."""
    if text is None or not str(text).strip():
        return None
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--{name} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--{name} values must be positive integers, got {text!r}")
    return sorted(set(values))


@dataclass
class _Job:
    """What one model's measurement needs (picklable: it is sent to a fresh process)."""

    name: str
    imgsz: list[int] | None
    batches: list[int]
    threads: int | None
    device: str
    data: str | None
    images: list[str] | None
    price_per_hour: float | None
    tolerance: float
    max_seconds: float
    map_limit: int | None


class _ProgressSink:
    """Turns measurement events into rich progress tasks (in the parent process)."""

    def __init__(self, progress, total: int) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}
        self.overall = progress.add_task("bench", total=total) if progress else None

    def __call__(self, kind: str, *args) -> None:
        if not self.progress:
            return
        if kind == "advance":
            self.progress.advance(self.overall, args[0])
        elif kind == "task":
            key, description, completed, total = args
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(description, total=total)
            self.progress.update(self.tasks[key], description=description, completed=completed, total=total)
        elif kind == "remove" and args[0] in self.tasks:
            self.progress.remove_task(self.tasks.pop(args[0]))


def run_bench(models: list[str], imgsz: list[int] | None = None, batch: list[int] | None = None,
              threads: int | None = None, device: str = "auto", data: str | Path | None = None,
              images: list[str] | None = None, price_per_hour: float | None = None, price_source: str = "",
              tolerance: float = 0.05, max_seconds: float = 15.0, map_limit: int | None = None,
              progress=None, isolate: bool = True) -> BenchReport:
    """Measure every model x imgsz x batch; combinations a model cannot run are kept as skipped rows.

    With ``isolate`` (the default) each model is measured in a fresh Python process, so its peak memory
    is what a process serving that model needs, not inflated by the models measured before it.
    ``progress`` is an optional ``rich.progress.Progress``.
    """
    from spotdet.models.ref import resolve_card

    if not models:
        raise UsageError("name at least one model")
    for name in models:  # unknown names fail before anything is measured
        resolve_card(name)
    if not 0 < tolerance < 1:
        raise UsageError(f"tolerance must be between 0 and 1, got {tolerance}")
    if max_seconds <= 0:
        raise UsageError(f"max seconds must be > 0, got {max_seconds}")
    batches = batch or [1]
    _, timing_label = timing_images(data, images)  # validates the inputs before any model runs
    info = machine_info()
    report = BenchReport(machine=info, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         price_per_hour=price_per_hour, price_source=price_source, timing_input=timing_label)
    sink = _ProgressSink(progress, len(models) * len(imgsz or [None]) * len(batches))
    for name in models:
        job = _Job(name, imgsz, batches, threads, device, str(data) if data is not None else None,
                   [str(i) for i in images] if images else None, price_per_hour, tolerance, max_seconds, map_limit)
        rows = _run_isolated(job, sink) if isolate else _collect(job, sink)
        report.rows.extend(rows)
    return report


def _collect(job: _Job, emit) -> list[BenchRow]:
    rows: list[BenchRow] = []

    def handle(kind: str, *args) -> None:
        if kind == "row":
            rows.append(BenchRow(**args[0]))
        else:
            emit(kind, *args)

    _bench_model(job, handle)
    return rows


def _worker_main(job: _Job, events) -> None:
    """Entry point of the per-model process: every event goes back through ``events`` (a queue)."""
    try:
        _bench_model(job, lambda *e: events.put(e))
    except BaseException as exc:  # report anything, even an interrupt, to the parent instead of dying silently
        events.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        events.put(("done",))


def _run_isolated(job: _Job, emit) -> list[BenchRow]:
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    proc = ctx.Process(target=_worker_main, args=(job, events), name=f"spotdet-bench-{job.name}", daemon=True)
    proc.start()
    rows: list[BenchRow] = []
    failure = None
    try:
        while True:
            try:
                event = events.get(timeout=0.5)
            except queue_mod.Empty:
                if proc.is_alive():
                    continue
                failure = f"the benchmark process for {job.name} exited with code {proc.exitcode}"
                break
            kind, args = event[0], event[1:]
            if kind == "done":
                break
            if kind == "row":
                rows.append(BenchRow(**args[0]))
            elif kind == "error":
                failure = args[0]
            else:
                emit(kind, *args)
    except KeyboardInterrupt:
        proc.terminate()
        raise
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
    if failure and not rows:
        rows.append(BenchRow(job.name, "?", None, "?", job.batches[0], job.device, job.threads, "failed", failure))
    return rows


def _bench_model(job: _Job, emit) -> None:
    """Measure one model at every size x batch; emits ("row", dict) per combination and progress events."""
    from spotdet.detector import Detector

    combos = len(job.imgsz or [None]) * len(job.batches)
    imgs, _ = timing_images(job.data, job.images)
    peak = PeakMemory()
    gpu = GpuMemory()
    try:
        base_rss = rss_mb()
        peak.reset()
        try:
            det = Detector(job.name, device=job.device, threads=job.threads)
        except SpotdetError as exc:
            emit("row", asdict(BenchRow(job.name, "?", None, "?", job.batches[0], job.device, job.threads, "failed",
                                        str(exc))))
            emit("advance", combos)
            return
        file_mb = Path(det.model_path).stat().st_size / 2**20
        rows: list[BenchRow] = []
        for size in job.imgsz or [None]:
            for b in job.batches:  # increasing batch: the running peak is this batch's peak
                row = _measure(det, size, b, imgs, job.threads, job.tolerance, job.max_seconds, emit)
                row.file_mb = round(file_mb, 2)
                if row.ok:
                    row.peak_rss_mb = round(peak.peak_mb(), 1)
                    row.model_rss_mb = round(row.peak_rss_mb - base_rss, 1)
                    gpu_mb = gpu.used_mb()
                    row.gpu_mem_mb = round(gpu_mb, 1) if gpu_mb is not None else None
                    if job.price_per_hour is not None:
                        row.usd_per_1000 = round(cost_per_1000_images(job.price_per_hour, row.images_per_s), 6)
                rows.append(row)
                emit("advance", 1)
        # mAP after all timing, so evaluation's own memory does not show in the peaks above
        if job.data is not None:
            map_cache: dict[Any, tuple[float, float] | str] = {}
            for row in rows:
                if row.ok:
                    _add_map(det, row, row.imgsz, job.data, job.map_limit, map_cache, emit)
        for row in rows:
            emit("row", asdict(row))
    finally:
        peak.close()
        gpu.close()


def _measure(det, size: int | None, b: int, imgs: list[np.ndarray], threads: int | None, tolerance: float,
             max_seconds: float, emit) -> BenchRow:
    row = BenchRow(det.name, det.card.precision, size, "?", b, det.provider, threads)
    try:
        hw = det.input_size(size)
    except UsageError as exc:
        row.status, row.note = "skipped", str(exc)
        row.input = f"{size}x{size}" if size else "?"
        return row
    row.input = f"{hw[0]}x{hw[1]}"
    if b > 1 and not det.dynamic_batch:
        row.status = "skipped"
        row.note = (f"{det.name} has a static batch of 1; batch {b} needs a dynamic-batch export "
                    f"(`spotdet optimize {det.name} --dynamic-batch`)")
        return row
    label = f"{det.name} {row.input} b{b}"
    emit("task", label, f"  {label}: warm-up", 0, None)
    try:
        times, stable = time_until_stable(
            det, imgs, hw, b, tolerance=tolerance, max_seconds=max_seconds,
            on_round=lambda n: emit("task", label, f"  {label}: {n} batches timed", n, None))
    except Exception as exc:  # ORT errors at run time (e.g. out of memory at a large batch)
        row.status, row.note = "failed", f"{type(exc).__name__}: {exc}"
        return row
    finally:
        emit("remove", label)
    per_image = [t / b * 1000.0 for t in times]
    row.latency_p50_ms = round(_percentile(per_image, 50), 3)
    row.latency_p95_ms = round(_percentile(per_image, 95), 3)
    row.images_per_s = round(b * len(times) / sum(times), 2)
    row.batches_timed = len(times)
    row.stable = stable
    if not stable:
        row.note = f"median not stable within {tolerance:.0%} after {max_seconds:g}s"
    return row


def _add_map(det, row: BenchRow, size: int | None, data, limit: int | None, cache: dict, emit) -> None:
    from spotdet.eval.coco import evaluate

    if size not in cache:
        key = f"mAP {det.name} {row.input}"
        emit("task", key, f"  {key}", 0, None)
        try:
            rep = evaluate(det, data, limit=limit, imgsz=size,
                           on_progress=lambda n, t: emit("task", key, f"  {key}", n, t))
            cache[size] = (rep.map50_95, rep.map50)
        except SpotdetError as exc:
            cache[size] = str(exc)
        finally:
            emit("remove", key)
    value = cache[size]
    if isinstance(value, str):
        row.note = (row.note + "; " if row.note else "") + f"mAP failed: {value}"
        return
    row.map50_95, row.map50 = value
    row.map_data = Path(data).name + (f" (first {limit} images)" if limit else "")
