"""JobSpec (what a job is, as stored) and RunOptions (how one run executes)."""

from __future__ import annotations

import json

import pytest

from spotdet.errors import UsageError
from spotdet.jobs.spec import JobSpec, RunOptions
from spotdet.options import DetectOptions


def test_stored_form_round_trips_through_json(tmp_path):
    spec = JobSpec(source=str(tmp_path), model="yolox-nano", family="yolox", shard_size=16, fmt="coco",
                   options=DetectOptions(conf=0.4, iou=0.5, max_det=50, classes="person, 2", imgsz=(320, 416)))
    stored = json.loads(json.dumps(spec.to_dict()))
    assert stored["options"] == {"conf": 0.4, "iou": 0.5, "max_det": 50, "classes": ["person", 2],
                                 "imgsz": [320, 416], "tile": False}
    assert not {"conf", "iou", "max_det", "imgsz"} & set(stored)  # one options object, not flat copies
    assert JobSpec.from_dict(stored) == spec


def test_reads_the_flat_fields_of_schema_1_jobs(tmp_path):
    old = {"source": str(tmp_path), "model": "fastestdet", "family": None, "conf": 0.3, "iou": 0.5, "max_det": 7,
           "imgsz": 352, "shard_size": 4, "fmt": "jsonl", "annotations": None, "exif_orientation": True,
           "save_annotated": False}
    spec = JobSpec.from_dict(old)
    assert spec.options == DetectOptions(conf=0.3, iou=0.5, max_det=7, imgsz=352)
    assert spec == JobSpec(source=str(tmp_path), model="fastestdet", shard_size=4, exif_orientation=True,
                           options=DetectOptions(conf=0.3, iou=0.5, max_det=7, imgsz=352))
    assert JobSpec.from_dict({**old, "imgsz": None}).options.imgsz is None


def test_unreadable_stored_specs_fail_clearly(tmp_path):
    with pytest.raises(UsageError, match="unknown field.*tile_size.*newer spotdet"):
        JobSpec.from_dict({"source": str(tmp_path), "model": "m", "tile_size": 2})
    with pytest.raises(UsageError, match="both options and flat conf"):
        JobSpec.from_dict({"source": str(tmp_path), "model": "m", "conf": 0.3, "options": {"conf": 0.3}})
    with pytest.raises(UsageError, match="conf must be in"):
        JobSpec.from_dict({"source": str(tmp_path), "model": "m", "options": {"conf": 3}})


def test_differences_name_the_detection_options_themselves(tmp_path):
    a = JobSpec(source=str(tmp_path), model="m")
    b = JobSpec(source=str(tmp_path), model="m", shard_size=8, options=DetectOptions(conf=0.5, classes=[0]))
    assert a.differences(b) == ["shard_size: 64 -> 8", "conf: 0.25 -> 0.5", "classes: None -> [0]"]
    assert a.differences(a) == []


def test_normalised_fills_defaults_and_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "ann.json").write_text("{}")
    spec = JobSpec(source="imgs", model="m", annotations="ann.json").normalised()
    assert (spec.source, spec.annotations) == (str(tmp_path / "imgs"), str(tmp_path / "ann.json"))
    assert spec.exif_orientation is True
    assert JobSpec(source="imgs", model="m", fmt="coco").normalised().exif_orientation is False
    for bad, message in [({"fmt": "xml"}, "--format must be one of"), ({"shard_size": 0}, "--shard-size must be"),
                         ({"source": "nowhere"}, "no such folder"), ({"annotations": "nope.json"}, "no such annot"),
                         ({"options": {"conf": 0.3}}, "must be a DetectOptions")]:
        with pytest.raises(UsageError, match=message):
            JobSpec(**{"source": "imgs", "model": "m", **bad}).normalised()


def test_run_options_check():
    RunOptions(workers=3, engine="ray").check()
    with pytest.raises(UsageError, match="--workers"):
        RunOptions(workers=0).check()
    with pytest.raises(UsageError, match="--engine"):
        RunOptions(engine="dask").check()


def test_vid_stride_is_checked_stored_and_defaults_for_old_jobs(tmp_path):
    spec = JobSpec(source=str(tmp_path), model="m", vid_stride=5).normalised()
    assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).vid_stride == 5
    stored = {k: v for k, v in spec.to_dict().items() if k != "vid_stride"}  # a job planned before videos
    assert JobSpec.from_dict(stored).vid_stride == 1
    with pytest.raises(UsageError, match="--vid-stride must be >= 1"):
        JobSpec(source=str(tmp_path), model="m", vid_stride=0).normalised()
    url = "https://example.com/a.jpg"
    assert JobSpec(source=url, model="m").normalised().source == url  # a URL is not made a local path
