"""int8-static vs fp32 mAP on one CPU, with ONNX Runtime's default INT8 kernels and with exact sums.

Why: without VNNI, ONNX Runtime's u8 x s8 convolutions add pairs of products in 16 bits and saturate, so an
int8-static model loses accuracy there that it does not lose on a VNNI CPU (docs/hardware.md). This script
builds the variant (calibration, mixed-precision selection) and scores it on coco-val-dev in both modes
(SPOTDET_INT8_EXACT=off: ONNX Runtime's default kernels; on: ``session.x64quantprecision``), each mode building
its own variant, since the selection measures the quantized model on the machine at hand. fp32 runs on ONNX
Runtime too.

An AVX2-only CPU can be emulated on any x86-64 machine with Debian's qemu-user (slow: ~2.5 s per image):

    SPOTDET_CPU_FEATURES=avx2,fma qemu-x86_64 -cpu EPYC-Milan .venv/bin/python benchmarks/int8_cpu.py

(``SPOTDET_CPU_FEATURES`` tells spotdet what qemu's CPU has: /proc/cpuinfo still shows the host's flags.)

    python benchmarks/int8_cpu.py [--models yolox-nano picodet-s-416] [--calib-count 100] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from spotdet import Detector
from spotdet.backends.onnxruntime import EXACT_INT8_ENV
from spotdet.eval.coco import evaluate
from spotdet.hardware import cpu_info, describe, fingerprint
from spotdet.optimize import optimize

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolox-nano", "picodet-s-416"])
    parser.add_argument("--calib", type=Path, default=DATA / "coco128-train")
    parser.add_argument("--calib-count", type=int, default=100)
    parser.add_argument("--data", type=Path, default=DATA / "coco-val-dev")
    parser.add_argument("--limit", type=int, default=None, help="score on the first N images only")
    parser.add_argument("--modes", nargs="+", default=["off", "on"], choices=["off", "on"])
    args = parser.parse_args()
    console = Console(width=160)
    fp = fingerprint()
    table = Table(title=f"int8-static vs fp32, mAP@0.5:0.95 on {args.data.name} "
                        f"({args.limit or 'all'} images), on {describe(fp)}, VNNI {'yes' if cpu_info().vnni else 'no'}")
    for col in ("model", "fp32", "INT8 kernels", "int8-static", "drop", "float tensors", "build s"):
        table.add_column(col)
    with tempfile.TemporaryDirectory(prefix="spotdet-int8-") as tmp:
        for model in args.models:
            os.environ[EXACT_INT8_ENV] = "off"
            f = evaluate(Detector(model, backend="onnxruntime"), args.data, limit=args.limit).map50_95
            for mode in args.modes:
                os.environ[EXACT_INT8_ENV] = mode
                start = time.perf_counter()
                res = optimize(model, "int8-static", out=Path(tmp) / f"{model}-{mode}.onnx", calib=args.calib,
                               calib_count=args.calib_count, progress=False)
                built = time.perf_counter() - start
                q = evaluate(Detector(res.path, backend="onnxruntime"), args.data, limit=args.limit).map50_95
                kernels = "exact sums" if mode == "on" else "ORT default"
                table.add_row(model, f"{f:.2f}", kernels, f"{q:.2f}", f"{f - q:+.2f}",
                              f"{len(res.mixed.float_tensors)}/{res.mixed.candidates}", f"{built:.0f}")
                console.print(f"{model} {kernels}: fp32 {f:.2f} int8 {q:.2f}", highlight=False)
    console.print(table)


if __name__ == "__main__":
    main()
