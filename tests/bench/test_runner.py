"""run_bench: validation before any work, one job per model, rows in size x batch order."""

from __future__ import annotations

import pytest

from spotdet.bench.runner import run_bench
from spotdet.errors import ModelNotFoundError, UsageError

QUICK = dict(max_seconds=1.0, tolerance=0.2)


def test_rows_in_model_size_batch_order():
    report = run_bench(["fastestdet"], imgsz=[320, 352], batch=[1, 4], isolate=False, **QUICK)
    assert [(r.input, r.batch, r.status) for r in report.rows] == [
        ("320x320", 1, "skipped"), ("320x320", 4, "skipped"), ("352x352", 1, "ok"), ("352x352", 4, "skipped")]
    assert report.machine["logical_cpus"] >= 1 and "synthetic" in report.timing_input and report.created


def test_default_is_an_isolated_process():
    report = run_bench(["fastestdet"], **QUICK)
    (row,) = report.rows
    assert row.ok and row.peak_rss_mb > 30 and row.images_per_s > 0


def test_unknown_model_fails_before_measuring():
    with pytest.raises(ModelNotFoundError):
        run_bench(["fastestdet", "no-such-model"], isolate=False, **QUICK)


@pytest.mark.parametrize("kwargs, needle", [(dict(models=[]), "at least one model"),
                                            (dict(tolerance=1.5), "tolerance"), (dict(max_seconds=0), "max seconds")])
def test_bad_arguments(kwargs, needle):
    with pytest.raises(UsageError, match=needle):
        run_bench(**{"models": ["fastestdet"], **kwargs})
