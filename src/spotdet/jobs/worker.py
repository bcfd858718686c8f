"""What a worker does with one shard: stream its images through a Detector and return result records.

The same code runs in a local worker process and in a Ray actor. Workers never touch the job database or
the shard files: they hand their records back to the coordinator, which is the only writer. A worker that
is killed (or orphaned by a killed coordinator) therefore cannot leave a half-committed shard behind.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from spotdet.errors import SpotdetError
from spotdet.jobs.jobdb import Failure, Shard


@dataclass(frozen=True)
class DetectSettings:
    """Everything a worker needs to build its Detector and run it the same way as every other worker."""

    model: str
    family: str | None = None
    device: str = "auto"
    threads: int | None = None
    conf: float = 0.25
    iou: float = 0.6
    max_det: int = 300
    imgsz: int | None = None
    exif_orientation: bool = True
    coco_cat_ids: dict[int, int] | None = None  # class index -> COCO category id (coco format only)
    annotated_dir: str | None = None  # write annotated images here (--save-annotated)


@dataclass
class ShardOutcome:
    shard_id: int
    records: list[dict[str, Any]]
    n_ok: int
    failures: list[Failure]
    seconds: float
    worker: str = field(default_factory=lambda: f"pid {os.getpid()}")


class _Indexed(os.PathLike):
    """A path that remembers its item index, so a failure reported by Detector.stream maps back to its item."""

    __slots__ = ("path", "index")

    def __init__(self, path: str, index: int) -> None:
        self.path, self.index = path, index

    def __fspath__(self) -> str:
        return self.path


def make_detector(settings: DetectSettings):
    from spotdet.detector import Detector

    return Detector(settings.model, device=settings.device, threads=settings.threads, family=settings.family,
                    conf=settings.conf, iou=settings.iou, max_det=settings.max_det)


def process_shard(detector, shard: Shard, settings: DetectSettings,
                  should_abort: Callable[[], bool] = lambda: False,
                  on_image: Callable[[], None] = lambda: None) -> ShardOutcome | None:
    """Detect on every item of ``shard``; one record per item, in item order. None if aborted midway."""
    start = time.perf_counter()
    items = [_Indexed(p, shard.start + k) for k, p in enumerate(shard.paths)]
    errors: dict[int, str] = {}

    def record_error(src, exc: SpotdetError) -> None:
        errors[src.index] = str(exc)
        on_image()

    keep_image = settings.annotated_dir is not None
    records: list[dict[str, Any]] = []
    failures: list[Failure] = []
    n_ok = 0
    position = 0  # next item not yet recorded

    def flush_errors_before(limit: int) -> None:
        # Errors are reported in item order, before any later item's result is yielded, so every item
        # skipped on the way to a result's own item is a failure already known.
        nonlocal position
        while position < limit:
            item = items[position]
            reason = errors[item.index]
            records.append({"index": item.index, "path": item.path, "error": reason})
            failures.append(Failure(shard.id, item.index, item.path, reason))
            position += 1

    stream = detector.stream(items, imgsz=settings.imgsz, keep_image=keep_image,
                             exif_orientation=settings.exif_orientation, on_error=record_error)
    try:
        for result in stream:
            match = position
            while items[match].index in errors:
                match += 1
            flush_errors_before(match)
            item = items[position]
            assert result.path == item.path, (result.path, item.path)  # stream keeps order
            records.append(_record(result, item, shard.image_ids[position] if shard.image_ids else None,
                                   settings))
            position += 1
            n_ok += 1
            on_image()
            if should_abort():
                return None
    finally:
        stream.close()
    flush_errors_before(len(items))
    return ShardOutcome(shard.id, records, n_ok, failures, time.perf_counter() - start)


def _record(result, item: _Indexed, image_id: int | None, settings: DetectSettings) -> dict[str, Any]:
    record = {"index": item.index, "path": item.path, "width": result.orig_shape[1],
              "height": result.orig_shape[0], "detections": result.detections()}
    if settings.coco_cat_ids is not None and image_id is not None:
        record["image_id"] = image_id
        record["coco"] = result.to_coco(image_id, settings.coco_cat_ids)
    if settings.annotated_dir is not None:
        result.save(Path(settings.annotated_dir) / f"{item.index:08d}_{Path(item.path).stem}.jpg")
        result.orig_img = None  # do not hold decoded images for the rest of the shard
    return record
