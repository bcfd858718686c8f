"""``save_pr_curve``: a real PNG from a real evaluation; a clear error before any work when it cannot be written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spotdet.errors import MissingExtraError, UsageError
from spotdet.eval.coco import evaluate_results_file
from spotdet.eval.plot import check_plot_path, save_pr_curve
from support.paths import VAL_DIR


def perfect_results(tmp_path):
    meta = json.loads((VAL_DIR / "instances.json").read_text())
    path = tmp_path / "gt.json"
    path.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                                 "score": 1.0} for a in meta["annotations"] if not a["iscrowd"]]))
    return path


def test_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    from PIL import Image

    report = evaluate_results_file(perfect_results(tmp_path), VAL_DIR)
    path = save_pr_curve(report, tmp_path / "charts" / "pr.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300
    assert [p.name for p in path.parent.iterdir()] == ["pr.png"]  # written atomically: no temporary left


def test_not_a_png_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"\.png"):
        check_plot_path(tmp_path / "pr.pdf")


def test_without_matplotlib_the_error_names_the_extra(tmp_path):
    """Absence simulated in a fresh interpreter with ``sys.modules['matplotlib'] = None`` (import fails)."""
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from spotdet.eval.plot import check_plot_path\n"
            "from spotdet.errors import MissingExtraError\n"
            "try:\n    check_plot_path('pr.png')\n"
            "except MissingExtraError as exc:\n    print(exc.extra, '|', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    extra, message = proc.stdout.strip().split(" | ")
    assert extra == "plot" and "pip install 'spotdet[plot]'" in message and "matplotlib" in message
    assert issubclass(MissingExtraError, UsageError)
