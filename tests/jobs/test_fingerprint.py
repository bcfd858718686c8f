"""A job records its model's fingerprint; a resume that would run another model under the same name is refused.

The real CLI on a real job: planned and run with one model file, made "interrupted" by setting shards back to
pending in its job database (what a SIGKILL leaves), then resumed after another model was put under the same
path. Without the fingerprint that resume finishes "complete" with lines from two models.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3

import pytest

from support.batch import cli_env, edit_job_db, one_line_error, read_jsonl, run_spotdet, shard_states
from support.paths import MODEL_DIR

# Two Ultralytics exports read as bring-your-own files (the card comes from the file, without a sha256): one
# path, two different models behind it.
FIRST, SECOND = MODEL_DIR / "yolov8n_int8.onnx", MODEL_DIR / "yolo11n_int8.onnx"


@pytest.fixture
def interrupted_job(tmp_path, val_images):
    """(env, job folder, model path, run args): a job with shard 0 committed and shards 1-2 not done yet."""
    env = cli_env(tmp_path / "cache")
    model = tmp_path / "models" / "detector.onnx"
    model.parent.mkdir()
    shutil.copy(FIRST, model)
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{p}\n" for p in val_images[:6]))
    out = tmp_path / "job"
    args = ("batch", "run", listing, "--out", out, "--model", model, "--shard-size", "2", "-q")
    proc = run_spotdet(env, *args)
    assert proc.returncode == 0, proc.stderr
    edit_job_db(out, ("UPDATE shards SET state='pending' WHERE id >= 1",))
    (out / "results.jsonl").unlink()
    return env, out, model, args


def _stored_job(out) -> dict:
    conn = sqlite3.connect(out / "job.db")
    try:
        return json.loads(conn.execute("SELECT value FROM meta WHERE key='settings'").fetchone()[0])
    finally:
        conn.close()


def test_resume_with_another_model_file_is_refused_saying_what_changed(interrupted_job):
    env, out, model, args = interrupted_job
    first_sha = hashlib.sha256(FIRST.read_bytes()).hexdigest()
    shutil.copy(SECOND, model)  # another model under the same path
    for proc in (run_spotdet(env, "batch", "resume", out, "-q"), run_spotdet(env, *args)):
        assert proc.returncode == 2, proc.stderr
        line = one_line_error(proc)
        assert "model changed since the job was planned" in line and first_sha in line, line
        assert "sha256" in line and "another --out" in line
    assert {state for state, _ in shard_states(out).values()} == {"done", "pending"}  # nothing more was run
    assert not (out / "results.jsonl").exists()

    shutil.copy(FIRST, model)  # the original file back: the job continues
    proc = run_spotdet(env, "batch", "resume", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert len(read_jsonl(out / "results.jsonl")) == 6
    status = json.loads(run_spotdet(env, "batch", "status", out, "--json").stdout)
    assert status["fingerprint"]["sha256"] == first_sha and status["fingerprint"]["model"]["path"] == str(model)
    assert status["fingerprint"]["card"]["family"] == "ultralytics"


def test_job_planned_without_a_fingerprint_records_one_on_resume(interrupted_job):
    """A job database from before fingerprints (schema 2, no "fingerprint"): the resume records the model it
    runs with and says so; from then on the job is checked like any other."""
    env, out, model, _ = interrupted_job
    job = _stored_job(out)
    del job["fingerprint"]
    edit_job_db(out, ("UPDATE meta SET value=? WHERE key='settings'", json.dumps(job)),
                ("UPDATE meta SET value='2' WHERE key='schema'",))

    proc = run_spotdet(env, "batch", "resume", out, "-q")  # the warning shows even with --quiet
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "did not record which model file" in proc.stderr
    assert _stored_job(out)["fingerprint"]["model"]["path"] == str(model)

    edit_job_db(out, ("UPDATE shards SET state='pending' WHERE id = 2",))  # interrupted again...
    shutil.copy(SECOND, model)  # ...and resumed with another model
    proc = run_spotdet(env, "batch", "resume", out, "-q")
    assert proc.returncode == 2 and "model changed" in one_line_error(proc)
