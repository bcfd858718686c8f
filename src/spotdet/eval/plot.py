"""The precision-recall chart of an evaluation (``spotdet eval --plot``): matplotlib, the 'plot' extra.

Two curves from COCOeval's own precision array (``EvalReport.pr_curve``): IoU 0.5, and the mean over IoU
0.5:0.95, each averaged over the categories with ground truth. The area under each is the mAP in the legend,
so the chart and the table cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

from spotdet.atomic import atomic_path
from spotdet.errors import UsageError
from spotdet.eval.coco import EvalReport
from spotdet.extras import require


def check_plot_path(path: str | Path) -> Path:
    """A .png path with matplotlib installed, or a clear error: checked before a model runs for minutes."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"--plot must name a .png file, got {path}")
    require("plot", "--plot")
    return path


def save_pr_curve(report: EvalReport, path: str | Path, title: str | None = None) -> Path:
    """Write the report's precision-recall curves as a PNG; returns the path written."""
    path = check_plot_path(path)
    curve = report.pr_curve
    if curve is None:
        raise UsageError("nothing to plot: there were no detections, so there is no precision-recall curve")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=120)
    ax.plot(curve.recall, curve.precision50, label=f"IoU 0.5 (mAP@0.5 {report.map50:.1f})", linewidth=2)
    ax.plot(curve.recall, curve.precision50_95, label=f"IoU 0.5:0.95 mean (mAP {report.map50_95:.1f})",
            linewidth=2)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (mean over classes)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    ax.set_title(title or f"{report.model}: precision-recall on {report.images} images, all classes")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
