"""Planning: sources into shards in the job database, and the COCO ids a coco-format job fixes up front."""

from __future__ import annotations

import json

import pytest

from support.batch import COCO128
from support.paths import VAL_DIR
from spotdet.errors import UsageError
from spotdet.jobs.jobdb import JobDB
from spotdet.jobs.planning import coco_category_ids, plan_job
from spotdet.jobs.spec import JobSpec
from spotdet.models.labels import COCO80

NAMES = dict(enumerate(COCO80))


def test_shards_cover_the_source_in_order(tmp_path):
    images = sorted(COCO128.glob("*.jpg"))[:10]
    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(map(str, images)) + "\n")
    spec = JobSpec(source=str(listing), model="m", shard_size=4).normalised()
    with JobDB(tmp_path / "job.db") as db:
        assert plan_job(db, spec, NAMES) == 3
        shards = list(db.todo())
        assert [(s.start, s.n) for s in shards] == [(0, 4), (4, 4), (8, 2)]
        assert [p for s in shards for p in s.paths] == list(map(str, images))
        assert all(s.image_ids is None for s in shards)
        assert JobSpec.from_dict(db.stored_job()["spec"]) == spec and coco_category_ids(db.stored_job()) is None


def test_coco_ids_come_from_the_annotations(tmp_path):
    meta = json.loads((VAL_DIR / "instances.json").read_text())
    listed = {img["file_name"]: img["id"] for img in meta["images"]}
    known = sorted((VAL_DIR / "images").glob("*.jpg"))[:3]
    stranger = sorted(COCO128.glob("*.jpg"))[0]
    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(map(str, [*known, stranger])) + "\n")
    spec = JobSpec(source=str(listing), model="m", fmt="coco", annotations=str(VAL_DIR / "instances.json"),
                   shard_size=2).normalised()
    with JobDB(tmp_path / "job.db") as db:
        plan_job(db, spec, NAMES)
        ids = [i for s in db.todo() for i in s.image_ids]
        cat_ids = coco_category_ids(db.stored_job())
    assert ids[:3] == [listed[p.name] for p in known]
    assert ids[3] == max(img["id"] for img in meta["images"]) + 1 + 3  # unlisted: a fresh id above theirs
    by_name = {c["name"]: c["id"] for c in meta["categories"]}
    assert cat_ids[0] == by_name["person"] and cat_ids[2] == by_name["car"]


def test_coco_without_annotations_uses_official_ids(tmp_path):
    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(map(str, sorted(COCO128.glob("*.jpg"))[:3])) + "\n")
    spec = JobSpec(source=str(listing), model="m", fmt="coco").normalised()
    with JobDB(tmp_path / "job.db") as db:
        plan_job(db, spec, NAMES)
        assert [i for s in db.todo() for i in s.image_ids] == [1, 2, 3]
        cat_ids = coco_category_ids(db.stored_job())
    assert cat_ids[0] == 1 and cat_ids[79] == 90  # person, toothbrush


def test_no_images_leaves_the_job_unplanned(tmp_path):
    (tmp_path / "imgs").mkdir()
    with JobDB(tmp_path / "job.db") as db:
        with pytest.raises(UsageError, match="no images found"):
            plan_job(db, JobSpec(source=str(tmp_path / "imgs"), model="m").normalised(), NAMES)
        assert not db.is_planned()


def test_a_video_becomes_one_item_per_sampled_frame(tmp_path, photos):
    from support.media import make_video
    from spotdet.vision.video import frame_item

    folder = tmp_path / "media"
    folder.mkdir()
    video = str(make_video(folder / "clip.mp4", photos["chelsea"], frames=7))
    (folder / "broken.avi").write_text("not a video")
    image = sorted(COCO128.glob("*.jpg"))[0]
    (folder / "z.jpg").write_bytes(image.read_bytes())
    spec = JobSpec(source=str(folder), model="m", shard_size=2, vid_stride=3).normalised()
    with JobDB(tmp_path / "job.db") as db:
        assert plan_job(db, spec, NAMES) == 3
        items = [p for s in db.todo() for p in s.paths]
        assert JobSpec.from_dict(db.stored_job()["spec"]).vid_stride == 3
    broken = str(folder / "broken.avi")
    # the unreadable video stays in the job as one item, so the worker reports why instead of it vanishing
    assert items == [frame_item(broken, 0), frame_item(video, 0), frame_item(video, 3), frame_item(video, 6),
                     str(folder / "z.jpg")]
