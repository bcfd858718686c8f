"""Helpers shared by the batch-job tests: the installed CLI, reading a job's outputs and database, comparing runs."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

from spotdet.results import TIMING_KEYS
from support.paths import DATA_DIR, MODEL_DIR

COCO128 = DATA_DIR / "coco128-train" / "images"
FAST_MODEL = "fastestdet"


def spotdet_exe() -> str:
    beside = Path(sys.executable).with_name("spotdet")
    found = str(beside) if beside.is_file() else shutil.which("spotdet")
    assert found, "the spotdet console script is not installed"
    return found


def cli_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    env.update(SPOTDET_MODEL_DIR=str(MODEL_DIR), SPOTDET_CACHE_DIR=str(cache), NO_COLOR="1")
    return env


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timings(lines: list[dict]) -> list[dict]:
    """Result lines minus ``timings``: the part that must not depend on which run (or engine) produced them."""
    return [{k: v for k, v in line.items() if k != "timings"} for line in lines]


def assert_same_results(actual: list[dict], expected: list[dict], context: str = "") -> None:
    """Two jobs' result lines agree on everything except their timings, which differ from run to run.

    Every image's line must still carry its timings (all of ``TIMING_KEYS``): only their values are ignored.
    """
    for line in actual:
        if "error" not in line:
            assert set(line["timings"]) == set(TIMING_KEYS), f"{line['path']}: timings {line['timings']} {context}"
    assert len(actual) == len(expected), f"{len(actual)} lines, expected {len(expected)} {context}"
    for got, want in zip(without_timings(actual), without_timings(expected)):
        assert got == want, f"line {want.get('index')} differs {context}"


def done_shards(out_dir: Path) -> int:
    """Shards committed so far, read like `batch status` does (0 before the job is planned)."""
    db = out_dir / "job.db"
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM shards WHERE state='done'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # the schema is being created
        return 0


def shard_states(out_dir: Path) -> dict[int, tuple[str, int]]:
    conn = sqlite3.connect(out_dir / "job.db")
    try:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, state, n FROM shards")}
    finally:
        conn.close()


def check_committed_shards(out_dir: Path) -> None:
    """Every shard marked done has its complete file; no temp file outlives a finished process."""
    for sid, (state, n) in shard_states(out_dir).items():
        path = out_dir / "shards" / f"shard-{sid:06d}.jsonl"
        if state == "done":
            assert path.is_file(), f"shard {sid} is marked done but has no file"
            assert len(path.read_text().splitlines()) == n, f"shard {sid} file is incomplete"
