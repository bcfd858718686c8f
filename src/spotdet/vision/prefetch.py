"""Bounded read-ahead: run a preparation function on upcoming items in a background thread."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

from spotdet.errors import SpotdetError

T = TypeVar("T")
R = TypeVar("R")


def _capture(fn: Callable[[T], R], item: T) -> R | SpotdetError:
    try:
        return fn(item)
    except SpotdetError as exc:  # expected per-item failures travel as values, in order
        return exc


def prefetched(fn: Callable[[T], R], items: Iterable[T], depth: int = 2) -> Iterator[tuple[T, R | SpotdetError]]:
    """Yield ``(item, fn(item))`` in order, computing up to ``depth`` results ahead in one worker thread.

    A SpotdetError raised by ``fn`` is yielded as the result instead of stopping the stream; any other
    exception propagates. ``depth=0`` runs everything inline (no thread).
    """
    if depth <= 0:
        for item in items:
            yield item, _capture(fn, item)
        return
    pending: deque[tuple[T, Future]] = deque()
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="spotdet-prefetch") as pool:
        try:
            for item in iterator:
                pending.append((item, pool.submit(_capture, fn, item)))
                if len(pending) > depth:
                    head, future = pending.popleft()
                    yield head, future.result()
            while pending:
                head, future = pending.popleft()
                yield head, future.result()
        finally:
            for _, future in pending:
                future.cancel()
