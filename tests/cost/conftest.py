"""A stand-in ``pynvml`` module, so the NVML code paths run (and can fail) on machines without a GPU."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest


class FakeNvmlError(Exception):
    """Plays pynvml.NVMLError (and its subclasses such as NVMLError_LibraryNotFound)."""


def make_fake_pynvml(gpus: list[dict], init_error: str | None = None) -> types.ModuleType:
    """A module with the few pynvml calls spotdet uses.

    ``gpus``: one dict per GPU with ``name`` (bytes or str: old nvidia-ml-py returns bytes, new str),
    ``util`` (percent), ``used``/``total`` (bytes) and ``procs``: ``[(pid, bytes or None)]``, or the string
    ``"refused"`` to make the per-process query raise NVMLError on that GPU. ``init_error`` makes
    ``nvmlInit`` raise NVMLError with that message, as it does without a driver. ``mod.calls`` counts
    nvmlInit/nvmlShutdown so tests can check that a session is released exactly once.
    """
    mod = types.ModuleType("pynvml")
    mod.NVMLError = FakeNvmlError
    mod.calls = {"init": 0, "shutdown": 0}

    def nvmlInit():
        if init_error is not None:
            raise FakeNvmlError(init_error)
        mod.calls["init"] += 1

    def nvmlShutdown():
        mod.calls["shutdown"] += 1

    def procs(h):
        if gpus[h]["procs"] == "refused":
            raise FakeNvmlError("Not Supported")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpus[h]["procs"]]

    mod.nvmlInit = nvmlInit
    mod.nvmlShutdown = nvmlShutdown
    mod.nvmlDeviceGetCount = lambda: len(gpus)
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # the handle is the index
    mod.nvmlDeviceGetName = lambda h: gpus[h]["name"]
    mod.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=gpus[h]["util"], memory=0)
    mod.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(used=gpus[h]["used"], total=gpus[h]["total"],
                                                            free=gpus[h]["total"] - gpus[h]["used"])
    mod.nvmlDeviceGetComputeRunningProcesses = procs
    return mod


@pytest.fixture
def fake_pynvml(monkeypatch):
    """``install(gpus, init_error=None)`` puts a fake ``pynvml`` in ``sys.modules`` for one test.

    ``Nvml`` imports pynvml when it is opened, so everything opened after ``install`` sees the fake.
    """

    def install(gpus: list[dict], init_error: str | None = None) -> types.ModuleType:
        mod = make_fake_pynvml(gpus, init_error)
        monkeypatch.setitem(sys.modules, "pynvml", mod)
        return mod

    return install
