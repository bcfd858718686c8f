"""A job's state as read from its database, for `spotdet batch status` (safe while the job runs)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotdet.errors import UsageError
from spotdet.jobs.jobdb import DB_NAME, Failure, JobDB, JobStorageError, storage_error
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
    fingerprint: dict[str, Any] | None = None  # the model the job runs with (jobs/fingerprint.py); None: not recorded

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
    try:
        with JobDB(out_dir / DB_NAME, readonly=True, create=False) as db:
            planned = db.is_planned()
            counts = db.counts()
            runs = db.runs()
            job = db.stored_job()
            spec = JobSpec.from_dict(job["spec"]).to_dict() if job.get("spec") else {}
            merged = db.get_meta("merged") or {}
            failures = db.failures(limit=failures_limit)
            errors = db.shard_errors()
    except sqlite3.Error as exc:
        raise storage_error(out_dir / DB_NAME, exc) from None
    except JobStorageError:
        if pid is None:
            raise
        # The process holding the lock is creating the database right now: nothing is planned yet.
        return JobStatus(out_dir, "running", {}, {}, 0, 0, 0, 0, 0.0, 0.0, None, 0, pid)
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
                     merged.get("outputs", []) if counts.complete else [], job.get("fingerprint"))
