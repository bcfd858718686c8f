"""HTTP load test of `spotdet serve` against a naive one-call-per-request server and the in-process limit.

    python benchmarks/serve_load.py [--model yolox-nano] [--concurrency 1,4,16] [--requests 300]
                                    [--backends onnxruntime,openvino] [--no-naive]
                                    [--data ../shared/data/coco-val-dev/images]

Starts both servers as real processes on free loopback ports, sends real JPEGs as multipart uploads
(like `curl -F image=@x.jpg`) from an async client at each concurrency, and prints throughput,
p50/p95/p99 latency and errors side by side, plus the in-process pipeline limit (decode + infer + post in
a tight loop, same images, measured in the same run) and the ratios. The client shares the machine's
cores with the servers, as it would on a one-box deployment.

Each backend gets its default server and one other execution plan: ONNX Runtime with ``--model-workers 1``
(one run at a time, all cores), OpenVINO with ONNX Runtime's CPU plan (one single-threaded worker per core,
``--model-workers N --threads 1``; by default an OpenVINO service runs one batch at a time and spreads a
batch's images over its streams). With two backends,
"vs ort" is each row's throughput over ONNX Runtime's default server at the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], url: str, wait_s: float = 120) -> subprocess.Popen:
    """A server process, once it answers; its stderr goes to a temporary file whose tail is shown if it never
    answers (a server that exits or hangs at start should say why, not just time out)."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(url + "/docs", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    proc.wait()
    log.seek(0)
    tail = log.read().decode(errors="replace").strip().splitlines()[-15:]
    raise RuntimeError(f"server {cmd} did not start (exit code {proc.returncode}); its last lines:\n"
                       + "\n".join(tail))


async def load(url: str, payloads: list[bytes], concurrency: int, total: int) -> dict:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def worker() -> None:
            nonlocal errors
            for i in counter:
                data = payloads[i % len(payloads)]
                t = time.perf_counter()
                try:
                    r = await client.post(url + "/predict", files={"image": ("img.jpg", data, "image/jpeg")})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t)
                errors += not ok
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {"rps": total / elapsed, "p50": q[49] * 1000, "p95": q[94] * 1000, "p99": q[98] * 1000, "errors": errors}


def pipeline_limit(model: str, payloads: list[bytes], seconds: float = 5.0) -> float:
    from spotdet import Detector

    det = Detector(model)
    det(payloads[0])
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        det(payloads[n % len(payloads)], keep_image=False)
        n += 1
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=300, help="requests per concurrency level")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "coco-val-dev" / "images")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--backends", default="auto", help="comma-separated: auto | onnxruntime | openvino; each gets "
                    "a default server and one other execution plan")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive one-call-per-request server")
    ap.add_argument("--model-workers", default="1",
                    help="comma-separated --model-workers values, each one more ONNX Runtime server beside the default")
    args = ap.parse_args(argv)

    payloads = [p.read_bytes() for p in sorted(args.data.glob("*.jpg"))[:50]]
    env = {**os.environ, "SPOTDET_MODEL": args.model}
    env.setdefault("SPOTDET_MODEL_DIR", str(REPO.parent / "shared" / "models"))
    common = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--queue-size", "256",
              "--log-level", "warning"]
    servers: dict[str, list[str]] = {}
    for backend in args.backends.split(","):
        tag = "" if args.backends == "auto" else {"onnxruntime": "-ort", "openvino": "-ov"}.get(backend, f"-{backend}")
        base = [sys.executable, "-m", "spotdet", "serve", "--model", args.model, "--backend", backend, *common]
        servers[f"spotdet{tag}"] = base
        if backend == "openvino":  # its default is one batch at a time; the other plan: ORT's on the CPU
            cores = str(os.cpu_count() or 1)
            servers[f"spotdet{tag}-{cores}x1"] = [*base, "--model-workers", cores, "--threads", "1"]
        else:  # by default one other plan: one run at a time, on all cores
            for workers in args.model_workers.split(","):
                servers[f"spotdet{tag}-{workers}w"] = [*base, "--model-workers", workers]
    if not args.no_naive:
        servers["naive"] = [sys.executable, "-m", "uvicorn", "benchmarks.naive_server:app", "--log-level", "warning"]
    ports = {name: free_port() for name in servers}
    for name, cmd in servers.items():
        cmd += ["--port", str(ports[name])]
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = []
    limit = pipeline_limit(args.model, payloads)
    urls = {name: f"http://127.0.0.1:{ports[name]}" for name in servers}
    procs = [start(cmd, env, urls[name]) for name, cmd in servers.items()]
    try:
        for url in urls.values():
            asyncio.run(load(url, payloads, 2, 20))  # warm-up
        # Levels outermost and servers interleaved, so drift in machine speed hits all servers alike.
        for c in levels:
            for name, url in urls.items():
                rows.append((name, c, asyncio.run(load(url, payloads, c, args.requests))))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    limit_after = pipeline_limit(args.model, payloads)
    limit = (limit + limit_after) / 2

    print(f"model {args.model}; {args.requests} multipart requests per level; {len(payloads)} COCO JPEGs")
    print(f"in-process pipeline limit (decode+infer+post, one thread loop): {limit:.1f} images/s "
          f"(before {2 * limit - limit_after:.1f}, after {limit_after:.1f})")
    print(f"{'server':<16}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'vs limit':>10}{'vs naive':>10}{'vs ort':>8}")
    naive = {c: r for n, c, r in rows if n == "naive"}
    ort = {c: r for n, c, r in rows if n == "spotdet-ort"}
    for name, c, r in rows:
        vs_naive = r["rps"] / naive[c]["rps"] if c in naive else float("nan")
        vs_ort = r["rps"] / ort[c]["rps"] if c in ort else float("nan")
        print(f"{name:<16}{c:>5}{r['rps']:>9.1f}{r['p50']:>9.1f}{r['p95']:>9.1f}{r['p99']:>9.1f}{r['errors']:>8}"
              f"{r['rps'] / limit:>9.0%}{vs_naive:>10.2f}{vs_ort:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
