"""A job's state as read from its database, for `spotdet batch status` (safe while the job runs)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotdet.errors import UsageError
from spotdet.jobs.jobdb import DB_NAME, Failure, JobDB
from spotdet.jobs.lock import lock_holder
from spotdet.jobs.spec import JobSpec


@dataclass
class JobStatus:
    out_dir: Path
    state: str  # running | complete | incomplete | unplanned
    spec: dict[str, Any]  # JobSpec.to_dict() (also for jobs stored in the schema-1 layout)
    shards: dict[str, int]
    images_total: int
    images_done: int
    images_ok: int
    images_failed: int
    seconds: float  # time spent running, summed over runs
    images_per_s: float  # images committed per second of running, over all runs
    eta_s: float | None
    runs: int
    pid: int | None
    failures: list[Failure] = field(default_factory=list)
    shard_errors: list[tuple[int, str]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("failures", "out_dir")}
        d["out_dir"] = str(self.out_dir)
        d["failures"] = [f.__dict__ for f in self.failures]
        return d


def job_status(out_dir: str | Path, failures_limit: int | None = 50) -> JobStatus:
    out_dir = Path(out_dir).expanduser().absolute()
    if not (out_dir / DB_NAME).is_file():
        raise UsageError(f"{out_dir}: no batch job here (no {DB_NAME})")
    pid = lock_holder(out_dir)
    with JobDB(out_dir / DB_NAME, readonly=True) as db:
        planned = db.is_planned()
        counts = db.counts()
        runs = db.runs()
        stored = db.stored_job().get("spec")
        spec = JobSpec.from_dict(stored).to_dict() if stored else {}
        merged = db.get_meta("merged") or {}
        failures = db.failures(limit=failures_limit)
        errors = db.shard_errors()
    now = time.time()
    # The latest run of a job that is running now counts up to now; an earlier run ended at its last commit.
    seconds = sum(((now if pid and k == len(runs) - 1 else r["updated"]) - r["started"]) for k, r in enumerate(runs))
    rate = counts.images_done / seconds if seconds > 0 and counts.images_done else 0.0
    remaining = counts.images_total - counts.images_done
    if pid is not None:
        state = "running"
    elif not planned:
        state = "unplanned"
    else:
        state = "complete" if counts.complete else "incomplete"
    return JobStatus(out_dir, state, spec, counts.shards, counts.images_total, counts.images_done, counts.images_ok,
                     counts.images_failed, round(seconds, 3), round(rate, 2),
                     round(remaining / rate, 1) if rate and remaining else None, len(runs), pid, failures, errors,
                     merged.get("outputs", []) if counts.complete else [])
