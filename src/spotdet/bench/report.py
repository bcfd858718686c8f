"""The one row type of every measurement (``BenchRow``), the report that holds rows, and the per-machine cache.

``spotdet bench``, ``spotdet recommend`` and ``spotdet optimize --auto`` all read and write these rows; the
cache file is replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from spotdet.atomic import atomic_write_text
from spotdet.bench.machine import machine_key
from spotdet.errors import UsageError


@dataclass
class BenchRow:
    """One model x input size x batch combination (``status`` ok | skipped | failed)."""

    model: str
    precision: str
    imgsz: int | None  # the requested square size; None = the model's native size
    input: str  # "HxW" the network ran at
    batch: int
    device: str  # what executed the model in its runtime (ONNX Runtime provider, OpenVINO device)
    threads: int | None
    status: str = "ok"
    note: str = ""
    latency_p50_ms: float | None = None  # per image
    latency_p95_ms: float | None = None
    images_per_s: float | None = None
    batches_timed: int = 0
    stable: bool | None = None
    peak_rss_mb: float | None = None  # process peak since the model was loaded
    model_rss_mb: float | None = None  # that peak minus the process RSS before loading
    gpu_mem_mb: float | None = None
    file_mb: float | None = None
    usd_per_1000: float | None = None
    map50_95: float | None = None
    map50: float | None = None
    map_data: str | None = None
    backend: str = "onnxruntime"  # the inference runtime (rows cached before backends existed were ONNX Runtime)
    #: the hardware fingerprint (spotdet.hardware) of the machine that measured the row; None in older files
    hardware: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def key(self) -> tuple:
        return (self.model, self.precision, self.backend, self.input, self.batch, self.device, self.threads)


@dataclass
class BenchReport:
    machine: dict[str, Any]
    created: str
    price_per_hour: float | None
    price_source: str
    timing_input: str
    rows: list[BenchRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "rows"},
                "rows": [asdict(r) for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def row_from_dict(data: dict[str, Any]) -> BenchRow:
    """A row from its JSON form; keys this version does not know are ignored (older/newer files load)."""
    names = {f.name for f in fields(BenchRow)}
    return BenchRow(**{k: v for k, v in data.items() if k in names})


def report_from_dict(data: dict[str, Any], source: str = "bench results") -> BenchReport:
    try:
        rows = [row_from_dict(r) for r in data["rows"]]
        return BenchReport(machine=dict(data.get("machine", {})), created=str(data.get("created", "")),
                           price_per_hour=data.get("price_per_hour"), price_source=str(data.get("price_source", "")),
                           timing_input=str(data.get("timing_input", "")), rows=rows)
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{source}: not a spotdet bench result ({type(exc).__name__}: {exc})") from None


def load_report(path: str | Path) -> BenchReport:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such bench result file") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a readable bench result ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a spotdet bench result (expected a JSON object)")
    return report_from_dict(data, str(path))


def save_report(report: BenchReport, path: str | Path) -> Path:
    """Write ``report`` as JSON to ``path`` atomically."""
    return atomic_write_text(path, report.to_json())


def cache_path(info: dict[str, Any] | None = None) -> Path:
    from spotdet.models.locations import spotdet_home

    return spotdet_home() / "bench" / f"{machine_key(info)}.json"


def load_cached(info: dict[str, Any] | None = None) -> BenchReport | None:
    path = cache_path(info)
    return load_report(path) if path.is_file() else None


def save_cached(report: BenchReport) -> Path:
    """Merge ``report`` into this machine's cached results (newer rows replace rows with the same key)."""
    path = cache_path(report.machine)
    old = load_cached(report.machine) if path.is_file() else None
    merged = {r.key(): r for r in (old.rows if old else [])}
    merged.update({r.key(): r for r in report.rows})
    out = BenchReport(report.machine, report.created, report.price_per_hour, report.price_source,
                      report.timing_input, list(merged.values()))
    return save_report(out, path)
