"""Every optimized variant of the given models, measured side by side in one run (one process per variant).

    SPOTDET_MODEL_DIR=../shared/models python benchmarks/optimize_auto.py yolox-nano picodet-s-416

Prints the `spotdet optimize --auto` table per model (size, peak RSS after load + first run, p50 latency at
batch 1 and at the best batch, speed ratio against the fp32 parent measured in the same run, mAP on
coco-val-dev) and writes JSON + Markdown next to this script's output folder.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from spotdet.optimize.auto import run_auto, to_markdown, write_reports

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=["yolox-nano", "picodet-s-416"])
    ap.add_argument("--calib", type=Path, default=SHARED / "coco128-train")
    ap.add_argument("--data", type=Path, default=SHARED / "coco-val-dev")
    ap.add_argument("--max-map-drop", type=float, default=1.0)
    ap.add_argument("--report-dir", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="spotdet-auto-") as tmp:
        for model in args.models:
            report = run_auto(model, args.calib, args.data, args.max_map_drop, out_dir=Path(tmp),
                              on_step=lambda msg: print(f"  {msg}", flush=True))
            print(to_markdown(report))
            write_reports(report, args.report_dir)


if __name__ == "__main__":
    main()
