"""Where a model's bench runs: a fresh Python process per model (the default), or this process.

A fresh process per model means its peak memory is what a process serving that model needs, not
inflated by the models measured before it. The child sends everything back as events on a queue:
("row", dict) per combination, ("advance", n) / ("task", key, description, completed, total) /
("remove", key) for progress, ("error", text) when it fails, and ("done",) last.
"""

from __future__ import annotations

from typing import Any

from spotdet.bench.job import Job, bench_model
from spotdet.bench.measure import Emit
from spotdet.bench.report import BenchRow, row_from_dict


class ProgressSink:
    """Turns measurement events into rich progress tasks (in the parent process); a no-op without progress."""

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


def run_job(job: Job, emit: Emit, isolate: bool = True) -> list[BenchRow]:
    """The rows of ``job``, measured in a fresh process (``isolate``) or in this one."""
    return run_isolated(job, emit) if isolate else run_here(job, emit)


def run_here(job: Job, emit: Emit) -> list[BenchRow]:
    rows: list[BenchRow] = []

    def handle(kind: str, *args) -> None:
        if kind == "row":
            rows.append(row_from_dict(args[0]))
        else:
            emit(kind, *args)

    bench_model(job, handle)
    return rows


def _worker_main(job: Job, events) -> None:
    """Entry point of the per-model process: every event goes back through ``events`` (a queue)."""
    try:
        bench_model(job, lambda *e: events.put(e))
    except BaseException as exc:  # report anything, even an interrupt, to the parent instead of dying silently
        events.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        events.put(("done",))


def run_isolated(job: Job, emit: Emit) -> list[BenchRow]:
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
                rows.append(row_from_dict(args[0]))
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
        rows.append(job.failed_row(failure))
    return rows
