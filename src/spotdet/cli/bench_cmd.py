"""``spotdet bench`` and ``spotdet recommend``: measured speed/memory/cost/mAP, and a pick from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from spotdet.cli.main import app, err, fail, handle_errors, out
from spotdet.cli.options import GpuOpt, BackendOpt, DeviceOpt, ThreadsOpt
from spotdet.progress import count_progress

PriceOpt = typer.Option(None, "--price-per-hour", min=0.0, help="USD per hour of the machine, for cost per 1,000 images.")
InstanceOpt = typer.Option(None, "--instance", help="Take the price from this instance in the price table.")
SpotOpt = typer.Option(False, "--spot", help="With --instance: use its spot price instead of on-demand.")
PricesOpt = typer.Option(None, "--prices", help="Price table TOML replacing the built-in example table.")


def _progress(disable: bool) -> Progress:
    return count_progress(err, disable=disable)


def bench_table(report) -> Table:
    """The terminal table: the same cells as the HTML report (``bench.html.report_cells``), unmeasured rows dim."""
    from spotdet.bench.html import LEFT_COLUMNS, report_cells, report_title

    table = Table(title=escape(report_title(report)), title_justify="left")
    names, rows = report_cells(report)
    for name in names:
        table.add_column(name, justify="left" if name in LEFT_COLUMNS else "right", overflow="fold")
    for cells, ok in rows:
        table.add_row(*(escape(c) for c in cells), style=None if ok else "dim")
    return table


@app.command()
@handle_errors
def bench(
    models: List[str] = typer.Argument(..., help="Zoo names or .onnx paths to measure."),
    imgsz: Optional[str] = typer.Option(None, "--imgsz", help="Input sizes, e.g. 320,416,640 (default: native)."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Batch sizes, e.g. 1,4,8 (default: 1)."),
    threads: Optional[int] = ThreadsOpt,
    device: str = DeviceOpt,
    gpu: Optional[int] = GpuOpt,  # exported as $SPOTDET_GPU by its callback, read by the backend
    backend: str = BackendOpt,
    precision: Optional[str] = typer.Option(None, "--precision", help="A variant made by `spotdet optimize` "
                                            "(int8-static, fp16, ...) or bf16 (compiled by OpenVINO)."),
    data: Optional[Path] = typer.Option(None, "--data", help="COCO folder (instances.json + images/): adds mAP; "
                                                             "its images are also the timing input."),
    images: Optional[List[Path]] = typer.Option(None, "--images", help="Images or folders to time on."),
    price_per_hour: Optional[float] = PriceOpt,
    instance: Optional[str] = InstanceOpt,
    spot: bool = SpotOpt,
    prices: Optional[Path] = PricesOpt,
    max_seconds: float = typer.Option(15.0, "--max-seconds", min=0.1, help="Time cap per combination."),
    tolerance: float = typer.Option(0.05, "--tolerance", min=0.001, max=0.5,
                                    help="Stop when the median moves less than this between rounds."),
    map_limit: Optional[int] = typer.Option(None, "--map-limit", min=1, help="mAP on the first N images only."),
    out_json: Optional[Path] = typer.Option(None, "--out", help="Write the results as JSON to this file."),
    chart: Optional[Path] = typer.Option(None, "--chart", help="Write the mAP vs images/s chart (PNG)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the table and the chart as one "
                                                              "self-contained HTML file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not store the results for `recommend`."),
) -> None:
    """Measure latency, images/s, memory, cost and (with --data) mAP of MODELS per input size and batch."""
    from spotdet.bench.inputs import parse_sizes
    from spotdet.bench.report import save_cached, save_report
    from spotdet.bench.runner import run_bench
    from spotdet.cost.prices import resolve_price
    from spotdet.extras import require

    if chart is not None:
        require("plot", "--chart")  # before the benchmark runs, not after it
    price, source = resolve_price(price_per_hour, instance, prices, spot)
    if spot and instance is None:
        fail("--spot needs --instance", 2)
    if html is not None:
        from spotdet.bench.html import check_html_path

        check_html_path(html)
    sizes, batches = parse_sizes(imgsz, "imgsz"), parse_sizes(batch, "batch")
    with _progress(disable=as_json) as progress:
        report = run_bench(models, imgsz=sizes, batch=batches, threads=threads, device=device, data=data,
                           images=[str(p) for p in images] if images else None, price_per_hour=price,
                           price_source=source, tolerance=tolerance, max_seconds=max_seconds,
                           map_limit=map_limit, progress=progress, backend=backend, precision=precision)
    if as_json:
        print(report.to_json())
    else:
        out.print(bench_table(report))
    if out_json is not None:
        save_report(report, out_json)
        err.print(f"wrote {escape(str(out_json))}", highlight=False)
    if chart is not None:
        from spotdet.bench.chart import save_chart

        err.print(f"wrote {escape(str(save_chart(report, chart)))}", highlight=False)
    if html is not None:
        from spotdet.bench.html import save_html

        err.print(f"wrote {escape(str(save_html(report, html)))}", highlight=False)
    if not no_cache and any(r.ok for r in report.rows):
        err.print(f"cached for `spotdet recommend`: {escape(str(save_cached(report)))}", highlight=False)
    if not any(r.ok for r in report.rows):
        fail("no combination could be measured (see the notes in the table)", 1)


@app.command()
@handle_errors
def recommend(
    memory_gb: Optional[float] = typer.Option(None, "--memory-gb", help="Memory limit (GPU memory on a GPU)."),
    min_fps: Optional[float] = typer.Option(None, "--min-fps", help="Minimum images/s of one stream."),
    min_map: Optional[float] = typer.Option(None, "--min-map", help="Minimum COCO mAP@0.5:0.95 (points)."),
    vram_gb: Optional[float] = typer.Option(None, "--vram-gb", help="GPU memory limit (NVML, as bench measured it "
                                            "with the model loaded); rows measured without a GPU do not qualify."),
    backend_filter: Optional[str] = typer.Option(None, "--backend", help="Only rows of this inference runtime: "
                                                 "onnxruntime | openvino (default: any)."),
    price_per_hour: Optional[float] = PriceOpt,
    instance: Optional[str] = InstanceOpt,
    spot: bool = SpotOpt,
    prices: Optional[Path] = PricesOpt,
    results: Optional[Path] = typer.Option(None, "--results", help="Bench JSON to choose from (default: this "
                                                                   "machine's cached results)."),
    data: Optional[Path] = typer.Option(None, "--data", help="COCO folder for mAP when the bench has to run."),
    models: Optional[List[str]] = typer.Option(None, "--model", "-m", help="Models to bench when nothing is "
                                                                          "cached (default: the zoo)."),
    device: str = DeviceOpt,
    gpu: Optional[int] = GpuOpt,  # exported as $SPOTDET_GPU by its callback, read by the backend
    threads: Optional[int] = ThreadsOpt,
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Only rows measured on this hardware "
                                           "fingerprint (`spotdet doctor` shows this machine's)."),
    mix_hardware: bool = typer.Option(False, "--mix-hardware", help="Compare rows measured on different machines "
                                      "(refused by default: their speeds do not compare)."),
    as_json: bool = typer.Option(False, "--json", help="Print the recommendation as JSON."),
) -> None:
    """Pick model + precision + input size + batch that meet the limits, and say why."""
    from dataclasses import asdict

    from spotdet.bench.machine import machine_info
    from spotdet.bench.recommend import Limits, on_backend, recommend as pick, row_label
    from spotdet.bench.report import load_cached, load_report, save_cached
    from spotdet.bench.runner import run_bench
    from spotdet.cost.prices import resolve_price

    limits = Limits(memory_gb, min_fps, min_map, vram_gb=vram_gb)
    on_backend([], backend_filter)  # an unknown runtime fails here, before a bench runs
    if spot and instance is None:
        fail("--spot needs --instance", 2)
    price, source = resolve_price(price_per_hour, instance, prices, spot)
    if results is not None:
        report = load_report(results)
    else:
        report = load_cached(machine_info())
        if report is None:
            from spotdet.models.card import zoo
            from spotdet.models.store import find_local

            names = list(models) if models else [n for n, c in zoo().items() if find_local(c) is not None]
            if not names:
                fail("no bench results cached and no zoo model file found locally; run `spotdet bench MODEL...`", 1)
            err.print(f"no bench results cached for this machine; measuring {', '.join(names)} "
                      f"{'with mAP on ' + str(data) if data else '(no --data: no mAP)'}", highlight=False)
            with _progress(disable=as_json) as progress:
                report = run_bench(names, threads=threads, device=device, data=data, price_per_hour=price,
                                   price_source=source, max_seconds=8.0, progress=progress,
                                   backend=backend_filter or "auto")
            save_cached(report)
    if results is None and hardware is None and not mix_hardware:
        hardware = _this_machine_rows(report)
    rec = pick(report.rows, limits, price, backend=backend_filter, hardware=hardware, mix_hardware=mix_hardware)
    if as_json:
        def row(r):
            return asdict(r) if r is not None else None
        print(json.dumps({"best": row(rec.best), "runner_up": row(rec.runner_up), "why": rec.why, "tie": rec.tie,
                          "binding": rec.binding, "closest": row(rec.closest.row) if rec.closest else None,
                          "rejected": [{"row": asdict(j.row), "reasons": j.reasons} for j in rec.rejected]},
                         indent=2))
    else:
        head = f"recommended: {row_label(rec.best)}" if rec.best else "no combination meets the limits"
        out.print(f"[bold]{escape(head)}[/]")
        for line in rec.why:
            out.print(f"  - {escape(line)}", highlight=False)
        if rec.rejected:
            table = Table(title="rejected", title_justify="left")
            for c in ("model", "precision", "input", "batch", "why"):
                table.add_column(c)
            for j in rec.rejected:
                table.add_row(j.row.model, j.row.precision, j.row.input, str(j.row.batch), escape("; ".join(j.reasons)))
            out.print(table)
    if rec.best is None:
        fail(f"nothing fits; closest was {row_label(rec.closest.row)} ({'; '.join(rec.closest.reasons)})", 1)


def _this_machine_rows(report) -> str | None:
    """This machine's cache may hold rows from before a runtime upgrade (another fingerprint): use the current
    fingerprint's rows when there are any, saying how many others were left out."""
    from spotdet.hardware import fingerprint

    here = fingerprint()["id"]
    others = sum(r.hardware != here for r in report.rows)
    if others and any(r.hardware == here for r in report.rows):
        err.print(f"{others} cached row(s) measured on other hardware or runtime versions left out "
                  "(--mix-hardware keeps them)", highlight=False)
        return here
    return None
