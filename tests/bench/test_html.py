"""The bench report as one self-contained HTML file: the recorded rows in a table, the chart embedded, the
data inside; and ``spotdet bench --html`` writing it from a real run."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest
from support.bench import FIXTURE
from support.paths import MODEL_DIR

from spotdet.bench.html import render_html, report_cells, save_html
from spotdet.bench.report import load_report
from spotdet.errors import UsageError



def run(*args: str, cache) -> subprocess.CompletedProcess:
    """``spotdet`` as a real subprocess, plain output, its own cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")}
    env.update(SPOTDET_CACHE_DIR=str(cache), SPOTDET_MODEL_DIR=str(MODEL_DIR), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "spotdet", *args], capture_output=True, text=True, env=env,
                          timeout=240)


class Page(HTMLParser):
    """The parts of the document the tests look at: table cells by row, images, every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.header: list[str] = []
        self.images: list[str] = []
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._cell: list[str] | None = None
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            (self.header if tag == "th" else self.rows[-1]).append(text)
            self._cell = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_script:
            self.scripts[-1] += data


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.rows = [r for r in page.rows if r]
    return page


def test_the_report_holds_every_row_the_chart_and_the_data():
    report = load_report(FIXTURE)
    page = parse(render_html(report))
    names, rows = report_cells(report)
    assert page.header == names
    assert page.rows == [cells for cells, _ in rows]
    assert [r[0] for r in page.rows] == [r.model for r in report.rows]
    fastest = page.rows[0]
    assert fastest[names.index("images/s")] == f"{report.rows[0].images_per_s:.1f}"
    assert fastest[names.index("mAP")] == "18.08"
    # The chart is the PNG chart.py draws, embedded: decodes to a real, non-blank image.
    src, = page.images
    assert src.startswith("data:image/png;base64,")
    img = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[0] > 400 and img.shape[1] > 600 and img.std() > 10
    # Nothing is fetched from elsewhere, and the report's JSON rides along.
    assert all(u.startswith("data:") for u in page.urls)
    assert not re.search(r"https?://", render_html(report).replace(src, ""))
    data = json.loads(page.scripts[0])
    assert data == json.loads(report.to_json())


def test_text_is_escaped_and_unmeasured_rows_say_why():
    report = load_report(FIXTURE)
    report.rows[1].status, report.rows[1].note = "failed", "<script>alert('x')</script> & more"
    text = render_html(report)
    assert "<script>alert" not in text  # neither in the table nor in the embedded JSON
    page = parse(text)
    assert page.rows[1][-1] == "failed: <script>alert('x')</script> & more"
    assert json.loads(page.scripts[0])["rows"][1]["note"] == report.rows[1].note


def test_no_measured_row_still_writes_the_table(tmp_path):
    report = load_report(FIXTURE)
    for r in report.rows:
        r.status, r.note = "skipped", "fixed input size"
    page = parse(save_html(report, tmp_path / "r.html").read_text())
    assert len(page.rows) == len(report.rows) and not page.images
    assert "No chart" in (tmp_path / "r.html").read_text()


def test_only_html_files(tmp_path):
    with pytest.raises(UsageError, match=".html"):
        save_html(load_report(FIXTURE), tmp_path / "r.png")


def test_bench_cli_writes_the_html_report(tmp_path):
    out = tmp_path / "report.html"
    p = run("bench", "fastestdet", "--max-seconds", "1", "--price-per-hour", "1", "--html", str(out),
            "--no-cache", cache=tmp_path / "cache")
    assert p.returncode == 0, p.stderr
    assert f"wrote {out}" in p.stderr.replace("\n", "")
    page = parse(out.read_text())
    assert [r[0] for r in page.rows] == ["fastestdet"] and page.images[0].startswith("data:image/png;base64,")
    p = run("bench", "fastestdet", "--html", str(tmp_path / "r.txt"), cache=tmp_path / "cache")
    assert p.returncode == 2 and ".html" in p.stderr and "Traceback" not in p.stderr
