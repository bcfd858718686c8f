"""HTTP load test of `spotdet serve --ray` against the single-process `spotdet serve`, on the same machine.

    python benchmarks/serve_ray_load.py [--model yolox-nano] [--concurrency 1,4,16] [--requests 200]
                                        [--max-replicas 2] [--rounds 2]

Both servers run as real processes on free loopback ports with the same model, batching settings and
threads per model run (1); the Ray server may run up to ``--max-replicas`` replicas (one per core by
default), the single-process server its default model workers (one per core). The same client as
benchmarks/serve_load.py sends real COCO JPEGs as multipart uploads. Levels are outermost and the two
servers alternate within each level, ``--rounds`` times, so drift in machine speed hits both alike; each
cell is the median of its rounds. Prints throughput, p50/p95, errors, and Ray/plain ratios: the throughput
ratio and the p50 difference at one client are the cost of Ray's HTTP proxy plus the extra hop from the
ingress to a replica through the object store.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import REPO, free_port, load, start  # noqa: E402  (the same client and process helpers)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=200, help="requests per level, per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-replicas", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "coco-val-dev" / "images")
    args = ap.parse_args(argv)

    payloads = [p.read_bytes() for p in sorted(args.data.glob("*.jpg"))[:50]]
    env = {**os.environ}
    env.setdefault("SPOTDET_MODEL_DIR", str(REPO.parent / "shared" / "models"))
    common = [sys.executable, "-m", "spotdet", "serve", "--model", args.model, "--max-batch", str(args.max_batch),
              "--max-wait-ms", str(args.max_wait_ms), "--queue-size", "256", "--log-level", "warning"]
    servers = {
        "plain": [*common, "--threads", "1"],
        "ray": [*common, "--threads", "1", "--ray", "--min-replicas", str(args.max_replicas),
                "--max-replicas", str(args.max_replicas)],
    }
    urls = {}
    procs = []
    try:
        for name, cmd in servers.items():
            port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            procs.append(start([*cmd, "--port", str(port)], env, urls[name]))
        for url in urls.values():
            asyncio.run(load(url, payloads, 4, 40))  # warm-up (and every Ray replica up)
        levels = [int(c) for c in args.concurrency.split(",")]
        cells: dict[tuple[str, int], list[dict]] = {}
        for c in levels:
            for _ in range(args.rounds):
                for name, url in urls.items():
                    cells.setdefault((name, c), []).append(asyncio.run(load(url, payloads, c, args.requests)))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(60)

    def med(name: str, c: int, key: str) -> float:
        return statistics.median(r[key] for r in cells[(name, c)])

    print(f"model {args.model}; {args.requests} multipart requests per level x {args.rounds} rounds (medians); "
          f"{len(payloads)} COCO JPEGs; {os.cpu_count()} cores; ray: {args.max_replicas} replicas x 1 thread")
    print(f"{'server':<8}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}")
    for c in levels:
        for name in servers:
            errors = sum(r["errors"] for r in cells[(name, c)])
            print(f"{name:<8}{c:>5}{med(name, c, 'rps'):>9.1f}{med(name, c, 'p50'):>9.1f}{med(name, c, 'p95'):>9.1f}"
                  f"{errors:>8}")
    print("ray / plain:")
    for c in levels:
        print(f"  {c:>3} clients: throughput x{med('ray', c, 'rps') / med('plain', c, 'rps'):.2f}, "
              f"p50 x{med('ray', c, 'p50') / med('plain', c, 'p50'):.2f} "
              f"(+{med('ray', c, 'p50') - med('plain', c, 'p50'):.1f} ms), "
              f"p95 x{med('ray', c, 'p95') / med('plain', c, 'p95'):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
