"""The bench report as one self-contained HTML file: the table, the accuracy/speed/cost chart, the data.

"Self-contained" means it opens anywhere, offline, mailed or attached to an issue: the styles are inline, the
chart (``chart.py``'s PNG, the one chart of the project) is embedded as base64, and the report's JSON rides
along in a ``<script type="application/json">`` block so the file is also the data.

The table's cells are formatted here once, for this file and for the terminal table of ``spotdet bench``
(``report_cells``), so the two never show different numbers.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from spotdet.atomic import atomic_write_text
from spotdet.bench.report import BenchReport, BenchRow
from spotdet.errors import UsageError

LEFT_COLUMNS = frozenset({"model", "precision", "backend", "input", "note"})  # text; the rest are numbers


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@dataclass(frozen=True)
class Column:
    name: str
    cell: Callable[[BenchRow], str]


def _columns(report: BenchReport) -> list[Column]:
    """The table's columns for this report: one backend is said once (in the title), not on every row; the
    memory column is GPU memory when any row ran on a GPU."""
    gpu = any(r.gpu_mem_mb is not None for r in report.rows)
    several_backends = single_backend(report) is None
    return [
        Column("model", lambda r: r.model),
        Column("precision", lambda r: r.precision),
        *([Column("backend", lambda r: r.backend)] if several_backends else []),
        Column("input", lambda r: r.input),
        Column("batch", lambda r: str(r.batch)),
        Column("p50 ms", lambda r: _fmt(r.latency_p50_ms, ".1f")),
        Column("p95 ms", lambda r: _fmt(r.latency_p95_ms, ".1f")),
        Column("images/s", lambda r: _fmt(r.images_per_s, ".1f")),
        (Column("GPU MB", lambda r: _fmt(r.gpu_mem_mb, ".0f")) if gpu
         else Column("peak RSS MB", lambda r: _fmt(r.peak_rss_mb, ".0f"))),
        Column("file MB", lambda r: _fmt(r.file_mb, ".1f")),
        Column("$/1k img", lambda r: _fmt(r.usd_per_1000, ".5f")),
        Column("mAP", lambda r: _fmt(r.map50_95, ".2f")),
        Column("mAP50", lambda r: _fmt(r.map50, ".2f")),
        Column("note", lambda r: r.note if r.ok else f"{r.status}: {r.note}"),
    ]


def single_backend(report: BenchReport) -> str | None:
    """The runtime of every row when there is only one (said once, in the title), else None."""
    backends = {r.backend for r in report.rows}
    return backends.pop() if len(backends) == 1 else None


def report_cells(report: BenchReport) -> tuple[list[str], list[tuple[list[str], bool]]]:
    """(column names, [(cells as text, whether the row was measured)]): the bench table, formatted once."""
    columns = _columns(report)
    return [c.name for c in columns], [([c.cell(r) for c in columns], r.ok) for r in report.rows]


def report_title(report: BenchReport) -> str:
    """Where and on what the rows were measured, in one line (the terminal table's title too)."""
    m = report.machine
    price = f", price {report.price_source}" if report.price_source else ""
    title = (f"spotdet bench on {m.get('hostname')} ({m.get('cpu')}, {m.get('logical_cpus')} logical CPUs"
             f"{', ' + m['gpus'] if m.get('gpus') else ''}); timed on {report.timing_input}{price}")
    backend = single_backend(report)
    return title + (f"; backend {backend}" if backend else "")


def chart_png(report: BenchReport) -> tuple[bytes | None, str]:
    """The chart's PNG bytes (``chart.save_chart``), or None and why there is none (no measured row, or the
    'plot' extra missing: the report is still written, with the table)."""
    from spotdet.bench.chart import save_chart

    with tempfile.TemporaryDirectory(prefix="spotdet-chart-") as folder:
        try:
            path = save_chart(report, Path(folder) / "chart.png")
        except UsageError as exc:  # MissingExtraError is one too
            return None, str(exc)
        return path.read_bytes(), ""


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 24px;
       color: #1d2330; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
.meta { color: #6b7385; margin: 0 0 16px; }
table { border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e3e6ec; text-align: right; vertical-align: top;
         white-space: nowrap; }
td:last-child { white-space: normal; }
th { background: #f3f5f8; position: sticky; top: 0; }
th.left, td.left { text-align: left; }
tr.not-ok td { color: #8a90a0; }
img.chart { max-width: 100%; margin: 20px 0; border: 1px solid #e3e6ec; }
.note { color: #8a4b00; background: #fff6e6; padding: 8px 12px; border-radius: 6px; display: inline-block; }
details { margin-top: 16px; color: #444; }
pre { background: #f6f7f9; padding: 10px; overflow: auto; font-size: 12px; }
"""


def _table(report: BenchReport) -> str:
    names, rows = report_cells(report)

    def cls(name: str) -> str:
        return ' class="left"' if name in LEFT_COLUMNS else ""

    head = "".join(f"<th{cls(n)}>{html.escape(n)}</th>" for n in names)
    body = "\n".join(
        f'<tr class="{"ok" if ok else "not-ok"}">'
        + "".join(f"<td{cls(n)}>{html.escape(cell)}</td>" for n, cell in zip(names, cells)) + "</tr>"
        for cells, ok in rows)
    return f'<table class="bench">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def render_html(report: BenchReport, title: str | None = None) -> str:
    """The whole report as one HTML document (no external reference of any kind)."""
    title = title or report_title(report)
    png, why_not = chart_png(report)
    if png is not None:
        chart = (f'<img class="chart" alt="mAP against images/s, cost per 1,000 images as colour" '
                 f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')
    else:
        chart = f'<p class="note">No chart: {html.escape(why_not)}</p>'
    # "<", ">" and "&" as JSON escapes: no text in the data can end the script block or open a comment.
    data = json.dumps(report.to_dict(), indent=1)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    created = f"measured {html.escape(report.created)}" if report.created else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>spotdet bench</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>spotdet bench</h1>
<p class="meta">{html.escape(title)}<br>{created}</p>
{_table(report)}
{chart}
<details><summary>Machine</summary><pre>{html.escape(json.dumps(report.machine, indent=2))}</pre></details>
<script type="application/json" id="bench-report">{data}</script>
</body>
</html>
"""


def check_html_path(path: str | Path) -> Path:
    """``path`` if it names an .html file (checked before a benchmark runs, not after), else UsageError."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"the HTML report must be an .html file, got {path}")
    return path


def save_html(report: BenchReport, path: str | Path, title: str | None = None) -> Path:
    """Write the report's HTML to ``path`` atomically (a reader never sees half a file)."""
    return atomic_write_text(check_html_path(path), render_html(report, title))
