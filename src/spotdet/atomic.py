"""Atomic file writes: a file appears under its final name complete, or not at all.

Every writer in spotdet that replaces a file other processes may read (model files and cards, downloads,
bench caches, batch shard files and outputs) goes through ``atomic_path``: the content goes to a temporary
file in the same folder (so the rename cannot cross file systems), and is renamed into place only when the
``with`` block ends without an exception. Ctrl-C, a failed check or a crash leaves the old file untouched and
no temporary file behind (except after SIGKILL, which callers that care clean up on their next start).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(dest: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest``, on any exception it is removed.

    With ``durable`` the file and the rename are fsynced, so the new content survives a power loss (batch
    shards are committed in a database right after: the file must really be there).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(dest.parent)


def atomic_write_text(dest: str | Path, text: str, durable: bool = False) -> Path:
    with atomic_path(dest, durable) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)


def atomic_write_lines(dest: str | Path, lines: Iterable[str], durable: bool = True) -> Path:
    """Stream ``lines`` (each ending in a newline where wanted) into ``dest``; memory stays flat."""
    with atomic_path(dest, durable) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
    return Path(dest)
