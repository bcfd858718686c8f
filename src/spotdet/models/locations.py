"""Where spotdet keeps things: model folders, the model cache, and spotdet's home for other state.

One module owns the path policy so that the store, the cards, bench caches and optimize outputs agree.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_DIR_ENV = "SPOTDET_MODEL_DIR"
CACHE_DIR_ENV = "SPOTDET_CACHE_DIR"


def model_dirs() -> list[Path]:
    """Directories named by SPOTDET_MODEL_DIR (os.pathsep-separated), in order."""
    raw = os.environ.get(MODEL_DIR_ENV, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def cache_dir() -> Path:
    """Where downloaded and locally made models go: SPOTDET_CACHE_DIR, else ~/.cache/spotdet/models."""
    raw = os.environ.get(CACHE_DIR_ENV)
    if raw:
        return Path(raw).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spotdet" / "models"


def spotdet_home() -> Path:
    """Where spotdet keeps non-model state (bench results): SPOTDET_CACHE_DIR itself, else ~/.cache/spotdet."""
    return cache_dir() if os.environ.get(CACHE_DIR_ENV) else cache_dir().parent


def search_dirs() -> list[Path]:
    """Folders searched for model files and locally made cards, in order: model dirs, then the cache."""
    return [*model_dirs(), cache_dir()]
