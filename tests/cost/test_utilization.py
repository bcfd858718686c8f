"""The utilization sampler (real SQLite, real psutil/NVML) and the nvidia-smi CSV reader."""

from __future__ import annotations

import sqlite3
import time

import pytest

from spotdet.cost.utilization import Sampler, UtilizationLogError, open_backend, read_db, read_nvidia_smi_csv
from spotdet.errors import UsageError

HEADER = "timestamp, utilization.gpu [%], memory.used [MiB], memory.total [MiB]\n"


def nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


def test_backend_is_chosen_automatically():
    backend, reason = open_backend("auto")
    try:
        if nvml_works():
            assert backend.name == "nvml" and reason is None
            assert all(s.source.startswith("gpu") for s in backend.sample(time.time()))
        else:
            assert backend.name == "cpu" and "NVML" in reason
            (s,) = backend.sample(time.time())
            assert 0.0 <= s.util_pct <= 100.0 and 0 < s.mem_used_mb < s.mem_total_mb
    finally:
        backend.close()


@pytest.mark.skipif(nvml_works(), reason="a GPU is present")
def test_gpu_backend_refused_without_nvml():
    with pytest.raises(UsageError, match="NVML"):
        open_backend("gpu")


def test_foreground_run_writes_sqlite(tmp_path):
    db = tmp_path / "log" / "u.sqlite"
    sampler = Sampler(db, interval=0.05)
    sampler.run(max_samples=3)
    sampler.stop()
    log = read_db(db)
    assert len(log.samples) == 3 * (len(sampler.backend.handles) if sampler.backend_name == "nvml" else 1)
    assert [s.ts for s in log.samples] == sorted(s.ts for s in log.samples)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == len(log.samples)


def test_background_thread_and_process_figures(tmp_path):
    import os

    db = tmp_path / "u.sqlite"
    with Sampler(db, interval=0.05, pid=os.getpid(), backend="cpu") as sampler:
        deadline = time.time() + 10
        while sampler.count < 4 and time.time() < deadline:
            sum(i * i for i in range(20000))  # some work in this process
    assert sampler.error is None
    log = read_db(db)
    assert len(log.samples) >= 4
    assert all(s.proc_rss_mb and s.proc_rss_mb > 10 for s in log.samples)
    count = len(log.samples)
    time.sleep(0.2)
    assert len(read_db(db).samples) == count  # stopped means stopped


def test_bad_inputs(tmp_path):
    with pytest.raises(UsageError):
        Sampler(tmp_path / "u.sqlite", interval=0)
    with pytest.raises(UsageError, match="no such utilization log"):
        read_db(tmp_path / "missing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    with pytest.raises(UtilizationLogError):
        read_db(junk)
    with pytest.raises(UsageError, match="cannot watch process"):
        Sampler(tmp_path / "u.sqlite", pid=2**22 + 12345)


def test_nvidia_smi_csv(tmp_path):
    path = tmp_path / "smi.csv"
    path.write_text(HEADER + "2024/01/15 10:00:00.123, 45 %, 1234 MiB, 16384 MiB\n"
                    "2024/01/15 10:00:01.125, 100 %, 2000 MiB, 16384 MiB\n")
    log = read_nvidia_smi_csv(path)
    assert log.skipped == 0
    assert [(s.source, s.util_pct, s.mem_used_mb, s.mem_total_mb) for s in log.samples] == [
        ("gpu0", 45.0, 1234.0, 16384.0), ("gpu0", 100.0, 2000.0, 16384.0)]
    assert log.samples[1].ts - log.samples[0].ts == pytest.approx(1.002)


def test_nvidia_smi_csv_malformed_lines_are_counted(tmp_path):
    path = tmp_path / "smi.csv"
    path.write_text(HEADER + "2024/01/15 10:00:00.123, 45 %, 1234 MiB, 16384 MiB\n"
                    "garbage\n"
                    "2024/01/15 10:00:01.123, [N/A], 1234 MiB, 16384 MiB\n"
                    "2024/13/45 10:00:02.123, 50 %, 1234 MiB, 16384 MiB\n"
                    "2024/01/15 10:00:03.123, 150 %, 1234 MiB, 16384 MiB\n"
                    "2024/01/15 10:00:04.123, 60 %, 1234 MiB\n"
                    "\n"
                    + HEADER +  # nvidia-smi repeats the header when restarted
                    "2024/01/15 10:00:05.123, 70 %, 1300 MiB, 16384 MiB\n"
                    "\x00\xff binary junk\n")
    log = read_nvidia_smi_csv(path)
    assert [s.util_pct for s in log.samples] == [45.0, 70.0]
    assert log.skipped == 6
    assert log.skipped_examples[0].startswith("line 3")


def test_nvidia_smi_csv_two_gpus(tmp_path):
    path = tmp_path / "smi.csv"
    path.write_text(HEADER + "2024/01/15 10:00:00.100, 10 %, 1 MiB, 80 MiB\n2024/01/15 10:00:00.100, 90 %, 2 MiB, 80 MiB\n"
                    "2024/01/15 10:00:01.100, 20 %, 1 MiB, 80 MiB\n2024/01/15 10:00:01.100, 95 %, 2 MiB, 80 MiB\n")
    log = read_nvidia_smi_csv(path)
    assert sorted((s.source, s.util_pct) for s in log.samples) == [("gpu0", 10.0), ("gpu0", 20.0), ("gpu1", 90.0),
                                                                   ("gpu1", 95.0)]
    indexed = tmp_path / "indexed.csv"
    indexed.write_text("index, timestamp, utilization.gpu [%], memory.used [MiB], memory.total [MiB]\n"
                       "1, 2024/01/15 10:00:00.100, 33 %, 1 MiB, 80 MiB\n")
    assert read_nvidia_smi_csv(indexed).samples[0].source == "gpu1"


def test_empty_and_missing_csv(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert read_nvidia_smi_csv(empty).samples == []
    with pytest.raises(UsageError):
        read_nvidia_smi_csv(tmp_path / "nope.csv")
