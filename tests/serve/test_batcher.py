"""The batcher: grouping concurrent requests, and the cost of each request (README, `--price-per-hour`).

The cost test drives the Batcher itself with a fake clock and a stand-in model whose runs start and end
when the test says: what is under test is the cost arithmetic and the overlap accounting, not the model.
The grouping tests run the real server on real models.
"""

import asyncio
import collections
import concurrent.futures
import queue
import threading

import httpx
import pytest
from support.serve import (class_names, dynamic_batch_model, jpeg_bytes, metric, post_image,  # noqa: F401
                           start_server)

from spotdet.options import DetectOptions
from spotdet.results import Boxes, Result
from spotdet.serve.batcher import Batcher, QueueFullError
from spotdet.serve.metrics import ServiceMetrics

PRICE_PER_HOUR = 3.6  # $0.001 per busy second


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class GatedModel:
    """A dynamic-batch model whose every run waits for the test to open its gate."""

    dynamic_batch = True

    def __init__(self) -> None:
        self.runs: queue.Queue = queue.Queue()  # (images, gate) per run, in the order they start

    def infer(self, batch, options):
        gate = threading.Event()
        self.runs.put((list(batch), gate))
        assert gate.wait(10), "the test never ended this run"
        return [Result(Boxes.empty(), {}, (1, 1)) for _ in batch]

    async def next_run(self):
        return await asyncio.to_thread(self.runs.get, True, 10)


class FakeHost:
    def __init__(self, model) -> None:
        self.loaded = model

    def detector(self):
        return self.loaded


def sample(metrics: ServiceMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def test_cost_per_request_follows_the_readme_formula_with_overlapping_groups():
    """cost_usd = price/h x busy seconds of its group / 3600 / images in the group / groups running when it
    started; the dollars metric grows by price/h x the union of busy time.

    Timeline (fake clock, seconds; two groups may run at once):
      A: 2 images, runs 100-102, alone when it starts
      B: 3 images, runs 101-104, starts while A runs            -> shared by 2
      C: 1 image, queued at 101.5 (both slots busy), runs 102-103 once A is done, B still running -> shared by 2
    Busy time: A 2 s, B 3 s, C 1 s; their union is 100-104 = 4 s.
    """
    clock, model, metrics = FakeClock(), GatedModel(), ServiceMetrics()
    opts = DetectOptions()

    async def scenario():
        batcher = Batcher(FakeHost(model), metrics, max_batch=4, max_wait_ms=1, queue_size=16,
                          price_per_hour=PRICE_PER_HOUR, model_workers=2, clock=clock)
        batcher.start()
        clock.t = 100.0
        a = asyncio.create_task(batcher.submit(["a1", "a2"], opts))
        images_a, gate_a = await model.next_run()
        clock.t = 101.0
        b = asyncio.create_task(batcher.submit(["b1", "b2", "b3"], opts))
        images_b, gate_b = await model.next_run()
        clock.t = 101.5
        c = asyncio.create_task(batcher.submit(["c1"], opts))
        await asyncio.sleep(0.05)
        assert batcher.queue.qsize() == 1 and model.runs.empty()  # C waits: both slots are busy
        clock.t = 102.0
        gate_a.set()
        out_a = await a
        images_c, gate_c = await model.next_run()  # A's slot is free: C starts at 102
        clock.t = 103.0
        gate_c.set()
        out_c = await c
        clock.t = 104.0
        gate_b.set()
        out_b = await b
        await batcher.stop()
        assert (images_a, images_b, images_c) == (["a1", "a2"], ["b1", "b2", "b3"], ["c1"])
        return out_a, out_b, out_c

    out_a, out_b, out_c = asyncio.run(scenario())
    per_second = PRICE_PER_HOUR / 3600.0
    expected = {  # group: (images, busy s, groups sharing the machine, queue ms)
        "A": (out_a, 2, 2.0, 1, 0.0),
        "B": (out_b, 3, 3.0, 2, 0.0),
        "C": (out_c, 1, 1.0, 2, 500.0),
    }
    for name, (outcomes, n, busy, shared_by, queue_ms) in expected.items():
        assert len(outcomes) == n, name
        for o in outcomes:
            assert o.batch_size == n and o.batch_busy_s == pytest.approx(busy, abs=1e-12), name
            assert o.queue_ms == pytest.approx(queue_ms, abs=1e-9), name
            assert o.cost_usd == pytest.approx(per_second * busy / n / shared_by, rel=1e-12), name
    # The same numbers, written out: $0.001 per image of A, $0.0005 per image of B and of C.
    assert [o.cost_usd for o in out_a] == pytest.approx([0.001] * 2, rel=1e-12)
    assert [o.cost_usd for o in out_b] == pytest.approx([0.0005] * 3, rel=1e-12)
    assert [o.cost_usd for o in out_c] == pytest.approx([0.0005], rel=1e-12)
    # Metrics: the union of busy time (4 s), not the sum of the groups' busy time (6 s).
    assert sample(metrics, "spotdet_busy_seconds_total") == pytest.approx(4.0, rel=1e-12)
    assert sample(metrics, "spotdet_cost_dollars_total") == pytest.approx(4.0 * per_second, rel=1e-12)
    assert sample(metrics, "spotdet_images_total") == 6
    assert sample(metrics, "spotdet_batch_size_count") == 3 and sample(metrics, "spotdet_batch_size_sum") == 6


def test_a_request_whose_images_do_not_all_fit_is_refused_whole():
    model = GatedModel()

    async def scenario():
        batcher = Batcher(FakeHost(model), ServiceMetrics(), max_batch=1, max_wait_ms=0, queue_size=3,
                          price_per_hour=0.0, model_workers=1)
        batcher.start()
        first = asyncio.create_task(batcher.submit(["x"], DetectOptions()))
        _, gate = await model.next_run()  # running: the queue is empty again
        queued = asyncio.create_task(batcher.submit(["q1", "q2"], DetectOptions()))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):
            await batcher.submit(["r1", "r2"], DetectOptions())  # 2 free places are not enough for 2 + 2
        assert batcher.queue.qsize() == 2  # nothing of the refused request was queued
        gate.set()
        for _ in range(2):
            (_, g) = await model.next_run()
            g.set()
        await first, await queued
        await batcher.stop()

    asyncio.run(scenario())


