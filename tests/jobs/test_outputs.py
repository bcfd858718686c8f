"""Shard files (atomic, discarded when uncommitted) and the merged outputs, from hand-written records."""

from __future__ import annotations

import json

import pytest

from spotdet.atomic import atomic_write_lines
from spotdet.jobs.outputs import discard_uncommitted, jsonl_line, merge, read_shard, shard_path, write_shard
from support.batch import read_jsonl

TIMINGS = {"decode_ms": 1.0, "preprocess_ms": 1.0, "infer_ms": 5.0, "postprocess_ms": 1.0, "total_ms": 8.0}


def _ok(index: int, image_id: int | None = None) -> dict:
    record = {"index": index, "path": f"/img/{index}.jpg", "model": "m", "width": 640, "height": 480,
              "input_size": [416, 416], "batch_size": 1, "timings": TIMINGS,
              "detections": [{"class_id": 0, "class_name": "person", "confidence": 0.9,
                              "box": {"x1": 1.0, "y1": 2.0, "x2": 11.0, "y2": 22.0}}]}
    if image_id is not None:
        record["image_id"] = image_id
        record["coco"] = [{"image_id": image_id, "category_id": 1, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.9}]
    return record


def _error(index: int) -> dict:
    return {"index": index, "path": f"/img/{index}.jpg", "error": f"/img/{index}.jpg: no such file"}


def test_shard_files_atomic_and_discard(tmp_path):
    write_shard(tmp_path, 3, [{"index": 0}, {"index": 1}])
    write_shard(tmp_path, 4, [{"index": 2}])
    assert list(read_shard(tmp_path, 3)) == [{"index": 0}, {"index": 1}]
    (tmp_path / "shards" / ".shard-000005.jsonl.abc.part").write_text("partial")

    def exploding():
        yield "line\n"
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write_lines(shard_path(tmp_path, 6), exploding())
    assert not shard_path(tmp_path, 6).exists()
    assert discard_uncommitted(tmp_path, {3}) == 2  # shard 4 (not committed) and the stray temp file
    assert [p.name for p in (tmp_path / "shards").iterdir()] == ["shard-000003.jsonl"]
    assert discard_uncommitted(tmp_path / "nothing-here", set()) == 0


def test_a_jsonl_line_is_the_record_without_its_coco_keys():
    assert jsonl_line(_ok(0, image_id=9)) == _ok(0)  # every Result.to_dict key kept, none rebuilt
    assert jsonl_line(_error(1)) == _error(1)


def test_merge_jsonl_reads_done_shards_in_the_order_given(tmp_path):
    write_shard(tmp_path, 0, [_ok(0), _error(1)])
    write_shard(tmp_path, 1, [_ok(2, image_id=3)])
    write_shard(tmp_path, 2, [_ok(3)])  # not committed: not listed, not merged
    [path] = merge(tmp_path, [0, 1], "jsonl")
    assert path == tmp_path / "results.jsonl"
    assert read_jsonl(path) == [_ok(0), _error(1), _ok(2)]


def test_merge_coco_lists_each_image_id_once_and_skips_errors(tmp_path):
    write_shard(tmp_path, 0, [_ok(0, image_id=5), _error(1)])
    write_shard(tmp_path, 1, [_ok(2, image_id=7), _ok(3, image_id=5)])  # a path listed twice shares its id
    results, images = merge(tmp_path, [0, 1], "coco")
    detections = json.loads(results.read_text())
    assert [d["image_id"] for d in detections] == [5, 7, 5]
    listed = json.loads(images.read_text())["images"]
    assert listed == [{"id": 5, "file_name": "/img/0.jpg", "width": 640, "height": 480},
                      {"id": 7, "file_name": "/img/2.jpg", "width": 640, "height": 480}]


def test_merge_coco_of_no_detections_is_an_empty_list(tmp_path):
    write_shard(tmp_path, 0, [_error(0)])
    results, images = merge(tmp_path, [0], "coco")
    assert json.loads(results.read_text()) == [] and json.loads(images.read_text()) == {"images": []}
