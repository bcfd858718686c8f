"""Connections against the real server: request headers and bodies that stall are cut off, connections beyond
--max-connections are refused, and a client that goes away mid-upload is one log line and one 499 sample.

One server for the module, with short deadlines so each test takes about a second.
"""

import json
import socket
import time

import httpx
import pytest
from support.serve import Server, jpeg_bytes, metric, wait_closed  # noqa: F401 (fixture)

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 0.5
MAX_CONNECTIONS = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(["--model", "fastestdet", "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout",
                  str(BODY_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS)], tmp_path_factory.mktemp("conn"))
    yield srv
    srv.stop()


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def upload_head(length: int) -> bytes:
    return (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {length}\r\n\r\n"
            .encode())


def metrics(server) -> str:
    return httpx.get(f"{server.url}/metrics").text


def test_silent_and_trickling_headers_are_closed_at_the_header_timeout(server):
    before = metric(metrics(server), "spotdet_connections_closed_total", reason="header_timeout")
    silent = connect(server)  # connects and sends nothing
    trickle = connect(server)
    start = time.monotonic()
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":  # one byte every 0.1 s: each byte is "activity"
        if time.monotonic() - start > HEADER_TIMEOUT + 1:
            break
        try:
            trickle.send(bytes([byte]))
        except OSError:  # closed by the server: what the test wants
            break
        time.sleep(0.1)
    for sock in (silent, trickle):
        data, _ = wait_closed(sock, limit_s=5)
        assert data == b""  # closed without an answer: no request was ever complete
        sock.close()
    elapsed = time.monotonic() - start
    assert HEADER_TIMEOUT - 0.2 <= elapsed < HEADER_TIMEOUT + 3, elapsed
    assert metric(metrics(server), "spotdet_connections_closed_total", reason="header_timeout") == before + 2
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_stalled_body_gets_408_and_the_connection_is_closed(server, jpeg_bytes):
    image = jpeg_bytes["chelsea"]
    sock = connect(server)
    sock.sendall(upload_head(len(image)) + image[:1000])  # then nothing
    data, seconds = wait_closed(sock, limit_s=5)
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
    assert json.loads(body) == {"error": f"request body stalled: no data for {BODY_TIMEOUT:g} s after 1000 bytes "
                                         "(--body-timeout)", "status": 408}
    assert BODY_TIMEOUT - 0.1 <= seconds < BODY_TIMEOUT + 2
    assert metric(metrics(server), "spotdet_requests_total", endpoint="/predict", status="408") >= 1
    assert metric(metrics(server), "spotdet_memory_inflight_bytes") == 0  # its body bytes were given back


def test_connections_beyond_the_cap_are_refused_with_503(server):
    held = [connect(server) for _ in range(MAX_CONNECTIONS)]  # idle: well inside the header timeout
    try:
        time.sleep(0.1)
        refused = httpx.get(f"{server.url}/healthz")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.headers["connection"] == "close"
        assert refused.json() == {"error": f"server busy: {MAX_CONNECTIONS} connections open (--max-connections), "
                                           "retry shortly", "status": 503}
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while httpx.get(f"{server.url}/healthz").status_code != 200:  # the server sees the closes shortly
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert metric(metrics(server), "spotdet_connections_closed_total", reason="limit") >= 1


def test_a_client_that_leaves_mid_upload_is_one_log_line_and_a_499(server, jpeg_bytes):
    image = jpeg_bytes["coffee"]
    log_before = server.output()
    sock = connect(server)
    sock.sendall(upload_head(len(image)) + image[:2000])
    time.sleep(0.2)
    sock.close()
    deadline = time.monotonic() + 5
    while metric(metrics(server), "spotdet_requests_total", endpoint="/predict", status="499") < 1:
        assert time.monotonic() < deadline, "the abandoned upload was not counted"
        time.sleep(0.05)
    time.sleep(0.2)
    new = server.output()[len(log_before):]
    lines = [line for line in new.splitlines() if "disconnect" in line.lower()]
    assert len(lines) == 1 and "client disconnected after 2000 bytes" in lines[0], new
    assert "Traceback" not in new and "ERROR" not in new, new
    assert metric(metrics(server), "spotdet_memory_inflight_bytes") == 0
    ok = httpx.post(f"{server.url}/predict", files={"image": ("c.jpg", image)})
    assert ok.status_code == 200
