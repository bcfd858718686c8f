"""A job's model fingerprint: what the results depend on beyond the stored spec, checked on every resume.

The spec stores the model as the user named it (a zoo name, a variant name, a path). What that name resolves
to can change between runs: another file put under the same name or path, a variant made again, another
``SPOTDET_MODEL_DIR``. Resuming then would mix two models' results in one output, every line looking fine.
So the plan stores the model file's sha256 with the card fields that shape the results and the detection
settings, and every later run (``resume``, or ``run`` again on the same folder) compares the fingerprint of
the model it resolves now and refuses to continue when it differs, saying what changed. The workers check the
file they load against the same sha256 (a Ray node may hold another copy).

Jobs planned before fingerprints existed (job database schema 1 and 2) have none: their first resume records
the current model's fingerprint and says so, since nothing tells which file their committed shards came from;
from then on they are checked like any other job.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any, Mapping

from spotdet.jobs.spec import JobSpec
from spotdet.models.ref import ModelRef
from spotdet.models.verify import file_sha256

# Card fields that change what a model file's outputs mean (the rest are descriptions and figures).
CARD_FIELDS = ("family", "input_size", "names", "preprocess", "decoder", "precision")
# What is compared; "model" also holds the file's path, which may change (a copy elsewhere is the same model).
COMPARED = ("sha256", "card", "options", "max_pixels")


def model_fingerprint(ref: ModelRef, spec: JobSpec) -> dict[str, Any]:
    """The fingerprint of the job ``spec`` run with the resolved model ``ref`` (JSON-ready)."""
    card = asdict(ref.card)
    data = {
        "model": {"name": ref.card.name, "path": os.path.abspath(ref.path)},
        "sha256": file_sha256(ref.path),
        "card": {k: card[k] for k in CARD_FIELDS},
        "options": spec.options.to_dict(),
        "max_pixels": spec.max_pixels,
    }
    return json.loads(json.dumps(data))  # tuples become lists, as they come back from the job database


def fingerprint_changes(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``what: stored -> current`` for each part of the fingerprint that differs (empty when none does)."""
    changes = []
    if stored.get("sha256") != current.get("sha256"):
        changes.append(f"model file sha256: {stored.get('sha256')} ({stored.get('model', {}).get('path')}) -> "
                       f"{current.get('sha256')} ({current.get('model', {}).get('path')})")
    for part in COMPARED[1:]:
        old, new = stored.get(part), current.get(part)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += [f"{part}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                        if old.get(k) != new.get(k)]
        elif old != new:
            changes.append(f"{part}: {old!r} -> {new!r}")
    return changes
