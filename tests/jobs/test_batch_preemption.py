"""Preemption: a real `spotdet batch run` subprocess SIGKILLed at random points, and stopped by SIGTERM."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import psutil

from support.batch import (COCO128, FAST_MODEL, check_committed_shards, cli_env, done_shards, read_jsonl, shard_states,
                           spotdet_exe)
from spotdet.jobs import EXIT_PREEMPTED

TIMEOUT = 180


def _batch(out: Path, *extra: str, model: str = FAST_MODEL, shard_size: int = 4) -> list[str]:
    return [spotdet_exe(), "batch", "run", str(COCO128), "--out", str(out), "--model", model, "--workers", "2",
            "--threads", "1", "--shard-size", str(shard_size), "--quiet", *extra]


def _wait_for(proc: subprocess.Popen, out: Path, shards: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and done_shards(out) < shards:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.01)


def test_sigkill_at_random_points_then_resume_equals_uninterrupted_run(tmp_path):
    env = cli_env(tmp_path / "cache")
    reference_dir = tmp_path / "reference"
    done = subprocess.run(_batch(reference_dir), env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    reference = read_jsonl(reference_dir / "results.jsonl")
    assert len(reference) == 128

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

    resumed = subprocess.run([spotdet_exe(), "batch", "resume", str(out), "--workers", "2", "--threads", "1",
                              "--quiet"], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    final = read_jsonl(out / "results.jsonl")
    paths = [r["path"] for r in final]
    assert len(paths) == len(set(paths)) == 128, f"duplicated or missing images (seed {seed})"
    assert sorted(paths) == sorted(str(p) for p in COCO128.glob("*.jpg"))
    assert final == reference, f"resumed results differ from the uninterrupted run (seed {seed})"
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"shard-{i:06d}.jsonl" for i in range(32)]


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
