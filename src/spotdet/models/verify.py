"""Local model files checked against their card's sha256 on every load, for the price of one stat.

A download is verified before it is renamed into the cache (``store.download``); a file that is already local
(in a model folder or the cache) is verified here, when it is resolved (``resolve_model``: the Detector, the
service, bench, optimize and batch jobs all resolve through it). A damaged or swapped file is refused with a
ChecksumError naming the file, both hashes and what to do, instead of loading and silently finding nothing.

Hashing a model on every load would cost tens of milliseconds per load (more for big models), so the sha256 of
each file hashed is remembered in ``model-hashes.json`` in spotdet's home (``locations.spotdet_home``), keyed by
the file's absolute path together with the size, mtime, ctime and inode it had when it was hashed. A file whose
``stat`` still shows the same four is not read again; any write to it (or a file put in its place) changes them
and it is hashed anew. The cache file is replaced atomically (``spotdet.atomic``); when it cannot be written
(read-only home) files are simply hashed on every load. Cards without a sha256 (bring-your-own files read from
the ONNX file itself) are not checked; ``file_sha256`` still fingerprints them (batch jobs record it).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from spotdet.errors import ChecksumError
from spotdet.models.card import ModelCard
from spotdet.models.locations import spotdet_home
from spotdet.models.store import sha256_of

log = logging.getLogger(__name__)

HASHES_NAME = "model-hashes.json"
_VERSION = 1

# Checksum states, as `spotdet models list/info` show them.
OK, MISMATCH, UNCHECKED = "ok", "mismatch", "unchecked"


def hashes_path() -> Path:
    return spotdet_home() / HASHES_NAME


def _stamp(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _read_hashes() -> dict[str, Any]:
    try:
        data = json.loads(hashes_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, unreadable or damaged: start afresh
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("version") == _VERSION else None
    return files if isinstance(files, dict) else {}


def _write_hashes(files: dict[str, Any]) -> None:
    from spotdet.atomic import atomic_write_text

    files = {p: entry for p, entry in files.items() if os.path.exists(p)}  # forget files that are gone
    try:
        atomic_write_text(hashes_path(), json.dumps({"version": _VERSION, "files": files}, indent=1))
    except OSError as exc:  # a read-only home: verification still works, it just hashes every time
        log.debug("could not remember model hashes in %s: %s", hashes_path(), exc)


def file_sha256(path: str | Path) -> str:
    """The file's sha256: remembered when its size, mtime, ctime and inode are unchanged, else computed."""
    key = os.path.abspath(path)
    stamp = _stamp(os.stat(key))
    files = _read_hashes()
    entry = files.get(key)
    if isinstance(entry, dict) and {k: entry.get(k) for k in stamp} == stamp and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = sha256_of(Path(key))
    if _stamp(os.stat(key)) == stamp:  # not written to while it was read: safe to remember
        files[key] = {**stamp, "sha256": digest}
        _write_hashes(files)
    return digest


def checksum_state(card: ModelCard, path: str | Path) -> str:
    """OK or MISMATCH against the card's sha256; UNCHECKED when the card has none."""
    if not card.sha256:
        return UNCHECKED
    return OK if file_sha256(path) == card.sha256.lower() else MISMATCH


def verify(card: ModelCard, path: str | Path) -> None:
    """Raise ChecksumError when ``path`` is not the file the card describes (cards without a sha256 pass)."""
    if not card.sha256:
        return
    got = file_sha256(path)
    if got != card.sha256.lower():
        raise ChecksumError(
            f"{path}: sha256 {got} does not match the card of {card.name} (expected {card.sha256}): the file is "
            f"damaged or is another model, and is not loaded; {_remedy(card, Path(path))}"
        )


def _remedy(card: ModelCard, path: Path) -> str:
    if card.parent:
        return (f"make it again with `spotdet optimize {card.parent} --precision {card.precision}`, or delete "
                f"{path.name} and its card")
    if card.url:
        return f"replace it with the original file, or delete it so that spotdet downloads {card.url} again"
    return f"replace it with the original {card.file}"
