"""Reading nvidia-smi's CSV: units, repeated headers, several GPUs, malformed lines counted not fatal."""

from __future__ import annotations

from datetime import datetime

import pytest

from spotdet.cost.utilization import read_nvidia_smi_csv
from spotdet.errors import UsageError

HEADER = "timestamp, utilization.gpu [%], memory.used [MiB], memory.total [MiB]\n"


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


@pytest.mark.parametrize("stamp", ["2024/01/15 10:00:00", "2024-01-15 10:00:00.000", "2024-01-15T10:00:00"])
def test_timestamp_formats(tmp_path, stamp):
    path = tmp_path / "smi.csv"
    path.write_text(HEADER + f"{stamp}, 5 %, 1 MiB, 2 MiB\n")
    (s,) = read_nvidia_smi_csv(path).samples
    assert s.ts == pytest.approx(datetime(2024, 1, 15, 10).timestamp())


def test_empty_and_missing_csv(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert read_nvidia_smi_csv(empty).samples == []
    with pytest.raises(UsageError, match="cannot read"):
        read_nvidia_smi_csv(tmp_path / "nope.csv")
