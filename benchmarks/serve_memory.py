"""Peak memory of `spotdet serve` under hostile load, and how long a stalled connection is held.

    python benchmarks/serve_memory.py [--model yolox-nano] [--limits default|off|none] [--src DIR]
                                      [--scenarios batch,concurrent,stalled] [--stalled 1500]

Each scenario runs against a fresh server process (the peak is the process's VmHWM from /proc/<pid>/status,
so each needs its own process), started with the service's default settings:

- batch: one POST /predict/batch of 32 JPEGs, each 7296x5472 (39.9 MP, just under the default --max-pixels
  of 40 MP) and small enough together to pass --max-upload-mb;
- concurrent: 16 concurrent POST /predict of one such image each, with --queue-size 4 (the issue's
  setting) and with the default queue;
- stalled: 1 connection that sends half a request line and stops, and N connections that send their
  headers and 64 KiB of a 1 MiB body and stop: the seconds from each one's last byte until the server
  closes it (for the bodies: the longest, over those not refused at once), and the server's memory while
  it holds them.

``--limits off`` turns the new limits off (--max-request-mb / --max-inflight-mb / --max-connections /
--header-timeout / --body-timeout set out of reach); ``--limits none`` passes none of those flags, to run an
older source tree given with ``--src`` (e.g. ``git archive HEAD | tar -x -C /tmp/old`` then
``--src /tmp/old/src --limits none``). Prints one table; every number comes from this run.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 7296, 5472  # 39,923,712 pixels: just under the default --max-pixels (40,000,000)
REFUSE_S = 3.0  # a refused connection is closed within 2 s (connections.REFUSE_LINGER_S)
OFF = ["--max-request-mb", "1000000", "--max-inflight-mb", "1000000", "--max-connections", "1000000",
       "--header-timeout", "1000000", "--body-timeout", "1000000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


class Server:
    def __init__(self, model: str, src: Path | None, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.setdefault("SPOTDET_MODEL_DIR", str(REPO.parent / "shared" / "models"))
        if src is not None:
            env["PYTHONPATH"] = str(src)
        cmd = [sys.executable, "-m", "spotdet", "serve", "--model", model, "--port", str(self.port),
               "--log-level", "warning", *extra]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {' '.join(cmd)}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not start")
        small = cv2.imencode(".jpg", np.full((480, 640, 3), 90, np.uint8))[1].tobytes()
        for _ in range(3):  # warm: the first requests allocate the model's buffers
            httpx.post(self.url + "/predict", files={"image": ("w.jpg", small)}, timeout=60)
        self.idle = proc_status(self.proc.pid)["VmHWM"]

    def peak(self) -> int:
        return proc_status(self.proc.pid)["VmHWM"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def large_jpeg() -> bytes:
    """A 39.9 MP photo-sized JPEG that compresses well (a smooth gradient with a little texture)."""
    x = np.linspace(0, 255, WIDTH, dtype=np.float32)
    y = np.linspace(0, 255, HEIGHT, dtype=np.float32)[:, None]
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[..., 0] = (x * 0.5 + y * 0.5).astype(np.uint8)
    img[..., 1] = (255 - x * 0.7).astype(np.uint8)
    img[..., 2] = (y * 0.8).astype(np.uint8)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 60])[1].tobytes()


def codes(statuses: list[int | str]) -> str:
    return " ".join(f"{k}x{v}" for k, v in sorted(collections.Counter(statuses).items(), key=str))


def scenario_batch(server: Server, image: bytes) -> dict:
    files = [("images", (f"{i}.jpg", image, "image/jpeg")) for i in range(32)]
    t = time.perf_counter()
    try:
        r = httpx.post(server.url + "/predict/batch", files=files, timeout=600)
        status: int | str = r.status_code
        said = f" ({r.json().get('error', '')[:90]})" if r.status_code != 200 else ""
    except httpx.HTTPError as exc:
        status, said = type(exc).__name__, ""
    return {"answers": codes([status]) + said, "seconds": time.perf_counter() - t}


def scenario_concurrent(server: Server, image: bytes, n: int = 16) -> dict:
    def one(_: int) -> int | str:
        try:
            return httpx.post(server.url + "/predict", files={"image": ("big.jpg", image, "image/jpeg")},
                              timeout=600).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        statuses = list(pool.map(one, range(n)))
    return {"answers": codes(statuses), "seconds": time.perf_counter() - t}


def wait_closed(socks: list[socket.socket], limit_s: float) -> tuple[list[float | None], int]:
    """When the server closed each socket (time.monotonic(); None: still open ``limit_s`` from now); 503s read."""
    start = time.monotonic()
    closed: list[float | None] = [None] * len(socks)
    refused = 0
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    open_count = len(socks)
    while open_count and time.monotonic() - start < limit_s:
        for key, _ in sel.select(timeout=0.5):
            i = key.data
            try:
                data = socks[i].recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if data.startswith(b"HTTP/1.1 503"):
                refused += 1
            if not data:
                closed[i] = time.monotonic()
                sel.unregister(socks[i])
                open_count -= 1
    sel.close()
    return closed, refused


def scenario_stalled(server: Server, n: int, limit_s: float) -> dict:
    host = ("127.0.0.1", server.port)
    header = socket.create_connection(host)
    header.sendall(b"POST /predict HTT")  # half a request line, then nothing
    sent = time.monotonic()
    (head_closed,), _ = wait_closed([header], limit_s)
    header.close()
    socks, sent_at = [], []
    request = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1048576\r\n\r\n"
               + b"\xff" * 65536)
    for _ in range(n):
        s = socket.create_connection(host)
        try:
            s.sendall(request)
        except OSError:
            pass
        socks.append(s)
        sent_at.append(time.monotonic())
    time.sleep(1.0)
    rss_held = proc_status(server.proc.pid)["VmRSS"]
    closed, refused = wait_closed(socks, limit_s)
    for s in socks:
        s.close()
    held = [c - t for c, t in zip(closed, sent_at) if c is not None and c - t > REFUSE_S]  # not refused at once
    everyone = all(c is not None for c in closed)
    return {"answers": f"{refused} refused (503), {sum(c is not None for c in closed)}/{n} closed by the server",
            "header_close_s": head_closed - sent if head_closed is not None else None,
            "body_close_s": max(held) if everyone and held else None, "rss_held": rss_held}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="yolox-nano")
    parser.add_argument("--limits", choices=("default", "off", "none"), default="default")
    parser.add_argument("--src", type=Path, default=None, help="spotdet source tree to serve (default: this one)")
    parser.add_argument("--scenarios", default="batch,concurrent,stalled")
    parser.add_argument("--stalled", type=int, default=1500, help="stalled body connections")
    parser.add_argument("--wait", type=float, default=75.0, help="longest wait for a stalled connection")
    args = parser.parse_args()
    extra = OFF if args.limits == "off" else []
    wanted = args.scenarios.split(",")
    image = large_jpeg()
    print(f"image: {WIDTH}x{HEIGHT} JPEG, {len(image) / 1e6:.2f} MB; batch of 32: {32 * len(image) / 1e6:.1f} MB; "
          f"model {args.model}; limits {args.limits}; source {args.src or REPO / 'src'}", flush=True)
    rows = []

    def run(name: str, flags: list[str], fn) -> None:
        server = Server(args.model, args.src, extra + flags)
        try:
            out = fn(server)
            out.setdefault("rss_held", None)
            rows.append((name, server.idle, server.peak(), out))
        finally:
            server.stop()
        print(f"  {name}: done", flush=True)

    if "batch" in wanted:
        run("batch of 32 x 39.9 MP", [], lambda s: scenario_batch(s, image))
    if "concurrent" in wanted:
        run("16 concurrent x 39.9 MP, --queue-size 4", ["--queue-size", "4"], lambda s: scenario_concurrent(s, image))
        run("16 concurrent x 39.9 MP, default queue", [], lambda s: scenario_concurrent(s, image))
    if "stalled" in wanted:
        run(f"{args.stalled} stalled bodies + 1 stalled header", [],
            lambda s: scenario_stalled(s, args.stalled, args.wait))

    print()
    print(f"| scenario (limits {args.limits}) | idle peak RSS MiB | peak RSS MiB | answers | time to close a stalled "
          "connection |")
    print("|---|---|---|---|---|")
    for name, idle, peak, out in rows:
        if "header_close_s" in out:
            def fmt(v):
                return f"{v:.1f} s" if v is not None else f"> {args.wait:g} s"
            closing = f"header {fmt(out['header_close_s'])}, bodies {fmt(out['body_close_s'])}"
            extra_rss = f" (held: {out['rss_held']} MiB)"
        else:
            closing, extra_rss = f"({out['seconds']:.1f} s to answer)", ""
        print(f"| {name} | {idle} | {peak}{extra_rss} | {out['answers']} | {closing} |")


if __name__ == "__main__":
    main()
