"""``spotdet cost``, ``monitor``, ``advise`` and ``schedule``: what inference costs and how to pay less."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from spotdet.cli.main import app, err, fail, handle_errors, out

PriceOpt = typer.Option(None, "--price-per-hour", min=0.0, help="USD per hour of the machine.")
InstanceOpt = typer.Option(None, "--instance", help="Take prices from this instance in the price table.")
PricesOpt = typer.Option(None, "--prices", help="Price table TOML replacing the built-in example table.")
WindowOpt = typer.Option(None, "--window", help="Weekly window(s), e.g. 'mon-fri 09:00-18:00' (repeatable, or "
                                                "';'-separated).")


def _money(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"${value:,.{digits}f}"


def _default_db() -> Path:
    from spotdet.models.locations import spotdet_home

    return spotdet_home() / "utilization.sqlite"


def _instance_prices(instance: str | None, prices: Path | None):
    """(instance, table) or (None, table-or-None)."""
    from spotdet.cost.prices import load_prices

    if instance is None:
        return None, (load_prices(prices) if prices else None)
    table = load_prices(prices)
    return table.get(instance), table


@app.command()
@handle_errors
def cost(
    latency_ms: float = typer.Option(..., "--latency-ms", help="Time of one inference, ms."),
    price_per_hour: Optional[float] = PriceOpt,
    instance: Optional[str] = InstanceOpt,
    prices: Optional[Path] = PricesOpt,
    concurrency: float = typer.Option(1.0, "--concurrency", help="Inferences in flight at that latency."),
    requests_per_day: Optional[float] = typer.Option(None, "--requests-per-day", help="Expected requests a day."),
    window: Optional[List[str]] = WindowOpt,
    spot_price: Optional[float] = typer.Option(None, "--spot-price-per-hour", min=0.0,
                                               help="Spot USD/hour (default: the instance's, with --instance)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Cost per inference (price x time / concurrency) and monthly cost: 24/7 vs windows vs spot."""
    from spotdet.cost.formula import cost_report
    from spotdet.cost.windows import parse_windows

    inst, table = _instance_prices(instance, prices)
    if inst is not None and price_per_hour is not None:
        fail("give either --price-per-hour or --instance, not both", 2)
    if inst is None and price_per_hour is None:
        fail("give --price-per-hour USD or --instance NAME (see the price table)", 2)
    price = inst.on_demand if inst else price_per_hour
    spot = spot_price if spot_price is not None else (inst.spot if inst else None)
    windows = parse_windows(window) if window else None
    report = cost_report(latency_ms, price, concurrency, requests_per_day, windows, spot)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    if inst is not None:
        out.print(f"{escape(inst.name)}: {inst.gpu}, on-demand ${inst.on_demand:g}/h"
                  f"{f', spot ${inst.spot:g}/h' if inst.spot is not None else ''} - {escape(table.label())}",
                  highlight=False)
    out.print(f"cost per inference = ${price:g}/h x {latency_ms:g} ms / 3600 s / {concurrency:g} = "
              f"[bold]${report.usd_per_inference:.8f}[/] (${report.usd_per_1000:.5f} per 1,000); "
              f"capacity {report.throughput_per_s:,.1f} inferences/s", highlight=False)
    if report.busy_hours_per_day is not None:
        out.print(f"{requests_per_day:,.0f} requests/day need {report.busy_hours_per_day:.2f} busy machine-hours "
                  "a day", highlight=False)
    t = Table(title="monthly cost (730 h/month)", title_justify="left")
    for c in ("plan", "hours/month", "$/hour", "$/month", "capacity/day", "$/request", "fits"):
        t.add_column(c, justify="left" if c == "plan" else "right")
    for p in report.plans:
        t.add_row(escape(p.name), f"{p.hours_per_month:,.1f}", f"{p.price_per_hour:g}", _money(p.monthly_usd),
                  f"{p.capacity_per_day:,.0f}", _money(p.usd_per_request, 6) if p.usd_per_request is not None else "-",
                  "-" if p.fits is None else ("yes" if p.fits else "NO"))
    out.print(t)


