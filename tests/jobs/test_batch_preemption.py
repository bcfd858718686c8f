"""Preemption: a real `spotdet batch run` subprocess SIGKILLed right after a commit and at random points, and
stopped by SIGTERM."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from support.batch import (COCO128, FAST_MODEL, assert_same_results, check_committed_shards, cli_env, done_shards,
                           read_jsonl, shard_states, spotdet_exe)
from spotdet.jobs import EXIT_PREEMPTED

TIMEOUT = 180

# `spotdet batch ...` whose coordinator freezes (SIGSTOP) right after its Nth shard commit: the commit is in the
# job database, and the process can run no further step (such as a shard file written after its commit) before
# the test's SIGKILL. Only the moment is injected; the code that commits is the real one.
FREEZE_AFTER_COMMIT = """
import os, signal, sys
from spotdet.jobs.jobdb import JobDB

commit, freeze_at, commits = JobDB.commit_shard, int(os.environ["FREEZE_AFTER_COMMITS"]), []

def commit_then_freeze(self, *args, **kwargs):
    commit(self, *args, **kwargs)
    commits.append(1)
    if len(commits) == freeze_at:
        os.kill(os.getpid(), signal.SIGSTOP)

JobDB.commit_shard = commit_then_freeze
from spotdet.cli.main import app
app(sys.argv[1:], prog_name="spotdet")
"""


def _batch(out: Path, *extra: str, model: str = FAST_MODEL, shard_size: int = 4) -> list[str]:
    return [spotdet_exe(), "batch", "run", str(COCO128), "--out", str(out), "--model", model, "--workers", "2",
            "--threads", "1", "--shard-size", str(shard_size), "--quiet", *extra]


def _wait_for(proc: subprocess.Popen, out: Path, shards: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and done_shards(out) < shards:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    """The results of the job below, run once without interruption."""
    tmp = tmp_path_factory.mktemp("reference")
    done = subprocess.run(_batch(tmp / "job"), env=cli_env(tmp / "cache"), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(tmp / "job" / "results.jsonl")
    assert len(lines) == 128
    return lines


def _resume_and_check(out: Path, env: dict, reference: list[dict], context: str = "") -> None:
    resumed = subprocess.run([spotdet_exe(), "batch", "resume", str(out), "--workers", "2", "--threads", "1",
                              "--quiet"], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    final = read_jsonl(out / "results.jsonl")
    paths = [r["path"] for r in final]
    assert len(paths) == len(set(paths)) == 128, f"duplicated or missing images {context}"
    assert sorted(paths) == sorted(str(p) for p in COCO128.glob("*.jpg"))
    assert_same_results(final, reference, f"(resumed vs uninterrupted run {context})")
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"shard-{i:06d}.jsonl" for i in range(32)]


def test_sigkill_right_after_a_commit_finds_its_shard_file_complete(tmp_path, reference):
    """Deterministic: the coordinator is killed the moment a new done shard is in the job database, so a shard
    committed before its file is written (or before the file is complete) is caught every time."""
    env = cli_env(tmp_path / "cache")
    out = tmp_path / "killed"
    for commits in (1, 3, 2):  # a kill after the 1st commit of a run, then of the resumed runs after the 3rd, 2nd
        before = done_shards(out)
        proc = subprocess.Popen([sys.executable, "-c", FREEZE_AFTER_COMMIT, *_batch(out)[1:]],
                                env={**env, "FREEZE_AFTER_COMMITS": str(commits)}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        _wait_for(proc, out, before + commits)
        assert proc.poll() is None, f"the job ended before its commit {commits}: {proc.stderr.read()}"
        workers = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait(timeout=30)
        assert not psutil.wait_procs(workers, timeout=10)[1], "orphaned workers survive a SIGKILL"
        assert done_shards(out) == before + commits
        check_committed_shards(out)
    _resume_and_check(out, env, reference)


def test_sigkill_at_random_points_then_resume_equals_uninterrupted_run(tmp_path, reference):
    env = cli_env(tmp_path / "cache")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    out = tmp_path / "killed"
    total_shards = 128 // 4
    kills = 0
    # Leave room at the end: a kill landing after the last commit would leave resume nothing to do.
    last_target = total_shards - 10
    for _ in range(4):
        before = done_shards(out)
        if before >= last_target:
            break
        proc = subprocess.Popen(_batch(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Kill somewhere in the middle of the work: after a random number of further commits, plus a random
        # delay, so the signal lands in any phase (inference, shard write, commit transaction, start-up).
        _wait_for(proc, out, min(last_target, before + rng.randint(1, 6)))
        time.sleep(rng.uniform(0.0, 0.2))
        workers = [] if proc.poll() is not None else psutil.Process(proc.pid).children(recursive=True)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait(timeout=30)
        # Worker processes die with the coordinator (no orphan keeps computing).
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"orphaned workers survive a SIGKILL (seed {seed})"
        check_committed_shards(out)
    assert kills >= 2, f"the job finished before it could be killed (seed {seed})"
    assert 0 < done_shards(out) < total_shards

    _resume_and_check(out, env, reference, f"(seed {seed})")


def test_sigterm_commits_in_flight_shards_and_exits_fast(tmp_path):
    env = cli_env(tmp_path / "cache")
    out = tmp_path / "job"
    proc = subprocess.Popen(_batch(out, model="yolox-nano", shard_size=8), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(proc, out, 1)
    assert proc.poll() is None, "the job finished before it could be signalled"
    committed_before = done_shards(out)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    elapsed = time.monotonic() - sent
    print(f"\nSIGTERM -> exit: {elapsed:.2f} s (exit code {proc.returncode})")
    assert proc.returncode == EXIT_PREEMPTED, stderr
    assert elapsed < 10.0, f"took {elapsed:.1f} s to stop after SIGTERM"
    assert "Traceback" not in stderr and "batch resume" in stderr
    states = {state for state, _ in shard_states(out).values()}
    assert "running" not in states  # the shards in flight were committed (or handed back), none left dangling
    assert done_shards(out) > committed_before  # the shards in flight when the signal came were committed
    check_committed_shards(out)
    assert not (out / "results.jsonl").exists()

    status = subprocess.run([spotdet_exe(), "batch", "status", str(out)], env=env, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert status.returncode == 0 and "incomplete" in status.stdout

    resumed = subprocess.run([spotdet_exe(), "batch", "resume", str(out), "--quiet"], env=env, capture_output=True,
                             text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    paths = [r["path"] for r in read_jsonl(out / "results.jsonl")]
    assert len(paths) == len(set(paths)) == 128


def test_sigterm_with_zero_grace_abandons_shards_in_flight(tmp_path):
    """--grace 0: the shards in flight are dropped at once (not committed) and redone by the resume."""
    env = cli_env(tmp_path / "cache")
    out = tmp_path / "job"
    proc = subprocess.Popen(_batch(out, "--grace", "0", model="yolox-nano", shard_size=64), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while proc.poll() is None and "running" not in {s for s, _ in _states(out)}:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)  # the workers are inside their 64-image shards
    assert proc.poll() is None, "the job finished before it could be signalled"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    elapsed = time.monotonic() - sent
    # Both shards were in flight (capacity is workers + 1): had they been allowed to finish, the job would
    # have completed with exit code 0. EXIT_PREEMPTED means at least one was abandoned, and quickly.
    assert proc.returncode == EXIT_PREEMPTED and elapsed < 10.0
    assert {s for s, _ in _states(out)} <= {"pending", "done"} and done_shards(out) < 2
    check_committed_shards(out)
    resumed = subprocess.run([spotdet_exe(), "batch", "resume", str(out), "--quiet"], env=env, capture_output=True,
                             text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    assert len(read_jsonl(out / "results.jsonl")) == 128


def _states(out: Path) -> list[tuple[str, int]]:
    try:
        return list(shard_states(out).values())
    except Exception:  # noqa: BLE001 - the database is not there or not planned yet
        return []
