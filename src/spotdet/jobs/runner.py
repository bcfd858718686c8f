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

import os
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotdet.errors import UsageError
from spotdet.jobs.fingerprint import fingerprint_changes, model_fingerprint
from spotdet.jobs.jobdb import DB_NAME, Counts, JobDB, JobStorageError, Shard, storage_error
from spotdet.jobs.lock import JobLock
from spotdet.jobs.outputs import (DamagedShardError, discard_uncommitted, merge, shard_path, writable_folder,
                                  write_shard)
from spotdet.jobs.planning import coco_category_ids, plan_job
from spotdet.jobs.spec import JobSpec, RunOptions
from spotdet.jobs.worker import ShardOutcome, WorkerConfig, WorkerStartError
from spotdet.models.ref import ModelRef, resolve_model

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped cleanly on a signal; run `spotdet batch resume` to continue
ABORT_WAIT_S = 5.0  # after abandoning the shards in flight, how long workers get to notice before being killed


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
    def warning(self, text: str) -> None: self.message(text)
    def start(self, total: int, done: int) -> None: ...
    def update(self, done: int) -> None: ...
    def finish(self) -> None: ...


def run_job(out_dir: str | Path, spec: JobSpec | None, opts: RunOptions = RunOptions(),
            reporter: Reporter | None = None) -> RunSummary:
    """Run (or, with ``spec=None``, resume) the job in ``out_dir``; see the module docstring.

    Starting ``run`` again on a folder holding the same unfinished job continues it, so a spot instance's
    start-up script can simply repeat the original command. A job whose model changed since it was planned
    is refused (``jobs/fingerprint.py``). A job database SQLite cannot use raises JobStorageError; a folder
    that cannot be created or written raises OSError naming it before anything runs, and a shard file that
    cannot be written (disk full) an OSError saying how to continue.
    """
    reporter = reporter or Reporter()
    out_dir = Path(out_dir).expanduser().absolute()
    opts.check()
    if opts.engine == "ray":
        from spotdet.jobs.ray_engine import import_ray

        import_ray()  # fail before any work when the extra is missing
    if spec is None and not (out_dir / DB_NAME).is_file():
        raise UsageError(f"{out_dir}: no batch job here (no {DB_NAME}); start one with `spotdet batch run`")
    if spec is not None:
        spec = spec.normalised()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder")
    writable_folder(out_dir)
    db_path = out_dir / DB_NAME
    try:
        # resume opens an existing job only: an emptied job.db is an error, not a job "never fully planned"
        with JobLock(out_dir), JobDB(db_path, create=spec is not None) as db:
            return _run_locked(db, out_dir, spec, opts, reporter)
    except sqlite3.Error as exc:
        raise storage_error(db_path, exc, out_dir) from None


def _run_locked(db: JobDB, out_dir: Path, spec: JobSpec | None, opts: RunOptions,
                reporter: Reporter) -> RunSummary:
    resumed = db.is_planned()
    spec = _job_to_run(db, spec, out_dir)
    ref = _check_model(spec, opts)
    fingerprint = model_fingerprint(ref, spec)
    if resumed:
        _check_fingerprint(db, fingerprint, out_dir, reporter)
    else:
        reporter.message(f"planning shards of {spec.shard_size} image(s) from {spec.source}")
        plan_job(db, spec, dict(enumerate(ref.card.names)), fingerprint)
    threads = opts.threads or (default_threads(opts.workers) if opts.engine == "local" else 1)
    config = WorkerConfig(
        model=spec.model, family=spec.family, options=spec.options, device=opts.device, backend=opts.backend,
        threads=threads, exif_orientation=bool(spec.exif_orientation),
        coco_cat_ids=coco_category_ids(db.stored_job()),
        annotated_dir=str(out_dir / "annotated") if spec.save_annotated else None,
        max_pixels=spec.max_pixels, model_sha256=fingerprint["sha256"])
    try:
        return _JobLoop(db, out_dir, spec, config, opts, reporter, resumed).run()
    except WorkerStartError:
        if not resumed and not db.done_shard_ids():
            # Nothing was done: forget the plan, so the corrected command (say another --imgsz) plans the
            # job afresh instead of being refused as "a different job".
            db.unplan()
        raise
    except OSError as exc:  # a shard file could not be written (disk full, ...): the same error, saying what now
        raise OSError(exc.errno, f"{exc.strerror or exc}; the shards committed so far are kept: fix this, then "
                                 f"continue with `spotdet batch resume {out_dir}`",
                      exc.filename or str(out_dir)) from exc


def _job_to_run(db: JobDB, spec: JobSpec | None, out_dir: Path) -> JobSpec:
    """The stored job when ``out_dir`` holds one (``spec`` must then be None or the same job), else ``spec``."""
    if db.is_planned():
        stored = JobSpec.from_dict(db.stored_job()["spec"])
        if spec is not None and spec != stored:
            raise UsageError(f"{out_dir} holds a different job ({', '.join(stored.differences(spec))}); use "
                             f"another --out, or `spotdet batch resume {out_dir}` to continue the stored one")
        return stored
    if spec is None:
        raise UsageError(f"{out_dir}: the job was never fully planned; start it again with `spotdet batch run`")
    return spec


