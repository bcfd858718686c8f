"""The utilization log on disk: one SQLite table of samples (WAL mode, so a reader can follow a writer)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from spotdet.errors import SpotdetError, UsageError

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
