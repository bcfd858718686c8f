"""Shared fixtures: the real model folder, real photos from scikit-image, real COCO images."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from support.cpu import avx2_only_cpu  # noqa: F401 (a fixture: spotdet decides as on an AVX2-only CPU)
from support.paths import MODEL_DIR, VAL_DIR


def pytest_configure(config):
    # Tests read the real models from ../shared/models unless the caller points elsewhere.
    os.environ.setdefault("SPOTDET_MODEL_DIR", str(MODEL_DIR))
    # No timed backend probe (backends/probe.py) in tests, module-scoped fixtures and the processes they start
    # included: every load takes the runtime the fixed rule names, whatever the machine's speed that minute.
    os.environ["SPOTDET_BACKEND_PROBE"] = "0"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's real cache: each test gets an empty one.

    The timed backend probe of ``backend="auto"`` (spotdet/backends/probe.py) is off, so every test loads the
    runtime the fixed rule names whatever the machine's speed that minute; tests/backends/test_probe.py turns
    it on and checks the probe itself.
    """
    monkeypatch.setenv("SPOTDET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SPOTDET_BACKEND_PROBE", "0")


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Known real photos as BGR arrays: chelsea (cat), astronaut (person), coffee (cup)."""
    from skimage import data

    return {name: cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR) for name in ("chelsea", "astronaut", "coffee")}


@pytest.fixture(scope="session")
def val_images() -> list[Path]:
    images = sorted((VAL_DIR / "images").glob("*.jpg"))
    assert images, f"no COCO images under {VAL_DIR}"
    return images


@pytest.fixture(scope="session")
def detectors():
    """One loaded Detector per zoo model, shared across tests (loading costs ~0.1-0.5 s each)."""
    from spotdet import Detector

    cache: dict[str, Detector] = {}

    def get(name: str) -> Detector:
        if name not in cache:
            cache[name] = Detector(name)
        return cache[name]

    return get
