"""LocalEngine: shards on real spawned worker processes."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

import psutil
import pytest

from support.batch import COCO128, FAST_MODEL
from spotdet.jobs.jobdb import Shard
from spotdet.jobs.local_engine import LocalEngine
from spotdet.jobs.worker import ShardOutcome, WorkerConfig, WorkerLostError, WorkerStartError
from spotdet.options import DetectOptions

CONFIG = WorkerConfig(model=FAST_MODEL, threads=1)


def _shards(n: int, size: int = 4) -> list[Shard]:
    paths = [str(p) for p in sorted(COCO128.glob("*.jpg"))[: n * size]]
    return [Shard(i, i * size, paths[i * size:(i + 1) * size]) for i in range(n)]


def _drain(engine: LocalEngine, timeout: float = 60) -> list:
    finished, deadline = [], time.monotonic() + timeout
    while engine.in_flight():
        assert time.monotonic() < deadline, "shards did not come back"
        finished += engine.poll(0.2)
    return finished


@contextmanager
def _engine(config: WorkerConfig = CONFIG, workers: int = 1):
    engine = LocalEngine(config, workers)
    try:
        yield engine
    finally:
        engine.close(force=True)


def test_shards_run_in_worker_processes():
    with _engine(workers=2) as engine:
        engine.wait_ready()
        assert engine.capacity == 3  # one queued beyond the workers, so none idles
        for shard in _shards(3):
            engine.submit(shard)
        finished = _drain(engine)
        assert sorted(shard.id for shard, _ in finished) == [0, 1, 2]
        assert all(isinstance(o, ShardOutcome) and o.n_ok == 4 for _, o in finished)
        assert f"pid {os.getpid()}" not in {o.worker for _, o in finished}
        assert engine.images_processed() == 12


def test_after_stop_queued_shards_come_back_undone():
    with _engine() as engine:
        engine.wait_ready()
        engine.stop()
        for shard in _shards(2):
            engine.submit(shard)
        assert [outcome for _, outcome in _drain(engine)] == [None, None]


def test_a_worker_that_cannot_start_reports_its_own_error():
    with _engine(WorkerConfig(model=FAST_MODEL, threads=1, options=DetectOptions(imgsz=640)), workers=2) as engine:
        with pytest.raises(WorkerStartError, match="fixed input of 352x352"):
            engine.wait_ready()
        engine.submit(_shards(1)[0])  # the pool is still usable: the shard fails with the same error
        [(_, result)] = _drain(engine)
        assert isinstance(result, WorkerStartError)


def test_a_killed_worker_stops_the_run():
    with _engine() as engine:
        engine.wait_ready()
        engine.submit(_shards(1, size=64)[0])
        for child in psutil.Process().children(recursive=True):
            if "spawn_main" in " ".join(child.cmdline()):
                child.kill()
        with pytest.raises(WorkerLostError, match="resume the job"):
            _drain(engine)
