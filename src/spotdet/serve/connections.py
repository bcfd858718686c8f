"""Connection limits uvicorn does not enforce by itself: how many connections may be open, and how long a
client may take to send a request's headers.

uvicorn (0.29 to 0.54) has no deadline for request headers: a connection that sends nothing, or a header a
byte at a time, is held forever (its keep-alive timer only runs between requests and any byte cancels it).
Its ``limit_concurrency`` answers 503 only once a request's headers are in, so stalled connections are never
refused, and ``h11_max_incomplete_event_size`` bounds the size of the headers, not the time they take. So
``spotdet serve`` runs uvicorn with its own h11 protocol class (``guarded_protocol``), which:

- refuses a connection beyond ``max_connections`` open ones at once: a 503 JSON answer with
  ``Retry-After`` and ``Connection: close``, then the connection is shut (after at most ``REFUSE_LINGER_S``
  so that the client reads the answer rather than a reset);
- closes a connection whose request headers are not all in ``header_timeout_s`` after it was opened, or
  after the previous response on it was sent (a total deadline: trickling bytes do not extend it). The
  body has its own per-read timeout (``--body-timeout``, in ``uploads.read_body``; 408).

Both are counted in ``spotdet_connections_closed_total{reason="limit"|"header_timeout"}``.
The h11 implementation is used whether or not httptools is installed, so the behaviour is the same
everywhere.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from spotdet.serve.budget import RETRY_AFTER_S
from spotdet.serve.config import ServeConfig
from spotdet.serve.metrics import ServiceMetrics

REFUSE_LINGER_S = 2.0


def _refusal(max_connections: int) -> bytes:
    body = json.dumps({"error": f"server busy: {max_connections} connections open (--max-connections), "
                                "retry shortly", "status": 503}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"retry-after: {RETRY_AFTER_S}\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n")
    return head.encode() + body


def guarded_protocol(max_connections: int, header_timeout_s: float,
                     metrics: ServiceMetrics | None = None) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a connection cap and a request-header deadline (pass as ``http=``)."""
    refusal = _refusal(max_connections)

    def count(reason: str) -> None:
        if metrics is not None:
            metrics.connections_closed.labels(reason).inc()

    class GuardedH11Protocol(H11Protocol):
        _refused = False
        _header_timer: asyncio.TimerHandle | None = None
        _waiting_cycle: Any = None  # the cycle current when the deadline was armed; a new one means "headers in"

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= max_connections:
                self._refused = True
                self.transport = transport
                count("limit")
                transport.write(refusal)
                if transport.can_write_eof():
                    transport.write_eof()
                self._linger = self.loop.call_later(REFUSE_LINGER_S, transport.close)
                return
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._refused:  # read and drop what the refused client sends, until it closes
                return
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._waiting_cycle:
                self._disarm()  # a request's headers are in

        def eof_received(self) -> bool | None:
            if self._refused:
                return None  # close the transport
            return super().eof_received()

        def pause_writing(self) -> None:
            if not self._refused:
                super().pause_writing()

        def resume_writing(self) -> None:
            if not self._refused:
                super().resume_writing()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                self._linger.cancel()
                return
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            cycle = self.cycle
            super().on_response_complete()
            if not self.transport.is_closing() and self.cycle is cycle:  # no pipelined request started
                self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._waiting_cycle = self.cycle
            self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.cycle is self._waiting_cycle and not self.transport.is_closing():
                count("header_timeout")
                self.transport.close()

    return GuardedH11Protocol


def uvicorn_options(config: ServeConfig, metrics: ServiceMetrics | None = None) -> dict[str, Any]:
    """The keyword arguments ``spotdet serve`` gives ``uvicorn.run`` for these limits."""
    return {"http": guarded_protocol(config.max_connections, config.header_timeout_s, metrics)}
