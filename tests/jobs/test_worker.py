"""ShardWorker: one shard through a real Detector into records (the lines of results.jsonl)."""

from __future__ import annotations

import pickle

import pytest

from support.batch import FAST_MODEL, without_timings
from spotdet.jobs.jobdb import Failure, Shard
from spotdet.jobs.worker import COCO_ONLY_KEYS, ShardWorker, WorkerConfig, WorkerStartError
from spotdet.options import DetectOptions
from spotdet.results import TIMING_KEYS


@pytest.fixture(scope="module")
def worker():
    return ShardWorker(WorkerConfig(model=FAST_MODEL, threads=1, options=DetectOptions(conf=0.3)))


@pytest.fixture
def shard(tmp_path, val_images):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    paths = [str(val_images[0]), str(bad), str(val_images[1]), str(tmp_path / "missing.jpg"), str(val_images[2])]
    return Shard(id=7, start=40, paths=paths, image_ids=[101, 102, 103, 104, 105])


def test_records_are_index_plus_result_to_dict(worker, shard, detectors):
    counted = []
    outcome = worker.run(shard, on_image=lambda: counted.append(1))
    assert outcome.shard_id == 7 and outcome.n_ok == 3 and len(counted) == 5
    assert [r["index"] for r in outcome.records] == [40, 41, 42, 43, 44]
    direct = detectors(FAST_MODEL).stream(shard.paths, DetectOptions(conf=0.3), keep_image=False,
                                          on_error=lambda src, exc: None)
    expected = [{"index": shard.start + shard.paths.index(r.path), **r.to_dict()} for r in direct]
    ok = [r for r in outcome.records if "error" not in r]
    assert without_timings(ok) == without_timings(expected)  # the keys of `detect --json` and POST /predict
    assert all(set(r["timings"]) == set(TIMING_KEYS) for r in ok)
    assert not any(set(COCO_ONLY_KEYS) & set(r) for r in outcome.records)  # jsonl job: no COCO keys
    errors = [r for r in outcome.records if "error" in r]
    assert [set(r) for r in errors] == [{"index", "path", "error"}] * 2
    assert outcome.failures == [Failure(7, r["index"], r["path"], r["error"]) for r in errors]
    assert "truncated JPEG" in errors[0]["error"] and "no such file" in errors[1]["error"]


def test_coco_records_carry_image_id_and_result_to_coco(shard, detectors):
    cat_ids = {0: 1, 2: 3}
    worker = ShardWorker(WorkerConfig(model=FAST_MODEL, threads=1, coco_cat_ids=cat_ids,
                                      options=DetectOptions(conf=0.05)))
    records = worker.run(shard).records
    direct = {r.path: r for r in detectors(FAST_MODEL).stream(shard.paths, DetectOptions(conf=0.05),
                                                              on_error=lambda src, exc: None)}
    for record, image_id in zip(records, shard.image_ids):
        if "error" in record:
            assert "image_id" not in record
            continue
        assert record["image_id"] == image_id
        assert record["coco"] == direct[record["path"]].to_coco(image_id, cat_ids)
    assert any(record.get("coco") for record in records)


def test_abort_midway_returns_nothing(worker, shard):
    assert worker.run(shard, should_abort=lambda: True) is None


def test_save_annotated(tmp_path, val_images):
    worker = ShardWorker(WorkerConfig(model=FAST_MODEL, threads=1, annotated_dir=str(tmp_path / "annotated")))
    outcome = worker.run(Shard(0, 10, [str(p) for p in val_images[:3]]))
    saved = sorted(p.name for p in (tmp_path / "annotated").iterdir())
    assert saved == [f"{10 + i:08d}_{p.stem}.jpg" for i, p in enumerate(val_images[:3])]
    assert outcome.n_ok == 3


def test_a_worker_that_cannot_build_its_detector_says_why_when_used(val_images):
    worker = ShardWorker(WorkerConfig(model=FAST_MODEL, threads=1, options=DetectOptions(imgsz=640)))
    with pytest.raises(WorkerStartError, match="fixed input of 352x352; imgsz=640x640 is not possible") as caught:
        worker.ready()
    assert caught.value.exit_code == 2  # the Detector's UsageError
    with pytest.raises(WorkerStartError):
        worker.run(Shard(0, 0, [str(val_images[0])]))
    # It crosses process boundaries (a local worker's future, a Ray task) intact.
    back = pickle.loads(pickle.dumps(caught.value))
    assert (type(back), str(back), back.exit_code) == (WorkerStartError, str(caught.value), 2)
    unknown = ShardWorker(WorkerConfig(model="no-such-model"))
    with pytest.raises(WorkerStartError, match="unknown model 'no-such-model'"):
        unknown.ready()


def test_frame_items_give_records_of_the_video_and_its_frames(tmp_path, photos, detectors, val_images):
    from support.media import make_video
    from spotdet.vision.video import frame_item, iter_frames

    video = str(make_video(tmp_path / "clip.mp4", photos["chelsea"], frames=6))
    paths = [frame_item(video, 2), frame_item(video, 3), str(val_images[0]), frame_item(video, 5),
             frame_item(video, 9), frame_item(str(tmp_path / "gone.mp4"), 0)]
    worker = ShardWorker(WorkerConfig(model=FAST_MODEL, threads=1, options=DetectOptions(conf=0.3),
                                      annotated_dir=str(tmp_path / "annotated")))
    outcome = worker.run(Shard(id=1, start=20, paths=paths))
    assert [r["index"] for r in outcome.records] == list(range(20, 26)) and outcome.n_ok == 4
    assert [(r["path"], r.get("frame")) for r in outcome.records] == [
        (video, 2), (video, 3), (str(val_images[0]), None), (video, 5), (video, 9), (str(tmp_path / "gone.mp4"), 0)]
    frames = dict(iter_frames(video))
    det = detectors(FAST_MODEL)
    for record in (outcome.records[0], outcome.records[3]):  # each frame's record is that frame's detections
        assert record["detections"] == det(frames[record["frame"]], conf=0.3)[0].to_dict()["detections"]
    assert "past the end of the video" in outcome.records[4]["error"]
    assert "gone.mp4 frame 0: no such file" in outcome.records[5]["error"]
    assert [f.index for f in outcome.failures] == [24, 25]
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir())[:2] == ["00000020_clip_000002.jpg",
                                                                            "00000021_clip_000003.jpg"]