def _check_fingerprint(db: JobDB, current: dict[str, Any], out_dir: Path, reporter: Reporter) -> None:
    """Refuse to continue a planned job with another model than it was planned with; record the fingerprint of
    a job planned before fingerprints existed (saying so: its committed shards cannot be checked)."""
    job = db.stored_job()
    stored = job.get("fingerprint")
    if stored is None:
        db.set_meta("settings", {**job, "fingerprint": current})
        reporter.warning(f"{out_dir}: this job was planned by an earlier spotdet, which did not record which model "
                         f"file it used; recorded {current['model']['path']} (sha256 {current['sha256']}) for it "
                         "now: the shards committed before cannot be checked, later resumes are")
        return
    changes = fingerprint_changes(stored, current)
    if changes:
        raise UsageError(f"{out_dir}: the model changed since the job was planned ({'; '.join(changes)}); "
                         "continuing would mix two models' results in one output. Put the original model file "
                         "back, or start a new job with another --out")


def _check_model(spec: JobSpec, opts: RunOptions) -> ModelRef:
    """The resolved model (card and file), after the checks a card and a name allow.

    They fail here, before planning and without loading the model: an unknown model or a missing file, a file
    that fails its card's sha256, an unknown class, an unknown device or backend (or one that cannot run on
    that device), and (local engine) a GPU device whose ONNX Runtime provider is not installed. What only
    loading the model tells (a file the runtime rejects, an imgsz a fixed-shape model cannot take, a GPU that
    will not start) is raised by the first worker, before any shard is handed out (``_JobLoop``); a Ray
    cluster's driver may have no GPU, so only its workers check that one. (Loading the model here instead would
    cost a second load and, on a GPU, a CUDA context the coordinator would hold for the whole job.)
    """
    from spotdet.backends import choose_backend
    from spotdet.backends.onnxruntime import DEVICES, choose_providers

    ref = resolve_model(spec.model, spec.family)
    card = ref.card
    spec.options.class_ids(dict(enumerate(card.names)))
    if opts.device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got {opts.device!r}")
    # An unknown backend, or one that cannot run on this device; then a GPU provider ONNX Runtime lacks here.
    runtime = choose_backend(opts.backend, opts.device, model_precision=card.precision)
    if runtime == "onnxruntime" and opts.engine == "local":
        choose_providers(opts.device)
    return ref


