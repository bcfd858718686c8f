"""Batch jobs whose folder or database the system refuses: one line and exit code 74, never a traceback.

Real conditions, no mocks: a path through a file, a folder that cannot be written to (even by root), SQLite on
a device that is always full, a real full file system (a small tmpfs, where this machine allows mounting one),
and job databases emptied, truncated or overwritten on disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from support.batch import (COCO128, FAST_MODEL, assert_same_results, env, one_line_error, read_jsonl,
                           run_spotdet, spotdet_exe, unwritable_dir)  # noqa: F401 (env, unwritable_dir: fixtures)

EXIT_IO = 74


@pytest.fixture
def listing(tmp_path, val_images):
    path = tmp_path / "images.txt"
    path.write_text("".join(f"{p}\n" for p in val_images[:6]))
    return path


@pytest.fixture
def done_job(env, tmp_path, listing):
    """A complete job of 6 images in 3 shards; returns its folder."""
    out = tmp_path / "job"
    proc = run_spotdet(env, "batch", "run", listing, "--out", out, "--model", FAST_MODEL, "--shard-size", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    return out


def test_out_through_a_file(env, tmp_path, listing):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    proc = run_spotdet(env, "batch", "run", listing, "--out", blocker / "job", "--model", FAST_MODEL)
    assert proc.returncode == EXIT_IO, proc.stderr
    line = one_line_error(proc)
    assert str(blocker / "job") in line and "Not a directory" in line


@pytest.mark.parametrize("inside", [True, False], ids=["new-folder-inside", "the-folder-itself"])
def test_unwritable_out(env, listing, unwritable_dir, inside):
    out = unwritable_dir / "job" if inside else unwritable_dir
    proc = run_spotdet(env, "batch", "run", listing, "--out", out, "--model", FAST_MODEL)
    assert proc.returncode == EXIT_IO, proc.stderr
    assert str(out) in one_line_error(proc)


def test_sqlite_database_or_disk_is_full(env, tmp_path, listing):
    """SQLite on /dev/full gets ENOSPC on every write: its own "database or disk is full"."""
    out = tmp_path / "job"
    out.mkdir()
    (out / "job.db").symlink_to("/dev/full")
    proc = run_spotdet(env, "batch", "run", listing, "--out", out, "--model", FAST_MODEL)
    assert proc.returncode == EXIT_IO, proc.stderr
    line = one_line_error(proc)
    assert "job.db: database or disk is full" in line and "free space" in line


def test_full_disk_mid_run_stops_with_one_line_and_resumes(env, tmp_path):
    """A real full file system (a 150 kB tmpfs, in a private mount namespace) fills while shards are
    written; the job stops with exit 74 and resumes, once moved to a disk with room, to the same results."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    mnt, copy = tmp_path / "small-disk", tmp_path / "moved"
    mnt.mkdir()
    script = (f'mount -t tmpfs -o size=150k tmpfs "{mnt}" || exit 99; '
              f'"{spotdet_exe()}" batch run "{COCO128}" --out "{mnt}/job" --model {FAST_MODEL} --shard-size 4 -q; '
              f'echo $? > "{tmp_path}/rc"; cp -a "{mnt}/job" "{copy}"')
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode == 99 or not (tmp_path / "rc").exists():
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    assert int((tmp_path / "rc").read_text()) == EXIT_IO, proc.stderr
    line = one_line_error(proc)
    assert "No space left on device" in line and "spotdet batch resume" in line, line

    resumed = run_spotdet(env, "batch", "resume", copy, "-q", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole = run_spotdet(env, "batch", "run", COCO128, "--out", tmp_path / "whole", "--model", FAST_MODEL,
                        "--shard-size", "4", "-q", timeout=300)
    assert whole.returncode == 0, whole.stderr
    assert_same_results(read_jsonl(copy / "results.jsonl"), read_jsonl(tmp_path / "whole" / "results.jsonl"))


@pytest.mark.parametrize("damage, reason", [
    ("empty", "empty (0 bytes)"),
    ("truncated", "database disk image is malformed"),
    ("overwritten", "file is not a database"),
])
def test_damaged_job_db_on_resume_and_status(env, done_job, damage, reason):
    db = done_job / "job.db"
    data = db.read_bytes()
    assert len(data) >= 4 * 4096, len(data)  # several pages: the schema page and the tables' pages
    if damage == "empty":
        db.write_bytes(b"")
    elif damage == "truncated":
        db.write_bytes(data[:4096])  # the schema page survives, the tables' pages are gone
    else:
        db.write_bytes(b"\0" * len(data))
    for command in ("resume", "status"):
        proc = run_spotdet(env, "batch", command, done_job)
        assert proc.returncode == EXIT_IO, (command, proc.stderr)
        line = one_line_error(proc)
        assert str(db) in line and reason in line and "never fully planned" not in line, (command, line)
        assert "another --out" in line


def test_done_shard_without_its_file_is_redone(env, done_job):
    before = read_jsonl(done_job / "results.jsonl")
    (done_job / "shards" / "shard-000001.jsonl").unlink()
    (done_job / "results.jsonl").unlink()
    proc = run_spotdet(env, "batch", "resume", done_job, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "1 shard(s) marked done have no results file" in proc.stderr and "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["state"] == "complete" and summary["run_images"] == 2
    assert_same_results(read_jsonl(done_job / "results.jsonl"), before)


def test_damaged_shard_file_stops_the_merge_and_is_redone(env, done_job):
    before = read_jsonl(done_job / "results.jsonl")
    shard = done_job / "shards" / "shard-000002.jsonl"
    shard.write_bytes(shard.read_bytes()[:100])  # cut mid-line
    proc = run_spotdet(env, "batch", "resume", done_job)
    assert proc.returncode == EXIT_IO, proc.stderr
    line = one_line_error(proc)
    assert f"{shard}: line 1 is not JSON" in line and "spotdet batch resume" in line
    proc = run_spotdet(env, "batch", "resume", done_job, "-q")
    assert proc.returncode == 0, proc.stderr
    assert_same_results(read_jsonl(done_job / "results.jsonl"), before)
