"""One process per job: the job lock, and who holds it (what `batch status` shows as the running pid)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.batch import COCO128, FAST_MODEL
from spotdet.jobs import JobLockedError, JobSpec, run_job
from spotdet.jobs.lock import JobLock, lock_holder


def test_a_locked_job_is_refused(tmp_path):
    out = tmp_path / "job"
    out.mkdir()
    with JobLock(out):
        assert lock_holder(out) == os.getpid()
        with pytest.raises(JobLockedError, match=f"another spotdet batch process \\(pid {os.getpid()}\\)"):
            run_job(out, JobSpec(source=str(COCO128), model=FAST_MODEL))
    assert lock_holder(out) is None


def test_the_kernel_drops_the_lock_of_a_killed_process(tmp_path):
    code = ("import sys, time; from pathlib import Path; from spotdet.jobs.lock import JobLock; "
            "lock = JobLock(Path(sys.argv[1])).__enter__(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert lock_holder(tmp_path) == proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert lock_holder(tmp_path) is None
    with JobLock(tmp_path):
        pass
