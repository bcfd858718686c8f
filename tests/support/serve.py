"""Start the real `spotdet serve` process on a free loopback port and talk HTTP to it, or run the app in
process (``served``) where a test must reach inside it (the model's backend, a clock).

Not a conftest.py: a second module named conftest would shadow the root one that tests import from.
Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import contextlib

import cv2
import httpx
import pytest


def post_image(url: str, data: bytes, timeout: float = 60, **params) -> httpx.Response:
    """POST one JPEG to ``url``/predict as the multipart field ``image``."""
    return httpx.post(f"{url}/predict", files={"image": ("x.jpg", data, "image/jpeg")}, params=params,
                      timeout=timeout)


def class_names(payload: dict) -> set[str]:
    """The class names detected in one result of a response."""
    return {d["class_name"] for d in payload["detections"]}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of a sample in Prometheus text (``name`` as written, e.g. a ``_sum``); with ``labels``, the
    sample carrying exactly those labels (0 when there is none yet)."""
    if not labels:
        line = next(l for l in text.splitlines() if l.startswith(name + " "))
        return float(line.split()[1])
    want = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(name + want + " "):
            return float(line.split()[-1])
    return 0.0


def peak_rss_mib(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM in /proc/<pid>/status), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def wait_closed(sock: socket.socket, limit_s: float = 10.0) -> tuple[bytes, float]:
    """Read ``sock`` until the server closes it: (everything it sent, seconds it took). TimeoutError if the
    server still holds it after ``limit_s``."""
    start = time.monotonic()
    sock.settimeout(0.2)
    data = b""
    while time.monotonic() - start < limit_s:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            return data, time.monotonic() - start
        data += chunk
    raise TimeoutError(f"the server still holds the connection after {limit_s:g} s (got {data[:200]!r})")


@contextlib.contextmanager
def served(config, **client_options):
    """The app for ``config`` in this process (lifespan included): yields (TestClient, DetectionService)."""
    from fastapi.testclient import TestClient

    from spotdet.serve.app import create_app

    app = create_app(config)
    with TestClient(app, **client_options) as client:
        yield client, app.state.service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"server-{self.port}.log"
        full_env = {**os.environ, "SPOTDET_MODEL_DIR": os.environ["SPOTDET_MODEL_DIR"],
                    "SPOTDET_CACHE_DIR": str(tmp_path / "cache"),
                    **(env or {})}
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "spotdet", "serve", "--port", str(self.port), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        self.wait_alive()

    def wait_alive(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture()
def start_server(tmp_path):
    servers: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        server = Server(list(args), tmp_path, env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def jpeg_bytes(photos) -> dict[str, bytes]:
    return {name: cv2.imencode(".jpg", img)[1].tobytes() for name, img in photos.items()}


@pytest.fixture(scope="module")
def yolox_server(tmp_path_factory):
    """One yolox-nano server shared by a module's tests ($3.60/h, 1 MB uploads, 4 MP images at most)."""
    server = Server(["--model", "yolox-nano", "--price-per-hour", "3.6", "--max-upload-mb", "1",
                     "--max-pixels", "4000000"], tmp_path_factory.mktemp("srv"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dynamic_batch_model(tmp_path_factory) -> str:
    """Path of yolox-nano with a symbolic batch dimension (checked against batch-1 outputs), card beside it."""
    from support.bench import make_dynamic_batch_yolox

    folder = tmp_path_factory.mktemp("dynb")
    make_dynamic_batch_yolox(folder)
    return str(folder / "yolox_nano_dynb.onnx")
