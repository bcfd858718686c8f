"""``spotdet serve --ray``: the same HTTP API, with the model in replicas that Ray Serve autoscales (0 allowed).

Two deployments in one Ray Serve application:

* ``spotdet-model`` (``ModelReplica``): one ``ModelHost``/``Detector`` per replica, the same backends as the
  single-process server. Images from every request that reaches a replica are grouped by Ray Serve's
  ``@serve.batch`` (``--max-batch``, ``--max-wait-ms``) and run as one ``Detector.infer``. Replicas autoscale on
  ongoing requests between ``--min-replicas`` and ``--max-replicas``; with 0, the replica processes end after
  ``--idle-unload`` idle seconds (``downscale_delay_s``) and the next request starts one.
* ``spotdet-ingress`` (``Ingress``): ``create_app(config, RayDetectionService(...))``. It reads uploads, checks
  limits, the memory budget and the options, decodes and prepares each image exactly like the single-process
  service (so bad input gets the same 4xx bodies, and never wakes a replica), then sends the prepared images
  to the model deployment through a ``DeploymentHandle``. It holds no model session: only the ONNX graph's
  input shape, read once without keeping the weights.

Prepared images (decoded image + network input) travel through Ray's object store rather than the JPEG
bytes: decoding stays where the limits are enforced, and on one machine the store is shared memory.

Cost: each replica prices its batches like ``Batcher`` (busy cost, per image); the ingress counts
replica-seconds from Ray Serve's replica states (``spotdet_uptime_seconds_total``) and their price
(``spotdet_reserved_cost_dollars_total``). ``--price-per-hour`` is the price of one replica's hardware.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve.exceptions import BackPressureError
from starlette.concurrency import run_in_threadpool

from spotdet.backends.onnx_tools import dims, load_onnx, real_inputs
from spotdet.cost.formula import cost_split
from spotdet.detector import Detector, Prepared
from spotdet.errors import UsageError
from spotdet.models.ref import resolve_model
from spotdet.options import DetectOptions
from spotdet.serve.app import create_app
from spotdet.serve.batcher import BatchOutcome, QueueFullError, pixel_shares, run_jobs
from spotdet.serve.budget import MemoryBudget, RequestBudget
from spotdet.serve.config import ServeConfig
from spotdet.serve.errors import RequestTimeoutError
from spotdet.serve.host import ModelHost
from spotdet.serve.metrics import ServiceMetrics
from spotdet.serve.service import DetectionService, prepare_uploads, start_sampler
from spotdet.serve.uploads import Upload

log = logging.getLogger(__name__)

APP_NAME = "spotdet"
MODEL_DEPLOYMENT = "spotdet-model"
INGRESS_DEPLOYMENT = "spotdet-ingress"
POLL_INTERVAL_S = 0.5  # how often the ingress reads the replica count (uptime resolution)
FORWARDED_ENV = ("SPOTDET_MODEL_DIR", "SPOTDET_CACHE_DIR", "SPOTDET_HOME")
# Autoscaling metrics pushed every second instead of every 10 s, so that --idle-unload S means about S idle
# seconds (plus the look-back below) rather than half a minute; set on the local head only.
FAST_METRICS_ENV = {"RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
                    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1"}
METRICS_INTERVAL_S = 1.0
LOOK_BACK_S = 2.0
# Ray Serve's replica states, as the bill sees them: every state with a live process is paid for.
_TARGET_STATES = ("STARTING", "UPDATING", "RECOVERING", "RUNNING", "PENDING_MIGRATION")


# -- the model deployment -------------------------------------------------------------------------
@dataclass
class Work:
    """One image on its way to a replica (``run_jobs`` reads ``prepared`` and ``options``)."""

    prepared: Prepared
    options: DetectOptions
    sent: float  # wall clock (time.time()) when the ingress sent it: queue time and cold starts


@dataclass
class ReplicaOutcome:
    outcome: BatchOutcome
    replica: str  # Ray Serve's replica id
    born: float  # wall clock when the replica's constructor began
    load_s: float  # the replica's model load (its share of a cold start)
    first_in_batch: bool  # so the ingress counts each batch once


def replica_resources(config: ServeConfig) -> dict[str, Any]:
    """``ray_actor_options`` of a model replica: CPUs = its ONNX Runtime threads, a GPU when one is asked for,
    and the model directories of this machine (absolute, so that workers started elsewhere find them)."""
    env = {k: str(Path(os.environ[k]).resolve()) for k in FORWARDED_ENV if k in os.environ}
    gpu = config.device.lower().startswith(("cuda", "gpu"))
    options: dict[str, Any] = {"num_cpus": replica_threads(config), "num_gpus": 1 if gpu else 0}
    if env:
        options["runtime_env"] = {"env_vars": env}
    return options


def replica_threads(config: ServeConfig) -> int:
    """Threads per replica run: ``--threads``, else 1 (Ray adds replicas, not threads, under load)."""
    return config.threads or 1


class ModelReplica:
    """One replica: loads the model in its constructor (so Ray Serve routes to it only once it can answer),
    then runs the batches ``@serve.batch`` groups, one at a time, on a model thread."""

    def __init__(self, config: ServeConfig) -> None:
        self.born = time.time()
        self.config = dataclasses.replace(config, model_workers=1, threads=replica_threads(config),
                                          idle_unload_s=None, warm_windows=[], preload=True)
        self.host = ModelHost(self.config, ServiceMetrics())
        self.host.detector()  # the cold start
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.load_s = self.host.last_cold_start_s or 0.0
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spotdet-replica")
        self.run.set_max_batch_size(config.max_batch)
        self.run.set_batch_wait_timeout_s(config.max_wait_ms / 1000.0)
        log.info("replica %s loaded %s in %.3f s", self.replica, self.host.card.name, self.load_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)  # set from the config in __init__
    async def run(self, group: list[Work]) -> list[ReplicaOutcome]:
        started = time.time()
        loop = asyncio.get_running_loop()
        results, busy = await loop.run_in_executor(self._thread, self._infer, group)
        # One batch at a time per replica: its busy time is the replica's alone; inside the batch each image
        # pays its share of the network input pixels (as in Batcher).
        group_cost = self.config.price_per_hour * busy / 3600.0
        return [ReplicaOutcome(BatchOutcome(r, (started - w.sent) * 1000.0, len(group), busy, group_cost * share),
                               self.replica, self.born, self.load_s, i == 0)
                for i, (w, r, share) in enumerate(zip(group, results, pixel_shares(results)))]

    def _infer(self, group: list[Work]):
        start = time.perf_counter()
        results = run_jobs(self.host.detector(), group)
        return results, time.perf_counter() - start


# -- the ingress ----------------------------------------------------------------------------------
class GraphInputs:
    """The ``Backend`` fields the ingress needs (the input shape), read from the ONNX graph: no session."""

    name = "graph"
    provider = "none"

    def __init__(self, path: Path) -> None:
        model = load_onnx(path, check=False)
        self.input_shape = dims(real_inputs(model)[0])  # the proto (and its weights) is dropped here

    def run(self, tensor):  # pragma: no cover - never called: the ingress only prepares
        raise RuntimeError("the ingress does not run the model")

    def is_out_of_memory(self, exc: BaseException) -> bool:  # pragma: no cover
        return False


def ingress_model(config: ServeConfig) -> Detector:
    """The Detector's request-side half for the ingress: options, checks, decode and resize with the same code as
    the single-process service, over a backend that only knows the input shape (the model runs in the replicas).
    ``--max-pixels`` is applied by ``decode_upload``."""
    ref = resolve_model(config.model, precision=config.precision)
    return Detector(ref, backend=GraphInputs(ref.path), options=config.options)


class ReplicaSet:
    """What ``GET /models`` reports under --ray: the card, the replicas (running and target), cold starts,
    and busy vs reserved cost. Fed by the ingress's poll of Ray Serve and by the replicas' answers."""

    def __init__(self, config: ServeConfig, card, metrics: ServiceMetrics) -> None:
        self.config = config
        self.card = card
        self.metrics = metrics
        self.running = 0
        self.target = 0
        self.held = 0  # replicas with a live process (billed), stopping ones included
        self.deployment_status = "UNKNOWN"
        self.message = ""
        self.seen: set[str] = set()
        self.load_count = 0
        self.unload_count = 0
        self.last_cold_start_s: float | None = None  # a request's wait for a replica to start
        self.last_replica_load_s: float | None = None  # the model load inside that replica
        self.last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        return "warm" if self.running else ("loading" if self.target else "cold")

    def observe(self, states: dict[str, int], status: str, message: str) -> None:
        running = states.get("RUNNING", 0)
        with self._lock:
            if running < self.running:
                self.unload_count += self.running - running
            self.running = running
            self.target = sum(states.get(s, 0) for s in _TARGET_STATES)
            self.held = sum(states.values())
            self.deployment_status, self.message = status, message
        self.metrics.replicas.labels("running").set(running)
        self.metrics.replicas.labels("target").set(self.target)
        self.metrics.model_loaded.set(running)

    def answered(self, out: ReplicaOutcome, sent: float, answered: float) -> None:
        """Count a replica the first time it answers. A request sent before the replica was born waited for
        its cold start (actor process, imports, model load, first run): that wait is the cold start clients
        see, and what ``spotdet_model_cold_start_seconds`` records under --ray."""
        with self._lock:
            if out.replica in self.seen:
                return
            self.seen.add(out.replica)
            self.load_count += 1
            self.last_replica_load_s = out.load_s
            if sent < out.born:
                self.last_cold_start_s = answered - sent
        self.metrics.model_loads.inc()
        if sent < out.born:
            self.metrics.cold_start.observe(answered - sent)

    def cost(self) -> dict[str, Any]:
        m = self.metrics
        return cost_split(self.config.price_per_hour, m.total("spotdet_busy_seconds_total"),
                          m.total("spotdet_uptime_seconds_total")).to_dict()

    def status(self) -> dict[str, Any]:
        card, config = self.card, self.config
        return {
            "model": card.name, "family": card.family, "tier": card.tier, "precision": card.precision,
            "input_size": list(card.input_size), "backend": config.runtime(), "device": config.device,
            "engine": "ray", "replicas": self.running, "replicas_target": self.target,
            "min_replicas": config.replica_floor, "max_replicas": config.max_replicas,
            "threads_per_run": replica_threads(config), "deployment_status": self.deployment_status,
            "state": self.state, "load_count": self.load_count, "unload_count": self.unload_count,
            "last_cold_start_s": self.last_cold_start_s, "last_replica_load_s": self.last_replica_load_s,
            "idle_unload_s": config.idle_unload_s, "warm_windows": [], "in_warm_window": False,
            "options": config.options.to_dict(), "last_error": self.last_error, "cost": self.cost(),
            "card": {"published_map": card.published_map, "params_m": card.params_m, "license": card.license,
                     "sha256": card.sha256, "classes": len(card.names)},
        }


class RayDetectionService:
    """``DetectionService``'s interface over a Ray Serve model deployment (``create_app`` takes either).

    The queue is Ray Serve's: images in flight from this ingress are bounded by ``--queue-size`` plus what the
    replicas hold; a full queue is a 503 before decoding, as in the single-process service.
    """

    payload = DetectionService.payload  # the same answer: Result.to_dict() plus the service's keys
    batch_payload = DetectionService.batch_payload
    annotated_jpeg = staticmethod(DetectionService.annotated_jpeg)

    def __init__(self, config: ServeConfig, handle, metrics: ServiceMetrics | None = None) -> None:
        self.config = config
        self.handle = handle
        self.metrics = metrics or ServiceMetrics()
        self.model = ingress_model(config)
        self.host = ReplicaSet(config, self.model.card, self.metrics)
        self.budget = MemoryBudget(config.max_inflight_bytes, config.max_request_bytes,
                                   on_change=self.metrics.inflight_bytes.set)
        self.capacity = config.queue_size + config.max_replicas * max_ongoing(config)
        self.pending = 0  # images sent to the model deployment and not answered yet
        self.draining = False
        self._poller: asyncio.Task | None = None
        self._mark: float | None = None

    # -- life -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        self.draining = True
        while self.pending:  # answer what was sent (the proxy stops taking new requests first)
            await asyncio.sleep(0.05)
        if self._poller is not None:
            self._poller.cancel()

    async def _poll(self) -> None:
        """Read the replica states a few times a second: the replica gauges, and replica-seconds for the
        uptime and reserved cost (each interval is billed at the count seen at its start)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                states, status, message = await loop.run_in_executor(None, _replica_states)
                now = time.monotonic()
                if self._mark is not None:
                    self.metrics.add_uptime(self.host.held * (now - self._mark), self.config.price_per_hour)
                self._mark = now
                self.host.observe(states, status, message)
            except Exception:  # never let the poll die (the controller may be restarting)
                log.exception("reading the replica states failed")
            await asyncio.sleep(POLL_INTERVAL_S)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready with zero replicas (the next request starts one); not while draining or when the model
        deployment failed."""
        failed = self.host.deployment_status in ("DEPLOY_FAILED", "UNHEALTHY")
        ready = not self.draining and not failed
        return ready, {"state": self.host.state, "draining": self.draining, "replicas": self.host.running,
                       "last_error": self.host.message if failed else None, "ready": ready}

    def queue_depth(self) -> int:
        return self.pending

    # -- requests ---------------------------------------------------------------------------------
    async def detect(self, uploads: list[Upload], overrides: dict[str, Any], budget: RequestBudget | None = None,
                     keep_image: bool = False) -> list[BatchOutcome]:
        """Check, decode and prepare like ``DetectionService.detect``, then run each image on a replica."""
        if budget is None:
            with self.budget.request() as own:
                return await self.detect(uploads, overrides, own, keep_image)
        model, config = self.model, self.config
        options = model.options_for(**overrides)
        model.check_options(options)
        if self.pending + len(uploads) > self.capacity:
            raise QueueFullError
        prepared, _ = await run_in_threadpool(prepare_uploads, model, uploads, options, config.max_pixels, budget,
                                              keep_image)  # the leases end with the request: replicas copy
        return await self._run(prepared, options)

    async def _run(self, prepared: list[Prepared], options: DetectOptions) -> list[BatchOutcome]:
        sent = time.time()
        self.pending += len(prepared)
        responses = [self.handle.run.remote(Work(p, options, sent)) for p in prepared]
        try:
            answers = await asyncio.wait_for(asyncio.gather(*responses), self.config.request_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            for r in responses:
                r.cancel()
            raise RequestTimeoutError(self.config.request_timeout_s) from None
        except BackPressureError:
            raise QueueFullError from None
        except ray.exceptions.RayTaskError as exc:  # the replica's own exception, so the handlers answer it
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            raise cause or RuntimeError(str(exc).strip().splitlines()[-1]) from None
        finally:
            self.pending -= len(prepared)
        answered = time.time()
        for out in answers:
            self._count(out, sent, answered)
        return [out.outcome for out in answers]

    def _count(self, out: ReplicaOutcome, sent: float, answered: float) -> None:
        o = out.outcome
        self.host.answered(out, sent, answered)
        self.metrics.images.inc()
        if out.first_in_batch:  # once per batch: the batch's busy time is the replica's alone
            self.metrics.batch_size.observe(o.batch_size)
            self.metrics.busy.inc(o.batch_busy_s)
            self.metrics.cost.inc(self.config.price_per_hour * o.batch_busy_s / 3600.0)
        if o.result.notes and out.first_in_batch:
            self.metrics.fallbacks.inc()


def _replica_states() -> tuple[dict[str, int], str, str]:
    """(replica count by state, deployment status, its message) of the model deployment, from Serve."""
    app = serve.status().applications.get(APP_NAME)
    dep = app.deployments.get(MODEL_DEPLOYMENT) if app else None
    if dep is None:
        return {}, "UNKNOWN", ""
    return ({str(getattr(k, "value", k)): v for k, v in dep.replica_states.items()}, str(dep.status.value),
            dep.message)


@serve.ingress()
class Ingress:
    """The HTTP side: ``create_app`` over a ``RayDetectionService`` bound to the model deployment."""

    def __init__(self, config: ServeConfig, model) -> None:
        self.config = config
        self.model = model

    def __serve_build_asgi_app__(self):
        return create_app(self.config, RayDetectionService(self.config, self.model))


# -- the application ------------------------------------------------------------------------------
def max_ongoing(config: ServeConfig) -> int:
    """Requests one replica takes at once: two batches' worth, so the next batch fills while one runs."""
    return 2 * config.max_batch


