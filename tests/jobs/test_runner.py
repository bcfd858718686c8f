"""run_job, the coordinator: whole jobs through the Python API, on real models, images and job databases."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from support.batch import COCO128, FAST_MODEL, assert_same_results, check_committed_shards, read_jsonl
from support.paths import VAL_DIR
from spotdet.errors import UsageError
from spotdet.eval.coco import evaluate, score_detections
from spotdet.jobs import JobSpec, RunOptions, WorkerStartError, job_status, run_job
from spotdet.jobs.jobdb import JobDB
from spotdet.jobs.outputs import read_shard, shard_path
from spotdet.options import DetectOptions


@pytest.fixture
def listing(tmp_path, val_images):
    """A list file with 10 good images (one listed twice), a corrupt file and a missing one."""
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    entries = [str(p) for p in val_images[:6]] + [str(bad), str(val_images[0])] + \
              [str(p) for p in val_images[6:10]] + [str(tmp_path / "missing.jpg")]
    path = tmp_path / "list.txt"
    path.write_text("\n".join(entries) + "\n")
    return path, entries


def _sql(out, *statements: str) -> None:
    conn = sqlite3.connect(out / "job.db")
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def test_every_item_once_in_order_with_failures_recorded(tmp_path, listing):
    path, entries = listing
    out = tmp_path / "job"
    summary = run_job(out, JobSpec(source=str(path), model=FAST_MODEL, shard_size=4), RunOptions(workers=1))
    assert summary.state == "complete"
    assert (summary.images_total, summary.images_ok, summary.images_failed) == (13, 11, 2)
    lines = read_jsonl(out / "results.jsonl")
    assert [line["path"] for line in lines] == entries and [line["index"] for line in lines] == list(range(13))
    result_keys = {"path", "model", "width", "height", "input_size", "input_sizes", "input_pixels", "batch_size",
                   "detections", "timings"}
    assert all(set(line) == {"index", *result_keys} for line in lines if "error" not in line)  # Result.to_dict
    errors = {line["path"]: line["error"] for line in lines if "error" in line}
    assert all(set(line) == {"index", "path", "error"} for line in lines if "error" in line)
    assert "truncated JPEG" in errors[entries[6]] and "no such file" in errors[entries[-1]]

    status = job_status(out)
    assert status.state == "complete" and status.images_failed == 2
    assert {f.path for f in status.failures} == set(errors)
    assert status.outputs == [str(out / "results.jsonl")]
    assert status.spec["options"] == DetectOptions().to_dict()


def test_resume_after_crash_states_redoes_uncommitted_shards_only(tmp_path):
    """Rebuild by hand each state a crash can leave, then resume: every image exactly once, same results."""
    out = tmp_path / "job"
    spec = JobSpec(source=str(COCO128), model=FAST_MODEL, shard_size=16)
    assert run_job(out, spec, RunOptions(workers=1)).state == "complete"
    reference = read_jsonl(out / "results.jsonl")
    shards = out / "shards"
    # shard 2: written and renamed, but the crash came before its commit; shard 5: handed to a worker;
    # shard 6: a torn temp file next to nothing; the merged output is half written.
    _sql(out, "UPDATE shards SET state='pending' WHERE id=2", "UPDATE shards SET state='running' WHERE id=5",
         "DELETE FROM meta WHERE key='merged'")
    (shards / "shard-000005.jsonl").unlink()
    (shards / ".shard-000006.jsonl.x1.part").write_text('{"index": 96')
    (out / "results.jsonl").write_text(json.dumps(reference[0]) + "\n")
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.jsonl")}

    summary = run_job(out, None, RunOptions(workers=1))
    assert summary.state == "complete" and summary.resumed and summary.run_images == 32
    check_committed_shards(out)
    assert_same_results(read_jsonl(out / "results.jsonl"), reference)
    after = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.jsonl")}
    redone = {name for name in after if before.get(name) != after[name]}
    assert redone == {"shard-000002.jsonl", "shard-000005.jsonl"}  # committed shards were not touched
    assert sorted(p.name for p in shards.iterdir()) == [f"shard-{i:06d}.jsonl" for i in range(8)]


def test_a_job_stored_in_the_old_flat_layout_resumes(tmp_path):
    """Schema-1 job databases (flat conf/iou/max_det/imgsz, shard lines without timings) still resume."""
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(str(p) for p in sorted(COCO128.glob("*.jpg"))[:24]) + "\n")
    spec = JobSpec(source=str(listing), model=FAST_MODEL, shard_size=8, options=DetectOptions(conf=0.4, max_det=5))
    out = tmp_path / "job"
    assert run_job(out, spec, RunOptions(workers=1)).state == "complete"
    reference = read_jsonl(out / "results.jsonl")
    # What spotdet wrote before DetectOptions: a flat spec, and shard lines of five keys.
    with JobDB(out / "job.db") as db:
        stored = db.stored_job()
        flat = {k: v for k, v in stored["spec"].items() if k != "options"}
        flat.update(conf=0.4, iou=0.6, max_det=5, imgsz=None)
        db.set_meta("schema", 1)
        db.set_meta("settings", {"spec": flat, "coco": None})
    old_keys = ("index", "path", "width", "height", "detections")
    old_lines = [{k: r[k] for k in old_keys} for r in read_shard(out, 0)]
    shard_path(out, 0).write_text("".join(json.dumps(r) + "\n" for r in old_lines))
    _sql(out, "UPDATE shards SET state='pending' WHERE id IN (1, 2)", "DELETE FROM meta WHERE key='merged'")

    assert job_status(out).spec["options"]["conf"] == 0.4  # status reads it in the new shape
    summary = run_job(out, None, RunOptions(workers=1))
    assert summary.state == "complete" and summary.run_images == 16
    lines = read_jsonl(out / "results.jsonl")
    assert lines[:8] == old_lines  # committed before: left as they were
    assert_same_results(lines[8:], reference[8:])  # redone with the stored conf and max_det
    assert [line["detections"] for line in lines] == [line["detections"] for line in reference]
    # The same `batch run` command again is the same job, not "a different job".
    assert run_job(out, spec, RunOptions(workers=1)).run_images == 0


def test_coco_output_scores_like_spotdet_eval(tmp_path, detectors):
    out = tmp_path / "job"
    spec = JobSpec(source=str(VAL_DIR / "images"), model=FAST_MODEL, fmt="coco",
                   options=DetectOptions(conf=0.001, max_det=100), shard_size=32)
    summary = run_job(out, spec, RunOptions(workers=1))
    assert summary.state == "complete"
    detections = json.loads((out / "results.coco.json").read_text())
    images = json.loads((out / "images.coco.json").read_text())["images"]
    meta = json.loads((VAL_DIR / "instances.json").read_text())
    assert sorted(i["id"] for i in images) == sorted(i["id"] for i in meta["images"])  # ids from instances.json
    stats = score_detections(VAL_DIR / "instances.json", detections, [i["id"] for i in meta["images"]])
    report = evaluate(detectors(FAST_MODEL), VAL_DIR)
    assert round(stats[0] * 100, 2) == report.map50_95 > 5.0
    assert round(stats[1] * 100, 2) == report.map50
    # ...and `spotdet eval --results` accepts the file directly.
    cli = subprocess.run([sys.executable, "-m", "spotdet", "eval", "--results", str(out / "results.coco.json"),
                          "--data", str(VAL_DIR), "--json"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    scored = json.loads(cli.stdout)
    assert (scored["map50_95"], scored["map50"], scored["images"]) == (report.map50_95, report.map50, 103)


def test_rerun_continues_same_job_and_refuses_a_different_one(tmp_path, val_images):
    out = tmp_path / "job"
    folder = val_images[0].parent
    spec = JobSpec(source=str(folder), model=FAST_MODEL, shard_size=64)
    first = run_job(out, spec, RunOptions(workers=1))
    again = run_job(out, spec, RunOptions(workers=1))  # same command again: nothing left to do
    assert again.state == "complete" and again.resumed and again.run_images == 0
    assert again.images_done == first.images_done == len(val_images)
    different = JobSpec(source=str(folder), model=FAST_MODEL, shard_size=64, options=DetectOptions(conf=0.5))
    with pytest.raises(UsageError, match=r"different job \(conf: 0.25 -> 0.5\)"):
        run_job(out, different, RunOptions())


def test_a_worker_that_cannot_start_fails_before_any_shard_and_forgets_the_plan(tmp_path):
    """An imgsz the fixed-shape model cannot take is only known once a worker loads it: the run fails with
    the Detector's own message, nothing is done, and the corrected command is not 'a different job'."""
    out = tmp_path / "job"
    wrong = JobSpec(source=str(COCO128), model=FAST_MODEL, shard_size=32, options=DetectOptions(imgsz=640))
    with pytest.raises(WorkerStartError, match="fixed input of 352x352") as caught:
        run_job(out, wrong, RunOptions(workers=2, threads=1))
    assert caught.value.exit_code == 2
    with JobDB(out / "job.db", readonly=True) as db:
        assert not db.is_planned() and db.done_shard_ids() == []
        assert {s for s, in db.conn.execute("SELECT state FROM shards")} == {"pending"}
    fixed = JobSpec(source=str(COCO128), model=FAST_MODEL, shard_size=32, options=DetectOptions(imgsz=352))
    assert run_job(out, fixed, RunOptions(workers=2, threads=1)).state == "complete"


