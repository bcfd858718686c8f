"""Atomic output: the model goes to a temporary file beside OUT, is checked there, and only then renamed."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import onnx

from spotdet.optimize.errors import OptimizeError


@contextmanager
def atomic_model_file(out: Path) -> Iterator[Path]:
    """Yield a temp path in OUT's folder; on success it replaces OUT, on any exception (Ctrl-C too) it is removed.

    The caller writes and checks the temp file inside the ``with`` block; a half-written or unchecked
    model therefore never appears under the final name.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".onnx.part", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_model(model: onnx.ModelProto, path: Path) -> None:
    try:
        onnx.save_model(model, str(path))
    except (OSError, ValueError) as exc:
        raise OptimizeError(f"could not write {path} ({exc})") from None
