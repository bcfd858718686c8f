"""Scale trace of `spotdet serve --ray`: replicas over time through idle -> burst -> idle -> one request -> idle.

    python benchmarks/scale_trace.py [--model yolox-nano] [--idle-unload 3] [--max-replicas 2]
                                     [--burst-s 15] [--clients 16] [--out docs/scale-trace.png]

Starts the real command (a local Ray head, --min-replicas 0, --lazy: no replica at first) and samples, every
0.25 s: the running and target replica counts (GET /models), the resident memory of the model replica
processes (psutil, the processes Ray Serve names ServeReplica:spotdet:spotdet-model) and the machine's
available memory. Prints the cold starts (a request's wait for a replica to start, from /models), the memory
the replicas held before going to zero and what the machine had back after, and the busy vs reserved cost
of the run (price x replica-seconds) with its idle share. Draws the chart to ``--out``.

The same schedule can be replayed against the single-process server (``--plain``) to compare its reserved
cost: its process (and machine) stays up for the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import REPO, free_port, load  # noqa: E402  (the same client and helpers)

MODEL_REPLICA = "ServeReplica:spotdet:spotdet-model"


def replica_rss_mb(root: int) -> tuple[int, float]:
    """(replica processes, their summed resident memory in MiB) among ``root``'s descendants."""
    count, rss = 0, 0.0
    for p in psutil.Process(root).children(recursive=True):
        try:
            if MODEL_REPLICA in " ".join(p.cmdline()):
                count += 1
                rss += p.memory_info().rss / 2**20
        except psutil.Error:
            pass
    return count, rss


class Sampler(threading.Thread):
    def __init__(self, url: str, root: int, t0: float) -> None:
        super().__init__(daemon=True)
        self.url, self.root, self.t0 = url, root, t0
        self.rows: list[dict] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.halt.is_set():
                try:
                    m = client.get(self.url + "/models").json()
                except httpx.HTTPError:
                    m = {}
                procs, rss = replica_rss_mb(self.root)
                self.rows.append({"t": time.monotonic() - self.t0, "running": m.get("replicas", 0),
                                  "target": m.get("replicas_target", 0), "procs": procs, "rss_mb": rss,
                                  "avail_mb": psutil.virtual_memory().available / 2**20})
                self.halt.wait(0.25)