def group_sizes(responses) -> collections.Counter:
    """How many responses reported each batch_size; a group of k images answers k requests with k."""
    sizes = collections.Counter(r.json()["batch_size"] for r in responses)
    for k, count in sizes.items():
        assert count % k == 0, f"{count} response(s) say batch_size {k}: not whole groups ({dict(sizes)})"
    return sizes


def test_a_dynamic_batch_model_groups_concurrent_requests(start_server, jpeg_bytes, dynamic_batch_model):
    # 9 requests at once, groups of at most 3, waiting up to 2 s to fill one, one group at a time.
    server = start_server("--model", dynamic_batch_model, "--max-batch", "3", "--max-wait-ms", "2000",
                          "--model-workers", "1")
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        responses = list(pool.map(lambda _: post_image(server.url, jpeg_bytes["chelsea"]), range(9)))
    assert [r.status_code for r in responses] == [200] * 9
    assert all("cat" in class_names(r.json()) for r in responses)
    # All 9 are queued well within 2 s of the first, so every group fills up to --max-batch: 3 groups of 3.
    assert group_sizes(responses) == {3: 9}
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "spotdet_batch_size_sum") == 9 and metric(text, "spotdet_images_total") == 9
    assert metric(text, "spotdet_batch_size_count") == 3  # 3 model calls for 9 requests


def test_a_static_model_reports_whole_groups(start_server, jpeg_bytes):
    # Static batch-1 model: no waiting, a group runs back to back; batch_size is the size of its group.
    server = start_server("--model", "fastestdet", "--max-batch", "3", "--max-wait-ms", "20")
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        responses = list(pool.map(lambda _: post_image(server.url, jpeg_bytes["chelsea"]), range(9)))
    assert [r.status_code for r in responses] == [200] * 9
    sizes = group_sizes(responses)
    assert set(sizes) <= {1, 2, 3}, sizes
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "spotdet_batch_size_sum") == 9
    assert metric(text, "spotdet_batch_size_count") == sum(count // k for k, count in sizes.items())
