"""``spotdet bench``: latency, throughput, memory, cost and mAP per model x input size x batch.

The pieces: ``bench.measure`` (what one measurement is and how long it runs), ``bench.job`` (one model in
the process that measures it: timing, memory, cost, mAP), ``bench.harness`` (a fresh process per model,
progress events), ``bench.inputs`` (what is timed on), ``bench.report`` (``BenchRow``, the report and the
per-machine cache), ``bench.machine`` (which machine). ``spotdet optimize --auto`` measures its variants
through ``run_bench`` too, so both commands print the same figures for the same file.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from spotdet.bench.harness import ProgressSink, run_job
from spotdet.bench.inputs import parse_sizes, timing_images
from spotdet.bench.job import Job
from spotdet.bench.machine import machine_info
from spotdet.bench.report import BenchReport, BenchRow, cache_path, load_cached, load_report, save_cached
from spotdet.errors import UsageError

__all__ = ["BenchReport", "BenchRow", "cache_path", "load_cached", "load_report", "machine_info", "parse_sizes",
           "run_bench", "save_cached", "timing_images"]


def run_bench(models: list[str], imgsz: list[int] | None = None, batch: list[int] | None = None,
              threads: int | None = None, device: str = "auto", data: str | Path | None = None,
              images: list[str] | None = None, price_per_hour: float | None = None, price_source: str = "",
              tolerance: float = 0.05, max_seconds: float = 15.0, map_limit: int | None = None,
              progress=None, isolate: bool = True, family: str | None = None, backend: str = "auto",
              precision: str | None = None) -> BenchReport:
    """Measure every model x imgsz x batch; combinations a model cannot run are kept as skipped rows.

    With ``isolate`` (the default) each model is measured in a fresh Python process, so its peak memory
    is what a process serving that model needs, not inflated by the models measured before it.
    ``progress`` is an optional ``rich.progress.Progress``; ``family`` is passed to models given as .onnx
    files without a card; ``backend`` and ``precision`` are the Detector's (``precision="bf16"`` with
    OpenVINO measures the fp32 file compiled in bf16).
    """
    from spotdet.models.ref import resolve_card

    if not models:
        raise UsageError("name at least one model")
    for name in models:  # unknown names fail before anything is measured
        resolve_card(name, family, precision)
    if not 0 < tolerance < 1:
        raise UsageError(f"tolerance must be between 0 and 1, got {tolerance}")
    if max_seconds <= 0:
        raise UsageError(f"max seconds must be > 0, got {max_seconds}")
    batches = batch or [1]
    _, timing_label = timing_images(data, images)  # validates the inputs before any model runs
    info = machine_info()
    report = BenchReport(machine=info, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         price_per_hour=price_per_hour, price_source=price_source, timing_input=timing_label)
    sink = ProgressSink(progress, len(models) * len(imgsz or [None]) * len(batches))
    for name in models:
        job = Job(str(name), imgsz, batches, threads, device, str(data) if data is not None else None,
                  [str(i) for i in images] if images else None, price_per_hour, tolerance, max_seconds, map_limit,
                  family, backend, precision)
        report.rows.extend(run_job(job, sink, isolate))
    return report