def autoscaling(config: ServeConfig) -> dict[str, Any]:
    """Ray Serve's autoscaling_config for the model replicas.

    The target is half a batch of ongoing requests per replica: a replica that has a full batch waiting
    asks for another. ``--idle-unload`` is the downscale delay (to zero too); without it Ray's default
    (600 s) applies. Up-scaling reacts at once: a request waiting on zero replicas is a cold start already.
    """
    floor = config.replica_floor
    scaling: dict[str, Any] = {"min_replicas": floor, "max_replicas": config.max_replicas,
                               "initial_replicas": max(floor, 1 if config.preload else 0),
                               "target_ongoing_requests": max(1.0, config.max_batch / 2),
                               "upscale_delay_s": 0.0, "metrics_interval_s": METRICS_INTERVAL_S,
                               "look_back_period_s": LOOK_BACK_S}
    if config.idle_unload_s is not None:
        scaling["downscale_delay_s"] = config.idle_unload_s
        scaling["downscale_to_zero_delay_s"] = config.idle_unload_s
    return scaling


def build_application(config: ServeConfig):
    """The bound Serve application: ingress -> model deployment."""
    model = serve.deployment(ModelReplica, name=MODEL_DEPLOYMENT, ray_actor_options=replica_resources(config),
                             autoscaling_config=autoscaling(config), max_ongoing_requests=max_ongoing(config),
                             max_queued_requests=config.queue_size)
    env = replica_resources(config).get("runtime_env")
    ingress = serve.deployment(Ingress, name=INGRESS_DEPLOYMENT, num_replicas=1,
                               ray_actor_options={"num_cpus": 0, **({"runtime_env": env} if env else {})},
                               max_ongoing_requests=max(100, config.max_connections))
    return ingress.bind(config, model.bind(config))