def wait_replicas(url: str, want: int, limit_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if httpx.get(url + "/models", timeout=5).json().get("replicas") == want:
            return time.monotonic() - start
        time.sleep(0.25)
    raise RuntimeError(f"replicas did not reach {want} in {limit_s:g} s")


def start_server(args: argparse.Namespace, env: dict[str, str], ray: bool):
    import subprocess

    port = free_port()
    cmd = [sys.executable, "-m", "spotdet", "serve", "--model", args.model, "--port", str(port), "--log-level",
           "warning", "--price-per-hour", str(args.price), "--idle-unload", str(args.idle_unload), "--lazy"]
    if ray:
        cmd += ["--ray", "--min-replicas", "0", "--max-replicas", str(args.max_replicas)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def schedule(url: str, payloads: list[bytes], args: argparse.Namespace, ray: bool, marks: dict) -> None:
    """idle -> burst -> idle until zero -> one request (a cold start) -> idle until zero."""
    t0 = marks["t0"]
    time.sleep(args.idle_s)
    marks["burst"] = (time.monotonic() - t0,)
    per_client = max(1, int(args.burst_s * 8))  # enough requests to last about burst_s at a few req/s
    stats = asyncio.run(load(url, payloads, args.clients, per_client * args.clients // 4))
    marks["burst"] += (time.monotonic() - t0,)
    marks["burst_stats"] = stats
    if ray:
        wait_replicas(url, 0, 120)
    else:
        time.sleep(args.idle_unload + 2)
    time.sleep(args.idle_s)
    marks["single"] = time.monotonic() - t0
    httpx.post(url + "/predict", files={"image": ("a.jpg", payloads[0], "image/jpeg")}, timeout=120)
    marks["cold_start_s"] = httpx.get(url + "/models").json().get("last_cold_start_s")
    if ray:
        wait_replicas(url, 0, 120)
    time.sleep(args.idle_s)


def run_one(args, env, payloads, ray: bool) -> tuple[list[dict], dict, dict]:
    proc, url = start_server(args, env, ray)
    try:
        if ray:
            wait_replicas(url, 0, 60)
        marks = {"t0": time.monotonic()}
        sampler = Sampler(url, proc.pid, marks["t0"])
        sampler.start()
        schedule(url, payloads, args, ray, marks)
        sampler.halt.set()
        sampler.join()
        models = httpx.get(url + "/models").json()
    finally:
        proc.terminate()
        proc.wait(60)
    return sampler.rows, marks, models


def chart(rows: list[dict], marks: dict, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.step(t, [r["running"] for r in rows], where="post", label="replicas running", color="tab:blue", lw=2)
    ax.step(t, [r["target"] for r in rows], where="post", label="replicas target", color="tab:blue", ls="--")
    ax.set_ylabel("replicas")
    ax.set_xlabel("seconds")
    ax.set_ylim(-0.1, max(r["target"] for r in rows) + 0.6)
    ax.axvspan(*marks["burst"], color="tab:orange", alpha=0.15, label=f"burst ({marks['clients']} clients)")
    ax.axvline(marks["single"], color="tab:red", ls=":", label=f"one request: cold start {marks['cold_start_s']:.2f} s")
    ax2 = ax.twinx()
    ax2.plot(t, [r["rss_mb"] for r in rows], color="tab:green", label="replica processes RSS (MiB)")
    ax2.set_ylabel("MiB resident in model replicas")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolox-nano")
    ap.add_argument("--idle-unload", type=float, default=3.0)
    ap.add_argument("--max-replicas", type=int, default=2)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--burst-s", type=float, default=15.0)
    ap.add_argument("--idle-s", type=float, default=6.0, help="idle stretch around each phase")
    ap.add_argument("--price", type=float, default=3.6, help="USD per replica-hour (or process-hour)")
    ap.add_argument("--plain", action="store_true", help="also replay the schedule on the single-process server")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "coco-val-dev" / "images")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "scale-trace.png")
    args = ap.parse_args(argv)
    payloads = [p.read_bytes() for p in sorted(args.data.glob("*.jpg"))[:50]]
    env = {**os.environ}
    env.setdefault("SPOTDET_MODEL_DIR", str(REPO.parent / "shared" / "models"))

    rows, marks, models = run_one(args, env, payloads, ray=True)
    marks["clients"] = args.clients
    peak = max(r["rss_mb"] for r in rows)
    burst_end = marks["burst"][1]
    after = [r for r in rows if r["t"] > burst_end and r["procs"] == 0]
    during = [r for r in rows if marks["burst"][0] <= r["t"] <= burst_end]
    avail_gain = (after[0]["avail_mb"] - min(r["avail_mb"] for r in during)) if after and during else float("nan")
    s = marks["burst_stats"]
    print(f"model {args.model}; --ray --min-replicas 0 --max-replicas {args.max_replicas} --idle-unload "
          f"{args.idle_unload:g}; {len(rows)} samples over {rows[-1]['t']:.1f} s")
    print(f"burst: {args.clients} clients, {s['rps']:.1f} req/s, p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms, "
          f"errors {s['errors']}; most replicas running {max(r['running'] for r in rows)}")
    print(f"replica memory: peak {peak:.0f} MiB resident in replica processes; 0 MiB once at zero "
          f"(machine available memory +{avail_gain:.0f} MiB between the burst and zero replicas)")
    print(f"cold start (request waiting on zero replicas): {marks['cold_start_s']:.2f} s; replica model load "
          f"{models['last_replica_load_s']:.3f} s")
    c = models["cost"]
    print(f"cost at ${args.price:g}/replica-hour: busy ${c['busy_usd']:.6f} ({c['busy_s']:.1f} s), reserved "
          f"${c['reserved_usd']:.6f} ({c['uptime_s']:.1f} replica-s), idle share {c['idle_share']:.1%} "
          f"over a {rows[-1]['t']:.0f} s run")
    chart(rows, marks, args.out, f"spotdet serve --ray ({args.model}, --min-replicas 0, --max-replicas "
          f"{args.max_replicas}, --idle-unload {args.idle_unload:g}): replicas and their memory")
    print(f"chart: {args.out}")
    if args.plain:
        prow, pmarks, pmodels = run_one(args, env, payloads, ray=False)
        pc = pmodels["cost"]
        print(f"single-process server, same schedule: busy ${pc['busy_usd']:.6f} ({pc['busy_s']:.1f} s), reserved "
              f"${pc['reserved_usd']:.6f} ({pc['uptime_s']:.1f} process-s), idle share {pc['idle_share']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
