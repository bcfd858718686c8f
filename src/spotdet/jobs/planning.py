"""Planning a job: its sources cut into shards and stored, with the spec, in one job-database transaction.

Sources are enumerated lazily, straight into the database, so planning a million images never holds the list
in memory. For the coco format the plan also fixes each image's COCO id and each class's category id (from
the annotations given, or an ``instances.json`` in or beside a folder source), so a resume writes the same ids.

A video becomes one item per sampled frame (``vision/video.frame_item``): its frames spread over shards like
images, and a preempted job resumes mid-video without redoing or losing a frame.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from spotdet.errors import ImageLoadError, UsageError
from spotdet.jobs.jobdb import JobDB, Shard
from spotdet.jobs.spec import JobSpec
from spotdet.vision.sources import is_url, iter_sources, source_kind
from spotdet.vision.video import count_frames, frame_item, is_video_name


def plan_job(db: JobDB, spec: JobSpec, names: Mapping[int, str], fingerprint: Mapping[str, Any] | None = None) -> int:
    """Store ``spec``, the model ``fingerprint`` (jobs/fingerprint.py) and the shards; returns the number of
    shards. ``names``: the model's class names."""
    coco: dict[str, Any] | None = None
    image_id = None
    if spec.fmt == "coco":
        cat_ids, image_id, ann = _coco_mapping(spec, names)
        coco = {"cat_ids": {str(k): v for k, v in cat_ids.items()}, "annotations": ann}

    def shards() -> Iterator[Shard]:
        start = 0
        for sid, paths in enumerate(_chunks(job_items(spec.source, spec.vid_stride), spec.shard_size)):
            ids = [image_id(start + k, p) for k, p in enumerate(paths)] if image_id else None
            yield Shard(sid, start, paths, ids)
            start += len(paths)

    count = db.plan({"spec": spec.to_dict(), "coco": coco, "fingerprint": fingerprint}, shards())
    if count == 0:
        db.unplan()
        raise UsageError(f"{spec.source}: no images found")
    return count


def job_items(source: str, vid_stride: int = 1) -> Iterator[str]:
    """The items of a job over ``source``: each image path or URL, and every ``vid_stride``-th frame of each
    video as a frame item. A video that cannot be read, or holds no frame, is one frame-0 item, so the worker
    reports why as a failed item instead of the video vanishing from the job."""
    for entry in iter_sources(source):
        if is_url(entry) or not is_video_name(entry):
            yield entry
            continue
        try:
            count = count_frames(entry)
        except ImageLoadError:
            count = 0
        for frame in range(0, max(count, 1), vid_stride):
            yield frame_item(entry, frame)


def coco_category_ids(stored_job: Mapping[str, Any]) -> dict[int, int] | None:
    """The class -> COCO category id map a plan stored (None for the jsonl format)."""
    coco = stored_job.get("coco")
    return {int(k): v for k, v in coco["cat_ids"].items()} if coco else None


def _chunks(paths: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for path in paths:
        chunk.append(path)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _coco_mapping(spec: JobSpec,
                  names: Mapping[int, str]) -> tuple[dict[int, int], Callable[[int, str], int], str | None]:
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
