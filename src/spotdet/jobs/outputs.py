"""Shard result files and the final merged outputs.

A shard's results live in ``shards/shard-NNNNNN.jsonl`` (the name is derived from the shard id, so a shard
can never exist twice). The file is written to a temporary name, fsynced and renamed into place
(``spotdet.atomic``, durable) before the database marks the shard done; a file whose shard is not marked done
is a leftover of a crash and is deleted on the next run. The final outputs read the shard files of done shards
in id order, once each.
"""

from __future__ import annotations

import errno
import json
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from spotdet.atomic import atomic_write_lines, fsync_dir
from spotdet.jobs.jobdb import JobStorageError
from spotdet.jobs.worker import COCO_ONLY_KEYS

SHARD_DIR = "shards"
JSONL_NAME = "results.jsonl"
COCO_NAME = "results.coco.json"
COCO_IMAGES_NAME = "images.coco.json"


def writable_folder(path: Path) -> Path:
    """Create ``path`` (with its parents) and check that files can be created in it.

    Raises OSError naming the folder when it cannot be (a path through a file, permission denied, a read-only
    file system, a full disk), before any work whose results would have nowhere to go.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(path))
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".spotdet-write-test-"):
            pass
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create or write files in this folder ({exc.strerror or exc})",
                      str(path)) from None
    return path


def shard_path(out_dir: Path, shard_id: int) -> Path:
    return Path(out_dir) / SHARD_DIR / f"shard-{shard_id:06d}.jsonl"


def write_shard(out_dir: Path, shard_id: int, records: list[dict[str, Any]]) -> Path:
    path = shard_path(out_dir, shard_id)
    atomic_write_lines(path, (json.dumps(r, separators=(",", ":")) + "\n" for r in records), durable=True)
    return path


class DamagedShardError(JobStorageError):
    """A committed shard's results file is missing or unreadable; the shard has to be done again."""

    def __init__(self, shard_id: int, message: str) -> None:
        super().__init__(message)
        self.shard_id = shard_id


def read_shard(out_dir: Path, shard_id: int) -> Iterator[dict[str, Any]]:
    """The records of a committed shard; DamagedShardError when its file is missing or not JSON lines."""
    path = shard_path(out_dir, shard_id)
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise DamagedShardError(shard_id, f"{path}: line {number} is not JSON ({exc})") from None
    except FileNotFoundError:
        raise DamagedShardError(shard_id, f"{path}: missing") from None
    except UnicodeDecodeError as exc:
        raise DamagedShardError(shard_id, f"{path}: not text ({exc})") from None


def discard_uncommitted(out_dir: Path, done_ids: set[int]) -> int:
    """Delete temp files and shard files whose shard is not committed; returns how many were removed."""
    directory = Path(out_dir) / SHARD_DIR
    if not directory.is_dir():
        return 0
    removed = 0
    for entry in directory.iterdir():
        keep = False
        if entry.name.startswith("shard-") and entry.name.endswith(".jsonl"):
            try:
                keep = int(entry.name[6:-6]) in done_ids
            except ValueError:
                keep = False
        if not keep:
            entry.unlink(missing_ok=True)
            removed += 1
    if removed:
        fsync_dir(directory)
    return removed


def jsonl_line(record: dict[str, Any]) -> dict[str, Any]:
    """A shard record as a ``results.jsonl`` line: the record without its COCO-only keys."""
    return {k: v for k, v in record.items() if k not in COCO_ONLY_KEYS}


def merge(out_dir: Path, shard_ids: Iterable[int], fmt: str) -> list[Path]:
    """Write the final output(s) from the committed shard files, streaming (memory stays flat)."""
    out_dir = Path(out_dir)
    ids = list(shard_ids)

    def records() -> Iterator[dict[str, Any]]:
        for sid in ids:
            yield from read_shard(out_dir, sid)

    if fmt == "jsonl":
        target = out_dir / JSONL_NAME
        atomic_write_lines(target, (json.dumps(jsonl_line(r)) + "\n" for r in records()))
        return [target]

    def coco_lines() -> Iterator[str]:
        first = True
        yield "["
        for record in records():
            for det in record.get("coco", ()):
                yield ("\n" if first else ",\n") + json.dumps(det)
                first = False
        yield "\n]\n"

    def image_lines() -> Iterator[str]:
        first = True
        yield '{"images": ['
        seen: set[int] = set()  # a path listed twice shares one image id: list it once
        for record in records():
            if "error" in record or record["image_id"] in seen:
                continue
            seen.add(record["image_id"])
            entry = {"id": record["image_id"], "file_name": record["path"], "width": record["width"],
                     "height": record["height"]}
            yield ("\n" if first else ",\n") + json.dumps(entry)
            first = False
        yield "\n]}\n"

    results, images = out_dir / COCO_NAME, out_dir / COCO_IMAGES_NAME
    atomic_write_lines(results, coco_lines())
    atomic_write_lines(images, image_lines())
    return [results, images]