def test_usage_errors_fail_before_planning(tmp_path):
    with pytest.raises(UsageError, match="no batch job here"):
        run_job(tmp_path / "empty", None)
    with pytest.raises(UsageError, match="no such folder"):
        run_job(tmp_path / "job", JobSpec(source=str(tmp_path / "nowhere"), model=FAST_MODEL))
    (tmp_path / "imgs").mkdir()
    with pytest.raises(UsageError, match="no images found"):
        run_job(tmp_path / "job", JobSpec(source=str(tmp_path / "imgs"), model=FAST_MODEL))
    cases = [
        (JobSpec(source=str(COCO128), model="no-such-model"), RunOptions(), "unknown model"),
        (JobSpec(source=str(COCO128), model=str(tmp_path / "gone.onnx")), RunOptions(), "no such model file"),
        (JobSpec(source=str(COCO128), model=FAST_MODEL, options=DetectOptions(classes=("unicorn",))), RunOptions(),
         "unknown class 'unicorn'"),
        (JobSpec(source=str(COCO128), model=FAST_MODEL), RunOptions(device="gpu"), "--device must be one of"),
        (JobSpec(source=str(COCO128), model=FAST_MODEL), RunOptions(backend="tensorflow"), "backend must be one of"),
        (JobSpec(source=str(COCO128), model=FAST_MODEL), RunOptions(workers=0), "--workers must be >= 1"),
        (JobSpec(source=str(COCO128), model=FAST_MODEL), RunOptions(engine="slurm"), "--engine must be one of"),
    ]
    for k, (spec, opts, message) in enumerate(cases):
        with pytest.raises(UsageError, match=message):
            run_job(tmp_path / f"job{k}", spec, opts)
        assert not _planned(tmp_path / f"job{k}")


