"""Helpers shared by the batch-job tests: the installed CLI, reading a job's outputs and database, comparing runs."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_spotdet(env: dict[str, str], *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """``spotdet ARGS`` through the installed console script, in text mode."""
    return subprocess.run([spotdet_exe(), *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """stderr must be one ``error: ...`` line, without a traceback; returns it."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


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


def edit_job_db(out_dir: Path, *statements: tuple) -> None:
    """Run ``(sql, *params)`` statements on a job's database in one transaction (to stage a crash or an old job)."""
    conn = sqlite3.connect(out_dir / "job.db")
    try:
        with conn:
            for sql, *params in statements:
                conn.execute(sql, params)
    finally:
        conn.close()


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


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header (IHDR, CRC fixed) claims ``width`` x ``height``: a decompression bomb's size
    without its bytes. Only the header is right; a decoder that believes it allocates the full image first."""
    import struct
    import zlib

    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The CLI environment with a cache of the test's own."""
    return cli_env(tmp_path / "cache")


@pytest.fixture
def unwritable_dir(tmp_path):
    """A folder nobody can create files in: read-only permissions, or (as root, whom permissions do not stop)
    the immutable attribute. Skips where neither works."""
    folder = tmp_path / "locked"
    folder.mkdir()
    immutable = os.geteuid() == 0
    if immutable:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                                 capture_output=True).returncode != 0:
            pytest.skip("running as root and this file system has no immutable attribute")
    else:
        folder.chmod(0o555)
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o755)
