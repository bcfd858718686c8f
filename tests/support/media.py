"""Real media for source tests: a small video of a real photo moving across frames, and a real HTTP server."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np


def make_video(path: Path, photo: np.ndarray, frames: int = 12, fps: float = 10.0, step: int = 6) -> Path:
    """Write ``frames`` frames of ``photo`` slid ``step`` pixels further right each frame (grey fill), so every
    frame differs from its neighbours and still shows the photo's object. mp4v in .mp4, MJPG in .avi. An odd
width or height is cropped by one pixel (codecs want even sizes)."""
    photo = photo[:photo.shape[0] // 2 * 2, :photo.shape[1] // 2 * 2]  # codecs want even sizes
    h, w = photo.shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for i in range(frames):
        canvas = np.full_like(photo, 114)
        dx = i * step
        canvas[:, dx:] = photo[:, :w - dx]
        writer.write(canvas)
    writer.release()
    return path


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes, float]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        status, headers, body, delay = self.routes.get(self.path, (404, {}, b"not found", 0.0))
        time.sleep(delay)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers and not headers.get("X-No-Length"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        dribble = float(headers.get("X-Dribble", 0))
        try:
            for part in ([body[k:k + 1] for k in range(len(body))] if dribble else [body]):
                self.wfile.write(part)
                self.wfile.flush()
                time.sleep(dribble)
        except (BrokenPipeError, ConnectionResetError):  # the client refused the body: what a limit does
            pass

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve_files(routes: dict[str, tuple[int, dict[str, str], bytes, float]]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering GET ``path`` with (status, headers, body, delay seconds);
    yields its base URL. A header ``X-No-Length: 1`` sends the body without a Content-Length (closed-delimited,
    as HTTP/1.0 allows); ``X-Dribble: S`` sends it one byte every S seconds (a server too slow to ever trip a
    per-read timeout)."""
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
