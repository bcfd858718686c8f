"""The accuracy/speed chart: mAP against images/s, with cost per 1,000 images as marker colour and size."""

from __future__ import annotations

from pathlib import Path

from spotdet.bench.report import BenchReport, BenchRow
from spotdet.errors import UsageError


def _label(row: BenchRow) -> str:
    parts = [row.model]
    if row.precision not in ("fp32", "?") and row.precision.split("-")[0] not in row.model:
        parts.append(row.precision)
    parts.append(row.input.split("x")[0] if row.input != "?" else "?")
    if row.batch > 1:
        parts.append(f"b{row.batch}")
    return " ".join(parts)


def save_chart(report: BenchReport, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG of the measured rows: x = images/s (log), y = mAP (or p50 latency without mAP)."""
    from spotdet.extras import require

    require("plot", "the bench chart")  # matplotlib is the 'plot' extra, imported only here
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.ok and r.images_per_s]
    if not rows:
        raise UsageError("no measured rows to chart (every combination was skipped or failed)")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"chart must be a .png file, got {path}")
    with_map = all(r.map50_95 is not None for r in rows)
    with_cost = all(r.usd_per_1000 is not None for r in rows)
    xs = [r.images_per_s for r in rows]
    ys = [r.map50_95 if with_map else r.latency_p50_ms for r in rows]
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    if with_cost:
        costs = [r.usd_per_1000 for r in rows]
        top = max(costs) or 1.0
        sizes = [80 + 520 * c / top for c in costs]
        points = ax.scatter(xs, ys, s=sizes, c=costs, cmap="viridis_r", edgecolors="black", linewidths=0.6,
                            alpha=0.85, zorder=3)
        bar = fig.colorbar(points, ax=ax)
        bar.set_label(f"USD per 1,000 images at ${report.price_per_hour:g}/h (marker size too)")
    else:
        ax.scatter(xs, ys, s=120, color="tab:blue", edgecolors="black", zorder=3)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "2357" else ""))
    ax.set_xlabel("images/s (one stream, log scale) - faster is right")
    ax.set_ylabel("COCO mAP@0.5:0.95 (higher is better)" if with_map else "p50 latency per image, ms")
    ax.grid(True, which="both", alpha=0.3, zorder=0)
    span = max(xs) / min(xs)
    ax.set_xlim(min(xs) / (1.25 if span > 1.5 else 1.6), max(xs) * (1.6 if span > 1.5 else 2.0))
    if with_map:
        lo, hi = min(ys), max(ys)
        pad = max(1.0, (hi - lo) * 0.12)
        ax.set_ylim(lo - pad, hi + pad)
    fig.canvas.draw()  # fix the limits so label positions can be checked for overlaps
    _place_labels(ax, xs, ys, [_label(r) for r in rows])
    m = report.machine
    where = f"{m.get('cpu', '?')}, {m.get('logical_cpus', '?')} logical CPUs" + (f", {m['gpus']}" if m.get("gpus") else "")
    data = next((r.map_data for r in rows if r.map_data), None)
    ax.set_title(title or (f"Accuracy vs speed on {where}" + (f"\nmAP on {data}" if data else "")), fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _place_labels(ax, xs: list[float], ys: list[float], labels: list[str]) -> None:
    """Annotate points, trying a few offsets per label so that labels do not overlap each other."""
    placed: list[tuple[float, float, float, float]] = []
    offsets = [(8, 6, "left"), (8, -16, "left"), (-8, 6, "right"), (-8, -16, "right"), (8, 20, "left"),
               (8, -30, "left")]
    points = sorted(zip(xs, ys, labels), key=lambda p: (-p[1], p[0]))
    for x, y, text in points:
        px, py = ax.transData.transform((x, y))
        width, height = 6.2 * len(text) * 120 / 72, 12 * 120 / 72  # rough text box in pixels at this dpi
        choice = offsets[0]
        for dx, dy, ha in offsets:
            x0 = px + dx * 120 / 72 - (width if ha == "right" else 0)
            y0 = py + dy * 120 / 72
            box = (x0, y0, x0 + width, y0 + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                choice = (dx, dy, ha)
                placed.append(box)
                break
        else:
            placed.append(box)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=choice[:2], ha=choice[2], fontsize=9)
