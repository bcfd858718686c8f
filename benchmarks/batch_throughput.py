"""Batch jobs: throughput of `spotdet batch run --workers 1/2` against the in-process pipeline, and peak memory
for 128 vs 1,280 images (coco128-train listed ten times), all measured side by side in one run.

Every mode runs as a fresh process (Python start-up, model load, planning and merge included) and is timed
from launch to exit; peak memory is the largest summed RSS of the process and its children (workers),
sampled every 20 ms. A last table measures SIGTERM -> clean exit of a running job.

    python benchmarks/batch_throughput.py [--model yolox-nano] [--shard-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPOTDET_SHARED", REPO.parent / "shared")) / "data" / "coco128-train" / "images"

IN_PROCESS = """
import sys
from spotdet import Detector
from spotdet.vision.sources import iter_sources
det = Detector(sys.argv[1])
n = sum(1 for _ in det.stream(iter_sources(sys.argv[2]), keep_image=False, on_error=lambda s, e: None))
print(n)
"""


def _spotdet() -> str:
    beside = Path(sys.executable).with_name("spotdet")
    return str(beside) if beside.is_file() else "spotdet"


def measure(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS of the process tree in bytes, stdout)."""
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr}")
    return wall, peak, stdout


def sigterm_latency(listing: Path, model: str, shard_size: int, workdir: Path, trials: int) -> list[float]:
    out: list[float] = []
    for t in range(trials):
        job = workdir / f"sigterm{t}"
        proc = subprocess.Popen([_spotdet(), "batch", "run", str(listing), "--out", str(job), "--model", model,
                                 "--workers", "2", "--shard-size", str(shard_size), "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:  # wait until the job is committing shards
            try:
                with sqlite3.connect(f"file:{job / 'job.db'}?mode=ro", uri=True) as conn:
                    if conn.execute("SELECT COUNT(*) FROM shards WHERE state='done'").fetchone()[0] >= 2:
                        break
            except sqlite3.Error:
                pass
            time.sleep(0.05)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait()
        out.append(time.perf_counter() - sent)
        if code != 75:
            raise SystemExit(f"expected exit code 75 after SIGTERM, got {code}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--shard-size", type=int, default=16)
    ap.add_argument("--sigterm-trials", type=int, default=3)
    args = ap.parse_args()
    images = sorted(str(p) for p in DATA.glob("*.jpg"))
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="spotdet-bench-") as tmp:
        work = Path(tmp)
        lists = {}
        for repeat in (1, 10):
            lists[repeat] = work / f"list{repeat}.txt"
            lists[repeat].write_text("\n".join(images * repeat) + "\n")
        rows = []
        for repeat, listing in lists.items():
            n = len(images) * repeat
            modes = [("in-process Detector.stream", [sys.executable, "-c", IN_PROCESS, args.model, str(listing)])]
            for workers in (1, 2):
                modes.append((f"batch --workers {workers}",
                              [_spotdet(), "batch", "run", str(listing), "--out", str(work / f"job{repeat}-{workers}"),
                               "--model", args.model, "--workers", str(workers), "--shard-size",
                               str(args.shard_size), "--quiet", "--json"]))
            base = None
            for name, cmd in modes:
                wall, peak, stdout = measure(cmd)
                if name.startswith("batch"):
                    summary = json.loads(stdout)
                    assert summary["state"] == "complete" and summary["images_done"] == n, summary
                else:
                    assert int(stdout.strip()) == n
                base = base or wall
                rows.append((n, name, wall, n / wall, base / wall, peak))
                console.print(f"  {n} images, {name}: {wall:.1f} s", highlight=False)
        latencies = sigterm_latency(lists[10], args.model, args.shard_size, work, args.sigterm_trials)

    cpu = psutil.cpu_count(logical=True)
    table = Table(title=f"batch throughput and memory, {args.model}, coco128-train, shard size {args.shard_size}, "
                        f"{cpu} CPU cores", title_justify="left")
    for col in ("images", "mode", "wall s", "img/s", "speed vs in-process", "peak RSS MiB"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for n, name, wall, rate, ratio, peak in rows:
        table.add_row(str(n), name, f"{wall:.1f}", f"{rate:.1f}", f"{ratio:.2f}x", f"{peak / 2**20:.0f}")
    console.print(table)
    mem = Table(title="peak memory 1,280 vs 128 images (same mode)", title_justify="left")
    for col in ("mode", "128 images MiB", "1,280 images MiB", "ratio"):
        mem.add_column(col, justify="left" if col == "mode" else "right")
    by = {(n, name): peak for n, name, _, _, _, peak in rows}
    for name in dict.fromkeys(name for _, name, *_ in rows):
        small, big = by[(len(images), name)], by[(len(images) * 10, name)]
        mem.add_row(name, f"{small / 2**20:.0f}", f"{big / 2**20:.0f}", f"{big / small:.2f}")
    console.print(mem)
    console.print("SIGTERM -> exit (workers 2, after >= 2 shards committed): "
                  + ", ".join(f"{s:.2f} s" for s in latencies) + f"; max {max(latencies):.2f} s")


if __name__ == "__main__":
    main()
