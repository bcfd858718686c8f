"""How much request data the service holds in memory, per request and for the whole server.

Every byte a request makes the server hold is taken from the budget before it is allocated:

- the body as it arrives, counted twice while it is read and parsed (the received bytes and the copy that
  becomes the image bytes), then once;
- each image before it is decoded, from the width and height in its header: ``w * h * 3`` for the decoded
  pixels plus ``W * H * 3`` for the network input it is resized onto (``W x H``, the model's input size),
  and ``w * h * 3`` more with ``annotate=true`` (the drawn copy);
- while a request's images are decoded (one after the other), ``w * h * 3`` more for the largest: OpenCV's
  decoder holds a second copy of the pixels until it returns (measured: a 114 MiB image peaks at 229 MiB,
  JPEG and PNG alike), given back once they are decoded.

A request that would hold more than ``per_request`` bytes is refused whole (413, it can never fit); one that
finds the server's ``total`` already taken is refused (503 with ``Retry-After``) and may come back. Nothing is
decoded before its bytes are granted, so refusals cost no decoding.

A request gives its bytes back when it answers, except the bytes of images still held by the batcher (a
request that timed out leaves its images in the queue until the worker drops them): those are ``Lease`` s,
given back when both the request and the batcher have let go. A request answers on every path (success, a
refusal, a failed model run, cancellation) by leaving its ``with budget.request()`` block; once closed, its
share takes nothing more: a decoding thread that outlives a cancelled request gets ``BudgetClosedError``
instead of bytes that nobody would give back.
"""

from __future__ import annotations

import threading
from typing import Callable

MIB = 1024 * 1024
RETRY_AFTER_S = 1


class RequestTooLargeError(Exception):
    """The request needs more memory than one request may hold (413)."""


class BudgetFullError(Exception):
    """The server's memory budget is taken by requests in flight (503, retry later)."""


class BudgetClosedError(Exception):
    """The request has already answered (it was cancelled while its images were being read): nothing more is
    taken for it, since nothing would give it back."""


def image_bytes(width: int, height: int, input_hw: tuple[int, int], keep_image: bool = False) -> int:
    """Bytes one image holds once decoded: its BGR pixels, its network input, and a drawn copy if kept."""
    decoded = width * height * 3
    return decoded + input_hw[0] * input_hw[1] * 3 + (decoded if keep_image else 0)


def decode_transient(sizes: list[tuple[int, int]]) -> int:
    """Extra bytes while images are decoded one after the other: a second copy of the largest."""
    return max((w * h * 3 for w, h in sizes), default=0)


def mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


class MemoryBudget:
    """Bytes in flight for the whole server (``total``) and for one request (``per_request``); thread-safe."""

    def __init__(self, total: int, per_request: int, on_change: Callable[[int], None] | None = None) -> None:
        if per_request > total:
            raise ValueError("per_request cannot exceed total")
        self.total = total
        self.per_request = per_request
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._on_change = on_change

    def request(self) -> RequestBudget:
        return RequestBudget(self)

    def _take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.total:
                return False
            self.used += n
            self.peak = max(self.peak, self.used)
            self._changed()
        return True

    def _give(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self.used -= n
            self._changed()

    def _changed(self) -> None:
        """Report ``used`` (under the lock: reported outside it, a thread's older figure could land after a
        newer one and leave the gauge showing bytes that were given back)."""
        if self._on_change:
            self._on_change(self.used)


class Lease:
    """Bytes held by more than one party (the request, the batcher); given back when the last one drops it."""

    def __init__(self, budget: MemoryBudget, nbytes: int) -> None:
        self.budget = budget
        self.nbytes = nbytes
        self._holders = 1
        self._lock = threading.Lock()

    def hold(self) -> None:
        with self._lock:
            self._holders += 1

    def drop(self) -> None:
        with self._lock:
            self._holders -= 1
            last = self._holders == 0
        if last:
            self.budget._give(self.nbytes)


class RequestBudget:
    """One request's share of the budget: ``take`` before allocating; ``close`` (or ``with``) gives it back.

    Thread-safe: the request closes it on the event loop while its images may still be taken, leased and
    given back by a thread-pool job (decoding) that outlives a cancelled request.
    """

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0  # bytes this request holds outright
        self.leased = 0  # bytes handed over as leases (still this request's, for the per-request limit)
        self._leases: list[Lease] = []
        self._closed = False
        self._lock = threading.Lock()

    def take(self, n: int, what: str) -> None:
        """Hold ``n`` more bytes for ``what``; RequestTooLargeError or BudgetFullError when they do not fit,
        BudgetClosedError once the request has answered."""
        if n <= 0:
            return
        budget = self.budget
        with self._lock:
            if self._closed:
                raise BudgetClosedError(f"the request has already answered: {what} is not read")
            mine = self.held + self.leased + n
            if mine > budget.per_request:
                raise RequestTooLargeError(
                    f"request too large: it needs {mib(mine)} of memory in all ({what}), more than the "
                    f"{mib(budget.per_request)} one request may hold (--max-request-mb); send fewer or smaller "
                    "images")
            if not budget._take(n):
                raise BudgetFullError(
                    f"server busy: {mib(budget.used)} of its {mib(budget.total)} memory budget for requests is in "
                    f"use (--max-inflight-mb) and {what} needs {mib(n)} more; retry shortly")
            self.held += n

    def give(self, n: int) -> None:
        """Give back ``n`` of the bytes this request holds outright."""
        with self._lock:
            self._give(n)

    def _give(self, n: int) -> None:
        n = min(n, self.held)
        self.held -= n
        self.budget._give(n)

    def lease(self, n: int) -> Lease:
        """Turn ``n`` held bytes into a Lease that another holder (the batcher) can keep past this request."""
        with self._lock:
            n = min(n, self.held)  # 0 once the request has answered: its bytes went back when it closed
            self.held -= n
            self.leased += n
            lease = Lease(self.budget, n)
            if not self._closed:
                self._leases.append(lease)
            return lease

    def close(self) -> None:
        """Give back what the request holds and drop its hold on its leases; later takes are refused."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._give(self.held)
            leases, self._leases = self._leases, []
        for lease in leases:
            lease.drop()

    def __enter__(self) -> RequestBudget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
