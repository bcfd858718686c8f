"""Cold start of an OpenVINO model with and without spotdet's compiled-model cache, each in a fresh process.

    python benchmarks/openvino_cold_start.py [--models picodet-s-416,yolov8n-int8-fp32] [--repeats 3]

A scaled-to-zero service pays a cold start on its first request after idling: reading the ONNX file and
compiling it for the CPU. With the cache (the default), the compiled blob written by the first load is
imported instead of compiling again. Each figure is the median over ``--repeats`` fresh processes of the
seconds ``Detector(...)`` takes in a process that has imported spotdet (reading, compiling or importing the
model; Python's own start-up and imports are the same with or without the cache and are left out);
"cache, warm" runs after one process has filled an empty cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
from spotdet import Detector
from spotdet.backends.openvino import OpenVinoBackend
import spotdet.backends as b
name, cache = sys.argv[1], sys.argv[2] == "1"
if not cache:
    orig = OpenVinoBackend.__init__
    OpenVinoBackend.__init__ = lambda self, *a, **k: orig(self, *a, **{**k, "cache": False})
t = time.perf_counter()
det = Detector(name, backend="openvino")
print(json.dumps({"seconds": time.perf_counter() - t, "provider": det.provider}))
"""


def load_seconds(name: str, cache: bool, env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, name, "1" if cache else "0"], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="picodet-s-416,yolox-nano")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print("| model | no cache s | cache, first load s | cache, warm s |")
    print("|---|---:|---:|---:|")
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "SPOTDET_CACHE_DIR": os.environ.get("SPOTDET_CACHE_DIR", tmp)}
            ov_cache = os.path.join(env["SPOTDET_CACHE_DIR"], "openvino-cache")
            none = statistics.median(load_seconds(name, False, env) for _ in range(args.repeats))
            subprocess.run(["rm", "-rf", ov_cache], check=True)
            first = load_seconds(name, True, env)
            warm = statistics.median(load_seconds(name, True, env) for _ in range(args.repeats))
        print(f"| {name} | {none:.2f} | {first:.2f} | {warm:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
