"""Inference backends: the runtimes that execute a model file, each one module behind ``base.Backend``.

"Backend" means the inference runtime everywhere in spotdet; "engine" is kept for where batch jobs run
(local processes or Ray).
"""

from __future__ import annotations

from pathlib import Path

from spotdet.backends.base import Backend, dynamic_batch, fixed_size
from spotdet.errors import UsageError

BACKENDS = ("onnxruntime",)
BACKEND_CHOICES = ("auto", *BACKENDS)


def load_backend(path: str | Path, backend: str = "auto", device: str = "auto",
                 threads: int | None = None) -> Backend:
    """Load ``path`` in the named runtime (``auto``: the best one installed for ``device``)."""
    if backend not in BACKEND_CHOICES:
        raise UsageError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, got {backend!r}")
    from spotdet.backends.onnxruntime import OrtBackend

    return OrtBackend(path, device=device, threads=threads)


__all__ = ["BACKENDS", "BACKEND_CHOICES", "Backend", "dynamic_batch", "fixed_size", "load_backend"]
