"""The coordinator of a batch job: plan shards, hand them to an engine, commit results, survive preemption.

Crash safety, step by step, for one shard:
  1. the shard is marked ``running`` and given to a worker (a crash here: ``running`` goes back to
     ``pending`` on the next start);
  2. the worker returns its records; the coordinator writes them to a temp file, fsyncs it and renames it
     to ``shards/shard-<id>.jsonl`` (a crash here leaves a temp file or a file of a shard not marked done:
     both are deleted on the next start and the shard is redone);
  3. one SQLite transaction marks the shard ``done`` and stores its failed items.
So after a crash at any moment each shard is either committed once or absent, and the final merge reads
each committed shard's file exactly once.

On SIGTERM (or Ctrl-C) no new shard starts, the shards in flight finish and commit, and the process exits
with EXIT_PREEMPTED. If they have not finished after ``grace`` seconds they are abandoned (redone on resume).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from spotdet.errors import SpotdetError, UsageError
from spotdet.jobs.jobdb import DB_NAME, JobDB, Shard
from spotdet.jobs.outputs import discard_uncommitted, merge, write_shard
from spotdet.vision.sources import iter_sources, source_kind
from spotdet.jobs.worker import DetectSettings

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped cleanly on a signal; run `spotdet batch resume` to continue
LOCK_NAME = "job.lock"
FORMATS = ("jsonl", "coco")
ENGINES = ("local", "ray")


class JobLockedError(SpotdetError):
    """Another process is running this job."""


@dataclass(frozen=True)
class JobSpec:
    """What defines a job's results. Stored in the job database; a resume always uses the stored one."""

    source: str
    model: str
    family: str | None = None
    conf: float = 0.25
    iou: float = 0.6
    max_det: int = 300
    imgsz: int | None = None
    shard_size: int = 64
    fmt: str = "jsonl"
    annotations: str | None = None
    exif_orientation: bool | None = None  # None: on for jsonl, off for coco (COCO boxes use stored pixels)
    save_annotated: bool = False

    def normalised(self) -> "JobSpec":
        if self.fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.shard_size < 1:
            raise UsageError(f"--shard-size must be >= 1, got {self.shard_size}")
        source_kind(self.source)  # raises UsageError when the source does not exist
        annotations = self.annotations
        if annotations is not None:
            annotations = os.path.abspath(os.path.expanduser(annotations))
            if not os.path.isfile(annotations):
                raise UsageError(f"{self.annotations}: no such annotation file")
        exif = self.exif_orientation if self.exif_orientation is not None else self.fmt == "jsonl"
        return JobSpec(**{**asdict(self), "source": os.path.abspath(os.path.expanduser(self.source)),
                          "annotations": annotations, "exif_orientation": exif})


@dataclass(frozen=True)
class RunOptions:
    """How this run executes; may change between resumes without changing the results."""

    workers: int = 1
    engine: str = "local"
    device: str = "auto"
    threads: int | None = None
    ray_address: str | None = None
    gpus_per_worker: float | None = None
    grace: float = 20.0


@dataclass
class RunSummary:
    state: str  # complete | preempted | incomplete
    out_dir: Path
    images_total: int
    images_done: int
    images_ok: int
    images_failed: int
    run_images: int
    run_seconds: float
    outputs: list[Path] = field(default_factory=list)
    shard_errors: list[tuple[int, str]] = field(default_factory=list)
    resumed: bool = False

    @property
    def images_per_s(self) -> float:
        return self.run_images / self.run_seconds if self.run_seconds > 0 else 0.0


class Reporter:
    """Callbacks the CLI implements (progress bar, messages); the defaults do nothing."""

    def message(self, text: str) -> None: ...
    def start(self, total: int, done: int) -> None: ...
    def update(self, done: int) -> None: ...
    def finish(self) -> None: ...