def _planned(out) -> bool:
    if not (out / "job.db").exists():
        return False
    with JobDB(out / "job.db", readonly=True) as db:
        return db.is_planned()


def test_a_video_job_interrupted_mid_video_resumes_without_losing_or_repeating_a_frame(tmp_path, photos, detectors):
    from support.media import make_video
    from spotdet.vision.video import iter_frames

    video = str(make_video(tmp_path / "clip.mp4", photos["chelsea"], frames=11))
    out = tmp_path / "job"
    spec = JobSpec(source=video, model=FAST_MODEL, shard_size=2, vid_stride=2, options=DetectOptions(conf=0.3))
    assert run_job(out, spec, RunOptions(workers=1)).state == "complete"
    reference = read_jsonl(out / "results.jsonl")
    assert [(r["path"], r["frame"], r["index"]) for r in reference] == [(video, f, f // 2) for f in range(0, 11, 2)]
    direct = [r.to_dict() for r in detectors(FAST_MODEL).stream(
        (frame for _, frame in iter_frames(video, stride=2)), DetectOptions(conf=0.3))]
    assert [r["detections"] for r in reference] == [d["detections"] for d in direct]
    # preempted in the middle of the video: shard 1 (frames 4, 6) was handed out, never committed
    _sql(out, "UPDATE shards SET state='running' WHERE id=1", "DELETE FROM meta WHERE key='merged'")
    shard_path(out, 1).unlink()
    summary = run_job(out, None, RunOptions(workers=1))
    assert summary.state == "complete" and summary.run_images == 2
    assert_same_results(read_jsonl(out / "results.jsonl"), reference)
