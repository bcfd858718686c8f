"""Ray engine: the same shards as tasks on Ray actors, on a local Ray instance or an existing cluster.

Each actor is a ``ShardWorker`` (the body of a local worker process too): it loads its Detector once and
processes one shard at a time; results come back to the driver, which writes and commits them exactly like
the local engine (so the output folder only needs to exist on the driver). Actors request ``num_cpus`` = their
ONNX Runtime threads and ``num_gpus`` when a GPU device is asked for. The images must be readable at the same
paths on every node (shared storage).
"""

from __future__ import annotations

import os
from typing import Any

from spotdet.errors import UsageError
from spotdet.jobs.jobdb import Shard
from spotdet.jobs.worker import ShardOutcome, ShardWorker, WorkerConfig, WorkerLostError

_FORWARDED_ENV = ("SPOTDET_MODEL_DIR", "SPOTDET_CACHE_DIR")


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'spotdet[ray]'") from None
    return ray


class RayEngine:
    name = "ray"

    def __init__(self, config: WorkerConfig, workers: int, address: str | None = None,
                 num_cpus: float = 1.0, num_gpus: float = 0.0) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns_ray = not ray.is_initialized()  # a Ray we started is shut down again in close()
        if self._owns_ray:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except ConnectionError as exc:
                raise UsageError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
        env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
        options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        if env:
            options["runtime_env"] = {"env_vars": env}
        actor_cls = ray.remote(ShardWorker).options(**options)  # wrapped here: Ray stays an optional import
        self._actors = [actor_cls.remote(config) for _ in range(workers)]
        self._idle = list(self._actors)
        self._refs: dict[Any, tuple[Any, Shard]] = {}
        self.capacity = workers
        self._committed_images = 0

    def _get(self, ref: Any) -> Any:
        """The task's value; a task that raised raises its own exception (not Ray's wrapper with a traceback)."""
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayActorError as exc:
            raise WorkerLostError(f"a Ray worker died ({exc}); resume the job to redo its shards") from None
        except self._ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            raise cause or RuntimeError(str(exc).strip().splitlines()[-1]) from None

    def wait_ready(self) -> None:
        """Block until an actor has built its Detector; raises its WorkerStartError if it could not."""
        self._get(self._actors[0].ready.remote())

    def submit(self, shard: Shard) -> None:
        actor = self._idle.pop()
        self._refs[actor.run.remote(shard)] = (actor, shard)

    def in_flight(self) -> int:
        return len(self._refs)

    def images_processed(self) -> int:
        return self._committed_images

    def poll(self, timeout: float) -> list[tuple[Shard, ShardOutcome | None | BaseException]]:
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        finished = []
        for ref in ready:
            actor, shard = self._refs.pop(ref)
            self._idle.append(actor)
            try:
                outcome = self._get(ref)
            except WorkerLostError:
                raise
            except Exception as exc:  # the task raised: a failed shard, or a worker that never started
                finished.append((shard, exc))
                continue
            if outcome is not None:
                self._committed_images += len(outcome.records)
            finished.append((shard, outcome))
        return finished

    def stop(self) -> None:
        """Nothing is queued beyond one shard per actor, so stopping is just not submitting more."""

    def abort(self) -> None:
        for ref in list(self._refs):
            self._ray.cancel(ref, force=False)
        for actor in self._actors:
            self._ray.kill(actor)
        self._refs.clear()

    def close(self, force: bool = False) -> None:
        for actor in self._actors:
            try:
                self._ray.kill(actor)
            except Exception:  # noqa: BLE001 - an actor already gone is fine
                pass
        if self._owns_ray:
            self._ray.shutdown()
