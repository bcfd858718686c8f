"""The job database: one SQLite file in RESULTS_DIR holding the stored job (its spec and model fingerprint), its
shards and their state.

Shard states: ``pending`` -> ``running`` (handed to a worker) -> ``done`` (results committed) or ``error``
(the worker raised; retried by resume). Only the coordinator process writes to the database; workers
return results to it. The database runs in WAL mode so ``batch status`` can read while a job runs.

A database that SQLite cannot use (damaged, truncated, on a full disk) raises JobStorageError with the file's
path and what to do (``storage_error``), never a bare ``sqlite3`` error; opening an existing job
(``create=False``: resume, status) refuses a file that holds no job tables (an emptied or zeroed file) instead
of creating them and reporting the job as never planned.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from spotdet.errors import StorageError, UsageError

DB_NAME = "job.db"
# 1: the stored spec had flat conf/iou/max_det/imgsz fields; 2: they are one "options" dict (DetectOptions);
# 3: the stored job also holds the model fingerprint (jobs/fingerprint.py; schema 1 and 2 jobs get one when
# resumed). The tables are the same in all; JobSpec.from_dict reads every spec. A spotdet that knows only
# schema 2 refuses to resume a schema 3 job, which it could not check against its fingerprint.
SCHEMA_VERSION = 3
_JOB_TABLES = ("meta", "shards", "failures", "runs")


class JobStorageError(StorageError):
    """The job folder or its database cannot be used: damaged, emptied, unwritable, or on a full disk."""


def _start_again(path: Path) -> str:
    return (f"so the job's plan and progress are lost; start the job again with `spotdet batch run` and another "
            f"--out (or after deleting {path})")


def storage_error(path: Path, exc: sqlite3.Error, out_dir: Path | None = None) -> JobStorageError:
    """A SQLite error on the job database ``path`` as one line: the file, SQLite's reason, and what to do."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
    folder = out_dir or path.parent
    if code == sqlite3.SQLITE_FULL:
        hint = (f"free space on the disk holding {folder}, then continue with `spotdet batch resume {folder}` "
                "(committed shards are kept)")
    elif code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        hint = f"the job database is damaged (truncated or overwritten), {_start_again(path)}"
    elif code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        hint = f"{folder} and {path.name} must be readable and writable"
    else:
        hint = f"fix the cause, then continue with `spotdet batch resume {folder}`"
    return JobStorageError(f"{path}: {exc}; {hint}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
    id INTEGER PRIMARY KEY,
    start INTEGER NOT NULL,          -- index of the shard's first item in the job
    n INTEGER NOT NULL,              -- number of items
    paths TEXT NOT NULL,             -- JSON list of image paths
    image_ids TEXT,                  -- JSON list of COCO image ids (coco format only)
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    n_ok INTEGER NOT NULL DEFAULT 0,
    n_failed INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    finished_at REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS shards_state ON shards(state);
CREATE TABLE IF NOT EXISTS failures (
    shard_id INTEGER NOT NULL, idx INTEGER NOT NULL, path TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (shard_id, idx)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, pid INTEGER, engine TEXT, workers INTEGER,
    started REAL NOT NULL, updated REAL NOT NULL, images INTEGER NOT NULL DEFAULT 0, outcome TEXT
);
"""


@dataclass(frozen=True)
class Shard:
    id: int
    start: int
    paths: list[str]
    image_ids: list[int] | None = None

    @property
    def n(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class Failure:
    shard_id: int
    index: int
    path: str
    reason: str


@dataclass(frozen=True)
class Counts:
    shards: dict[str, int]
    images_total: int
    images_done: int
    images_ok: int
    images_failed: int

    @property
    def total_shards(self) -> int:
        return sum(self.shards.values())

    @property
    def complete(self) -> bool:
        return self.total_shards > 0 and self.shards.get("done", 0) == self.total_shards


class JobDB:
    """Thin typed access to the job database. Every state change is one transaction.

    ``create=False`` opens an existing job only: a file without the job tables raises JobStorageError.
    """

    def __init__(self, path: Path, readonly: bool = False, create: bool = True) -> None:
        self.path = Path(path)
        self.conn: sqlite3.Connection | None = None
        try:
            if not create and self.path.stat().st_size == 0:
                raise JobStorageError(f"{self.path}: empty (0 bytes): the job database was truncated or zeroed, "
                                      f"{_start_again(self.path)}")
            if readonly:
                self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10.0,
                                            isolation_level=None)
            else:
                self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                self.conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a committed state change survives power loss, after the shard file it points to.
                self.conn.execute("PRAGMA synchronous=FULL")
            if not create:
                self._check_tables()
            if not readonly:
                self.conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self.close()
            raise storage_error(self.path, exc) from None
        except BaseException:
            self.close()
            raise
        self.conn.row_factory = sqlite3.Row

    def _check_tables(self) -> None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = [t for t in _JOB_TABLES if t not in tables]
        if missing:
            raise JobStorageError(f"{self.path}: not a spotdet job database (no {', '.join(missing)} table): it was "
                                  f"emptied or overwritten, {_start_again(self.path)}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def __enter__(self) -> "JobDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------------------
    def transaction(self) -> "_Transaction":
        return _Transaction(self.conn)

    # -- meta --------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # -- planning ----------------------------------------------------------------------------------
    def plan(self, job: dict[str, Any], shards: Iterable[Shard]) -> int:
        """Store the job (``{"spec": ..., "coco": ..., "fingerprint": ...}``) and every shard in ONE transaction:
        a job is planned entirely or not at all."""
        count = 0
        with self.transaction():
            self.conn.execute("DELETE FROM shards")
            self.conn.execute("DELETE FROM failures")
            self.set_meta("schema", SCHEMA_VERSION)
            self.set_meta("settings", job)
            for shard in shards:
                self.conn.execute(
                    "INSERT INTO shards(id, start, n, paths, image_ids) VALUES (?, ?, ?, ?, ?)",
                    (shard.id, shard.start, shard.n, json.dumps(shard.paths),
                     None if shard.image_ids is None else json.dumps(shard.image_ids)))
                count += 1
            self.set_meta("planned", {"shards": count, "at": time.time()})
        return count

    def is_planned(self) -> bool:
        return self.get_meta("planned") is not None

    def unplan(self) -> None:
        """Forget the plan (the shards stay until the next ``plan``): the next ``run`` plans the job afresh."""
        self.conn.execute("DELETE FROM meta WHERE key='planned'")

    def stored_job(self) -> dict[str, Any]:
        """What ``plan`` stored: ``{"spec": JobSpec.to_dict(), "coco": ..., "fingerprint": ...}`` ({} before
        planning; no fingerprint in jobs planned before schema 3 until a resume records one)."""
        schema = self.get_meta("schema", 1)
        if schema > SCHEMA_VERSION:
            raise UsageError(f"{self.path}: job database schema {schema} is newer than this spotdet's "
                             f"({SCHEMA_VERSION}); use the spotdet version that started the job")
        return self.get_meta("settings", {})

    # -- shard life cycle --------------------------------------------------------------------------
    def recover(self) -> None:
        """After a crash: shards that were handed out but never committed go back to pending."""
        self.conn.execute("UPDATE shards SET state='pending' WHERE state='running'")

    def todo(self, retry_errors: bool = True) -> Iterator[Shard]:
        """Pending shards (and failed ones when retrying), in id order, read lazily."""
        states = ("pending", "error") if retry_errors else ("pending",)
        last = -1
        while True:  # page through by id so the cursor is never held across writes
            rows = self.conn.execute(
                f"SELECT id, start, paths, image_ids FROM shards WHERE id > ? AND state IN ({','.join('?' * len(states))})"
                " ORDER BY id LIMIT 256", (last, *states)).fetchall()
            if not rows:
                return
            for row in rows:
                last = row["id"]
                yield Shard(row["id"], row["start"], json.loads(row["paths"]),
                            None if row["image_ids"] is None else json.loads(row["image_ids"]))

    def mark_running(self, shard_id: int) -> None:
        self.conn.execute("UPDATE shards SET state='running', attempts=attempts+1 WHERE id=?", (shard_id,))

    def mark_pending(self, shard_id: int) -> None:
        self.conn.execute("UPDATE shards SET state='pending' WHERE id=? AND state='running'", (shard_id,))

    def mark_error(self, shard_id: int, message: str) -> None:
        self.conn.execute("UPDATE shards SET state='error', error=? WHERE id=?", (message, shard_id))

    def commit_shard(self, shard_id: int, n_ok: int, failures: list[Failure], seconds: float,
                     run_id: int) -> None:
        """Mark a shard done with its failures, in one transaction (its result file is already in place)."""
        now = time.time()
        with self.transaction():
            self.conn.execute("DELETE FROM failures WHERE shard_id=?", (shard_id,))
            self.conn.executemany("INSERT INTO failures(shard_id, idx, path, reason) VALUES (?, ?, ?, ?)",
                                  [(f.shard_id, f.index, f.path, f.reason) for f in failures])
            self.conn.execute(
                "UPDATE shards SET state='done', n_ok=?, n_failed=?, seconds=?, finished_at=?, error=NULL WHERE id=?",
                (n_ok, len(failures), seconds, now, shard_id))
            self.conn.execute("UPDATE runs SET images=images+?, updated=? WHERE id=?",
                              (n_ok + len(failures), now, run_id))

    def redo(self, shard_ids: Iterable[int]) -> None:
        """Send done shards back to pending, forgetting their counts and failures (their file is gone)."""
        ids = [(i,) for i in shard_ids]
        with self.transaction():
            self.conn.executemany("DELETE FROM failures WHERE shard_id=?", ids)
            self.conn.executemany("UPDATE shards SET state='pending', n_ok=0, n_failed=0, seconds=0, "
                                  "finished_at=NULL WHERE id=?", ids)
            self.conn.execute("DELETE FROM meta WHERE key='merged'")

    def done_shard_ids(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM shards WHERE state='done' ORDER BY id")]

    # -- runs --------------------------------------------------------------------------------------
    def start_run(self, pid: int, engine: str, workers: int) -> int:
        now = time.time()
        cur = self.conn.execute("INSERT INTO runs(pid, engine, workers, started, updated) VALUES (?, ?, ?, ?, ?)",
                                (pid, engine, workers, now, now))
        return int(cur.lastrowid)

    def end_run(self, run_id: int, outcome: str) -> None:
        self.conn.execute("UPDATE runs SET outcome=?, updated=? WHERE id=?", (outcome, time.time(), run_id))

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM runs ORDER BY id")]

    # -- reporting ---------------------------------------------------------------------------------
    def counts(self) -> Counts:
        shards = {r[0]: r[1] for r in self.conn.execute("SELECT state, COUNT(*) FROM shards GROUP BY state")}
        total, done, ok, failed = self.conn.execute(
            "SELECT COALESCE(SUM(n),0), COALESCE(SUM(CASE WHEN state='done' THEN n END),0),"
            " COALESCE(SUM(n_ok),0), COALESCE(SUM(n_failed),0) FROM shards").fetchone()
        return Counts(shards, int(total), int(done), int(ok), int(failed))

    def failures(self, limit: int | None = None) -> list[Failure]:
        sql = "SELECT shard_id, idx, path, reason FROM failures ORDER BY shard_id, idx"
        rows = self.conn.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
        return [Failure(*r) for r in rows]

    def shard_errors(self) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in self.conn.execute("SELECT id, error FROM shards WHERE state='error' ORDER BY id")]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception (the connection runs in autocommit mode)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
