"""Batch jobs through the Python API, on real models, real images and a real job database."""

from __future__ import annotations

import json
import subprocess
import sys
import sqlite3

import pytest

from support.batch import COCO128, FAST_MODEL, check_committed_shards, read_jsonl
from support.paths import VAL_DIR
from spotdet.errors import UsageError
from spotdet.eval.coco import evaluate, score_detections
from spotdet.jobs import JobLockedError, JobSpec, RunOptions, job_status, run_job
from spotdet.jobs.runner import JobLock


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


def test_results_match_detector_stream_and_failures_are_recorded(tmp_path, listing, detectors):
    path, entries = listing
    out = tmp_path / "job"
    summary = run_job(out, JobSpec(source=str(path), model=FAST_MODEL, shard_size=4), RunOptions(workers=1))
    assert summary.state == "complete"
    assert (summary.images_total, summary.images_ok, summary.images_failed) == (13, 11, 2)
    lines = read_jsonl(out / "results.jsonl")
    assert [line["path"] for line in lines] == entries and [line["index"] for line in lines] == list(range(13))

    direct = {r.path: r for r in detectors(FAST_MODEL).stream(entries, keep_image=False, on_error=lambda s, e: None)}
    for line in lines:
        if line["path"] in direct:
            r = direct[line["path"]]
            assert line["detections"] == r.detections()
            assert (line["width"], line["height"]) == (r.orig_shape[1], r.orig_shape[0])
        else:
            assert "error" in line and "detections" not in line
    errors = {line["path"]: line["error"] for line in lines if "error" in line}
    assert "truncated JPEG" in errors[entries[6]] and "no such file" in errors[entries[-1]]

    status = job_status(out)
    assert status.state == "complete" and status.images_failed == 2
    assert {f.path for f in status.failures} == set(errors)
    assert status.outputs == [str(out / "results.jsonl")]


def test_resume_after_crash_states_redoes_uncommitted_shards_only(tmp_path):
    """Rebuild by hand each state a crash can leave, then resume: every image exactly once, same results."""
    out = tmp_path / "job"
    spec = JobSpec(source=str(COCO128), model=FAST_MODEL, shard_size=16)
    assert run_job(out, spec, RunOptions(workers=1)).state == "complete"
    reference = read_jsonl(out / "results.jsonl")
    shards = out / "shards"
    # shard 2: written and renamed, but the crash came before its commit; shard 5: handed to a worker;
    # shard 6: a torn temp file next to nothing; the merged output is half written.
    conn = sqlite3.connect(out / "job.db")
    with conn:
        conn.execute("UPDATE shards SET state='pending' WHERE id=2")
        conn.execute("UPDATE shards SET state='running' WHERE id=5")
        conn.execute("DELETE FROM meta WHERE key='merged'")
    conn.close()
    (shards / "shard-000005.jsonl").unlink()
    (shards / ".shard-000006.jsonl.x1.tmp").write_text('{"index": 96')
    (out / "results.jsonl").write_text(json.dumps(reference[0]) + "\n")
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.jsonl")}

    summary = run_job(out, None, RunOptions(workers=1))
    assert summary.state == "complete" and summary.resumed and summary.run_images == 32
    check_committed_shards(out)
    assert read_jsonl(out / "results.jsonl") == reference
    after = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.jsonl")}
    redone = {name for name in after if before.get(name) != after[name]}
    assert redone == {"shard-000002.jsonl", "shard-000005.jsonl"}  # committed shards were not touched
    assert sorted(p.name for p in shards.iterdir()) == [f"shard-{i:06d}.jsonl" for i in range(8)]


def test_coco_output_scores_like_spotdet_eval(tmp_path, detectors):
    out = tmp_path / "job"
    spec = JobSpec(source=str(VAL_DIR / "images"), model=FAST_MODEL, fmt="coco", conf=0.001, max_det=100,
                   shard_size=32)
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
    with pytest.raises(UsageError, match="different job.*conf"):
        run_job(out, JobSpec(source=str(folder), model=FAST_MODEL, shard_size=64, conf=0.5), RunOptions())


def test_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no batch job here"):
        run_job(tmp_path / "empty", None)
    with pytest.raises(UsageError, match="no such folder"):
        run_job(tmp_path / "job", JobSpec(source=str(tmp_path / "nowhere"), model=FAST_MODEL))
    (tmp_path / "imgs").mkdir()
    with pytest.raises(UsageError, match="no images found"):
        run_job(tmp_path / "job", JobSpec(source=str(tmp_path / "imgs"), model=FAST_MODEL))
    with pytest.raises(UsageError, match="--format"):
        run_job(tmp_path / "job", JobSpec(source=str(tmp_path / "imgs"), model=FAST_MODEL, fmt="xml"))
    with pytest.raises(UsageError, match="unknown model|not in the zoo|no such"):
        run_job(tmp_path / "job2", JobSpec(source=str(COCO128), model="no-such-model"))


def test_a_locked_job_is_refused(tmp_path):
    out = tmp_path / "job"
    out.mkdir()
    with JobLock(out):
        with pytest.raises(JobLockedError, match="another spotdet batch process"):
            run_job(out, JobSpec(source=str(COCO128), model=FAST_MODEL))


def test_save_annotated(tmp_path, val_images):
    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(str(p) for p in val_images[:3]))
    out = tmp_path / "job"
    run_job(out, JobSpec(source=str(listing), model=FAST_MODEL, save_annotated=True), RunOptions(workers=1))
    saved = sorted(p.name for p in (out / "annotated").iterdir())
    assert saved == [f"{i:08d}_{p.stem}.jpg" for i, p in enumerate(val_images[:3])]
