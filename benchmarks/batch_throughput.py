"""Batch jobs: throughput of `spotdet batch run --workers 1/2` against the in-process pipeline, and peak memory
for 128 vs 1,280 images (coco128-train listed ten times), all measured side by side in one run.

Every mode runs as a fresh process (Python start-up, model load, planning and merge included) and is timed
from launch to exit; peak memory is the largest summed RSS of the process and its children (workers),
sampled every 20 ms. A last table measures SIGTERM -> clean exit of a running job.

    python benchmarks/batch_throughput.py [--model yolox-nano] [--shard-size 16] [--backends onnxruntime,openvino]
                                          [--sizes 1,10] [--sigterm-trials 3]

With several ``--backends``, every mode runs once per backend, the backends interleaved mode by mode (so a
burst of load on a shared machine hits them alike), and "vs first backend" is each row's images/s over the
first backend's in the same mode.
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
det = Detector(sys.argv[1], backend=sys.argv[3])
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
    ap.add_argument("--sigterm-trials", type=int, default=3, help="0 skips the SIGTERM table")
    ap.add_argument("--backends", default="auto", help="comma-separated: auto | onnxruntime | openvino")
    ap.add_argument("--sizes", default="1,10", help="how many times coco128-train is listed, per job size")
    args = ap.parse_args()
    backends = args.backends.split(",")
    images = sorted(str(p) for p in DATA.glob("*.jpg"))
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="spotdet-bench-") as tmp:
        work = Path(tmp)
        lists = {}
        for repeat in (int(r) for r in args.sizes.split(",")):
            lists[repeat] = work / f"list{repeat}.txt"
            lists[repeat].write_text("\n".join(images * repeat) + "\n")
        rows = []
        for repeat, listing in lists.items():
            n = len(images) * repeat
            modes = [("in-process Detector.stream", lambda b: [sys.executable, "-c", IN_PROCESS, args.model,
                                                                str(listing), b])]
            for workers in (1, 2):
                modes.append((f"batch --workers {workers}", lambda b, w=workers: [
                    _spotdet(), "batch", "run", str(listing), "--out", str(work / f"job{repeat}-{w}-{b}"),
                    "--model", args.model, "--backend", b, "--workers", str(w), "--shard-size", str(args.shard_size),
                    "--quiet", "--json"]))
            base: dict[str, float] = {}
            for name, cmd in modes:
                first = None
                for backend in backends:
                    wall, peak, stdout = measure(cmd(backend))
                    if name.startswith("batch"):
                        summary = json.loads(stdout)
                        assert summary["state"] == "complete" and summary["images_done"] == n, summary
                    else:
                        assert int(stdout.strip()) == n
                    base.setdefault(backend, wall)
                    first = first or wall
                    rows.append((n, name, backend, wall, n / wall, base[backend] / wall, first / wall, peak))
                    console.print(f"  {n} images, {name}, {backend}: {wall:.1f} s", highlight=False)
        latencies = (sigterm_latency(lists[max(lists)], args.model, args.shard_size, work, args.sigterm_trials)
                     if args.sigterm_trials else [])

    cpu = psutil.cpu_count(logical=True)
    table = Table(title=f"batch throughput and memory, {args.model}, coco128-train, shard size {args.shard_size}, "
                        f"{cpu} CPU cores", title_justify="left")
    for col in ("images", "mode", "backend", "wall s", "img/s", "speed vs in-process", f"vs {backends[0]}",
                "peak RSS MiB"):
        table.add_column(col, justify="left" if col in ("mode", "backend") else "right")
    for n, name, backend, wall, rate, ratio, vs_first, peak in rows:
        table.add_row(str(n), name, backend, f"{wall:.1f}", f"{rate:.1f}", f"{ratio:.2f}x", f"{vs_first:.2f}x",
                      f"{peak / 2**20:.0f}")
    console.print(table)
    if len(lists) > 1:
        small_n, big_n = len(images) * min(lists), len(images) * max(lists)
        mem = Table(title=f"peak memory {big_n:,} vs {small_n:,} images (same mode)", title_justify="left")
        for col in ("mode", "backend", f"{small_n:,} images MiB", f"{big_n:,} images MiB", "ratio"):
            mem.add_column(col, justify="left" if col in ("mode", "backend") else "right")
        by = {(n, name, backend): peak for n, name, backend, *_, peak in rows}
        for name, backend in dict.fromkeys((name, backend) for _, name, backend, *_ in rows):
            small, big = by[(small_n, name, backend)], by[(big_n, name, backend)]
            mem.add_row(name, backend, f"{small / 2**20:.0f}", f"{big / 2**20:.0f}", f"{big / small:.2f}")
        console.print(mem)
    if latencies:
        console.print("SIGTERM -> exit (workers 2, after >= 2 shards committed): "
                      + ", ".join(f"{s:.2f} s" for s in latencies) + f"; max {max(latencies):.2f} s")


if __name__ == "__main__":
    main()
