"""The labelled-sample report: which epoch is kept, and whether distillation helped."""

from __future__ import annotations

from spotdet.distill.validate import ValReport


def test_the_best_epoch_is_kept_and_ties_go_to_the_earlier():
    report = ValReport("val", 10, before=30.0, epochs={1: 30.5, 2: 31.0, 3: 31.0})
    assert report.best_epoch == 2 and report.helped
    assert "31.00 after epoch 2" in report.note() and "30.00 before" in report.note()


def test_no_epoch_above_before_is_reported_as_no_help():
    assert not ValReport("val", 10, before=30.0, epochs={1: 29.0, 2: 30.0}).helped
    empty = ValReport("val", 10, before=30.0)
    assert empty.best_epoch is None and not empty.helped and "no epoch" in empty.note()
