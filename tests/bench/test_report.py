"""BenchRow / BenchReport JSON, the per-machine cache (merge, reload, atomic replace) and bad files."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from spotdet.bench.report import (BenchReport, BenchRow, cache_path, load_cached, load_report, row_from_dict,
                                  save_cached, save_report)
from spotdet.errors import UsageError

MACHINE = {"hostname": "h", "cpu": "c", "logical_cpus": 2, "gpus": None}


def _row(model: str, p50: float = 1.0, batch: int = 1) -> BenchRow:
    return BenchRow(model, "fp32", None, "416x416", batch, "CPUExecutionProvider", None, latency_p50_ms=p50,
                    latency_p95_ms=p50, images_per_s=1000 / p50)


def _report(*rows: BenchRow) -> BenchReport:
    return BenchReport(MACHINE, "2025-01-01T00:00:00+00:00", None, "", "synthetic", list(rows))


def test_json_round_trip_and_unknown_keys(tmp_path):
    report = _report(_row("a"), _row("b", 2.0, batch=4))
    path = save_report(report, tmp_path / "r.json")
    assert load_report(path).to_dict() == report.to_dict()
    newer = {**asdict(_row("a")), "a_field_from_a_newer_version": 1}
    assert row_from_dict(newer) == _row("a")


def test_cache_merges_newer_rows_over_older_ones(tmp_path):
    path = save_cached(_report(_row("a", 5.0), _row("b")))
    assert path == cache_path(MACHINE) and str(tmp_path) in str(path)  # SPOTDET_CACHE_DIR from conftest
    save_cached(_report(_row("a", 3.0), _row("c")))
    merged = {r.model: r for r in load_cached(MACHINE).rows}
    assert set(merged) == {"a", "b", "c"}
    assert merged["a"].latency_p50_ms == 3.0  # same key: the newer row replaced the older one
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_cache_is_replaced_not_rewritten_in_place(tmp_path):
    """A reader that opened the cache before a save still reads the complete old file (rename, not truncate)."""
    path = save_cached(_report(_row("a")))
    before = path.read_text()
    with open(path, encoding="utf-8") as reader:
        save_cached(_report(_row("b")))
        assert reader.read() == before
    assert {r.model for r in load_report(path).rows} == {"a", "b"}


def test_no_cache_yet(tmp_path):
    assert load_cached(MACHINE) is None


@pytest.mark.parametrize("content, needle", [(json.dumps({"rows": [{"nonsense": 1}]}), "not a spotdet bench"),
                                             ("{not json", "not a readable"), ("[1, 2]", "expected a JSON object")])
def test_bad_files(tmp_path, content, needle):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(UsageError, match=needle):
        load_report(bad)
    with pytest.raises(UsageError, match="no such bench result"):
        load_report(tmp_path / "missing.json")