def portable(config: ServeConfig) -> ServeConfig:
    """The config as replicas on other processes (or nodes) need it: a model given as a file path made
    absolute; the test clock dropped (it cannot travel)."""
    model = config.model
    if Path(model).suffix == ".onnx" and Path(model).exists():
        model = str(Path(model).resolve())
    return dataclasses.replace(config, model=model, clock=None)


class RayServer:
    """A running Ray Serve application for ``config``: starts (or joins) Ray, deploys, and shuts down what it
    started. ``with RayServer(config): ...`` serves on ``config.host:config.port`` inside the block."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = portable(config)
        self._owns_ray = False

    def start(self) -> RayServer:
        config = self.config
        resolve_model(config.model, precision=config.precision)  # unknown model: fail here, in one line
        if not ray.is_initialized():
            if config.ray_address is None:  # a head we start inherits these; a cluster sets its own
                for name, value in FAST_METRICS_ENV.items():
                    os.environ.setdefault(name, value)
            try:
                ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, namespace="spotdet")
            except ConnectionError as exc:
                raise UsageError(f"cannot connect to the Ray cluster at {config.ray_address}: {exc}") from None
            self._owns_ray = True
        serve.start(proxy_location="HeadOnly", http_options={"host": config.host, "port": config.port})
        serve.run(build_application(config), name=APP_NAME, route_prefix="/")  # returns once it is RUNNING
        return self

    def stop(self) -> None:
        try:
            serve.shutdown()
        finally:
            if self._owns_ray:
                ray.shutdown()

    def __enter__(self) -> RayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(config: ServeConfig) -> None:
    """Run until SIGTERM or Ctrl-C, then shut the application and a Ray this process started down.

    The handlers are installed after ``ray.init``, which installs its own (that would end the process
    without shutting the local Ray head down).
    """
    stop = threading.Event()
    sampler = start_sampler(config.monitor_db, pid=None)  # the machine, sampled from this process
    try:
        server = RayServer(config).start()
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            stop.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            server.stop()
    finally:
        if sampler:
            sampler.stop()
