"""Every optimized variant of the given models, measured side by side in one run (one process per variant).

    SPOTDET_MODEL_DIR=../shared/models python benchmarks/optimize_auto.py yolox-nano picodet-s-416

Prints the `spotdet optimize --auto` table per model and writes JSON + Markdown to --report-dir. The figures
are `spotdet bench`'s (run_bench, one fresh process per variant): file size, peak RSS, per-image p50 of
preprocess + inference + NMS at batch 1 and at the best of 1/2/4/8, the speed ratio against the fp32 parent
measured in the same run, mAP on coco-val-dev (--limit N: the first N images).
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
    ap.add_argument("--limit", type=int, help="mAP on the first N images only")
    ap.add_argument("--report-dir", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="spotdet-auto-") as tmp:
        for model in args.models:
            report = run_auto(model, args.calib, args.data, args.max_map_drop, out_dir=Path(tmp), limit=args.limit,
                              on_step=lambda msg: print(f"  {msg}", flush=True))
            print(to_markdown(report))
            write_reports(report, args.report_dir)


if __name__ == "__main__":
    main()