@app.command()
@handle_errors
def monitor(
    interval: float = typer.Option(1.0, "--interval", min=0.05, help="Seconds between samples."),
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite log to append to (default: the spotdet cache)."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.1, help="Stop after this many seconds."),
    samples: Optional[int] = typer.Option(None, "--samples", min=1, help="Stop after this many samples."),
    pid: Optional[int] = typer.Option(None, "--pid", help="Also record this process's CPU and RSS."),
    backend: str = typer.Option("auto", "--backend", help="auto (NVML if a GPU is present, else CPU) | gpu | cpu."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print each sample."),
) -> None:
    """Sample GPU (NVML) or CPU utilization and memory into SQLite until Ctrl-C / --duration / --samples."""
    from spotdet.cost.utilization import Sampler

    path = db or _default_db()

    def show(batch) -> None:
        if quiet:
            return
        for s in batch:
            mem = f"{s.mem_used_mb:,.0f}/{s.mem_total_mb:,.0f} MiB" if s.mem_total_mb else "-"
            proc = f"  pid {pid}: cpu {s.proc_cpu_pct:.1f}% rss {s.proc_rss_mb:.0f} MiB" if s.proc_cpu_pct is not None else ""
            out.print(f"{datetime.fromtimestamp(s.ts):%H:%M:%S} {s.source:5s} util {s.util_pct:5.1f}%  mem {mem}{proc}",
                      highlight=False)

    sampler = Sampler(path, interval=interval, pid=pid, backend=backend, on_sample=show)
    if sampler.fallback_reason:
        err.print(f"[yellow]note:[/] {escape(sampler.fallback_reason)}", highlight=False)
    err.print(f"sampling {sampler.backend.description} every {interval:g}s into {escape(str(path))} "
              f"({'until Ctrl-C or SIGTERM' if duration is None and samples is None else 'until done'})", highlight=False)
    import signal

    previous = signal.signal(signal.SIGTERM, lambda *_: sampler.request_stop())  # `kill`, systemd, docker stop
    try:
        sampler.run(duration=duration, max_samples=samples)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sampler.stop()
    err.print(f"wrote {sampler.count} sample(s) to {escape(str(path))}", highlight=False)


@app.command()
@handle_errors
def advise(
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite log written by `spotdet monitor` / the service."),
    nvidia_smi_csv: Optional[Path] = typer.Option(None, "--nvidia-smi-csv", help="CSV from nvidia-smi --query-gpu="
                                                  "timestamp,utilization.gpu,memory.used,memory.total --format=csv -l 1"),
    price_per_hour: Optional[float] = PriceOpt,
    instance: Optional[str] = InstanceOpt,
    prices: Optional[Path] = PricesOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Daily effective hours, time above 80% utilization, and whether to size up, down, or schedule."""
    from spotdet.cost.advise import HIGH_UTIL_PCT, advise as run_advice
    from spotdet.cost.utilization import read_db, read_nvidia_smi_csv

    if db is not None and nvidia_smi_csv is not None:
        fail("give either --db or --nvidia-smi-csv, not both", 2)
    inst, table = _instance_prices(instance, prices)
    if inst is not None and price_per_hour is not None:
        fail("give either --price-per-hour or --instance, not both", 2)
    log = read_nvidia_smi_csv(nvidia_smi_csv) if nvidia_smi_csv else read_db(db or _default_db())
    if log.skipped:
        err.print(f"[yellow]skipped {log.skipped} malformed line(s)[/] in {escape(log.source)} "
                  f"(e.g. {escape('; '.join(log.skipped_examples))})", highlight=False)
    if not log.samples:
        fail(f"{log.source}: no utilization samples"
             + (f" ({log.skipped} malformed line(s) skipped)" if log.skipped else "")
             + "; record some with `spotdet monitor`", 1)
    advice = run_advice(log.samples, price_per_hour, inst, table)
    if as_json:
        print(json.dumps({"source": log.source, "skipped_lines": log.skipped,
                          "devices": [a.to_dict() for a in advice]}, indent=2))
        return
    for a in advice:
        st = a.stats
        start, end = datetime.fromtimestamp(st.start), datetime.fromtimestamp(st.end)
        out.print(f"[bold]{st.source}[/]: {st.samples} samples, {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} "
                  f"({st.covered_hours:.2f} h covered) from {escape(log.source)}", highlight=False)
        t = Table()
        t.add_column("figure")
        t.add_column("value", justify="right")
        t.add_row("mean utilization", f"{st.mean_util_pct:.1f}%")
        t.add_row("p95 utilization", f"{st.p95_util_pct:.1f}%")
        t.add_row(f"time above {HIGH_UTIL_PCT:.0f}%", f"{st.share_above_80:.1%}")
        t.add_row("time idle (<10%)", f"{st.share_idle:.1%}")
        t.add_row("effective hours/day (util-weighted)", f"{st.effective_hours_per_day:.2f}")
        t.add_row("active hours/day (>=10%)", f"{st.active_hours_per_day:.2f}")
        t.add_row("peak memory", "-" if st.peak_mem_pct is None else f"{st.peak_mem_pct:.1f}%")
        t.add_row("money at stake / month", _money(a.monthly_at_stake_usd, 0))
        out.print(t)
        if st.covered_hours < 24:
            out.print(f"[yellow]note:[/] only {st.covered_hours * 60:.1f} minutes of data: per-day and per-month "
                      "figures are extrapolated from it; record at least a few typical days before acting",
                      highlight=False)
        out.print(f"[bold]verdict: {a.verdict}[/]")
        for m in a.messages:
            out.print(f"  - {escape(m)}", highlight=False)
        _print_scale_to_zero(a)


def _print_scale_to_zero(a) -> None:
    """The idle delays weighed for scale-to-zero (``--ray --min-replicas 0 --idle-unload D``), suggested one
    marked: time with no replica held, cold starts a day, and the monthly saving against 24/7."""
    if not a.scale_to_zero:
        return
    t = Table(title="scale to zero: idle delay (--idle-unload with --ray --min-replicas 0)", title_justify="left")
    for c in ("idle delay", "no replica", "cold starts/day", "saving/month"):
        t.add_column(c, justify="right")
    for o in a.scale_to_zero:
        mark = " *" if o.delay_s == a.suggested_idle_delay_s else ""
        t.add_row(f"{o.delay_s:g} s{mark}", f"{o.zero_share:.1%}", f"{o.cold_starts_per_day:.1f}",
                  _money(o.monthly_saving_usd, 0))
    out.print(t)


@app.command()
@handle_errors
def schedule(
    window: List[str] = typer.Option(..., "--window", help="Weekly window(s) to run in, e.g. 'mon-fri 09:00-18:00'."),
    start_cmd: str = typer.Option(..., "--start-cmd", help="Command that starts the instance."),
    stop_cmd: str = typer.Option(..., "--stop-cmd", help="Command that stops the instance."),
    price_per_hour: Optional[float] = PriceOpt,
    instance: Optional[str] = InstanceOpt,
    prices: Optional[Path] = PricesOpt,
) -> None:
    """Print crontab lines that start/stop an instance around WINDOWs, and the monthly saving vs 24/7."""
    from spotdet.cost.schedule import make_schedule
    from spotdet.cost.windows import parse_windows

    inst, _ = _instance_prices(instance, prices)
    if inst is not None and price_per_hour is not None:
        fail("give either --price-per-hour or --instance, not both", 2)
    price = inst.on_demand if inst else price_per_hour
    plan = make_schedule(parse_windows(window), start_cmd, stop_cmd, price)
    print(f"# spotdet schedule: {'; '.join(window)} (crontab times are the machine's local time)")
    print(plan.crontab(), end="")
    summary = f"# {plan.hours_per_month:,.1f} h/month instead of {plan.always_on_hours_per_month:,.0f} h (24/7)"
    if plan.monthly_usd is not None:
        summary += (f"; at ${price:g}/h: ${plan.monthly_usd:,.2f}/month instead of ${plan.always_on_monthly_usd:,.2f}"
                    f", saving ${plan.monthly_saving_usd:,.2f}/month")
    print(summary)
