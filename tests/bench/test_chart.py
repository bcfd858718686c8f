"""The accuracy/speed chart is a real PNG of the recorded rows."""

from __future__ import annotations

import matplotlib.image as mpimg
import pytest

from support.bench import FIXTURE
from spotdet.bench.chart import save_chart
from spotdet.bench.report import load_report
from spotdet.errors import UsageError


def test_chart_png(tmp_path):
    path = save_chart(load_report(FIXTURE), tmp_path / "sub" / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] > 400 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_chart_refuses_nothing_and_non_png(tmp_path):
    report = load_report(FIXTURE)
    with pytest.raises(UsageError):
        save_chart(report, tmp_path / "chart.svg")
    report.rows = [r for r in report.rows if not r.ok]
    with pytest.raises(UsageError):
        save_chart(report, tmp_path / "chart.png")
