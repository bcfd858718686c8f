"""Local engine: N worker processes (spawned, each loading its own Detector once) run shards.

Workers ignore SIGINT/SIGTERM: on a spot instance's shutdown every process receives SIGTERM, and the
coordinator alone decides what happens (finish the shards in flight, then stop). On Linux each worker also
asks the kernel to kill it when the coordinator dies, so a SIGKILLed job leaves no orphans burning CPU.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import signal
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from spotdet.jobs.jobdb import Shard
from spotdet.jobs.worker import ShardOutcome, ShardWorker, WorkerConfig, WorkerLostError

_worker: dict[str, Any] = {}


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: orphans stop when they next talk to the dead parent
        pass


def _init_worker(config: WorkerConfig, stop, abort, counter, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    # ShardWorker never raises here (a failed start is raised by its methods), so the pool stays usable and
    # the coordinator gets the worker's own error instead of BrokenProcessPool.
    _worker.update(worker=ShardWorker(config), stop=stop, abort=abort, counter=counter)


def _count_image() -> None:
    counter = _worker["counter"]
    with counter.get_lock():
        counter.value += 1


def _ready() -> str:
    return _worker["worker"].ready()


def _run_shard(shard: Shard) -> ShardOutcome | None:
    if _worker["stop"].is_set():  # queued before a stop request: leave it for the next run
        return None
    return _worker["worker"].run(shard, should_abort=_worker["abort"].is_set, on_image=_count_image)


class LocalEngine:
    """Shards as tasks on a spawn-context ProcessPoolExecutor; one extra task is queued so no worker idles."""

    name = "local"

    def __init__(self, config: WorkerConfig, workers: int) -> None:
        ctx = mp.get_context("spawn")
        self._stop, self._abort = ctx.Event(), ctx.Event()
        self._counter = ctx.Value("q", 0)
        self.workers = workers
        self.capacity = workers + 1
        self._pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                            initargs=(config, self._stop, self._abort, self._counter,
                                                      os.getpid()))
        self._futures: dict[cf.Future, Shard] = {}

    def wait_ready(self) -> None:
        """Block until a worker has built its Detector; raises its WorkerStartError if it could not."""
        try:
            self._pool.submit(_ready).result()
        except BrokenProcessPool as exc:
            raise WorkerLostError(f"a worker process died while starting ({exc})") from None

    def submit(self, shard: Shard) -> None:
        self._futures[self._pool.submit(_run_shard, shard)] = shard

    def in_flight(self) -> int:
        return len(self._futures)

    def images_processed(self) -> int:
        return int(self._counter.value)

    def poll(self, timeout: float) -> list[tuple[Shard, ShardOutcome | None | BaseException]]:
        done, _ = cf.wait(list(self._futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        finished = []
        for future in done:
            shard = self._futures.pop(future)
            try:
                finished.append((shard, future.result()))
            except BrokenProcessPool as exc:
                raise WorkerLostError(f"a worker process died ({exc}); resume the job to redo its shards") from None
            except Exception as exc:  # the task raised: a failed shard, or a worker that never started
                finished.append((shard, exc))
        return finished

    def stop(self) -> None:
        self._stop.set()

    def abort(self) -> None:
        self._stop.set()
        self._abort.set()

    def close(self, force: bool = False) -> None:
        if force:  # workers that did not stop in time (a hung read): kill them rather than wait forever
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()
        self._pool.shutdown(wait=not force, cancel_futures=True)
