"""What a worker does: build its Detector once, then stream each shard's images through it into records.

``ShardWorker`` is the body of a local worker process and of a Ray actor alike. Workers never touch the job
database or the shard files: they hand their records back to the coordinator, which is the only writer. A
worker that is killed (or orphaned by a killed coordinator) therefore cannot leave a half-committed shard
behind.

A record is one line of the job's ``results.jsonl``: ``{"index": i, **Result.to_dict()}`` (the keys of
``spotdet detect --json`` and ``POST /predict``), or ``{"index", "path", "error"}`` for an unreadable image.
An item is an image path, a URL (downloaded by the worker) or one frame of a video (``vision/video.frame_item``);
a frame's record has the video's ``path`` and its ``frame`` number, error records included.
For the coco format a record also carries ``image_id`` and its ``coco`` entries (``Result.to_coco``), which
only the merge into ``results.coco.json`` reads.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from spotdet.errors import SpotdetError
from spotdet.jobs.jobdb import Failure, Shard
from spotdet.options import DetectOptions
from spotdet.vision.sources import Input, iter_inputs, labelled_stream

if TYPE_CHECKING:
    from spotdet.detector import Detector
    from spotdet.results import Result

COCO_ONLY_KEYS = ("image_id", "coco")  # record keys that only the coco merge reads


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to build its Detector and run every shard exactly like every other worker."""

    model: str
    family: str | None = None
    options: DetectOptions = field(default_factory=DetectOptions)
    device: str = "auto"
    backend: str = "auto"
    threads: int | None = None
    exif_orientation: bool = True
    coco_cat_ids: dict[int, int] | None = None  # class index -> COCO category id (coco format only)
    annotated_dir: str | None = None  # write annotated images here (--save-annotated)
    max_pixels: int | None = None  # images with more pixels are failed items (JobSpec.max_pixels)
    model_sha256: str | None = None  # the job's model file (its fingerprint): a worker loading another one stops


class WorkerStartError(SpotdetError):
    """A worker could not build its Detector; the message and exit code are those of the original error.

    ``ShardWorker`` raises it when used rather than from its constructor, so it reaches the coordinator as an
    ordinary exception (pickled back from a worker process, or as a Ray task's cause) instead of as a dead
    process, and the coordinator stops the job with the worker's own one-line message.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message, exit_code)
        self.exit_code = exit_code

    def __str__(self) -> str:
        return str(self.args[0])


class WorkerLostError(SpotdetError):
    """A worker process or Ray actor died (killed, out of memory): the run stops; resume redoes its shards."""


@dataclass
class ShardOutcome:
    shard_id: int
    records: list[dict[str, Any]]
    n_ok: int
    failures: list[Failure]
    seconds: float
    worker: str = field(default_factory=lambda: f"pid {os.getpid()}")


def build_detector(config: WorkerConfig) -> "Detector":
    """The one place a batch worker's Detector is built, in a local worker process or a Ray actor.

    The model file it loads must be the one the job was planned with (``model_sha256``): a Ray node, or a model
    folder changed since the coordinator checked, could hold another file under the same name.
    """
    from spotdet.detector import Detector
    from spotdet.models.verify import file_sha256

    detector = Detector(config.model, family=config.family, device=config.device, threads=config.threads,
                        backend=config.backend, options=config.options, max_pixels=config.max_pixels)
    if config.model_sha256 is not None:
        got = file_sha256(detector.model_path)
        if got != config.model_sha256:
            raise SpotdetError(f"{detector.model_path}: sha256 {got} is not the job's model file "
                               f"({config.model_sha256}): {config.model} resolves to another file here")
    return detector


class ShardWorker:
    """One worker: its Detector, built once from a WorkerConfig, and the shards it runs one at a time."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.detector: Detector | None = None
        self._start_error: tuple[str, int] | None = None
        try:
            self.detector = build_detector(config)
        except SpotdetError as exc:  # an imgsz a fixed-shape model cannot take, a GPU that will not start, ...
            self._start_error = (str(exc), exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the coordinator reports it in one line
            self._start_error = (f"{type(exc).__name__}: {exc}", 1)

    def ready(self) -> str:
        """Where this worker runs; raises WorkerStartError if it could not build its Detector."""
        if self._start_error is not None:
            raise WorkerStartError(*self._start_error)
        return f"pid {os.getpid()}"

    def run(self, shard: Shard, should_abort: Callable[[], bool] = lambda: False,
            on_image: Callable[[], None] = lambda: None) -> ShardOutcome | None:
        """Detect on every item of ``shard``; one record per item, in item order. None if aborted midway."""
        self.ready()
        start = time.perf_counter()
        records: dict[int, dict[str, Any]] = {}  # by position in the shard
        failures: dict[int, Failure] = {}

        def record_error(inp: Input, exc: SpotdetError) -> None:
            index = shard.start + inp.entry
            records[inp.entry] = {"index": index, "path": inp.path,
                                  **({"frame": inp.frame} if inp.frame is not None else {}), "error": str(exc)}
            failures[inp.entry] = Failure(shard.id, index, inp.path, str(exc))
            on_image()

        # videos=False: a shard's video items are single frames already; a bare video path is an item that fails
        inputs = iter_inputs(shard.paths, videos=False, max_pixels=self.config.max_pixels)
        stream = functools.partial(self.detector.stream, keep_image=self.config.annotated_dir is not None,
                                   exif_orientation=self.config.exif_orientation)
        results = labelled_stream(stream, inputs, record_error)
        try:
            for inp, result in results:
                records[inp.entry] = self._record(result, shard.start + inp.entry,
                                                  shard.image_ids[inp.entry] if shard.image_ids else None)
                on_image()
                if should_abort():
                    return None
        finally:
            results.close()
        assert len(records) == shard.n, (len(records), shard.n)  # every item gave a result or an error
        return ShardOutcome(shard.id, [records[k] for k in range(shard.n)], shard.n - len(failures),
                            [failures[k] for k in sorted(failures)], time.perf_counter() - start)

    def _record(self, result: "Result", index: int, image_id: int | None) -> dict[str, Any]:
        record = {"index": index, **result.to_dict()}
        if self.config.coco_cat_ids is not None and image_id is not None:
            record["image_id"] = image_id
            record["coco"] = result.to_coco(image_id, self.config.coco_cat_ids)
        if self.config.annotated_dir is not None:
            frame = "" if result.frame is None else f"_{result.frame:06d}"
            result.save(Path(self.config.annotated_dir) / f"{index:08d}_{Path(result.path).stem}{frame}.jpg")
            result.orig_img = None  # do not hold decoded images for the rest of the shard
        return record
