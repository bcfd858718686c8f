"""The sampler with real SQLite and real psutil (and the stand-in NVML for the per-GPU rows)."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from spotdet.cost.utilization import Sampler, read_db
from spotdet.errors import UsageError

MIB = 2**20


def test_foreground_run_writes_sqlite(tmp_path):
    db = tmp_path / "log" / "u.sqlite"
    sampler = Sampler(db, interval=0.05, backend="cpu")
    sampler.run(max_samples=3)
    sampler.stop()
    log = read_db(db)
    assert sampler.count == 3 and len(log.samples) == 3 and {s.source for s in log.samples} == {"cpu"}
    assert [s.ts for s in log.samples] == sorted(s.ts for s in log.samples)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 3


def test_one_row_per_gpu_per_tick_and_nvml_released(tmp_path, fake_pynvml):
    lib = fake_pynvml([dict(name="NVIDIA L4", util=40, used=100 * MIB, total=1000 * MIB, procs=[]),
                       dict(name="NVIDIA L4", util=90, used=900 * MIB, total=1000 * MIB, procs=[])])
    db = tmp_path / "u.sqlite"
    sampler = Sampler(db, interval=0.01, backend="gpu")
    assert sampler.backend_name == "nvml" and sampler.fallback_reason is None
    sampler.run(max_samples=2)
    sampler.stop()
    rows = [(s.source, s.util_pct, s.mem_used_mb) for s in read_db(db).samples]
    assert sorted(rows) == [("gpu0", 40.0, 100.0)] * 2 + [("gpu1", 90.0, 900.0)] * 2
    assert sampler.count == 4
    assert lib.calls == {"init": 1, "shutdown": 1}


def test_fallback_reason_when_nvml_is_absent(tmp_path, fake_pynvml):
    fake_pynvml([], init_error="Driver Not Loaded")
    sampler = Sampler(tmp_path / "u.sqlite")
    assert sampler.backend_name == "cpu" and "Driver Not Loaded" in sampler.fallback_reason
    sampler.stop()


def test_duration_limits_the_run(tmp_path):
    sampler = Sampler(tmp_path / "u.sqlite", interval=0.2, backend="cpu")
    start = time.monotonic()
    sampler.run(duration=0.5)  # ticks at 0, 0.2 and 0.4 s; the next one would be past 0.5 s
    sampler.stop()
    assert sampler.count == 3 and time.monotonic() - start < 5


def test_background_thread_and_process_figures(tmp_path):
    db = tmp_path / "u.sqlite"
    seen = []
    with Sampler(db, interval=0.05, pid=os.getpid(), backend="cpu", on_sample=seen.extend) as sampler:
        deadline = time.time() + 10
        while sampler.count < 4 and time.time() < deadline:
            sum(i * i for i in range(20000))  # some work in this process
    assert sampler.error is None
    log = read_db(db)
    assert len(log.samples) >= 4 and len(seen) == len(log.samples)
    assert all(s.proc_rss_mb and s.proc_rss_mb > 10 and s.proc_cpu_pct is not None for s in log.samples)
    count = len(log.samples)
    time.sleep(0.2)
    assert len(read_db(db).samples) == count  # stopped means stopped


def test_bad_inputs(tmp_path):
    with pytest.raises(UsageError, match="interval must be > 0"):
        Sampler(tmp_path / "u.sqlite", interval=0)
    with pytest.raises(UsageError, match="cannot watch process"):
        Sampler(tmp_path / "u.sqlite", pid=2**22 + 12345)