# -- locking ---------------------------------------------------------------------------------------
class JobLock:
    """An exclusive flock on RESULTS_DIR/job.lock; the kernel drops it when the process dies, even on SIGKILL."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME
        self.fh = None

    def __enter__(self) -> "JobLock":
        import fcntl  # POSIX only; imported here so the CLI still loads elsewhere

        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "?"
            self.fh.close()
            raise JobLockedError(f"{self.path.parent}: another spotdet batch process (pid {holder}) is running "
                                 "this job") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()


def lock_holder(out_dir: Path) -> int | None:
    """The pid running the job in ``out_dir``, or None when nobody holds its lock."""
    import fcntl

    path = Path(out_dir) / LOCK_NAME
    if not path.exists():
        return None
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


# -- planning --------------------------------------------------------------------------------------
def _chunks(paths: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for path in paths:
        chunk.append(path)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _coco_mapping(spec: JobSpec, names: dict[int, str]) -> tuple[dict[int, int], Callable[[int, str], int], str | None]:
    """(class -> category id, (index, path) -> image id, annotation file used) for the coco format."""
    from spotdet.eval.coco import category_map, default_category_ids, read_annotations

    ann = spec.annotations
    if ann is None and source_kind(spec.source) == "folder":
        for candidate in (Path(spec.source) / "instances.json", Path(spec.source).parent / "instances.json"):
            if candidate.is_file():
                ann = str(candidate)
                break
    if ann is None:
        return default_category_ids(names), lambda index, path: index + 1, None
    images, categories = read_annotations(ann)
    cat_ids = category_map(names, categories)
    by_name: dict[str, int] = {}
    for info in images:
        by_name.setdefault(info["file_name"], info["id"])
        by_name.setdefault(os.path.basename(info["file_name"]), info["id"])
    next_id = max((info["id"] for info in images), default=0) + 1

    def image_id(index: int, path: str) -> int:
        # Images the annotations do not list get fresh ids above theirs.
        return by_name.get(os.path.basename(path), next_id + index)

    return cat_ids, image_id, ann


def _plan(db: JobDB, spec: JobSpec, names: dict[int, str], reporter: Reporter) -> None:
    reporter.message(f"planning shards of {spec.shard_size} image(s) from {spec.source}")
    coco: dict[str, Any] | None = None
    image_id = None
    if spec.fmt == "coco":
        cat_ids, image_id, ann = _coco_mapping(spec, names)
        coco = {"cat_ids": {str(k): v for k, v in cat_ids.items()}, "annotations": ann}

    def shards() -> Iterator[Shard]:
        start = 0
        for sid, paths in enumerate(_chunks(iter_sources(spec.source), spec.shard_size)):
            ids = [image_id(start + k, p) for k, p in enumerate(paths)] if image_id else None
            yield Shard(sid, start, paths, ids)
            start += len(paths)

    settings = {"spec": asdict(spec), "coco": coco}
    if db.plan(settings, shards()) == 0:
        with db.transaction():
            db.conn.execute("DELETE FROM meta WHERE key='planned'")
        raise UsageError(f"{spec.source}: no images found")


# -- the run ---------------------------------------------------------------------------------------
def default_threads(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def _make_engine(settings: DetectSettings, opts: RunOptions):
    if opts.engine == "local":
        from spotdet.jobs.local_engine import LocalEngine

        return LocalEngine(settings, opts.workers)
    from spotdet.jobs.ray_engine import RayEngine

    gpus = opts.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if opts.device in ("cuda", "tensorrt") else 0.0
    return RayEngine(settings, opts.workers, address=opts.ray_address, num_cpus=float(settings.threads or 1),
                     num_gpus=gpus)


class _Signals:
    """SIGTERM/SIGINT -> a stop request; a second signal -> abort now. Only installed in the main thread."""

    def __init__(self) -> None:
        self.count = 0
        self.first_at: float | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self.first_at is None:
            self.first_at = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_job(out_dir: str | Path, spec: JobSpec | None, opts: RunOptions = RunOptions(),
            reporter: Reporter | None = None) -> RunSummary:
    """Run (or, with ``spec=None``, resume) the job in ``out_dir``; see the module docstring.

    Starting ``run`` again on a folder holding the same unfinished job continues it, so a spot instance's
    start-up script can simply repeat the original command.
    """
    reporter = reporter or Reporter()
    out_dir = Path(out_dir).expanduser().absolute()
    if opts.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {opts.workers}")
    if opts.engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {opts.engine!r}")
    if opts.engine == "ray":
        from spotdet.jobs.ray_engine import import_ray

        import_ray()  # fail before any work when the extra is missing
    if spec is None and not (out_dir / DB_NAME).is_file():
        raise UsageError(f"{out_dir}: no batch job here (no {DB_NAME}); start one with `spotdet batch run`")
    if spec is not None:
        spec = spec.normalised()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    with JobLock(out_dir), JobDB(out_dir / DB_NAME) as db:
        resumed = db.is_planned()
        if resumed:
            stored = JobSpec(**db.settings()["spec"])
            if spec is not None and spec != stored:
                diff = ", ".join(f"{k}: {getattr(stored, k)!r} -> {getattr(spec, k)!r}"
                                 for k in asdict(stored) if getattr(stored, k) != getattr(spec, k))
                raise UsageError(f"{out_dir} holds a different job ({diff}); use another --out, or "
                                 f"`spotdet batch resume {out_dir}` to continue the stored one")
            spec = stored
        elif spec is None:
            raise UsageError(f"{out_dir}: the job was never fully planned; start it again with `spotdet batch run`")
        threads = opts.threads or (default_threads(opts.workers) if opts.engine == "local" else 1)
        # Load the model once here: an unknown model, a missing file or a bad device fails now, clearly,
        # rather than inside every worker.
        from spotdet.detector import Detector

        probe = Detector(spec.model, device=opts.device, threads=1, family=spec.family, conf=spec.conf,
                         iou=spec.iou, max_det=spec.max_det)
        probe.input_size(spec.imgsz)
        names = probe.names
        del probe
        if not resumed:
            _plan(db, spec, names, reporter)
        coco = db.settings().get("coco")
        settings = DetectSettings(
            model=spec.model, family=spec.family, device=opts.device, threads=threads, conf=spec.conf,
            iou=spec.iou, max_det=spec.max_det, imgsz=spec.imgsz, exif_orientation=bool(spec.exif_orientation),
            coco_cat_ids={int(k): v for k, v in coco["cat_ids"].items()} if coco else None,
            annotated_dir=str(out_dir / "annotated") if spec.save_annotated else None)
        return _execute(db, out_dir, spec, settings, opts, reporter, resumed)


def _execute(db: JobDB, out_dir: Path, spec: JobSpec, settings: DetectSettings, opts: RunOptions,
             reporter: Reporter, resumed: bool) -> RunSummary:
    db.recover()
    removed = discard_uncommitted(out_dir, set(db.done_shard_ids()))
    if removed:
        reporter.message(f"discarded {removed} uncommitted shard file(s) from an interrupted run")
    counts = db.counts()
    run_id = db.start_run(os.getpid(), opts.engine, opts.workers)
    started = time.monotonic()
    run_images = 0
    outcome = "complete"
    running: dict[int, Shard] = {}
    if not counts.complete:
        reporter.message(f"{'resuming' if resumed else 'running'}: {counts.images_total - counts.images_done} "
                         f"of {counts.images_total} image(s) to do, {opts.workers} {opts.engine} worker(s), "
                         f"{settings.threads} thread(s) each")
        engine = _make_engine(settings, opts)
        reporter.start(counts.images_total, counts.images_done)
        force_close = False
        try:
            with _Signals() as signals:
                todo = db.todo()
                aborted_at: float | None = None
                exhausted = False
                while True:
                    while not signals.count and not exhausted and engine.in_flight() < engine.capacity:
                        shard = next(todo, None)
                        if shard is None:
                            exhausted = True
                            break
                        db.mark_running(shard.id)
                        running[shard.id] = shard
                        engine.submit(shard)
                    if engine.in_flight() == 0:
                        break
                    for shard, result in engine.poll(0.2):
                        running.pop(shard.id, None)
                        if result is None:
                            db.mark_pending(shard.id)
                        elif isinstance(result, BaseException):
                            db.mark_error(shard.id, f"{type(result).__name__}: {result}")
                            reporter.message(f"shard {shard.id} failed: {result}")
                        else:
                            write_shard(out_dir, shard.id, result.records)
                            db.commit_shard(shard.id, result.n_ok, result.failures, result.seconds, run_id)
                            run_images += len(result.records)
                    reporter.update(counts.images_done + max(run_images, engine.images_processed()))
                    if signals.count:
                        if outcome == "complete":
                            outcome = "preempted"
                            engine.stop()
                            reporter.message("stop requested: finishing the shard(s) in flight, then exiting")
                        waited = time.monotonic() - (signals.first_at or time.monotonic())
                        if aborted_at is None and (signals.count > 1 or waited > opts.grace):
                            aborted_at = time.monotonic()
                            engine.abort()
                        if aborted_at is not None and time.monotonic() - aborted_at > 5.0:
                            force_close = True
                            break
        finally:
            for shard_id in running:
                db.mark_pending(shard_id)
            engine.close(force=force_close)
            reporter.finish()
    counts = db.counts()
    errors = db.shard_errors()
    outputs: list[Path] = []
    if counts.complete:
        outcome = "complete"
        outputs = merge(out_dir, db.done_shard_ids(), spec.fmt)
        db.set_meta("merged", {"at": time.time(), "outputs": [str(p) for p in outputs]})
    elif outcome != "preempted":
        outcome = "incomplete"
    db.end_run(run_id, outcome)
    return RunSummary(outcome, out_dir, counts.images_total, counts.images_done, counts.images_ok,
                      counts.images_failed, run_images, time.monotonic() - started, outputs, errors, resumed)