# -- the run ---------------------------------------------------------------------------------------
def default_threads(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def _make_engine(config: WorkerConfig, opts: RunOptions):
    if opts.engine == "local":
        from spotdet.jobs.local_engine import LocalEngine

        return LocalEngine(config, opts.workers)
    from spotdet.jobs.ray_engine import RayEngine

    gpus = opts.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if opts.device in ("cuda", "tensorrt") else 0.0
    return RayEngine(config, opts.workers, address=opts.ray_address, num_cpus=float(config.threads or 1),
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


class _JobLoop:
    """One run of a planned job: recover, hand shards to an engine, commit what comes back, merge at the end.

    Its state: ``todo`` (the shards not yet handed out, read lazily; None once exhausted), ``running`` (handed
    out and not back yet: given back as pending if the run ends without them), ``outcome`` ("complete" until a
    signal makes it "preempted"), ``aborted_at`` (when the shards in flight were abandoned) and
    ``force_close`` (the workers did not stop in time after that: kill them).
    """

    def __init__(self, db: JobDB, out_dir: Path, spec: JobSpec, config: WorkerConfig, opts: RunOptions,
                 reporter: Reporter, resumed: bool) -> None:
        self.db, self.out_dir, self.spec, self.config, self.opts = db, out_dir, spec, config, opts
        self.reporter, self.resumed = reporter, resumed
        self.engine: Any = None
        self.run_id = 0
        self.signals = _Signals()
        self.todo = None
        self.running: dict[int, Shard] = {}
        self.run_images = 0
        self.outcome = "complete"
        self.aborted_at: float | None = None
        self.force_close = False

    def run(self) -> RunSummary:
        self.db.recover()  # step 1 after a crash: shards handed out but never committed are pending again
        done = set(self.db.done_shard_ids())
        removed = discard_uncommitted(self.out_dir, done)  # step 2 after a crash
        if removed:
            self.reporter.message(f"discarded {removed} uncommitted shard file(s) from an interrupted run")
        lost = sorted(sid for sid in done if not shard_path(self.out_dir, sid).is_file())
        if lost:  # committed, then deleted (by hand, or lost with a disk): the results are gone, do them again
            self.db.redo(lost)
            self.reporter.warning(f"{len(lost)} shard(s) marked done have no results file (first: "
                                  f"{shard_path(self.out_dir, lost[0])}): redoing them")
        counts = self.db.counts()
        self.run_id = self.db.start_run(os.getpid(), self.opts.engine, self.opts.workers)
        started = time.monotonic()
        if not counts.complete:
            self.run_shards(counts)
        return self.finish(started)

    def run_shards(self, counts: Counts) -> None:
        todo = counts.images_total - counts.images_done
        self.reporter.message(f"{'resuming' if self.resumed else 'running'}: {todo} of {counts.images_total} image(s)"
                              f" to do, {self.opts.workers} {self.opts.engine} worker(s), {self.config.threads} "
                              "thread(s) each")
        self.engine = _make_engine(self.config, self.opts)
        try:
            self.engine.wait_ready()  # a worker that cannot build its Detector fails the run before any shard
            self.reporter.start(counts.images_total, counts.images_done)
            with self.signals:
                self.todo = self.db.todo()
                while True:
                    self.submit_ready()
                    if self.engine.in_flight() == 0:
                        break
                    self.collect()
                    self.reporter.update(counts.images_done + max(self.run_images, self.engine.images_processed()))
                    if not self.handle_signals():
                        break
        finally:
            try:
                for shard_id in self.running:
                    self.db.mark_pending(shard_id)
            except sqlite3.Error:  # the database is what failed (disk full): the next start's recover() does it
                pass
            self.engine.close(force=self.force_close)
            self.reporter.finish()

    def submit_ready(self) -> None:
        """Fill the engine up to its capacity with shards not handed out yet (none once a signal came)."""
        while self.todo is not None and not self.signals.count and self.engine.in_flight() < self.engine.capacity:
            shard = next(self.todo, None)
            if shard is None:
                self.todo = None
                return
            self.db.mark_running(shard.id)  # step 1
            self.running[shard.id] = shard
            self.engine.submit(shard)

    def collect(self, timeout: float = 0.2) -> None:
        """Commit the shards that came back; a failed shard is marked for retry, a worker that never started
        stops the run (with its own error, once the other shards that came back are committed)."""
        start_error: WorkerStartError | None = None
        for shard, result in self.engine.poll(timeout):
            self.running.pop(shard.id, None)
            if result is None:  # left before it started (stop request) or abandoned midway (abort)
                self.db.mark_pending(shard.id)
            elif isinstance(result, WorkerStartError):
                self.db.mark_pending(shard.id)
                start_error = result
            elif isinstance(result, BaseException):
                self.db.mark_error(shard.id, f"{type(result).__name__}: {result}")
                self.reporter.message(f"shard {shard.id} failed: {result}")
            else:
                self.commit(shard, result)
        if start_error is not None:
            raise start_error

    def commit(self, shard: Shard, outcome: ShardOutcome) -> None:
        write_shard(self.out_dir, shard.id, outcome.records)  # step 2: the file is in place and durable...
        self.db.commit_shard(shard.id, outcome.n_ok, outcome.failures, outcome.seconds, self.run_id)  # ...3
        self.run_images += len(outcome.records)

    def handle_signals(self) -> bool:
        """SIGTERM/Ctrl-C: the first stops new shards; a second one, or ``grace`` running out, abandons the
        shards in flight. Returns False when the loop must stop waiting for workers that do not stop."""
        if not self.signals.count:
            return True
        if self.outcome == "complete":
            self.outcome = "preempted"
            self.engine.stop()
            self.reporter.message("stop requested: finishing the shard(s) in flight, then exiting")
        waited = time.monotonic() - (self.signals.first_at or time.monotonic())
        if self.aborted_at is None and (self.signals.count > 1 or waited > self.opts.grace):
            self.aborted_at = time.monotonic()
            self.engine.abort()
        if self.aborted_at is not None and time.monotonic() - self.aborted_at > ABORT_WAIT_S:
            self.force_close = True
            return False
        return True

    def finish(self, started: float) -> RunSummary:
        """Merge the outputs once every shard is done, record how the run ended, and sum it up."""
        counts = self.db.counts()
        outputs: list[Path] = []
        if counts.complete:
            self.outcome = "complete"
            try:
                outputs = merge(self.out_dir, self.db.done_shard_ids(), self.spec.fmt)
            except DamagedShardError as exc:  # the file went missing or was damaged after this run started
                self.db.redo([exc.shard_id])
                self.db.end_run(self.run_id, "incomplete")
                raise JobStorageError(f"{exc}: shard {exc.shard_id}'s results are lost and it is marked to be "
                                      f"redone: continue with `spotdet batch resume {self.out_dir}`") from None
            self.db.set_meta("merged", {"at": time.time(), "outputs": [str(p) for p in outputs]})
        elif self.outcome != "preempted":
            self.outcome = "incomplete"
        self.db.end_run(self.run_id, self.outcome)
        return RunSummary(self.outcome, self.out_dir, counts.images_total, counts.images_done, counts.images_ok,
                          counts.images_failed, self.run_images, time.monotonic() - started, outputs,
                          self.db.shard_errors(), self.resumed)
