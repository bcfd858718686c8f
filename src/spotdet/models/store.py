"""Where model files come from: SPOTDET_MODEL_DIR, then the user cache, then a verified download.

Downloads go to a temporary file beside the target and are renamed into place only after the sha256
matches, so the cache never holds a partial or corrupt file.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from pathlib import Path

from spotdet.atomic import atomic_path
from spotdet.errors import ChecksumError, ModelUnavailableError
from spotdet.models.card import ModelCard
from spotdet.models.locations import MODEL_DIR_ENV, cache_dir, model_dirs, search_dirs

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_local(card: ModelCard) -> Path | None:
    """The first existing copy of the card's file in the model dirs or the cache, or None."""
    for directory in search_dirs():
        candidate = directory / card.file
        if candidate.is_file():
            return candidate
    return None


def _where_to_put(card: ModelCard) -> str:
    dirs = [str(d) for d in model_dirs()] or [f"a folder named in ${MODEL_DIR_ENV}"]
    return f"put {card.file} in {' or '.join(dirs)} or in {cache_dir()}"


def download(url: str, dest: Path, sha256: str, progress: bool = True, timeout: float = 30.0) -> Path:
    """Fetch ``url`` into ``dest`` atomically, verifying ``sha256``; nothing is left behind on failure."""
    with atomic_path(dest) as tmp:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(dest.name, total) if progress else None
            try:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    if bar:
                        bar[0].update(bar[1], advance=len(chunk))
            finally:
                if bar:
                    bar[0].stop()
        got = digest.hexdigest()
        if got != sha256:
            raise ChecksumError(
                f"checksum mismatch for {dest.name} from {url}: expected sha256 {sha256}, got {got}; "
                "the file was discarded"
            )
    return dest


def _progress_bar(label: str, total: int | None):
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), transient=True)
    task = bar.add_task(f"downloading {label}", total=total)
    bar.start()
    return bar, task


def fetch(card: ModelCard, allow_download: bool = True, progress: bool = True) -> Path:
    """Path to the card's model file, downloading it into the cache when it is nowhere local."""
    local = find_local(card)
    if local is not None:
        log.debug("model %s found at %s", card.name, local)
        return local
    if not (allow_download and card.url and card.sha256):
        reason = "no download address is on record" if not card.url else "downloads are disabled"
        raise ModelUnavailableError(f"model file {card.file} for {card.name} not found ({reason}); {_where_to_put(card)}")
    dest = cache_dir() / card.file
    log.info("downloading %s from %s", card.name, card.url)
    try:
        return download(card.url, dest, card.sha256, progress=progress)
    except ChecksumError as exc:
        raise ChecksumError(f"{exc}; {_where_to_put(card)}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ModelUnavailableError(
            f"could not download {card.name} from {card.url} ({exc}); {_where_to_put(card)}"
        ) from None
