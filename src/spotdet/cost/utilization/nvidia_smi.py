"""Samples from a CSV that nvidia-smi wrote, for machines where ``spotdet monitor`` did not run.

``read_nvidia_smi_csv`` reads what
``nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,memory.total --format=csv -l 1`` writes
(an ``index`` column is optional). Such logs are long and get cut or restarted, so malformed lines are
skipped and counted rather than fatal.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from spotdet.cost.utilization.store import LoadedLog, Sample
from spotdet.errors import UsageError

_TS_FORMATS = ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S",
               "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S")
_DEFAULT_COLUMNS = ["timestamp", "utilization.gpu", "memory.used", "memory.total"]


def _parse_ts(value: str) -> float:
    value = value.strip()
    for fmt in _TS_FORMATS:
        try:
            return datetime.strptime(value, fmt).timestamp()
        except ValueError:
            continue
    raise ValueError(f"unreadable timestamp {value!r}")


def _number(value: str, unit: str) -> float:
    """``"45 %"`` -> 45.0, ``"1234 MiB"`` -> 1234.0; the unit must match when present."""
    text = value.strip()
    if text.endswith(unit):
        text = text[: -len(unit)].strip()
    number = float(text)  # "[N/A]", "" and the like raise ValueError
    if number != number or number < 0:
        raise ValueError(f"bad value {value!r}")
    return number


def _header_name(cell: str) -> str:
    return cell.strip().split(" [")[0].strip().lower()


def read_nvidia_smi_csv(path: str | Path) -> LoadedLog:
    """Samples from nvidia-smi's CSV; malformed lines are skipped and counted, never fatal."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    columns = list(_DEFAULT_COLUMNS)
    samples: list[Sample] = []
    skipped: list[str] = []
    gpu_of_line: dict[float, int] = {}
    for lineno, row in enumerate(csv.reader(text.splitlines(), skipinitialspace=True), start=1):
        if not row or not any(c.strip() for c in row):
            continue
        if _header_name(row[0]) in ("timestamp", "index") and "utilization.gpu" in [_header_name(c) for c in row]:
            columns = [_header_name(c) for c in row]  # a header line (nvidia-smi repeats it after restarts)
            continue
        try:
            if len(row) != len(columns):
                raise ValueError(f"{len(row)} fields, expected {len(columns)}")
            cells = dict(zip(columns, row))
            ts = _parse_ts(cells["timestamp"])
            util = _number(cells["utilization.gpu"], "%")
            if util > 100:
                raise ValueError(f"utilization {util} > 100")
            used = _number(cells["memory.used"], "MiB") if "memory.used" in cells else None
            total = _number(cells["memory.total"], "MiB") if "memory.total" in cells else None
            if "index" in cells:
                gpu = int(cells["index"])
            else:  # without an index column, lines with the same timestamp are successive GPUs
                gpu = gpu_of_line.get(ts, -1) + 1
                gpu_of_line[ts] = gpu
            samples.append(Sample(ts, f"gpu{gpu}", util, used, total))
        except (ValueError, KeyError) as exc:
            skipped.append(f"line {lineno}: {exc}")
    samples.sort(key=lambda s: s.ts)
    return LoadedLog(samples, skipped=len(skipped), source=str(path), skipped_examples=skipped[:3])
