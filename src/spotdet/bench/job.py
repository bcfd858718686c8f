"""One model's bench, inside the process that runs it: load the model, time every size x batch with
``bench.measure``, read its peak memory and cost, then (with data) its mAP.

Rows and progress go out through ``emit`` as events, so the same code runs in a fresh process (see
``bench.harness``) or in the caller's process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spotdet.bench.inputs import timing_images
from spotdet.bench.measure import Emit, measure
from spotdet.bench.memory import GpuMemory, PeakMemory, rss_mb
from spotdet.bench.report import BenchRow
from spotdet.cost.formula import cost_per_1000_images
from spotdet.errors import SpotdetError


@dataclass
class Job:
    """What one model's measurement needs (picklable: it is sent to a fresh process)."""

    name: str  # zoo name, variant name or .onnx path
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
    family: str | None = None
    backend: str = "auto"
    precision: str | None = None  # a variant's precision, or a runtime precision (bf16)

    @property
    def combos(self) -> int:
        return len(self.imgsz or [None]) * len(self.batches)

    def failed_row(self, note: str) -> BenchRow:
        return BenchRow(self.name, self.precision or "?", None, "?", self.batches[0], self.device, self.threads,
                        "failed", note, backend=self.backend)


def bench_model(job: Job, emit: Emit) -> None:
    """Measure one model at every size x batch; emits ("row", dict) per combination and progress events."""
    from spotdet.detector import Detector

    imgs, _ = timing_images(job.data, job.images)
    peak = PeakMemory()
    gpu = GpuMemory()
    try:
        base_rss = rss_mb()
        peak.reset()
        try:
            det = Detector(job.name, device=job.device, threads=job.threads, family=job.family, backend=job.backend,
                           precision=job.precision)
        except SpotdetError as exc:
            emit("row", asdict(job.failed_row(str(exc))))
            emit("advance", job.combos)
            return
        file_mb = Path(det.model_path).stat().st_size / 2**20
        rows: list[BenchRow] = []
        for size in job.imgsz or [None]:
            for b in job.batches:  # increasing batch: the running peak is this batch's peak
                row = measure(det, size, b, imgs, job.threads, job.tolerance, job.max_seconds, emit)
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
                    add_map(det, row, job.data, job.map_limit, map_cache, emit)
        for row in rows:
            emit("row", asdict(row))
    finally:
        peak.close()
        gpu.close()


def add_map(det, row: BenchRow, data, limit: int | None, cache: dict, emit: Emit) -> None:
    """Set the row's mAP from ``spotdet.eval.coco.evaluate`` at the row's size (once per size, via ``cache``)."""
    from spotdet.eval.coco import evaluate

    size = row.imgsz
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
