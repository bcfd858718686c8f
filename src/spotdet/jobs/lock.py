"""One process per job: an exclusive flock on RESULTS_DIR/job.lock, which the kernel drops when the process dies."""

from __future__ import annotations

import os
from pathlib import Path

from spotdet.errors import SpotdetError

LOCK_NAME = "job.lock"


class JobLockedError(SpotdetError):
    """Another process is running this job."""


class JobLock:
    """An exclusive flock on RESULTS_DIR/job.lock; the kernel drops it when the process dies, even on SIGKILL."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self.fh = None

    def __enter__(self) -> "JobLock":
        import fcntl  # POSIX only; imported here so the CLI still loads elsewhere

        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "?"
            self.fh.close()
            raise JobLockedError(f"{self.path.parent}: another spotdet batch process (pid {holder}) is running "
                                 "this job") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()


def lock_holder(out_dir: Path) -> int | None:
    """The pid running the job in ``out_dir``, or None when nobody holds its lock."""
    import fcntl

    path = Path(out_dir) / LOCK_NAME
    if not path.exists():
        return None
    try:
        fh = open(path, "a+")
    except OSError:  # a lock file this user may only read, or a read-only file system: flock works on a file
        fh = open(path)  # opened for reading too
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None
